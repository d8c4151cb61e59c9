//! Device selection: the one place that maps a user's device string (`"cpu"`, `"cuda:0"`,
//! `"rocm:1"`, `"wgpu"`) to a Burn [`Device`], with a clear error for a backend that this
//! build does not include.
//!
//! The default build compiles Burn's pure-Rust `flex` CPU backend only. The cargo features
//! `cuda`, `rocm` and `wgpu` add Burn's GPU backends (see `docs/devices.md`).

use burn::tensor::Device;

use crate::error::{Error, Result};

/// The backends this binary was compiled with, in the order `auto` prefers them.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut out = Vec::new();
    if cfg!(feature = "cuda") {
        out.push("cuda");
    }
    if cfg!(feature = "rocm") {
        out.push("rocm");
    }
    if cfg!(feature = "wgpu") {
        out.push("wgpu");
    }
    out.push("cpu");
    out
}

/// Parses a device string and returns the Burn device.
///
/// Accepted forms: `cpu`, `auto` (the first compiled GPU backend, else the CPU),
/// `cuda`, `cuda:N`, `rocm`, `rocm:N`, `wgpu`, `wgpu:N` (N-th discrete GPU).
///
/// # Errors
/// The string is malformed, or names a backend this build does not include; the message
/// lists the compiled backends and the cargo feature that adds the missing one.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec_trim = spec.trim().to_ascii_lowercase();
    let (kind, index) = match spec_trim.split_once(':') {
        Some((k, i)) => {
            let index = i.parse::<usize>().map_err(|_| Error::Device {
                device: spec.to_owned(),
                message: format!("expected a device index after ':', got {i:?}"),
            })?;
            (k.to_owned(), Some(index))
        }
        None => (spec_trim.clone(), None),
    };
    match kind.as_str() {
        "cpu" | "flex" => {
            if index.is_some_and(|i| i != 0) {
                return Err(Error::Device {
                    device: spec.to_owned(),
                    message: "the CPU backend has a single device, cpu (or cpu:0)".to_owned(),
                });
            }
            Ok(Device::flex())
        }
        "auto" => parse_device(compiled_backends()[0]),
        "cuda" => cuda(spec, index.unwrap_or(0)),
        "rocm" | "hip" => rocm(spec, index.unwrap_or(0)),
        "wgpu" | "gpu" => wgpu(spec, index),
        _ => Err(Error::Device {
            device: spec.to_owned(),
            message: format!(
                "unknown device kind {kind:?}: expected one of cpu, auto, cuda[:N], rocm[:N], \
                 wgpu[:N]"
            ),
        }),
    }
}

fn not_compiled(spec: &str, feature: &str) -> Error {
    Error::Device {
        device: spec.to_owned(),
        message: format!(
            "this build of ctiforge has no {feature} backend (compiled: {}); rebuild with \
             `cargo build --release -p ctiforge-cli --features {feature}` (see docs/devices.md)",
            compiled_backends().join(", ")
        ),
    }
}

#[cfg(feature = "cuda")]
fn cuda(_spec: &str, index: usize) -> Result<Device> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(spec: &str, _index: usize) -> Result<Device> {
    Err(not_compiled(spec, "cuda"))
}

#[cfg(feature = "rocm")]
fn rocm(_spec: &str, index: usize) -> Result<Device> {
    Ok(Device::rocm(index))
}

#[cfg(not(feature = "rocm"))]
fn rocm(spec: &str, _index: usize) -> Result<Device> {
    Err(not_compiled(spec, "rocm"))
}

#[cfg(feature = "wgpu")]
fn wgpu(_spec: &str, index: Option<usize>) -> Result<Device> {
    use burn::tensor::DeviceKind;
    Ok(Device::wgpu(match index {
        Some(i) => DeviceKind::DiscreteGpu(i),
        None => DeviceKind::DefaultDevice,
    }))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(spec: &str, _index: Option<usize>) -> Result<Device> {
    Err(not_compiled(spec, "wgpu"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_available() {
        assert!(parse_device("cpu").is_ok());
        assert!(parse_device("CPU:0").is_ok());
        assert!(parse_device("auto").is_ok());
    }

    #[test]
    fn bad_strings_are_explained() {
        let msg = parse_device("tpu:0").expect_err("unknown").to_string();
        assert!(msg.contains("tpu") && msg.contains("cuda[:N]"), "{msg}");
        let msg = parse_device("cuda:x").expect_err("bad index").to_string();
        assert!(msg.contains("index"), "{msg}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn missing_backend_names_the_feature() {
        let msg = parse_device("cuda:0")
            .expect_err("not compiled")
            .to_string();
        assert!(msg.contains("--features cuda"), "{msg}");
    }
}
