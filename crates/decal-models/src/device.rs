//! Device selection: `cpu`, `cuda`, `cuda:<index>`, `mps`, and libtorch's CPU thread count.
//!
//! No code path in decal assumes the CPU: tensors are created on the VarStore's device and inputs are moved
//! to it by the callers. Parsing refuses a CUDA device that is not present, instead of failing later inside
//! libtorch with a less helpful message.

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
            Ok(Device::Cuda(index))
        }
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
    fn thread_count_is_applied() {
        assert_eq!(set_threads(Some(1)), 1);
        assert_eq!(tch::get_num_threads(), 1);
        assert!(set_threads(None) >= 1);
    }
}
