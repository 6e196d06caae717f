//! `lpft ntk --run DIR --split test --max-examples 250`: the empirical NTK of a run at the start
//! of its gradient stage (docs/method.md §7): P and F train×train and <split>×train into `DIR/kernels/`,
//! their statistics and kernel-regression accuracies into `DIR/kernels/ntk.json`, printed in
//! the layout of the paper's Table 2.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use lpft::data::Split;
use lpft::ntk::{Contraction, ContractionPrecision, EntkProgress, ParamSet};
use lpft::stages::kernels::{ntk_run, NtkSummary};
use lpft::stages::ntk::NtkRunConfig;

use super::common;

#[derive(Args, Debug)]
pub struct NtkArgs {
    /// A run directory written by `lpft train` (its config.json, and lp_head.safetensors for
    /// LP-FT / LP-LoRA).
    #[arg(long)]
    pub run: PathBuf,
    /// Evaluation split of the <split>×train kernels: test (the paper's tables) or validation.
    #[arg(long, short = 's', default_value = "test")]
    pub split: Split,
    /// Use the first K examples of the training split and of --split (the paper: 250, random).
    #[arg(long, default_value_t = 250)]
    pub max_examples: usize,
    /// Parameters of F: `ft` (every encoder parameter) or `lora` (the LoRA factors). Default:
    /// from the run's method.
    #[arg(long)]
    pub params: Option<String>,
    /// Weight-block contraction (all exact; they differ in cost).
    #[arg(long, value_enum, default_value_t = Contraction::Auto)]
    pub contraction: Contraction,
    /// Memory for stored per-example layer factors, MiB; more layers than fit are processed in
    /// extra passes over the examples.
    #[arg(long, default_value_t = 4096)]
    pub max_stored_mib: usize,
    /// Arithmetic of the materialised weight-gradient contraction: f64 (default) or f32 (about
    /// 1.5× faster; F moves by a few 1e-8 of max |F| on MiniLM).
    #[arg(long, value_enum, default_value_t = ContractionPrecision::F64)]
    pub precision: ContractionPrecision,
    /// Data directory overriding the run's.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl TryFrom<&NtkArgs> for NtkRunConfig {
    type Error = anyhow::Error;
    fn try_from(a: &NtkArgs) -> anyhow::Result<Self> {
        let params = match a.params.as_deref() {
            None => None,
            Some("ft") => Some(ParamSet::Ft),
            Some("lora") => Some(ParamSet::Lora),
            Some(other) => anyhow::bail!("--params {other}: expected ft or lora"),
        };
        let contraction = a.contraction;
        let cfg = NtkRunConfig {
            split: a.split,
            max_examples: a.max_examples,
            params,
            contraction,
            max_stored_bytes: a.max_stored_mib.saturating_mul(1 << 20),
            precision: a.precision,
            data_dir: a.data_dir.clone(),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

pub fn run(args: NtkArgs) -> anyhow::Result<()> {
    let cfg = NtkRunConfig::try_from(&args)?;
    let pb = common::progress_bar(0, "eNTK");
    let mut on_progress = |p: &EntkProgress| match *p {
        EntkProgress::Pass { index, count } => {
            pb.set_message(format!("eNTK pass {}/{count}: gradients", index + 1))
        }
        EntkProgress::Gradients { done, total } | EntkProgress::Contraction { done, total } => {
            if let EntkProgress::Contraction { done: 1, .. } = p {
                pb.set_message("eNTK: contracting");
            }
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        }
    };
    let (summary, split) = ntk_run(&args.run, &cfg, &mut on_progress)
        .with_context(|| format!("computing the NTK of {}", args.run.display()))?;
    pb.finish_and_clear();
    print_table(&summary, split);
    Ok(())
}

/// The paper's Table 2 layout (accuracies in %, FN in scientific notation, rank with the f32
/// tolerance the authors' float32 kernels imply; the f64 rank in parentheses).
fn print_table(s: &NtkSummary, split: Split) {
    println!(
        "{} {} seed {} ({}): N = {} train, M = {} {split}, C = {}; θ = {:?}, {} parameters; ‖V0‖_F = {:.4}",
        s.task, s.method, s.seed, s.model, s.n_train, s.n_eval, s.n_logits, s.params,
        s.parameters, s.head_norm
    );
    println!(
        "{:<14} {:>11} {:>10} {:>16} {:>9}",
        "Kernel", "Rank", "FN", "Acc train/test", "FT Ratio"
    );
    for (key, label) in [("P", "Pre-train E"), ("F", "FT E"), ("P+F", "NTK (P + F)")] {
        let k = &s.kernels[key];
        let ratio = match (key, s.ft_ratio) {
            ("F", Some(r)) => format!("{r:.4}"),
            ("F", None) => "undefined".into(),
            _ => "–".into(),
        };
        println!(
            "{:<14} {:>11} {:>10.3e} {:>16} {:>9}",
            label,
            format!("{} ({})", k.stats.rank_f32, k.stats.rank),
            k.stats.frobenius_norm,
            format!(
                "{:.2}/{:.2}",
                100.0 * k.regression.train,
                100.0 * k.regression.eval
            ),
            ratio
        );
    }
    let groups: Vec<String> = s
        .f_group_frobenius
        .iter()
        .map(|(g, v)| format!("{} {v:.3e}", g.as_str()))
        .collect();
    println!("‖F_g‖_F by parameter group: {}", groups.join(", "));
    println!(
        "F: {:.1} s gradients + {:.1} s contraction ({} pass{}), features {:.1} s; wrote {}",
        s.f_gradient_seconds,
        s.f_contraction_seconds,
        s.f_passes,
        if s.f_passes == 1 { "" } else { "es" },
        s.features_seconds,
        s.run.join("kernels").display()
    );
}
