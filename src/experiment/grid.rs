//! Running an experiment grid: every cell that is not finished is trained, then given each
//! requested analysis whose output is missing, so an interrupted grid continues where it
//! stopped (training itself resumes from its last epoch).
//!
//! A cell is finished when its run directory has `metrics.json` and every analysis output the
//! experiment asks for: `analysis.json`, `calibration.json`, `lp-path.json`, `kernels/ntk.json`,
//! `ood/<name>.json`; and, per (variant, task, seed), LoRA's `kernels/alignment.json`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::calibration::TemperatureParams;
use crate::data;
use crate::error::{Error, Result};
use crate::experiment::config::{Cell, ExperimentConfig, OodSet};
use crate::methods::{Method, Observer};
use crate::ntk::Contraction;
use crate::rundir::{self, write_json};
use crate::stages::analyze::analyze_runs_cached;
use crate::stages::calibrate::calibrate_run;
use crate::stages::kernels::{align_runs, ntk_run};
use crate::stages::lp_path::lp_path_of_run;
use crate::stages::ntk::NtkRunConfig;
use crate::stages::ood::{evaluate_ood as evaluate_ood_stage, OodData};
use crate::stages::train::{self, RunOptions};

/// What `cell.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CellInfo {
    pub experiment: String,
    pub variant: String,
    pub head_scale: f64,
    /// The other variants the run stands for ([`Cell::also`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

impl CellInfo {
    fn of(exp: &ExperimentConfig, cell: &Cell) -> Self {
        Self {
            experiment: exp.name.clone(),
            variant: cell.variant.clone(),
            head_scale: cell.config.head_scale,
            also: cell.also.clone(),
        }
    }
}

/// Writes `cell.json` unless it already says the same: a finished cell of an earlier version
/// of the grid learns the variants it now also stands for.
fn record_cell(exp: &ExperimentConfig, cell: &Cell) -> Result<()> {
    let path = cell.dir.join(rundir::CELL);
    let info = CellInfo::of(exp, cell);
    if crate::fsutil::read_json_opt::<CellInfo>(&path)
        .ok()
        .flatten()
        == Some(info.clone())
    {
        return Ok(());
    }
    write_json(&path, &info)
}

/// `experiment.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExperimentRecord {
    pub config: ExperimentConfig,
    pub cells: Vec<Cell>,
    /// Wall seconds of the last `reproduce` call, and how many cells it ran.
    pub last_wall_seconds: f64,
    pub last_cells_run: usize,
}

/// The stages a cell still needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    pub train: bool,
    pub features: bool,
    pub calibration: bool,
    pub lp_path: bool,
    pub ntk: bool,
    pub ood: Vec<String>,
}

impl Pending {
    /// Nothing left to do.
    pub fn is_empty(&self) -> bool {
        !(self.train || self.features || self.calibration || self.lp_path || self.ntk)
            && self.ood.is_empty()
    }
}

/// Progress callbacks of [`run_grid`] (called from worker threads).
pub trait GridObserver: Sync {
    /// A cell starts (`index` among the pending cells).
    fn cell_started(&self, _index: usize, _cell: &Cell) {}
    /// A stage of a cell starts (`train`, `features`, ...).
    fn stage(&self, _cell: &Cell, _stage: &str) {}
    /// A cell finished (or failed, with the error's message).
    fn cell_finished(&self, _cell: &Cell, _seconds: f64, _error: Option<&str>) {}
}

/// What [`run_grid`] did.
#[derive(Debug, Default)]
pub struct GridOutcome {
    /// Cells that were already finished.
    pub skipped: usize,
    /// Cells run to completion now.
    pub completed: usize,
    /// Cells that failed, with the error chain.
    pub failed: Vec<(PathBuf, String)>,
    pub wall_seconds: f64,
}

/// Whether `cell` gets the eNTK.
fn wants_ntk(exp: &ExperimentConfig, cell: &Cell) -> bool {
    let Some(n) = &exp.analyses.ntk else {
        return false;
    };
    cell.method.has_gradient_stage()
        && cell.config.head_scale == 1.0
        && n.methods.as_ref().is_none_or(|m| m.contains(&cell.method))
        && n.seeds.as_ref().is_none_or(|s| s.contains(&cell.seed))
        && n.variants
            .as_ref()
            .is_none_or(|v| v.contains(&cell.variant))
}

fn ood_sets<'a>(exp: &'a ExperimentConfig, cell: &Cell) -> Vec<&'a OodSet> {
    if cell.config.head_scale != 1.0 {
        return Vec::new();
    }
    exp.ood
        .iter()
        .filter(|o| o.train_tasks.contains(&cell.task))
        .collect()
}

/// The stages `cell` still needs.
pub fn pending(exp: &ExperimentConfig, cell: &Cell) -> Pending {
    let d = &cell.dir;
    let sweep = cell.config.head_scale != 1.0;
    // Diff(F) is the sweep's measure, so a cell standing for κ = 1 needs it too.
    let in_sweep = sweep || cell.also.iter().any(|v| v.starts_with("kappa-"));
    let features = exp.analyses.features.is_some() || in_sweep;
    Pending {
        train: !rundir::is_finished(d),
        features: features && !d.join(rundir::ANALYSIS).exists(),
        calibration: exp.analyses.calibration.is_some()
            && !sweep
            && !d.join(rundir::CALIBRATION).exists(),
        lp_path: exp.analyses.lp_path
            && cell.method == Method::Lp
            && !d.join(rundir::LP_PATH).exists(),
        ntk: wants_ntk(exp, cell) && !d.join(rundir::NTK_SUMMARY).exists(),
        ood: ood_sets(exp, cell)
            .into_iter()
            .filter(|o| {
                !d.join(rundir::OOD_DIR)
                    .join(format!("{}.json", o.name))
                    .exists()
            })
            .map(|o| o.name.clone())
            .collect(),
    }
}

struct StageObserver<'a> {
    grid: &'a dyn GridObserver,
    cell: &'a Cell,
}

impl Observer for StageObserver<'_> {
    fn stage(&mut self, message: &str) {
        self.grid.stage(self.cell, message);
    }
    fn start_epoch(&mut self, epoch: usize, epochs: usize, _steps: usize) {
        self.grid
            .stage(self.cell, &format!("train epoch {epoch}/{epochs}"));
    }
}

fn run_cell(exp: &ExperimentConfig, cell: &Cell, obs: &dyn GridObserver) -> Result<()> {
    let todo = pending(exp, cell);
    let root = cell
        .dir
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if todo.train {
        obs.stage(cell, "train");
        // Shared by every cell of the grid: <out>/cache/lp (the cell is <out>/runs/v/t/m/s).
        let lp_cache = cell
            .dir
            .ancestors()
            .nth(5)
            .map(|out| out.join("cache").join("lp"));
        let opts = RunOptions {
            resume: true,
            overwrite: false,
            lp_cache,
        };
        let mut o = StageObserver { grid: obs, cell };
        train::run(&cell.config, &root, &opts, &mut o)?;
    }
    record_cell(exp, cell)?;
    if todo.features {
        obs.stage(cell, "features");
        let split = exp
            .analyses
            .features
            .as_ref()
            .map(|f| f.split)
            .or(exp.analyses.norm_sweep.as_ref().map(|s| s.split))
            .unwrap_or(data::Split::Test);
        // Shared by every cell of the grid, like the LP cache: <out>/cache/features.
        let cache = cell
            .dir
            .ancestors()
            .nth(5)
            .map(|out| out.join("cache").join("features"));
        analyze_runs_cached(std::slice::from_ref(&cell.dir), split, cache.as_deref())?;
    }
    if todo.calibration {
        obs.stage(cell, "calibration");
        let method = exp.analyses.calibration.as_ref().map(|c| c.method);
        let params = TemperatureParams::for_method(method.unwrap_or_default());
        let report = calibrate_run(&cell.dir, &params)?;
        write_json(&cell.dir.join(rundir::CALIBRATION), &report)?;
    }
    if todo.lp_path {
        obs.stage(cell, "lp-path");
        lp_path_of_run(&cell.dir)?;
    }
    if todo.ntk {
        if let Some(n) = &exp.analyses.ntk {
            obs.stage(cell, "ntk");
            let cfg = NtkRunConfig {
                split: n.split,
                max_examples: n.max_examples,
                params: None,
                contraction: Contraction::Auto,
                max_stored_bytes: 4 << 30,
                precision: n.precision,
                data_dir: exp.data_dir.clone(),
            };
            ntk_run(&cell.dir, &cfg, &mut |_| {})?;
        }
    }
    for name in &todo.ood {
        if let Some(set) = exp.ood.iter().find(|o| &o.name == name) {
            obs.stage(cell, &format!("ood {name}"));
            evaluate_ood(exp, cell, set)?;
        }
    }
    Ok(())
}

fn evaluate_ood(exp: &ExperimentConfig, cell: &Cell, set: &OodSet) -> Result<()> {
    let data = match (&set.task, &set.file) {
        (Some(task), _) => OodData::Task {
            task: task.clone(),
            split: set.split,
        },
        (None, Some(file)) => OodData::File(data::FileSpec {
            path: file.clone(),
            format: set.format,
            text_a: set.text_a.clone(),
            text_b: set.text_b.clone(),
            label: Some(set.label.clone()),
        }),
        (None, None) => {
            return Err(Error::InvalidArgument {
                field: format!("ood.{}", set.name),
                reason: "give `task` or `file`".into(),
            })
        }
    };
    evaluate_ood_stage(&cell.dir, &set.name, &data, exp.data_dir.as_deref()).map(|_| ())
}

/// Runs every unfinished cell of `exp` under `out` with `jobs` cells at a time, then the
/// per-(variant, task, seed) kernel alignments; writes `experiment.json`. A failing cell does
/// not stop the others; its error is returned in [`GridOutcome::failed`].
///
/// # Errors
/// Only for the grid as a whole (invalid config, unwritable `experiment.json`).
pub fn run_grid(
    exp: &ExperimentConfig,
    out: &Path,
    jobs: usize,
    obs: &dyn GridObserver,
) -> Result<GridOutcome> {
    let started = Instant::now();
    exp.validate()?;
    // One process per grid folder: a second `reproduce` on it is refused, never interleaved.
    let _lock = crate::fsutil::try_lock(&out.join(".grid.lock"), out)?;
    let cells = exp.cells(out)?;
    let todo: Vec<&Cell> = cells
        .iter()
        .filter(|c| !pending(exp, c).is_empty())
        .collect();
    for c in cells.iter().filter(|c| rundir::is_finished(&c.dir)) {
        record_cell(exp, c)?;
    }
    // Recorded up front too, so a report of a grid still running has its name.
    record_grid(exp, out, &cells)?;
    let mut outcome = GridOutcome {
        skipped: cells.len() - todo.len(),
        ..GridOutcome::default()
    };
    let next = AtomicUsize::new(0);
    let failed: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());
    let completed = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1).min(todo.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(cell) = todo.get(i) else { break };
                obs.cell_started(i, cell);
                let t = Instant::now();
                match run_cell(exp, cell, obs) {
                    Ok(()) => {
                        completed.fetch_add(1, Ordering::SeqCst);
                        obs.cell_finished(cell, t.elapsed().as_secs_f64(), None);
                    }
                    Err(e) => {
                        let msg = error_chain(&e);
                        obs.cell_finished(cell, t.elapsed().as_secs_f64(), Some(&msg));
                        // A poisoned lock still holds the list: never drop a failure.
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((cell.dir.clone(), msg));
                    }
                }
            });
        }
    });
    outcome.completed = completed.into_inner();
    outcome.failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    if exp.analyses.ntk.as_ref().is_some_and(|n| n.alignment) {
        for lora in cells.iter().filter(|c| c.method == Method::Lora) {
            let ft = cells.iter().find(|c| {
                c.method == Method::Ft
                    && c.variant == lora.variant
                    && c.task == lora.task
                    && c.seed == lora.seed
            });
            let Some(ft) = ft else { continue };
            let ready = lora.dir.join(rundir::NTK_SUMMARY).exists()
                && ft.dir.join(rundir::NTK_SUMMARY).exists();
            if ready && !lora.dir.join(rundir::ALIGNMENT).exists() {
                let groups = lora.config.lora.targets.clone();
                if let Err(e) = align_runs(&lora.dir, &ft.dir, &groups) {
                    outcome
                        .failed
                        .push((lora.dir.join(rundir::ALIGNMENT), error_chain(&e)));
                }
            }
        }
    }
    outcome.wall_seconds = started.elapsed().as_secs_f64();
    write_json(
        &out.join(rundir::EXPERIMENT),
        &ExperimentRecord {
            config: exp.clone(),
            cells,
            last_wall_seconds: outcome.wall_seconds,
            last_cells_run: outcome.completed + outcome.failed.len(),
        },
    )?;
    Ok(outcome)
}

/// Runs the cell at `index` of [`ExperimentConfig::cells`] alone, unless it is finished: one
/// task of a Slurm array (`lpft reproduce --cell K`). Cells of a grid run this way at the same
/// time, so it takes no grid lock: each run directory has its own, and the grid's caches are
/// written atomically. The per-(variant, task, seed) kernel alignments and the report are left
/// to a plain [`run_grid`] afterwards. Returns the cell, and whether it was run.
///
/// # Errors
/// An index outside the grid (naming `--cell` and the grid's size), and the cell's own errors.
pub fn run_one_cell(
    exp: &ExperimentConfig,
    out: &Path,
    index: usize,
    obs: &dyn GridObserver,
) -> Result<(Cell, bool)> {
    exp.validate()?;
    let cells = exp.cells(out)?;
    let Some(cell) = cells.get(index) else {
        return Err(Error::InvalidArgument {
            field: "--cell".into(),
            reason: format!(
                "{index} is outside the grid's {} cells (0..{})",
                cells.len(),
                cells.len()
            ),
        });
    };
    record_grid(exp, out, &cells)?;
    if pending(exp, cell).is_empty() {
        return Ok((cell.clone(), false));
    }
    obs.cell_started(index, cell);
    let t = Instant::now();
    let result = run_cell(exp, cell, obs);
    let error = result.as_ref().err().map(|e| error_chain(e));
    obs.cell_finished(cell, t.elapsed().as_secs_f64(), error.as_deref());
    result.map(|()| (cell.clone(), true))
}

/// Writes `experiment.json` before any cell runs, unless it is there with the same cells: a
/// report of a grid still running (or of some of its array tasks) has its name and cells.
fn record_grid(exp: &ExperimentConfig, out: &Path, cells: &[Cell]) -> Result<()> {
    let path = out.join(rundir::EXPERIMENT);
    let old: Option<ExperimentRecord> = crate::fsutil::read_json_opt(&path).ok().flatten();
    if old.as_ref().is_some_and(|r| r.cells == cells) {
        return Ok(());
    }
    write_json(
        &path,
        &ExperimentRecord {
            config: exp.clone(),
            cells: cells.to_vec(),
            last_wall_seconds: old.as_ref().map_or(0.0, |r| r.last_wall_seconds),
            last_cells_run: old.as_ref().map_or(0, |r| r.last_cells_run),
        },
    )
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
