//! The run directory: every file name in it, the records it holds, and reading and writing them.
//!
//! ```text
//! <out>/<task>/<method>/seed-<seed>/
//!   config.json            the resolved run config (RunConfig)
//!   lp.json                LP stage summary (LpSummary; LP, LP-FT, LP-LoRA)
//!   lp_head.safetensors    the head at the start of the gradient stage
//!   history.jsonl          one EpochRecord per epoch
//!   log_history.jsonl      step-level Trainer-style entries (with --logging-steps)
//!   head.safetensors       classifier.weight [C, h], classifier.bias [C]
//!   model/                 FT, LP-FT: Hugging Face layout
//!   adapter/               LoRA, LP-LoRA: PEFT layout
//!   predictions/<split>.safetensors   eval logits [n, C] and labels
//!   manifest.json          versions and provenance (Manifest)
//!   metrics.json           written last: its presence marks a finished run (RunMetrics)
//!   checkpoint/            only while unfinished: the resume state (CheckpointDir)
//!   calibration.json, analysis.json, lp-path.json, kernels/, ood/, cell.json   later stages
//! ```
//!
//! Every file is written atomically ([`crate::fsutil::write_atomic`]). The stages
//! ([`crate::stages`]) are the only code that opens run directories; the report reads them
//! through here.

pub mod checkpoint;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::calibration::metrics::Metrics;
use crate::error::{Error, Result};
use crate::methods::config::{Method, RunConfig};
use crate::methods::lp::LpSummary;
use crate::methods::progress::{EpochRecord, LogEntry};

pub use checkpoint::CheckpointDir;

/// `config.json`: the resolved [`RunConfig`].
pub(crate) const CONFIG: &str = "config.json";
/// `metrics.json`: [`RunMetrics`], written last.
pub(crate) const METRICS: &str = "metrics.json";
/// `manifest.json`: [`Manifest`].
pub(crate) const MANIFEST: &str = "manifest.json";
/// `history.jsonl`: one [`EpochRecord`] per line.
pub(crate) const HISTORY: &str = "history.jsonl";
/// `log_history.jsonl`: step-level entries with transformers' key names (`--logging-steps`).
pub(crate) const LOG_HISTORY: &str = "log_history.jsonl";
/// `lp.json`: [`LpSummary`].
pub(crate) const LP_SUMMARY: &str = "lp.json";
/// `lp_head.safetensors`: the LP head installed before the gradient stage.
pub(crate) const LP_HEAD: &str = "lp_head.safetensors";
/// `head.safetensors`: the final head.
pub const HEAD: &str = "head.safetensors";
/// `model/`: the fine-tuned model in the Hugging Face layout (FT, LP-FT).
pub(crate) const MODEL_DIR: &str = "model";
/// `adapter/`: the LoRA adapter in the PEFT layout (LoRA, LP-LoRA).
pub(crate) const ADAPTER_DIR: &str = "adapter";
/// `predictions/`: `<split>.safetensors` with `logits` and `labels`.
pub(crate) const PREDICTIONS_DIR: &str = "predictions";
/// `checkpoint/`: the resume state of an unfinished run.
pub(crate) const CHECKPOINT_DIR: &str = "checkpoint";
/// `calibration.json`: temperature scaling.
pub(crate) const CALIBRATION: &str = "calibration.json";
/// `analysis.json`: feature statistics.
pub(crate) const ANALYSIS: &str = "analysis.json";
/// `lp-path.json`: the LP norm path.
pub(crate) const LP_PATH: &str = "lp-path.json";
/// `kernels/`: the eNTK's kernels.
pub(crate) const KERNELS_DIR: &str = "kernels";
/// `kernels/ntk.json`: the eNTK's statistics.
pub(crate) const NTK_SUMMARY: &str = "kernels/ntk.json";
/// `kernels/alignment.json`: a LoRA run's F against an FT run's.
pub const ALIGNMENT: &str = "kernels/alignment.json";
/// `ood/<name>.json` and `ood/<name>.safetensors`: out-of-distribution evaluations.
pub(crate) const OOD_DIR: &str = "ood";
/// `cell.json`: the grid cell a run belongs to.
pub(crate) const CELL: &str = "cell.json";
/// `experiment.json` in a grid folder: the experiment and its cells.
pub(crate) const EXPERIMENT: &str = "experiment.json";

/// The metrics of a finished run (`metrics.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMetrics {
    pub task: String,
    pub method: Method,
    pub seed: u64,
    pub model: String,
    pub labels: Vec<String>,
    pub validation: Metrics,
    pub test: Metrics,
    /// ‖V‖_F of the final head (Norm(C)), bias excluded.
    pub classifier_norm: f64,
    /// ‖V‖_F of the randomly initialised head.
    pub initial_classifier_norm: f64,
    pub lp: Option<LpSummary>,
    /// 1-based epoch whose parameters were kept (None for LP).
    pub best_epoch: Option<usize>,
    pub epochs_run: usize,
    pub trainable_parameters: usize,
    /// ‖V‖_F at the start of the gradient stage (after LP and any κ scaling).
    #[serde(default)]
    pub stage_start_classifier_norm: Option<f64>,
}

/// Versions and provenance of a run (`manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub lpft_version: String,
    pub git_commit: Option<String>,
    pub model: String,
    pub model_dir: PathBuf,
    pub model_sha256: String,
    pub threads: usize,
    pub wall_seconds: f64,
    pub started_unix: u64,
    /// Where the run computed (`crate::device::describe`); absent in runs of lpft before it was
    /// recorded.
    #[serde(default)]
    pub device: Option<String>,
}

/// `out_root/<task>/<method>/seed-<seed>`.
pub fn run_dir(out_root: &Path, cfg: &RunConfig) -> PathBuf {
    out_root
        .join(&cfg.task)
        .join(cfg.method.as_str())
        .join(format!("seed-{}", cfg.seed))
}

/// The lock file of a run directory: `.<name>.lock` beside it (so that `--overwrite` can remove
/// the directory while the lock is held).
pub(crate) fn lock_path(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!(".{name}.lock"))
}

/// Whether `dir` holds a finished run (its `metrics.json`).
pub(crate) fn is_finished(dir: &Path) -> bool {
    dir.join(METRICS).exists()
}

/// Writes `value` as pretty JSON at `path`, atomically.
///
/// # Errors
/// [`Error::Json`] or [`Error::Write`] naming `path`.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        source: e,
    })?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// A finished run's `metrics.json`.
///
/// # Errors
/// [`Error::Io`] or [`Error::Json`] naming the file.
pub fn read_metrics(dir: &Path) -> Result<RunMetrics> {
    crate::fsutil::read_json(&dir.join(METRICS))
}

/// A run's `config.json`.
///
/// # Errors
/// [`Error::Io`] or [`Error::Json`] naming the file.
pub(crate) fn read_config(dir: &Path) -> Result<RunConfig> {
    crate::fsutil::read_json(&dir.join(CONFIG))
}

/// Every tensor of a safetensors file of a run directory (an error naming it when missing).
///
/// # Errors
/// [`Error::Io`] naming a missing file; safetensors errors.
pub(crate) fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "missing from the run directory",
            ),
        ));
    }
    Ok(candle_core::safetensors::load(path, &Device::Cpu)?
        .into_iter()
        .collect())
}

/// Writes `history.jsonl`, one record per line.
///
/// # Errors
/// [`Error::Json`] or [`Error::Write`] naming the file.
pub(crate) fn write_history(dir: &Path, records: &[EpochRecord]) -> Result<()> {
    write_jsonl(&dir.join(HISTORY), records)
}

/// Writes `log_history.jsonl`, one [`LogEntry`] per line (`--logging-steps`).
///
/// # Errors
/// [`Error::Json`] or [`Error::Write`] naming the file.
pub(crate) fn write_log_history(dir: &Path, entries: &[LogEntry]) -> Result<()> {
    write_jsonl(&dir.join(LOG_HISTORY), entries)
}

/// One JSON line per value, written atomically.
fn write_jsonl<T: Serialize>(path: &Path, values: &[T]) -> Result<()> {
    let mut text = String::new();
    for value in values {
        let line = serde_json::to_string(value).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            source: e,
        })?;
        text.push_str(&line);
        text.push('\n');
    }
    crate::fsutil::write_atomic(path, text.as_bytes())
}

/// A run's `history.jsonl` (empty when the file is absent, as for LP).
///
/// # Errors
/// [`Error::Io`] or [`Error::JsonLine`] naming the file and line.
pub(crate) fn read_history(dir: &Path) -> Result<Vec<EpochRecord>> {
    read_jsonl(&dir.join(HISTORY))
}

/// A run's `log_history.jsonl` (empty when the file is absent: a run without
/// `logging_steps`/`eval_steps`).
///
/// # Errors
/// A line that is not a log entry, naming the file and line.
pub(crate) fn read_log_history(dir: &Path) -> Result<Vec<LogEntry>> {
    read_jsonl(&dir.join(LOG_HISTORY))
}

/// One value per non-empty line; nothing when the file is absent.
fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let mut out = Vec::new();
    if !path.exists() {
        return Ok(out);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        out.push(serde_json::from_str(line).map_err(|e| Error::JsonLine {
            path: path.to_path_buf(),
            line: i + 1,
            source: e,
        })?);
    }
    Ok(out)
}

/// `predictions/<split>.safetensors` of a run.
pub(crate) fn predictions_path(dir: &Path, split: &str) -> PathBuf {
    dir.join(PREDICTIONS_DIR)
        .join(format!("{split}.safetensors"))
}

/// Saves eval logits `[n, C]` (f32) and labels `[n]` as `predictions/<split>.safetensors`.
///
/// # Errors
/// Tensor and write errors.
pub fn save_predictions(
    dir: &Path,
    split: &str,
    logits: &[f64],
    labels: &[usize],
    n_classes: usize,
) -> Result<()> {
    let n = labels.len();
    let z: Vec<f32> = logits.iter().map(|&v| v as f32).collect();
    let y: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    let map = HashMap::from([
        (
            "logits".to_string(),
            Tensor::from_vec(z, (n, n_classes), &Device::Cpu)?,
        ),
        ("labels".to_string(), Tensor::from_vec(y, n, &Device::Cpu)?),
    ]);
    crate::fsutil::save_tensors_atomic(&map, &predictions_path(dir, split))
}

/// Every run directory (one holding `metrics.json`) at or below `root`, sorted by path.
pub fn find_runs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if is_finished(root) {
        out.push(root.to_path_buf());
        return out;
    }
    if let Ok(entries) = std::fs::read_dir(root) {
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for d in dirs {
            out.extend(find_runs(&d));
        }
    }
    out
}
