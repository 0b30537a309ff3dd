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
//!
//! Loading the CUDA backend: libtorch registers CUDA when `libtorch_cuda.so` is loaded, but nothing in decal
//! calls into that library directly, so the linker's `--as-needed` drops it and a CUDA build of libtorch
//! would report no GPU. [`load_cuda_backend`] opens it (from libtorch's own folder) before any CUDA query;
//! with a CPU-only libtorch, or on a machine without a GPU, that is a no-op / zero devices.

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
        "auto" => {
            load_cuda_backend();
            match Device::cuda_if_available() {
                Device::Cuda(_) => {
                    deterministic_cudnn();
                    Ok(Device::Cuda(0))
                }
                other => Ok(other),
            }
        }
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
            load_cuda_backend();
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
    use std::ffi::{c_char, c_int, c_void};

    pub const RTLD_NOW: c_int = 2;
    pub const RTLD_GLOBAL: c_int = 0x100;

    /// glibc's `Dl_info`.
    #[repr(C)]
    pub struct DlInfo {
        pub fname: *const c_char,
        pub fbase: *mut c_void,
        pub sname: *const c_char,
        pub saddr: *mut c_void,
    }

    extern "C" {
        pub fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
        pub fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
    }

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

/// Loads libtorch's CUDA backend (`libtorch_cuda.so`) once per process, if this libtorch has one, so that
/// CUDA devices become visible. Returns whether the library is loaded. Looks first beside the loaded
/// `libtorch_cpu.so`, then on the normal library search path. Never fails: without the library (a CPU-only
/// libtorch, or a platform without `dlopen`) CUDA simply reports no devices.
pub fn load_cuda_backend() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(open_cuda_library)
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn open_cuda_library() -> bool {
    use std::ffi::{CStr, CString};
    let mut candidates = Vec::new();
    let mut info = ffi::DlInfo {
        fname: std::ptr::null(),
        fbase: std::ptr::null_mut(),
        sname: std::ptr::null(),
        saddr: std::ptr::null_mut(),
    };
    // SAFETY: `dladdr` only fills `info` for an address inside a loaded object; `global_context` is a
    // function of libtorch_cpu.so, and `fname` (when set) points to a NUL-terminated path owned by the loader.
    let found = unsafe { ffi::dladdr(ffi::global_context as *const std::ffi::c_void, &mut info) };
    if found != 0 && !info.fname.is_null() {
        let path = unsafe { CStr::from_ptr(info.fname) }
            .to_string_lossy()
            .into_owned();
        if let Some(dir) = std::path::Path::new(&path).parent() {
            candidates.push(dir.join("libtorch_cuda.so").to_string_lossy().into_owned());
        }
    }
    candidates.push("libtorch_cuda.so".to_string());
    candidates.into_iter().any(|name| {
        let Ok(c) = CString::new(name) else {
            return false;
        };
        // SAFETY: `c` is a valid C string; loading a shared library runs its static initialisers, which
        // for libtorch_cuda.so register the CUDA hooks with the already-loaded libtorch_cpu.so.
        !unsafe { ffi::dlopen(c.as_ptr(), ffi::RTLD_NOW | ffi::RTLD_GLOBAL) }.is_null()
    })
}

#[cfg(not(target_os = "linux"))]
fn open_cuda_library() -> bool {
    false
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
        load_cuda_backend();
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
    fn the_cuda_backend_of_a_cuda_libtorch_is_loaded() {
        // scripts/env.sh exports the folder of the libtorch decal is built against.
        let Some(lib) = std::env::var_os("DECAL_LIBTORCH_LIB") else {
            return;
        };
        let has_cuda = std::path::Path::new(&lib)
            .join("libtorch_cuda.so")
            .is_file();
        assert_eq!(load_cuda_backend(), has_cuda, "{lib:?}");
        assert!(load_cuda_backend() == has_cuda, "idempotent");
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
