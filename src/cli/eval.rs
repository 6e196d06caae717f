//! `lpft eval --run DIR [--split S] [--task T2]`: evaluate a trained run on a split of its own
//! task or of another task with the same labels (out-of-distribution evaluation).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use lpft::data::{LoadOptions, Split};
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
    #[arg(long, short = 't', value_parser = super::common::task_parser())]
    pub task: Option<String>,
    /// Data directory searched first for a built-in task (default: the run's); then
    /// $LPFT_DATA_DIR, ./data, $LPFT_HOME/data and lpft's embedded copy.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let trained =
        load_run(&args.run).with_context(|| format!("loading run {}", args.run.display()))?;
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
