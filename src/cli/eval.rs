//! `lpft eval --run DIR [--split S] [--task T2 | --file F ...]`: evaluate a trained run on a
//! split of its own task, of another task with the same labels (out-of-distribution
//! evaluation), or on any labelled file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use lpft::calibration::metrics;
use lpft::data::{self, FileFormat, FileSpec, LabelMap, LoadOptions, Split};
use lpft::rundir::{save_predictions, write_json};
use lpft::stages::load::load_run;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A finished run directory (runs/<task>/<method>/seed-<seed>).
    #[arg(long)]
    pub run: PathBuf,
    /// Split to evaluate.
    #[arg(long, short = 's', default_value = "test")]
    pub split: Split,
    /// Evaluate on another task with the same label names (e.g. dynasent for a sst5-3 run).
    #[arg(long, short = 't', value_parser = super::common::task_parser(), conflicts_with = "file")]
    pub task: Option<String>,
    /// Evaluate on a labelled CSV, TSV (with header) or JSONL file instead; its labels must be
    /// among the run's.
    #[arg(long, requires = "label")]
    pub file: Option<PathBuf>,
    /// Format of --file when its extension does not say: csv, tsv, jsonl.
    #[arg(long, requires = "file")]
    pub format: Option<FileFormat>,
    /// Column (or JSON key) of the first text in --file.
    #[arg(long, default_value = "text")]
    pub text_a: String,
    /// Column (or JSON key) of the second text of a pair in --file.
    #[arg(long, requires = "file")]
    pub text_b: Option<String>,
    /// Column (or JSON key) of the label in --file.
    #[arg(long, requires = "file")]
    pub label: Option<String>,
    /// Data directory searched first for a built-in task (default: the run's); then
    /// $LPFT_DATA_DIR, ./data, $LPFT_HOME/data and lpft's embedded copy.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let trained =
        load_run(&args.run).with_context(|| format!("loading run {}", args.run.display()))?;
    if let Some(path) = &args.file {
        return eval_file(&args, &trained, path);
    }
    let task_name = args.task.clone().unwrap_or(trained.config.task.clone());
    let dir = args.data_dir.clone().or(trained.config.data_dir.clone());
    let task = match &args.task {
        // Another built-in task with the same labels (out-of-distribution evaluation).
        Some(_) => lpft::hub::find_task(&task_name, dir.as_deref(), &LoadOptions::default())
            .map(|(task, _)| task),
        // The run's own task (built in or from files), with its data directory.
        None => {
            let mut cfg = trained.config.clone();
            cfg.max_train_samples = None;
            cfg.data_dir = dir.clone();
            lpft::stages::train::load_task(&cfg)
        }
    }
    .with_context(|| format!("loading task `{task_name}`"))?;
    anyhow::ensure!(
        task.labels == trained.metrics.labels,
        "task {} has labels {:?}, the run was trained on {:?}",
        task.task,
        task.labels,
        trained.metrics.labels
    );
    let examples = task.split(args.split);
    anyhow::ensure!(
        !examples.is_empty(),
        "{} has no {} split",
        task.task,
        args.split
    );
    let what = format!("{} {}", task.task, args.split);
    let (logits, labels, m) = lpft::stages::load::evaluate_run_on(&trained, examples, &what)?;
    let name = format!("{}-{}", task.task, args.split);
    let eval_dir = args.run.join("eval");
    write_json(&eval_dir.join(format!("{name}.json")), &m)?;
    save_predictions(&eval_dir, &name, &logits, &labels, task.labels.len())?;
    println!(
        "{} on {} {} ({} examples)",
        args.run.display(),
        task.task,
        args.split,
        m.n
    );
    println!(
        "accuracy {:.4}  f1 {:.4}  mcc {:.4}  nll {:.4}  ece {:.4}  mce {:.4}  brier {:.4}",
        m.accuracy, m.f1_macro, m.mcc, m.nll, m.ece, m.mce, m.brier
    );
    println!("wrote {}", eval_dir.join(format!("{name}.json")).display());
    Ok(())
}

/// `--file`: every metric, the 15-bin reliability data and the predictions on a labelled file, read with the run's label names fixed: a label outside them is an error
/// naming the file and line.
fn eval_file(
    args: &EvalArgs,
    trained: &lpft::stages::load::TrainedRun,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let spec = FileSpec {
        path: path.to_path_buf(),
        format: args.format,
        text_a: args.text_a.clone(),
        text_b: args.text_b.clone(),
        label: args.label.clone(),
    };
    let mut labels = LabelMap::fixed(trained.metrics.labels.iter().cloned());
    let examples = data::read_file(&spec, &mut labels).with_context(|| {
        format!(
            "reading {} with the run's labels {:?}",
            path.display(),
            trained.metrics.labels
        )
    })?;
    anyhow::ensure!(!examples.is_empty(), "{} has no examples", path.display());
    let what = path.display().to_string();
    let (logits, labels, m) = lpft::stages::load::evaluate_run_on(trained, &examples, &what)?;
    let stem = path
        .file_stem()
        .map_or("file".into(), |s| s.to_string_lossy().into_owned());
    let name = format!("file-{stem}");
    let eval_dir = args.run.join("eval");
    let c = trained.metrics.labels.len();
    let probs = metrics::softmax_rows(&logits, c);
    let bins = metrics::reliability(&probs, &labels, c, metrics::ECE_BINS);
    let report = serde_json::json!({ "file": what, "metrics": m, "reliability": bins });
    write_json(&eval_dir.join(format!("{name}.json")), &report)?;
    save_predictions(&eval_dir, &name, &logits, &labels, c)?;
    println!("{} on {} ({} examples)", args.run.display(), what, m.n);
    println!(
        "accuracy {:.4}  f1 {:.4}  mcc {:.4}  nll {:.4}  ece {:.4}  mce {:.4}  brier {:.4}",
        m.accuracy, m.f1_macro, m.mcc, m.nll, m.ece, m.mce, m.brier
    );
    println!("wrote {}", eval_dir.join(format!("{name}.json")).display());
    Ok(())
}
