//! Temperature scaling of a finished run (docs/method.md §9): fit T on the saved validation logits,
//! report test metrics before and after, and the reliability diagrams' data.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::calibration::metrics::{self, reliability, softmax_rows, Metrics, ReliabilityBin};
use crate::calibration::temperature::{Temperature, TemperatureParams};
use crate::error::{Error, Result};

/// What `lpft calibrate` writes to `calibration.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationReport {
    pub params: TemperatureParams,
    pub temperature: Temperature,
    /// Test metrics with the raw logits and with logits / T.
    pub test_before: Metrics,
    pub test_after: Metrics,
    /// 15-bin reliability data on the test split, before and after.
    pub reliability_before: Vec<ReliabilityBin>,
    pub reliability_after: Vec<ReliabilityBin>,
}

/// Logits `[n, C]` and labels `[n]` from `predictions/<split>.safetensors`.
pub(crate) fn read_predictions(run: &Path, split: &str) -> Result<(Vec<f64>, Vec<usize>, usize)> {
    let path = crate::rundir::predictions_path(run, split);
    if !path.exists() {
        return Err(Error::io(
            &path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no saved predictions"),
        ));
    }
    let t = candle_core::safetensors::load(&path, &candle_core::Device::Cpu)?;
    let get = |name: &str| {
        t.get(name).ok_or_else(|| Error::MissingTensor {
            path: path.clone(),
            name: name.to_string(),
        })
    };
    let logits = get("logits")?;
    let (_, c) = logits.dims2()?;
    let z: Vec<f64> = logits
        .to_dtype(candle_core::DType::F64)?
        .flatten_all()?
        .to_vec1()?;
    let y: Vec<usize> = get("labels")?
        .to_dtype(candle_core::DType::I64)?
        .to_vec1::<i64>()?
        .into_iter()
        .map(|v| v.max(0) as usize)
        .collect();
    Ok((z, y, c))
}

/// Fits T on the run's validation logits and evaluates the test logits before and after.
pub fn calibrate_run(run: &Path, params: &TemperatureParams) -> Result<CalibrationReport> {
    params.validate()?;
    let (zv, yv, c) = read_predictions(run, "validation")?;
    let (zt, yt, _) = read_predictions(run, "test")?;
    let temperature = params.fit(&zv, &yv, c)?;
    let scaled = temperature.apply(&zt);
    let test_before = metrics::compute(&zt, &yt, c)?;
    let test_after = metrics::compute(&scaled, &yt, c)?;
    let bins = metrics::ECE_BINS;
    Ok(CalibrationReport {
        params: params.clone(),
        temperature,
        test_before,
        test_after,
        reliability_before: reliability(&softmax_rows(&zt, c), &yt, c, bins),
        reliability_after: reliability(&softmax_rows(&scaled, c), &yt, c, bins),
    })
}

/// The fitted temperature of a run, if `lpft calibrate` has written one.
pub fn read_temperature(run: &Path) -> Result<Option<f64>> {
    let path = run.join(crate::rundir::CALIBRATION);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let report: CalibrationReport =
        serde_json::from_str(&text).map_err(|e| Error::Json { path, source: e })?;
    Ok(Some(report.temperature.t))
}
