//! The compute device of this process: where models are loaded and run (`--device cpu`,
//! `cuda` or `cuda:N`, or `LPFT_DEVICE`), like `--threads` a process-wide setting that the
//! command line sets once before any model is built.
//!
//! On the CPU lpft runs its fused kernels and its own backward; on a CUDA device the same
//! model runs candle's composed CUDA ops with candle's autograd (each fused op has a composed
//! counterpart, tied to it by tests), AdamW updates through composed tensor ops with its moments
//! on the device, and the eNTK uses autograd. CUDA needs a build with `--features cuda`.

use std::sync::RwLock;

use candle_core::Device;

use crate::error::{Error, Result};

static CURRENT: RwLock<Option<Device>> = RwLock::new(None);

/// Parses `cpu`, `cuda` (device 0) or `cuda:N` into a device, opening the CUDA device.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `--device` for another spelling, for a build without
/// CUDA, or when the CUDA device cannot be opened.
pub fn parse(spec: &str) -> Result<Device> {
    let bad = |reason: String| Error::InvalidArgument {
        field: "--device".into(),
        reason,
    };
    let ordinal = match spec.trim() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => {
                return Err(bad(format!(
                    "`{spec}` is not a device: use cpu, cuda or cuda:N"
                )))
            }
        },
    };
    if !cfg!(feature = "cuda") {
        return Err(bad(format!(
            "`{spec}`: this lpft was built without CUDA; rebuild it with \
             `cargo build --release --features cuda` (README, \"GPUs\")"
        )));
    }
    Device::new_cuda(ordinal).map_err(|e| bad(format!("cannot open `{spec}`: {e}")))
}

/// Sets the device that [`current`] returns from now on.
pub fn set(device: Device) {
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Some(device);
}

/// The process's compute device: the one [`set`] last, else the CPU.
pub fn current() -> Device {
    CURRENT
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or(Device::Cpu)
}

/// The `--device` spelling of `device` (`cpu`, `cuda:N`).
pub fn spec(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Where this process computes, for a run's manifest: the device's `--device` spelling, the
/// CPU's model name and its widest vector instructions, e.g. `cpu on AMD EPYC (avx2, fma)`.
///
/// Recorded because results are reproducible on one machine but not across instruction sets:
/// `gemm` and the fused kernels pick other kernels on AVX-512 than on AVX2, and the last-bit
/// differences carry on through training (README, "Threads").
pub fn describe(device: &Device) -> String {
    format!("{} on {}", spec(device), cpu_name())
}

/// The CPU's model name (`/proc/cpuinfo`, else the architecture) and its vector extensions.
fn cpu_name() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let features = vector_features();
    if features.is_empty() {
        model
    } else {
        format!("{model} ({})", features.join(", "))
    }
}

/// The vector extensions the kernels dispatch on that this CPU has.
fn vector_features() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut found = Vec::new();
        if std::arch::is_x86_feature_detected!("avx512f") {
            found.push("avx512f");
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            found.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            found.push("fma");
        }
        found
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cpu_and_names_the_flag_otherwise() {
        assert!(parse("cpu").unwrap().is_cpu());
        assert_eq!(spec(&parse(" cpu ").unwrap()), "cpu");
        for bad in ["gpu", "cuda:x", "cuda:", "metal", ""] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("--device") && err.contains("cpu, cuda or cuda:N"),
                "{bad}: {err}"
            );
        }
        if !cfg!(feature = "cuda") {
            for spec in ["cuda", "cuda:1"] {
                let err = parse(spec).unwrap_err().to_string();
                assert!(err.contains("--features cuda"), "{spec}: {err}");
            }
        }
    }

    #[test]
    fn describes_the_device_and_the_cpu() {
        let text = describe(&Device::Cpu);
        let cpu = text.strip_prefix("cpu on ").expect(&text);
        assert!(!cpu.trim().is_empty(), "{text}");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            assert!(cpu.contains("avx2"), "{text}");
        }
    }
}
