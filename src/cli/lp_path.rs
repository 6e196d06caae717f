//! `lpft lp-path`: LP classifier norm and training accuracy against the L-BFGS iteration budget
//! (docs/method.md §8.1, the paper's Fig. 1a/4a; INFERRED: refit at the chosen C with budgets 1, 2, ...,
//! no warm start — one observed fit gives every budget's iterate exactly).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use lpft::methods::lp;
use lpft::methods::{Method, RunConfig};
use lpft::rundir::write_json;
use lpft::stages::train::load_task;

use super::common::{self, ModelArgs};

#[derive(Args, Debug)]
pub struct LpPathArgs {
    /// Built-in task.
    #[arg(long, short = 't', value_parser = common::task_parser())]
    pub task: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// C of the fit (default: the cross-validated C, as LP chooses it).
    #[arg(long)]
    pub lp_c: Option<f64>,
    /// Largest iteration budget recorded.
    #[arg(long, default_value_t = 1000)]
    pub max_iter: usize,
    /// Keep only the first K training examples.
    #[arg(long)]
    pub max_train_samples: Option<usize>,
    /// Data directory searched first for a built-in task; then $LPFT_DATA_DIR, ./data,
    /// $LPFT_HOME/data (`lpft fetch-data`) and lpft's embedded copy (CB).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Output JSON (one record per iteration).
    #[arg(long, short = 'o', default_value = "lp-path.json")]
    pub out: PathBuf,
}

pub fn run(args: LpPathArgs) -> anyhow::Result<()> {
    let mut cfg = RunConfig::paper_defaults(&args.task, Method::Lp, &args.model.model, 0);
    cfg.data_dir = args.data_dir.clone();
    cfg.max_train_samples = args.max_train_samples;
    let task = load_task(&cfg).with_context(|| format!("loading task {}", args.task))?;
    let loaded = common::load(&args.model, task.labels.len(), &lpft::device::current())?;
    let texts: Vec<(&str, Option<&str>)> =
        task.train.iter().map(lpft::data::Example::texts).collect();
    let y = lpft::data::require_labels(&task.train, &format!("{} train", task.task))?;
    let enc = loaded.tokenizer.encode(&texts)?;
    let d = loaded.files.config.hidden_size;
    let x = lp::features(&loaded.model, &loaded.tokenizer, &enc, 32)?;
    let c = match args.lp_c {
        Some(c) => c,
        None => lp::fit_probe(&cfg.lp, &x, y.len(), d, &y, task.labels.len())?.1,
    };
    let fit = lp::lp_path(
        &cfg.lp,
        c,
        &x,
        y.len(),
        d,
        &y,
        task.labels.len(),
        args.max_iter,
    )?;
    let points = &fit.points;
    write_json(&args.out, &fit)?;
    println!(
        "LP path on {} (C = {c:.4e}): {} iterations, converged: {}",
        task.task, fit.n_iter, fit.converged
    );
    println!("{:>9} {:>12} {:>10}", "iteration", "‖V‖_F", "train acc");
    for p in points
        .iter()
        .filter(|p| p.iteration.is_power_of_two() || p.iteration == fit.n_iter)
    {
        println!(
            "{:>9} {:>12.4} {:>10.4}",
            p.iteration, p.classifier_norm, p.train_accuracy
        );
    }
    println!("wrote {}", args.out.display());
    Ok(())
}
