//! Reading run directories into records, and mean ± std over seeds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::experiment::config::{kappa_variant, BASE_VARIANT};
use crate::experiment::grid::CellInfo;
use crate::fsutil::{read_json, read_json_opt};
use crate::methods::lp::LpPath;
use crate::methods::progress::EpochRecord;
use crate::methods::{Method, RunConfig};
use crate::rundir::{self, find_runs, Manifest, RunMetrics};
use crate::stages::analyze::{read_analysis, RunAnalysis};
use crate::stages::calibrate::CalibrationReport;
use crate::stages::kernels::{read_ntk, Alignment, NtkSummary};
use crate::stages::ood::OodResult;

/// Everything a report needs from one run directory.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub dir: PathBuf,
    /// The experiment variant (`cell.json`), else one derived from the config (`base`,
    /// `lp-c<C>` for a fixed LP C, `kappa-<κ>` for a scaled head).
    pub variant: String,
    pub config: RunConfig,
    pub metrics: RunMetrics,
    pub manifest: Option<Manifest>,
    pub history: Vec<EpochRecord>,
    /// `log_history.jsonl` (runs with `logging_steps` or `eval_steps`), else empty.
    pub log: Vec<crate::methods::progress::LogEntry>,
    pub analysis: Option<RunAnalysis>,
    pub calibration: Option<CalibrationReport>,
    pub ntk: Option<NtkSummary>,
    pub alignment: Option<Alignment>,
    pub lp_path: Option<LpPath>,
    pub ood: Vec<OodResult>,
}

impl RunRecord {
    pub fn method(&self) -> Method {
        self.config.method
    }
    pub fn task(&self) -> &str {
        &self.config.task
    }
}

fn derived_variant(cfg: &RunConfig) -> String {
    if cfg.head_scale != 1.0 {
        kappa_variant(cfg.head_scale)
    } else if let (Some(c), true) = (cfg.lp.c, cfg.method.has_lp()) {
        format!("lp-c{c}")
    } else {
        BASE_VARIANT.to_string()
    }
}

/// Reads one finished run directory: its record, and the other variants the run stands for
/// (`cell.json`'s `also`, e.g. the norm sweep's κ = 1 that is the base cell).
///
/// # Errors
/// [`Error::Io`]/[`Error::Json`] naming the file that is missing or malformed (`metrics.json`,
/// `config.json` are required; the analyses are optional).
pub(crate) fn read_run(dir: &Path) -> Result<(RunRecord, Vec<String>)> {
    let config: RunConfig = rundir::read_config(dir)?;
    let metrics: RunMetrics = rundir::read_metrics(dir)?;
    let cell: Option<CellInfo> = read_json_opt(&dir.join(rundir::CELL))?;
    let (variant, also) = match cell {
        Some(c) => (c.variant, c.also),
        None => (derived_variant(&config), Vec::new()),
    };
    let history = rundir::read_history(dir)?;
    let mut ood = Vec::new();
    let ood_dir = dir.join(rundir::OOD_DIR);
    if let Ok(entries) = std::fs::read_dir(&ood_dir) {
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            ood.push(read_json(&f)?);
        }
    }
    let record = RunRecord {
        dir: dir.to_path_buf(),
        variant,
        manifest: read_json_opt(&dir.join(rundir::MANIFEST))?,
        history,
        log: rundir::read_log_history(dir)?,
        analysis: read_analysis(dir)?,
        calibration: read_json_opt(&dir.join(rundir::CALIBRATION))?,
        ntk: read_ntk(dir)?,
        alignment: read_json_opt(&dir.join(rundir::ALIGNMENT))?,
        lp_path: read_json_opt(&dir.join(rundir::LP_PATH))?,
        ood,
        config,
        metrics,
    };
    Ok((record, also))
}

/// Every finished run under `root`, in path order.
///
/// # Errors
/// [`Error::MissingData`]-style [`Error::InvalidArgument`] when there is none; the first
/// unreadable run's error.
pub(crate) fn read_runs(root: &Path) -> Result<Vec<RunRecord>> {
    let dirs = find_runs(root);
    if dirs.is_empty() {
        return Err(Error::InvalidArgument {
            field: "runs".into(),
            reason: format!("no finished runs (metrics.json) under {}", root.display()),
        });
    }
    let mut runs = Vec::new();
    let mut aliases = Vec::new();
    for d in &dirs {
        let (record, also) = read_run(d)?;
        aliases.extend(also.into_iter().map(|variant| RunRecord {
            variant,
            ..record.clone()
        }));
        runs.push(record);
    }
    // A run the report reads under another variant too, unless that variant has a directory
    // of its own (left by an earlier version of the grid, which ran the cell twice).
    let key = |r: &RunRecord| {
        (
            r.variant.clone(),
            r.config.task.clone(),
            r.method(),
            r.config.seed,
        )
    };
    for a in aliases {
        if !runs.iter().any(|r| key(r) == key(&a)) {
            runs.push(a);
        }
    }
    Ok(runs)
}

/// Mean, sample standard deviation (n − 1; `None` for one value) and count.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Stat {
    pub mean: f64,
    pub std: Option<f64>,
    pub n: usize,
}

impl Stat {
    /// Of the finite values in `xs`; `None` if there are none.
    pub fn of(xs: impl IntoIterator<Item = f64>) -> Option<Stat> {
        let v: Vec<f64> = xs.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = (n > 1)
            .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Some(Stat { mean, std, n })
    }
}

/// Runs grouped by (variant, task, method), each group's seeds in path order.
pub(crate) type Groups<'a> = BTreeMap<(String, String, Method), Vec<&'a RunRecord>>;

/// Groups runs by (variant, task, method).
pub fn group(runs: &[RunRecord]) -> Groups<'_> {
    let mut g: Groups<'_> = BTreeMap::new();
    for r in runs {
        g.entry((r.variant.clone(), r.task().to_string(), r.method()))
            .or_default()
            .push(r);
    }
    g
}
