//! `lpft train`: run one (task, method, seed) cell into a run directory.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use lpft::data::batch::Padding;
use lpft::data::FileTask;
use lpft::methods::progress::EpochRecord;
use lpft::methods::Observer;
use lpft::methods::{Method, RunConfig};
use lpft::model::{Pooling, Precision};
use lpft::stages::train::{self, RunOptions};

/// Shown at the end of `lpft train --help`.
const EXAMPLES: &str = "\
Examples:
  # LP-FT on CB with the paper's settings (Table 6); CB's data is built in
  lpft train --task cb --method lp-ft

  # The same flags as transformers' run_glue.py
  lpft train --task rte --method ft --model-name-or-path mpnet --learning-rate 1e-5 \\
      --num-train-epochs 3 --per-device-train-batch-size 16 --output-dir runs

  # LP-LoRA on your own CSV files (a pair task: two text columns)
  lpft train --train-file train.csv --test-file test.csv --text-a premise --text-b hypothesis \\
      --label label --method lp-lora --lora-r 8 --lora-targets query,key,value

  # Continue a run that was stopped, from its last completed epoch
  lpft train --task cb --method ft --resume";

#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct TrainArgs {
    // Not restricted to the registry: with --train-file it names the run.
    #[arg(help_heading = "Task and data", long, short = 't', help = super::common::task_help(
        "Built-in task, or with --train-file the run's name (default: the file stem)",
    ))]
    pub task: Option<String>,
    /// Method (default: --config's).
    #[arg(help_heading = "Model and method", long, value_enum)]
    pub method: Option<Method>,
    /// Model: minilm (default), mpnet, a Hugging Face directory or a cached hub id.
    #[arg(
        help_heading = "Model and method",
        long,
        short = 'm',
        visible_alias = "model-name-or-path"
    )]
    pub model: Option<String>,
    /// Seed of data order and dropout (and of the head/LoRA initialisation unless --model-seed);
    /// default 1001, or the seed of --config.
    #[arg(help_heading = "Model and method", long)]
    pub seed: Option<u64>,
    /// Seed of the head and LoRA initialisation (default: --seed, as the reference).
    #[arg(help_heading = "Model and method", long)]
    pub model_seed: Option<u64>,
    /// Epochs of the gradient stage (default 10).
    #[arg(
        help_heading = "Optimisation",
        long,
        visible_alias = "num-train-epochs"
    )]
    pub epochs: Option<usize>,
    /// Training batch size (default: the paper's Table 6 value for the task and method).
    #[arg(
        help_heading = "Optimisation",
        long,
        visible_alias = "per-device-train-batch-size"
    )]
    pub batch_size: Option<usize>,
    /// Peak learning rate (default: Table 6).
    #[arg(help_heading = "Optimisation", long, visible_alias = "learning-rate")]
    pub lr: Option<f64>,
    /// Linear warm-up steps (default 0).
    #[arg(help_heading = "Optimisation", long)]
    pub warmup_steps: Option<usize>,
    /// Warm-up as a share of all steps, rounded up; used when --warmup-steps is 0 (default 0).
    #[arg(help_heading = "Optimisation", long)]
    pub warmup_ratio: Option<f64>,
    /// Stop after N epochs in a row without a better validation score (default: run every
    /// epoch, as the paper); the best epoch is kept either way.
    #[arg(help_heading = "Optimisation", long)]
    pub early_stopping_patience: Option<usize>,
    /// Write log_history.jsonl: loss, grad_norm and learning_rate every N optimiser steps and
    /// eval_* after every epoch, with transformers' Trainer key names.
    #[arg(help_heading = "Output and evaluation", long)]
    pub logging_steps: Option<usize>,
    /// Also evaluate on the validation split every N optimiser steps inside an epoch, logged to
    /// log_history.jsonl (the best checkpoint is still chosen per epoch).
    #[arg(help_heading = "Output and evaluation", long)]
    pub eval_steps: Option<usize>,
    /// Keep the newest N epochs' models as checkpoint-<step>/ in the run directory (an HF model
    /// or PEFT adapter, as model/ and adapter/), and the best epoch's (default: none).
    #[arg(help_heading = "Output and evaluation", long)]
    pub save_total_limit: Option<usize>,
    /// Micro-batches of --batch-size per optimiser step (default 1, the paper's).
    #[arg(help_heading = "Optimisation", long)]
    pub gradient_accumulation_steps: Option<usize>,
    /// Global gradient-norm clip (default 1.0; 0 disables).
    #[arg(help_heading = "Optimisation", long)]
    pub max_grad_norm: Option<f64>,
    /// Operand precision of the training steps' GEMMs (default fp32, the paper's). bf16: mixed
    /// precision — GEMM operands rounded to bf16, f32 accumulation, f32 weights, optimiser
    /// state, LayerNorm, softmax and loss; evaluation stays fp32. Needs the own backward
    /// (first-token head, CPU, no LoRA dropout). This CPU path rounds in software: it gives
    /// bf16's numerics, not a speed-up.
    #[arg(help_heading = "Optimisation", long, value_enum)]
    pub precision: Option<Precision>,
    /// Same as --precision bf16 (transformers' `--bf16`).
    #[arg(help_heading = "Optimisation", long, conflicts_with = "precision")]
    pub bf16: bool,
    /// AdamW decoupled weight decay (default 0).
    #[arg(help_heading = "Optimisation", long)]
    pub weight_decay: Option<f64>,
    /// Keep only the first K training examples.
    #[arg(help_heading = "Task and data", long)]
    pub max_train_samples: Option<usize>,
    /// LoRA rank (default 8).
    #[arg(help_heading = "LoRA", long)]
    pub lora_r: Option<usize>,
    /// LoRA alpha (default 8; the update is scaled by alpha / r).
    #[arg(help_heading = "LoRA", long)]
    pub lora_alpha: Option<f64>,
    /// Dropout on the adapters' input while training (peft's lora_dropout; default 0, the
    /// paper's). Above 0 the step runs on candle's autograd instead of lpft's own backward.
    #[arg(help_heading = "LoRA", long)]
    pub lora_dropout: Option<f64>,
    /// LoRA target modules, comma-separated (default query,value).
    #[arg(help_heading = "LoRA", long, value_delimiter = ',')]
    pub lora_targets: Option<Vec<String>>,
    /// LP: a fixed inverse regularisation C instead of cross-validation.
    #[arg(help_heading = "LP", long)]
    pub lp_c: Option<f64>,
    /// LP: L-BFGS iteration budget (default 5000).
    #[arg(help_heading = "LP", long)]
    pub lp_max_iter: Option<usize>,
    /// Maximum tokens per example (default 128).
    #[arg(help_heading = "Task and data", long, visible_alias = "max-seq-length")]
    pub max_len: Option<usize>,
    /// Padding of each batch (default dynamic).
    #[arg(help_heading = "Task and data", long, value_enum)]
    pub padding: Option<Padding>,
    /// The head's features (default first, the paper's).
    #[arg(help_heading = "Model and method", long, value_enum)]
    pub pooling: Option<Pooling>,
    /// Examples per forward pass when evaluating (default 32).
    #[arg(help_heading = "Output and evaluation", long)]
    pub eval_batch_size: Option<usize>,
    /// Data directory searched first for a built-in task; then $LPFT_DATA_DIR, ./data,
    /// $LPFT_HOME/data (`lpft fetch-data`) and lpft's embedded copy (CB).
    #[arg(help_heading = "Task and data", long)]
    pub data_dir: Option<PathBuf>,
    /// Your own training file (CSV/TSV with header, JSONL, text) instead of a built-in task;
    /// needs --test-file, --text-a and --label (--task names the run, default: the file stem).
    #[arg(help_heading = "Task and data", long, requires = "test_file")]
    pub train_file: Option<PathBuf>,
    /// Validation file (default: the last 10% of --train-file, unshuffled, as the paper's
    /// protocol).
    #[arg(help_heading = "Task and data", long, requires = "train_file")]
    pub validation_file: Option<PathBuf>,
    /// Test file (labelled).
    #[arg(help_heading = "Task and data", long, requires = "train_file")]
    pub test_file: Option<PathBuf>,
    /// Format of the files when the extension does not say: csv, tsv, jsonl, text.
    #[arg(help_heading = "Task and data", long, requires = "train_file")]
    pub format: Option<lpft::data::FileFormat>,
    /// Column (or JSON key) of the first text in the files.
    #[arg(help_heading = "Task and data", long, default_value = "text")]
    pub text_a: String,
    /// Column of the second text of a pair task.
    #[arg(help_heading = "Task and data", long)]
    pub text_b: Option<String>,
    /// Column of the label.
    #[arg(help_heading = "Task and data", long, default_value = "label")]
    pub label: String,
    /// Label names in id order (default: the training file's labels, sorted).
    #[arg(help_heading = "Task and data", long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Root of run directories: writes <out>/<task>/<method>/seed-<seed>/.
    #[arg(
        help_heading = "Output and evaluation",
        long,
        short = 'o',
        default_value = "runs",
        visible_alias = "output-dir"
    )]
    pub out: PathBuf,
    /// Start from a saved run config (a run's config.json); flags override its fields.
    #[arg(help_heading = "Output and evaluation", long)]
    pub config: Option<PathBuf>,
    /// Continue an interrupted run from its last completed epoch.
    #[arg(
        help_heading = "Output and evaluation",
        long,
        conflicts_with = "overwrite"
    )]
    pub resume: bool,
    /// Replace an existing run directory.
    #[arg(help_heading = "Output and evaluation", long)]
    pub overwrite: bool,
}

/// `--seed` when neither it nor --config gives one (the reference's first seed).
const DEFAULT_SEED: u64 = 1001;

impl TryFrom<&TrainArgs> for RunConfig {
    type Error = anyhow::Error;

    fn try_from(a: &TrainArgs) -> anyhow::Result<RunConfig> {
        let mut cfg = match &a.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str::<RunConfig>(&text)
                    .with_context(|| format!("{}: not a run config", path.display()))?
            }
            None => {
                let task = match (&a.task, &a.train_file) {
                    (Some(t), _) => t.clone(),
                    (None, Some(f)) => f
                        .file_stem()
                        .map_or("custom".into(), |s| s.to_string_lossy().into_owned()),
                    (None, None) => {
                        anyhow::bail!("--task (or --train-file, or --config) is required")
                    }
                };
                let method = a.method.context("--method is required (or --config)")?;
                let model = a.model.as_deref().unwrap_or("minilm");
                RunConfig::paper_defaults(&task, method, model, a.seed.unwrap_or(DEFAULT_SEED))
            }
        };
        if let Some(train) = &a.train_file {
            cfg.files = Some(FileTask {
                train: train.clone(),
                validation: a.validation_file.clone(),
                test: a
                    .test_file
                    .clone()
                    .context("--test-file is required with --train-file")?,
                format: a.format,
                text_a: a.text_a.clone(),
                text_b: a.text_b.clone(),
                label: a.label.clone(),
                labels: a.labels.clone(),
                metric: lpft::data::TaskMetric::Accuracy,
            });
        }
        if a.config.is_some() {
            if let Some(t) = &a.task {
                cfg.task = t.clone();
            }
            if let Some(m) = a.method {
                cfg.method = m;
            }
            if let Some(m) = &a.model {
                cfg.model = m.clone();
            }
            // A saved seed (and model seed) stands unless a flag replaces it; a model seed that
            // was derived from the seed follows a new --seed.
            if let Some(seed) = a.seed {
                if cfg.model_seed == cfg.seed {
                    cfg.model_seed = seed;
                }
                cfg.seed = seed;
            }
            if let Some(model_seed) = a.model_seed {
                cfg.model_seed = model_seed;
            }
        } else {
            cfg.model_seed = a.model_seed.unwrap_or(cfg.seed);
        }
        let t = &mut cfg.train;
        t.epochs = a.epochs.unwrap_or(t.epochs);
        t.batch_size = a.batch_size.unwrap_or(t.batch_size);
        t.lr = a.lr.unwrap_or(t.lr);
        t.warmup_steps = a.warmup_steps.unwrap_or(t.warmup_steps);
        t.warmup_ratio = a.warmup_ratio.unwrap_or(t.warmup_ratio);
        t.gradient_accumulation_steps = a
            .gradient_accumulation_steps
            .unwrap_or(t.gradient_accumulation_steps);
        if a.logging_steps.is_some() {
            t.logging_steps = a.logging_steps;
        }
        if a.eval_steps.is_some() {
            t.eval_steps = a.eval_steps;
        }
        if a.save_total_limit.is_some() {
            t.save_total_limit = a.save_total_limit;
        }
        if a.early_stopping_patience.is_some() {
            t.early_stopping_patience = a.early_stopping_patience;
        }
        t.max_grad_norm = a.max_grad_norm.unwrap_or(t.max_grad_norm);
        if a.bf16 {
            t.precision = Precision::Bf16;
        }
        t.precision = a.precision.unwrap_or(t.precision);
        t.adamw.weight_decay = a.weight_decay.unwrap_or(t.adamw.weight_decay);
        t.eval_batch_size = a.eval_batch_size.unwrap_or(t.eval_batch_size);
        if a.max_train_samples.is_some() {
            cfg.max_train_samples = a.max_train_samples;
        }
        cfg.lora.r = a.lora_r.unwrap_or(cfg.lora.r);
        cfg.lora.alpha = a.lora_alpha.unwrap_or(cfg.lora.alpha);
        cfg.lora.dropout = a.lora_dropout.unwrap_or(cfg.lora.dropout);
        if let Some(targets) = &a.lora_targets {
            cfg.lora.targets = targets.clone();
        }
        if a.lp_c.is_some() {
            cfg.lp.c = a.lp_c;
        }
        cfg.lp.max_iter = a.lp_max_iter.unwrap_or(cfg.lp.max_iter);
        cfg.tokenize.max_len = a.max_len.unwrap_or(cfg.tokenize.max_len);
        cfg.tokenize.padding = a.padding.unwrap_or(cfg.tokenize.padding);
        cfg.pooling = a.pooling.unwrap_or(cfg.pooling);
        if a.data_dir.is_some() {
            cfg.data_dir = a.data_dir.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Progress on stderr: a bar per epoch with loss, throughput and ETA.
pub struct BarObserver {
    bar: Option<ProgressBar>,
    loss: f64,
    steps: usize,
}

impl BarObserver {
    pub fn new() -> Self {
        Self {
            bar: None,
            loss: 0.0,
            steps: 0,
        }
    }
}

impl Observer for BarObserver {
    fn stage(&mut self, message: &str) {
        match &self.bar {
            // A hidden bar (stderr not a terminal) drops what it is asked to print.
            Some(b) if !b.is_hidden() => b.println(message),
            _ => eprintln!("{message}"),
        }
    }

    fn start_epoch(&mut self, epoch: usize, epochs: usize, steps: usize) {
        let bar = super::BARS.add(ProgressBar::new(steps as u64));
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} [{bar:25}] {pos}/{len} {msg} {per_sec} eta {eta}",
            )
            .expect("static template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        self.bar = Some(bar);
        self.loss = 0.0;
        self.steps = 0;
    }

    fn step(&mut self, step: usize, loss: f64, _examples: usize) {
        self.loss += loss;
        self.steps += 1;
        if let Some(b) = &self.bar {
            b.set_position(step as u64);
            b.set_message(format!("loss {:.4}", self.loss / self.steps as f64));
        }
    }

    fn end_epoch(&mut self, r: &EpochRecord) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        eprintln!(
            "epoch {:>2}: loss {:.4}  val acc {:.4}  mcc {:.4}  ‖V‖ {:.4}  {:.1} ex/s  {:.1}s",
            r.epoch,
            r.train_loss,
            r.validation.accuracy,
            r.validation.mcc,
            r.classifier_norm,
            r.examples_per_s,
            r.seconds
        );
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let cfg = RunConfig::try_from(&args)?;
    let opts = RunOptions {
        resume: args.resume,
        overwrite: args.overwrite,
        lp_cache: None,
    };
    let mut obs = BarObserver::new();
    let outcome = train::run(&cfg, &args.out, &opts, &mut obs)
        .with_context(|| format!("training {} {} seed {}", cfg.task, cfg.method, cfg.seed))?;
    let m = &outcome.metrics;
    println!("run {}", outcome.dir.display());
    println!(
        "{:<11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "split", "acc", "f1", "mcc", "nll", "ece", "mce", "brier"
    );
    for (name, s) in [("validation", &m.validation), ("test", &m.test)] {
        println!(
            "{name:<11} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4}",
            s.accuracy, s.f1_macro, s.mcc, s.nll, s.ece, s.mce, s.brier
        );
    }
    println!(
        "classifier norm ‖V‖_F {:.4} (initial {:.4})",
        m.classifier_norm, m.initial_classifier_norm
    );
    Ok(())
}
