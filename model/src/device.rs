//! Device selection and a libtorch self-check.

use tch::{Device, Kind, Tensor};

/// `cpu`, `cuda` or `auto` (CUDA when libtorch sees a GPU) as a tch device.
pub fn parse_device(name: &str) -> Result<Device, String> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if tch::Cuda::is_available() {
                Ok(Device::Cuda(0))
            } else {
                Err("--device cuda was asked for, but libtorch sees no CUDA device".into())
            }
        }
        "auto" => Ok(Device::cuda_if_available()),
        other => Err(format!("unknown device {other:?} (expected cpu, cuda or auto)")),
    }
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
    fn unknown_device_is_a_clear_error() {
        let err = parse_device("tpu").unwrap_err();
        assert!(err.contains("tpu"), "{err}");
    }
}
