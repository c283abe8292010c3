//! Device selection: one string (`flex`, `wgpu`, `wgpu:cpu`, `cuda`) to one burn [`Device`].

use std::panic::{self, AssertUnwindSafe};

use burn::tensor::{Device, Tensor};

use crate::error::DeviceError;

/// The device strings [`parse_device`] accepts, for help texts and error messages.
pub const DEVICE_FORMS: &str =
    "flex, wgpu, wgpu:cpu, wgpu:discrete[:N], wgpu:integrated[:N], cuda[:N]";

/// Parse a device string into a burn [`Device`] without touching the hardware.
///
/// - `flex`: burn's pure-Rust CPU backend (the default, bit-for-bit repeatable).
/// - `wgpu`: the best adapter wgpu finds (a GPU, or Mesa's lavapipe on a machine without one).
/// - `wgpu:cpu`, `wgpu:discrete[:N]`, `wgpu:integrated[:N]`: a specific kind of wgpu adapter.
/// - `cuda[:N]`: NVIDIA CUDA, when built with the `cuda` feature.
///
/// The result has no autodiff; call `.autodiff()` on it for training.
pub fn parse_device(given: &str) -> Result<Device, DeviceError> {
    let lower = given.trim().to_lowercase();
    let mut parts = lower.split(':');
    let backend = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let unknown = || DeviceError::Unknown {
        given: given.to_string(),
        allowed: DEVICE_FORMS.to_string(),
    };
    let index = |s: Option<&&str>| -> Result<usize, DeviceError> {
        match s {
            None => Ok(0),
            Some(s) => s.parse().map_err(|_| unknown()),
        }
    };
    match (backend, rest.as_slice()) {
        ("flex", []) => Ok(Device::flex()),
        ("wgpu", kind) => wgpu_device(given, kind, index),
        ("cuda", idx) if idx.len() <= 1 => cuda_device(given, index(idx.first())?),
        _ => Err(unknown()),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device(
    given: &str,
    kind: &[&str],
    index: impl Fn(Option<&&str>) -> Result<usize, DeviceError>,
) -> Result<Device, DeviceError> {
    use burn::tensor::DeviceKind;
    let kind = match kind {
        [] => DeviceKind::DefaultDevice,
        ["cpu"] => DeviceKind::Cpu,
        ["discrete", idx @ ..] if idx.len() <= 1 => DeviceKind::DiscreteGpu(index(idx.first())?),
        ["integrated", idx @ ..] if idx.len() <= 1 => {
            DeviceKind::IntegratedGpu(index(idx.first())?)
        }
        _ => {
            return Err(DeviceError::Unknown {
                given: given.to_string(),
                allowed: DEVICE_FORMS.to_string(),
            });
        }
    };
    Ok(Device::wgpu(kind))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(
    given: &str,
    _kind: &[&str],
    _index: impl Fn(Option<&&str>) -> Result<usize, DeviceError>,
) -> Result<Device, DeviceError> {
    Err(DeviceError::Unavailable {
        given: given.to_string(),
        reason: "this build has no wgpu support (rebuild with the `wgpu` feature)".into(),
    })
}

#[cfg(feature = "cuda")]
fn cuda_device(_given: &str, index: usize) -> Result<Device, DeviceError> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(given: &str, _index: usize) -> Result<Device, DeviceError> {
    Err(DeviceError::Unavailable {
        given: given.to_string(),
        reason: "this build has no CUDA support (rebuild with `--features cuda`)".into(),
    })
}

/// Parse a device string and check that the device really runs a tensor operation, so that a
/// missing GPU adapter is a clear error up front rather than a panic deep inside training.
pub fn open_device(given: &str) -> Result<Device, DeviceError> {
    let device = parse_device(given)?;
    probe(&device).map_err(|reason| DeviceError::Unavailable {
        given: given.to_string(),
        reason,
    })?;
    Ok(device)
}

/// Run one small computation on `device`; an `Err` carries the backend's panic message.
pub fn probe(device: &Device) -> Result<(), String> {
    let device = device.clone();
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let result = panic::catch_unwind(AssertUnwindSafe(move || {
        let x = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device);
        x.sum().into_scalar::<f32>()
    }));
    panic::set_hook(previous);
    match result {
        Ok(6.0) => Ok(()),
        Ok(sum) => Err(format!("a test sum gave {sum} instead of 6")),
        Err(payload) => Err(payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the backend panicked while starting".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_parses_and_runs() {
        let device = open_device("flex").unwrap();
        assert_eq!(device, Device::flex());
        assert_eq!(parse_device(" FLEX ").unwrap(), Device::flex());
    }

    #[test]
    fn unknown_devices_list_the_allowed_forms() {
        for bad in [
            "",
            "tpu",
            "flex:0",
            "wgpu:quantum",
            "wgpu:discrete:x",
            "cuda:a:b",
        ] {
            let err = parse_device(bad).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, DeviceError::Unknown { .. }), "{bad}: {msg}");
            assert!(msg.contains("flex, wgpu"), "{bad}: {msg}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_unavailable() {
        let err = parse_device("cuda").unwrap_err();
        assert!(matches!(err, DeviceError::Unavailable { .. }));
        assert!(err.to_string().contains("--features cuda"), "{err}");
    }
}
