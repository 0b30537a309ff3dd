//! Device selection: `cpu`, `cuda`, `cuda:<index>`, `mps`, and libtorch's CPU thread count.
//!
//! No code path in decal assumes the CPU: tensors are created on the VarStore's device and inputs are moved
//! to it by the callers. Parsing refuses a CUDA device that is not present, instead of failing later inside
//! libtorch with a less helpful message.
//!
//! Reproducibility on CUDA: a parsed CUDA device also switches cuDNN to deterministic algorithms with
//! auto-tuning off ([`deterministic_cudnn`]; PyTorch's `torch.backends.cudnn.deterministic = True`,
//! `benchmark = False`) and sets `CUBLAS_WORKSPACE_CONFIG=:4096:8` unless the user set it, so the same
//! config and seed give the same numbers on the same GPU. tch 0.24 exposes only the benchmark switch, so
//! `at::Context`'s setters are declared by their mangled names (non-virtual members: `this` is the first
//! argument in the Itanium C++ ABI); `determinism_flags_round_trip` pins them on any machine.

use tch::Device;

use crate::ModelError;

/// Parses a device string: `cpu`, `cuda` (= `cuda:0`), `cuda:<index>`, `mps`, or `auto` (the first CUDA
/// device when one is available, else the CPU).
pub fn parse(spec: &str) -> Result<Device, ModelError> {
    let err = |problem: String| ModelError::Device {
        spec: spec.to_string(),
        problem,
    };
    match spec.trim().to_ascii_lowercase().as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "mps" => {
            if tch::utils::has_mps() {
                Ok(Device::Mps)
            } else {
                Err(err(
                    "this libtorch build has no MPS (Apple GPU) support".into()
                ))
            }
        }
        s => {
            let index = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => match rest.strip_prefix(':').and_then(|i| i.parse::<usize>().ok()) {
                    Some(i) => i,
                    None => {
                        return Err(err("expected cpu, cuda, cuda:<index>, mps or auto".into()))
                    }
                },
                None => return Err(err("expected cpu, cuda, cuda:<index>, mps or auto".into())),
            };
            let count = tch::Cuda::device_count().max(0) as usize;
            if count == 0 {
                return Err(err(
                    "CUDA is not available (no GPU visible to libtorch, or a CPU-only libtorch)"
                        .into(),
                ));
            }
            if index >= count {
                return Err(err(format!(
                    "only {count} CUDA device(s) present (valid indices 0..{})",
                    count - 1
                )));
            }
            deterministic_cudnn();
            Ok(Device::Cuda(index))
        }
    }
}

#[allow(unsafe_code)]
mod ffi {
    use std::ffi::c_void;
    extern "C" {
        #[link_name = "_ZN2at13globalContextEv"]
        pub fn global_context() -> *mut c_void;
        #[link_name = "_ZN2at7Context21setDeterministicCuDNNEb"]
        pub fn set_deterministic_cudnn(this: *mut c_void, b: bool);
        #[link_name = "_ZNK2at7Context18deterministicCuDNNEv"]
        pub fn deterministic_cudnn(this: *const c_void) -> bool;
        #[link_name = "_ZN2at7Context17setBenchmarkCuDNNEb"]
        pub fn set_benchmark_cudnn(this: *mut c_void, b: bool);
        #[link_name = "_ZNK2at7Context14benchmarkCuDNNEv"]
        pub fn benchmark_cudnn(this: *const c_void) -> bool;
    }
}

/// Makes cuDNN choose deterministic algorithms without auto-tuning, and asks cuBLAS for its deterministic
/// workspace configuration (effective if set before the first cuBLAS call, hence at device selection).
/// Harmless without a GPU: the flags live in libtorch's global context.
#[allow(unsafe_code)]
pub fn deterministic_cudnn() {
    if std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
        std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
    }
    // SAFETY: `at::globalContext()` returns a reference to a process-lifetime singleton; the setters
    // store a bool and do not throw.
    unsafe {
        let ctx = ffi::global_context();
        ffi::set_deterministic_cudnn(ctx, true);
        ffi::set_benchmark_cudnn(ctx, false);
    }
}

/// The cuDNN flags of libtorch's global context: `(deterministic, benchmark)`.
#[allow(unsafe_code)]
pub fn cudnn_flags() -> (bool, bool) {
    // SAFETY: see `deterministic_cudnn`; the getters only read.
    unsafe {
        let ctx = ffi::global_context();
        (ffi::deterministic_cudnn(ctx), ffi::benchmark_cudnn(ctx))
    }
}

/// Sets libtorch's intra-op thread count to `threads`, or to the number of available cores when `None`.
/// Returns the number set.
pub fn set_threads(threads: Option<usize>) -> usize {
    let n = threads.filter(|&n| n > 0).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    tch::set_num_threads(n as i32);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_garbage() {
        assert_eq!(parse("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse(" CPU ").unwrap(), Device::Cpu);
        let e = parse("gpu7").unwrap_err().to_string();
        assert!(e.contains("gpu7") && e.contains("cuda:<index>"), "{e}");
        assert!(parse("cuda:x").is_err());
    }

    #[test]
    fn cuda_index_checked_against_device_count() {
        let count = tch::Cuda::device_count() as usize;
        let e = parse(&format!("cuda:{count}")).unwrap_err().to_string();
        assert!(e.contains("CUDA") || e.contains("device"), "{e}");
        if count == 0 {
            assert!(parse("cuda")
                .unwrap_err()
                .to_string()
                .contains("not available"));
            assert_eq!(parse("auto").unwrap(), Device::Cpu);
        } else {
            assert_eq!(parse("cuda").unwrap(), Device::Cuda(0));
        }
    }

    #[test]
    fn determinism_flags_round_trip() {
        deterministic_cudnn();
        assert_eq!(cudnn_flags(), (true, false));
        assert_eq!(
            std::env::var("CUBLAS_WORKSPACE_CONFIG").as_deref(),
            Ok(":4096:8")
        );
        tch::Cuda::cudnn_set_benchmark(true);
        assert_eq!(cudnn_flags(), (true, true));
        deterministic_cudnn();
        assert_eq!(cudnn_flags(), (true, false));
    }

    #[test]
    fn thread_count_is_applied() {
        assert_eq!(set_threads(Some(1)), 1);
        assert_eq!(tch::get_num_threads(), 1);
        assert!(set_threads(None) >= 1);
    }
}
