//! Device selection and a libtorch self-check.

use tch::{Device, Kind, Tensor};

/// `cpu`, `cuda` or `auto` (CUDA when libtorch sees a GPU) as a tch device.
pub fn parse_device(name: &str) -> Result<Device, String> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            load_cuda_backend().map_err(|e| format!("--device cuda was asked for, but {e}"))?;
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err("--device cuda was asked for, but libtorch sees no CUDA device (libtorch_cuda.so loaded; is a driver installed?)".into())
            }
        }
        "auto" => {
            if let Err(e) = load_cuda_backend() {
                tracing::debug!("--device auto: {e}; using the CPU");
            }
            Ok(Device::cuda_if_available())
        }
        other => Err(format!("unknown device {other:?} (expected cpu, cuda or auto)")),
    }
}

/// Loads libtorch's CUDA backend, once per process.
///
/// libtorch's CUDA kernels live in `libtorch_cuda.so`, which registers them with the
/// dispatcher when it is loaded. No symbol of it is referenced by tch, so the linker's
/// `--as-needed` drops it from the binary and `tch::Cuda::is_available()` answers false even
/// on a GPU machine (a known tch pitfall). Loading it here, only when CUDA is asked for,
/// fixes that and keeps CPU runs from mapping the CUDA libraries (gigabytes with cuDNN and
/// cuBLAS). The name is resolved as `libtorch_cpu.so` was: the binary's rpath to the
/// venv's `torch/lib`, then `LD_LIBRARY_PATH`.
pub fn load_cuda_backend() -> Result<(), String> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED.get_or_init(|| dlopen_global("libtorch_cuda.so")).clone()
}

fn dlopen_global(name: &str) -> Result<(), String> {
    let c_name = std::ffi::CString::new(name).expect("a library name has no NUL");
    // SAFETY: dlopen with a valid C string; the handle is kept open for the process's life
    // (libtorch's registrations must stay), and dlerror is read right after a failure.
    unsafe {
        let handle = libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if handle.is_null() {
            let err = libc::dlerror();
            let why = if err.is_null() {
                "unknown error".to_string()
            } else {
                std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned()
            };
            return Err(format!("libtorch's CUDA backend could not be loaded ({why}); this libtorch may be a CPU-only build"));
        }
    }
    Ok(())
}

/// Multiplies two small known matrices on `device` and returns the product's entries, proving
/// that libtorch loads and computes. [[1,2],[3,4]] x [[5,6],[7,8]] = [[19,22],[43,50]].
pub fn matmul_self_check(device: Device) -> Vec<f64> {
    let a = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0]).reshape([2, 2]).to_device(device);
    let b = Tensor::from_slice(&[5.0f64, 6.0, 7.0, 8.0]).reshape([2, 2]).to_device(device);
    let c = a.matmul(&b).to_kind(Kind::Double).to_device(Device::Cpu).reshape([4]);
    Vec::<f64>::try_from(&c).expect("a 1-D double tensor converts to Vec<f64>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_on_cpu_gives_the_known_product() {
        assert_eq!(matmul_self_check(Device::Cpu), vec![19.0, 22.0, 43.0, 50.0]);
    }

    #[test]
    fn auto_falls_back_to_a_usable_device_and_cuda_errors_clearly_without_a_gpu() {
        let device = parse_device("auto").expect("auto always resolves");
        assert_eq!(matmul_self_check(device), vec![19.0, 22.0, 43.0, 50.0]);
        if !tch::Cuda::is_available() {
            let err = parse_device("cuda").unwrap_err();
            assert!(err.contains("--device cuda"), "{err}");
        }
    }

    #[test]
    fn unknown_device_is_a_clear_error() {
        let err = parse_device("tpu").unwrap_err();
        assert!(err.contains("tpu"), "{err}");
    }
}
