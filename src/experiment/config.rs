//! `ExperimentConfig`: a grid of runs (tasks × methods × seeds, plus variants) and the analyses
//! to run on them, read from a commented TOML file under `configs/` (a config we own: strict,
//! validated once).
//!
//! Every cell's [`RunConfig`] starts from the paper's defaults for its task and method
//! ([`RunConfig::paper_defaults`]); `overrides` (then the variant's own) are merged into it as a
//! partial run config — any field of a run's `config.json`, e.g. `train.epochs` or `lp.c` — and
//! the merged config is validated, so a misspelt field is an error naming it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{FileFormat, Split};
use crate::error::{Error, Result};
use crate::methods::{Method, RunConfig};

/// One experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Short name, used in the report's title.
    pub name: String,
    /// What the experiment reproduces (free text, shown in the report).
    #[serde(default)]
    pub description: String,
    /// Model spec (`minilm`, `mpnet`, a directory, a hub id).
    #[serde(default = "default_model")]
    pub model: String,
    /// Data directory searched first for built-in tasks; then `$LPFT_DATA_DIR`, `./data`,
    /// `$LPFT_HOME/data` and the embedded copy ([`crate::hub::locate`]).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Built-in task names.
    pub tasks: Vec<String>,
    pub methods: Vec<Method>,
    pub seeds: Vec<u64>,
    /// A partial run config merged into every cell's (e.g. `{ train = { epochs = 10 } }`).
    #[serde(default)]
    pub overrides: toml::Table,
    /// Extra cells with further overrides, each under its own directory.
    #[serde(default)]
    pub variants: Vec<Variant>,
    #[serde(default)]
    pub analyses: Analyses,
    /// Out-of-distribution evaluation sets: every finished run of a task with the same labels is
    /// evaluated on each.
    #[serde(default)]
    pub ood: Vec<OodSet>,
}

fn default_model() -> String {
    "minilm".into()
}

/// The variant name of the cells without extra overrides.
pub const BASE_VARIANT: &str = "base";

/// Cells with extra overrides (e.g. LP with a fixed large C).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Directory and report name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Shown in the report.
    #[serde(default)]
    pub description: String,
    /// Subsets of the experiment's axes (`None`: all of them).
    #[serde(default)]
    pub tasks: Option<Vec<String>>,
    #[serde(default)]
    pub methods: Option<Vec<Method>>,
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// Merged after the experiment's overrides.
    #[serde(default)]
    pub overrides: toml::Table,
}

/// Which analyses run on the grid's cells.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Analyses {
    /// Feature statistics (Table 1): CS, Diff, FDR, Norm on a split.
    #[serde(default)]
    pub features: Option<FeaturesAnalysis>,
    /// Temperature scaling (Table 3): fitted on validation, reported on test.
    #[serde(default)]
    pub calibration: Option<CalibrationAnalysis>,
    /// LP norm and train accuracy against the L-BFGS iteration (Fig. 1a), on cells with LP.
    #[serde(default)]
    pub lp_path: bool,
    /// The eNTK at the start of the gradient stage (Table 2, Fig. 2).
    #[serde(default)]
    pub ntk: Option<NtkAnalysis>,
    /// The norm-scaling sweep (Fig. 3/11): extra cells with the head scaled by κ.
    #[serde(default)]
    pub norm_sweep: Option<NormSweep>,
}

/// Settings of the feature statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesAnalysis {
    /// The evaluated split (the paper's tables: test).
    #[serde(default = "test_split")]
    pub split: Split,
}

fn test_split() -> Split {
    Split::Test
}

/// Settings of temperature scaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationAnalysis {
    /// `lbfgs` (on log T, default) or `adam` (the paper's Adam, lr 1e-3, patience 10).
    #[serde(default)]
    pub method: crate::calibration::TsMethod,
}

/// Settings of the eNTK analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtkAnalysis {
    /// Examples of the training split and of `split` (the paper: 250).
    pub max_examples: usize,
    #[serde(default = "test_split")]
    pub split: Split,
    /// Methods (with a gradient stage) whose cells get the eNTK (`None`: all of them).
    #[serde(default)]
    pub methods: Option<Vec<Method>>,
    /// Seeds whose cells get the eNTK (`None`: all).
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// Variants whose cells get the eNTK (`None`: all).
    #[serde(default)]
    pub variants: Option<Vec<String>>,
    /// Also the alignment of LoRA's F with FT's F restricted to the adapted weights.
    #[serde(default = "yes")]
    pub alignment: bool,
    /// Arithmetic of the materialised contraction (`"f64"`, the default, or `"f32"`; see
    /// [`crate::ntk::ContractionPrecision`]).
    #[serde(
        default,
        skip_serializing_if = "crate::ntk::ContractionPrecision::is_f64"
    )]
    pub precision: crate::ntk::ContractionPrecision,
}

fn yes() -> bool {
    true
}

/// Settings of the norm-scaling sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormSweep {
    /// The factors κ applied to the head before the gradient stage.
    pub kappas: Vec<f64>,
    /// Methods swept (with a gradient stage).
    pub methods: Vec<Method>,
    /// Seeds swept (`None`: all).
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// Tasks swept (`None`: all).
    #[serde(default)]
    pub tasks: Option<Vec<String>>,
    /// The split Diff(F) is measured on.
    #[serde(default = "test_split")]
    pub split: Split,
    /// Merged into the swept cells after the experiment's overrides (e.g. fewer epochs).
    #[serde(default)]
    pub overrides: toml::Table,
}

/// An out-of-distribution evaluation set: a built-in task's split, or a labelled file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OodSet {
    /// Name in the report and file name (`ood/<name>.json` in each evaluated run).
    pub name: String,
    /// Tasks whose runs are evaluated on this set (their labels must match).
    pub train_tasks: Vec<String>,
    /// A built-in task whose `split` is used ...
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default = "test_split")]
    pub split: Split,
    /// ... or a labelled file (CSV/TSV/JSONL) with these columns.
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub format: Option<FileFormat>,
    #[serde(default = "text")]
    pub text_a: String,
    #[serde(default)]
    pub text_b: Option<String>,
    #[serde(default = "label")]
    pub label: String,
}

fn text() -> String {
    "text".into()
}
fn label() -> String {
    "label".into()
}

/// One cell of the grid: a run and where it lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// [`BASE_VARIANT`], a variant's name, or `kappa-<κ>` for the norm sweep.
    pub variant: String,
    pub task: String,
    pub method: Method,
    pub seed: u64,
    /// The resolved run config.
    pub config: RunConfig,
    /// The run directory.
    pub dir: PathBuf,
    /// The other variants this cell stands for: a cell whose resolved config equals an earlier
    /// cell's (a norm-sweep cell at κ = 1 without overrides of its own is its base cell) is
    /// run once, and the report reads that run under each of its variants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

/// The `NAME` of serde's "unknown field `NAME`" message, if it is one.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = &message[message.find("unknown field `")? + "unknown field `".len()..];
    rest.split('`').next()
}

/// The 1-based line of the first `key =` (or `key=`) in a TOML text, as a key, not inside a
/// string or comment before it.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let line = line.split('#').next().unwrap_or("");
            line.match_indices(key).any(|(i, _)| {
                let before = line[..i].chars().next_back();
                let after = line[i + key.len()..].trim_start();
                before.is_none_or(|c| c.is_whitespace() || matches!(c, '{' | ',' | '.'))
                    && after.starts_with('=')
            })
        })
        .map(|i| i + 1)
}

fn invalid(field: &str, reason: String) -> Error {
    Error::InvalidArgument {
        field: field.into(),
        reason,
    }
}

impl ExperimentConfig {
    /// Reads and validates an experiment file.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file; [`Error::InvalidArgument`] with the TOML parser's message
    /// (line and column) or the first invalid value.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates an experiment from its TOML text; `path` names it in errors.
    ///
    /// # Errors
    /// As [`ExperimentConfig::from_file`].
    pub fn from_toml(text: &str, path: &Path) -> Result<Self> {
        let cfg: ExperimentConfig = toml::from_str(text)
            .map_err(|e| invalid(&path.display().to_string(), e.to_string()))?;
        cfg.validate().map_err(|e| {
            let message = e.to_string();
            // serde names a misspelt key of an override table but not its place: find its line.
            match unknown_field(&message).and_then(|key| line_of_key(text, key).map(|l| (key, l))) {
                Some((key, line)) => Error::Parse {
                    path: path.to_path_buf(),
                    line,
                    field: Some(key.to_string()),
                    message,
                },
                None => invalid(&path.display().to_string(), message),
            }
        })?;
        Ok(cfg)
    }

    /// Checks the axes and that every cell's merged run config is valid.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.tasks.is_empty() || self.methods.is_empty() || self.seeds.is_empty() {
            return Err(invalid(
                "tasks/methods/seeds",
                "each needs at least one entry".into(),
            ));
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        for v in &self.variants {
            if !name_ok(&v.name) || v.name == BASE_VARIANT || v.name.starts_with("kappa-") {
                return Err(invalid(
                    "variants.name",
                    format!(
                        "`{}`: use letters, digits, -, _ or . (not `{BASE_VARIANT}` or kappa-*)",
                        v.name
                    ),
                ));
            }
        }
        if let Some(s) = &self.analyses.norm_sweep {
            if s.kappas.is_empty() || s.kappas.iter().any(|k| !(k.is_finite() && *k > 0.0)) {
                return Err(invalid(
                    "analyses.norm_sweep.kappas",
                    format!("need positive finite factors, got {:?}", s.kappas),
                ));
            }
            if s.methods.iter().any(|m| !m.has_gradient_stage()) {
                return Err(invalid(
                    "analyses.norm_sweep.methods",
                    "LP has no gradient stage to scale the head for".into(),
                ));
            }
        }
        if let Some(n) = &self.analyses.ntk {
            if n.max_examples == 0 {
                return Err(invalid("analyses.ntk.max_examples", "must be ≥ 1".into()));
            }
        }
        for o in &self.ood {
            if !name_ok(&o.name) {
                return Err(invalid("ood.name", format!("`{}`", o.name)));
            }
            if o.task.is_some() == o.file.is_some() {
                return Err(invalid(
                    &format!("ood.{}", o.name),
                    "give exactly one of `task` or `file`".into(),
                ));
            }
        }
        // Building the cells merges and validates every run config.
        self.cells(Path::new("."))?;
        Ok(())
    }

    /// Every cell in a fixed order (seed, then variant, task, method) with its run directory
    /// `<out>/runs/<variant>/<task>/<method>/seed-<seed>`: the base grid, the variants, then the
    /// norm-sweep cells, seed by seed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an override that does not fit a run config or makes it
    /// invalid.
    pub fn cells(&self, out: &Path) -> Result<Vec<Cell>> {
        let mut cells = Vec::new();
        let none = toml::Table::new();
        let mut add = |variant: &str,
                       tasks: &[String],
                       methods: &[Method],
                       seeds: &[u64],
                       extra: &toml::Table,
                       kappa: Option<f64>|
         -> Result<()> {
            for task in tasks {
                for &method in methods {
                    for &seed in seeds {
                        let mut cfg = RunConfig::paper_defaults(task, method, &self.model, seed);
                        cfg.data_dir = self.data_dir.clone();
                        let cfg = merge(&cfg, &self.overrides, "overrides")?;
                        let mut cfg = merge(&cfg, extra, &format!("{variant}.overrides"))?;
                        if let Some(k) = kappa {
                            cfg.head_scale = k;
                        }
                        cfg.validate()?;
                        let root = out.join("runs").join(variant);
                        let dir = crate::rundir::run_dir(&root, &cfg);
                        cells.push(Cell {
                            variant: variant.to_string(),
                            task: task.clone(),
                            method,
                            seed,
                            config: cfg,
                            dir,
                            also: Vec::new(),
                        });
                    }
                }
            }
            Ok(())
        };
        add(
            BASE_VARIANT,
            &self.tasks,
            &self.methods,
            &self.seeds,
            &none,
            None,
        )?;
        for v in &self.variants {
            add(
                &v.name,
                v.tasks.as_deref().unwrap_or(&self.tasks),
                v.methods.as_deref().unwrap_or(&self.methods),
                v.seeds.as_deref().unwrap_or(&self.seeds),
                &v.overrides,
                None,
            )?;
        }
        if let Some(s) = &self.analyses.norm_sweep {
            for &k in &s.kappas {
                add(
                    &kappa_variant(k),
                    s.tasks.as_deref().unwrap_or(&self.tasks),
                    &s.methods,
                    s.seeds.as_deref().unwrap_or(&self.seeds),
                    &s.overrides,
                    Some(k),
                )?;
            }
        }
        // A cell that would repeat an earlier one's training exactly (same resolved config)
        // becomes another name of that cell: the work is done once.
        let mut unique: Vec<Cell> = Vec::with_capacity(cells.len());
        for c in cells {
            match unique.iter_mut().find(|u| u.config == c.config) {
                Some(u) => u.also.push(c.variant),
                None => unique.push(c),
            }
        }
        let mut cells = unique;
        // Seed by seed (in the order the seeds first appear), every variant of a seed before
        // the next seed: an interrupted grid then holds whole seeds, which a report can use.
        let mut order: Vec<u64> = Vec::new();
        for c in &cells {
            if !order.contains(&c.seed) {
                order.push(c.seed);
            }
        }
        cells.sort_by_key(|c| order.iter().position(|&s| s == c.seed));
        Ok(cells)
    }
}

/// The variant name of the norm-sweep cells with factor κ.
pub(crate) fn kappa_variant(kappa: f64) -> String {
    format!("kappa-{kappa}")
}

/// Merges a partial run config (TOML) into `cfg`: tables merge recursively, other values replace.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `what` when the result is not a run config (unknown field,
/// wrong type).
pub(crate) fn merge(cfg: &RunConfig, overrides: &toml::Table, what: &str) -> Result<RunConfig> {
    if overrides.is_empty() {
        return Ok(cfg.clone());
    }
    let mut base = serde_json::to_value(cfg).map_err(|e| invalid(what, e.to_string()))?;
    let patch = serde_json::to_value(overrides).map_err(|e| invalid(what, e.to_string()))?;
    merge_json(&mut base, patch);
    serde_json::from_value(base).map_err(|e| invalid(what, e.to_string()))
}

fn merge_json(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(&k) {
                    Some(slot) => merge_json(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRID: &str = r#"
name = "t"
tasks = ["cb"]
methods = ["lp", "ft", "lp-ft"]
seeds = [1, 2]
[overrides]
train = { epochs = 3 }
[[variants]]
name = "c100"
methods = ["lp", "lp-ft"]
overrides = { lp = { c = 100.0 } }
[analyses]
lp_path = true
norm_sweep = { kappas = [0.5, 10], methods = ["lp-ft"], seeds = [1] }
"#;

    #[test]
    fn cells_cover_grid_variants_and_sweep_with_merged_overrides() {
        let cfg: ExperimentConfig = toml::from_str(GRID).unwrap();
        cfg.validate().unwrap();
        let cells = cfg.cells(Path::new("out")).unwrap();
        assert_eq!(cells.len(), 3 * 2 + 2 * 2 + 2);
        assert!(cells.iter().all(|c| c.config.train.epochs == 3));
        let c100: Vec<_> = cells.iter().filter(|c| c.variant == "c100").collect();
        assert!(c100.iter().all(|c| c.config.lp.c == Some(100.0)));
        let base_ft = cells
            .iter()
            .find(|c| c.variant == BASE_VARIANT && c.method == Method::LpFt)
            .unwrap();
        assert_eq!(base_ft.config.lp.c, None);
        assert_eq!(base_ft.config.train.lr, 5e-6, "Table 6 default kept");
        assert_eq!(
            base_ft.dir,
            Path::new("out/runs/base/cb/lp-ft/seed-1"),
            "run dir layout"
        );
        let sweep: Vec<_> = cells
            .iter()
            .filter(|c| c.config.head_scale != 1.0)
            .collect();
        assert_eq!(sweep.len(), 2);
        assert_eq!(sweep[1].variant, "kappa-10");
        assert!(cells.iter().all(|c| c.also.is_empty()));
    }

    #[test]
    fn a_sweep_cell_at_kappa_one_is_its_base_cell_run_once() {
        let grid = GRID.replace("kappas = [0.5, 10]", "kappas = [0.5, 1, 10]");
        let cfg: ExperimentConfig = toml::from_str(&grid).unwrap();
        let cells = cfg.cells(Path::new("out")).unwrap();
        assert_eq!(
            cells.len(),
            3 * 2 + 2 * 2 + 2,
            "no cell of its own for κ = 1"
        );
        assert!(cells.iter().all(|c| c.variant != "kappa-1"));
        let named: Vec<_> = cells.iter().filter(|c| !c.also.is_empty()).collect();
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].variant, BASE_VARIANT);
        assert_eq!((named[0].method, named[0].seed), (Method::LpFt, 1));
        assert_eq!(named[0].also, ["kappa-1"]);
        // Overrides of the sweep's own make the κ = 1 cell a different run.
        let grid = grid.replace(
            "seeds = [1] }",
            "seeds = [1], overrides = { train = { epochs = 1 } } }",
        );
        let cfg: ExperimentConfig = toml::from_str(&grid).unwrap();
        let cells = cfg.cells(Path::new("out")).unwrap();
        assert!(cells.iter().any(|c| c.variant == "kappa-1"));
        assert!(cells.iter().all(|c| c.also.is_empty()));
    }

    #[test]
    fn misspelt_override_is_an_error_naming_it() {
        let bad = GRID.replace("epochs = 3", "epoch = 3");
        let cfg: ExperimentConfig = toml::from_str(&bad).unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("epoch"), "{err}");
        let unknown = format!("{GRID}\nbogus = 1\n");
        assert!(toml::from_str::<ExperimentConfig>(&unknown).is_err());
    }

    #[test]
    fn ood_needs_exactly_one_source() {
        let both = format!(
            "{GRID}\n[[ood]]\nname = \"x\"\ntrain_tasks = [\"cb\"]\ntask = \"cb\"\nfile = \"a.csv\"\n"
        );
        let cfg: ExperimentConfig = toml::from_str(&both).unwrap();
        assert!(cfg.validate().is_err());
    }
}
