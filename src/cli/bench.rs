//! `lpft bench`: time encoder workloads on a fixed batch.
//!
//! The batch is the first `--batch` CB training pairs, truncated and padded to exactly `--seq`
//! tokens (as the reference pads), so figures compare with `bench/pytorch/bench.py`.
//! Workloads: `forward` (eval, no autograd), `ft-step` (forward + backward + clip + AdamW on all
//! parameters, dropout on), `lora-step` (LoRA r 8 on query/value), `grad-logit` (gradient of
//! one logit of one example w.r.t. all parameters, eval mode), `lp-fit` (LP on cached features:
//! cross-validated logistic regression on CB's 225 training features, features not timed).

use std::path::PathBuf;

use anyhow::Context;
use candle_core::Device;
use clap::{Args, ValueEnum};

use lpft::data::batch::{Padding, TextTokenizer, TokenizeConfig};
use lpft::data::{self, LoadOptions};
use lpft::methods::optim::{AdamW, AdamWConfig};
use lpft::methods::schedule::{clip_factor, global_grad_norm};
use lpft::methods::train::cross_entropy;
use lpft::model::lora::LoraConfig;
use lpft::model::{Inputs, Mode, ModelFiles, ModelOptions, Pooling, SequenceClassifier, Trainable};
use lpft::rng::Streams;

use super::common::{self, ModelArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    Forward,
    FtStep,
    LoraStep,
    GradLogit,
    /// LP on cached features: `LogisticRegressionCV` defaults on CB's 225 training features.
    LpFit,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Workloads to time (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workload: Vec<Workload>,
    /// Sequences per batch (grad-logit always uses one sequence).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Tokens per sequence (every sequence is padded to this).
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Timed repetitions after one warm-up run; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Train-mode steps without dropout (compare with PyTorch in eval mode).
    #[arg(long)]
    pub no_dropout: bool,
    /// Data directory for the CB sentences (default: $LPFT_DATA_DIR, else ./data, else ../shared/data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

fn build(
    files: &ModelFiles,
    trainable: Trainable,
    lora: Option<LoraConfig>,
) -> anyhow::Result<(SequenceClassifier, lpft::model::LoadReport)> {
    let ckpt = files.checkpoint(&Device::Cpu)?;
    let opts = ModelOptions {
        num_labels: 3,
        pooling: Pooling::First,
        trainable,
        model_seed: 1,
        lora,
    };
    Ok(SequenceClassifier::load(&ckpt, &files.config, &opts)?)
}

fn time(iters: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    f()?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let t = std::time::Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0]))
}

fn train_step(
    model: &SequenceClassifier,
    opt: &mut AdamW,
    inputs: &Inputs,
    labels: &[usize],
    dropout: bool,
    seed: u64,
) -> anyhow::Result<()> {
    let mut rng = Streams::new(seed).get("dropout");
    let mut mode = if dropout {
        Mode::Train { rng: &mut rng }
    } else {
        Mode::Eval
    };
    let logits = model.forward(inputs, &mut mode)?;
    let loss = cross_entropy(&logits, labels)?;
    let grads = loss.backward()?;
    let vars = opt.vars();
    let norm = global_grad_norm(&vars, &grads)?;
    opt.step(&grads, 1e-5, clip_factor(norm, 1.0))?;
    Ok(())
}

/// Peak resident memory of this process so far (Linux `VmHWM`), MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let workloads = if args.workload.is_empty() {
        vec![
            Workload::Forward,
            Workload::FtStep,
            Workload::LoraStep,
            Workload::GradLogit,
        ]
    } else {
        args.workload.clone()
    };
    let resolved = common::resolve(&args.model.model)?;
    let files = ModelFiles::open(&resolved.dir)?;
    let dir = args.data_dir.clone().unwrap_or_else(data::default_data_dir);
    let task = data::load_task("cb", &dir, &LoadOptions::default())
        .with_context(|| format!("loading CB from {} for the benchmark batch", dir.display()))?;
    let texts: Vec<(&str, Option<&str>)> = task
        .train
        .iter()
        .cycle()
        .take(args.batch)
        .map(|e| (e.text_a.as_str(), e.text_b.as_deref()))
        .collect();
    let labels: Vec<usize> = task
        .train
        .iter()
        .cycle()
        .take(args.batch)
        .map(|e| e.label.unwrap_or(0))
        .collect();
    let tok = TextTokenizer::load(
        &files.tokenizer,
        files.config.pad_token_id,
        TokenizeConfig {
            max_len: args.seq,
            padding: Padding::Fixed,
        },
    )?;
    let enc = tok.encode(&texts)?;
    let inputs = tok.batch(&enc.iter().collect::<Vec<_>>());
    let one = tok.batch(&[&enc[0]]);
    let cfg = &files.config;
    let threads = candle_core::utils::get_num_threads();
    for w in workloads {
        let (name, (median, min), flops) = match w {
            Workload::Forward => {
                let (model, _) = build(&files, Trainable::None, None)?;
                let t = time(args.iters, || {
                    let f = model.features(&inputs, &mut Mode::Eval)?;
                    let _ = f.sum_all()?.to_scalar::<f32>()?;
                    Ok(())
                })?;
                ("forward", t, forward_flops(cfg, args.batch, args.seq))
            }
            Workload::FtStep => {
                let (model, report) = build(&files, Trainable::All, None)?;
                let mut opt = AdamW::new(&report.vars, AdamWConfig::default());
                let mut seed = 0;
                let t = time(args.iters, || {
                    seed += 1;
                    train_step(&model, &mut opt, &inputs, &labels, !args.no_dropout, seed)
                })?;
                ("ft-step", t, 3.0 * forward_flops(cfg, args.batch, args.seq))
            }
            Workload::LoraStep => {
                let (model, report) = build(
                    &files,
                    Trainable::Matching(vec!["lora_".into(), "classifier.".into()]),
                    Some(LoraConfig::default()),
                )?;
                let mut opt = AdamW::new(&report.vars, AdamWConfig::default());
                let mut seed = 0;
                let t = time(args.iters, || {
                    seed += 1;
                    train_step(&model, &mut opt, &inputs, &labels, !args.no_dropout, seed)
                })?;
                // Forward + input gradients (no weight gradients for frozen layers).
                (
                    "lora-step",
                    t,
                    2.0 * forward_flops(cfg, args.batch, args.seq),
                )
            }
            Workload::LpFit => {
                let (model, _) = build(&files, Trainable::None, None)?;
                let tok128 = TextTokenizer::load(
                    &files.tokenizer,
                    files.config.pad_token_id,
                    TokenizeConfig::default(),
                )?;
                let train: Vec<(&str, Option<&str>)> = task
                    .train
                    .iter()
                    .map(|e| (e.text_a.as_str(), e.text_b.as_deref()))
                    .collect();
                let y: Vec<usize> = task.train.iter().map(|e| e.label.unwrap_or(0)).collect();
                let enc = tok128.encode(&train)?;
                let x = lpft::methods::lp::features(&model, &tok128, &enc, 32)?;
                let d = cfg.hidden_size;
                let params = lpft::probe::cv::LogRegCvParams::default();
                let t = time(args.iters, || {
                    params.fit(&x, y.len(), d, &y, task.labels.len())?;
                    Ok(())
                })?;
                ("lp-fit", t, 0.0)
            }
            Workload::GradLogit => {
                let (model, _) = build(&files, Trainable::All, None)?;
                let t = time(args.iters, || {
                    let logits = model.forward(&one, &mut Mode::Eval)?;
                    let _grads = logits.narrow(1, 0, 1)?.sum_all()?.backward()?;
                    Ok(())
                })?;
                ("grad-logit", t, 3.0 * forward_flops(cfg, 1, args.seq))
            }
        };
        println!(
            "{{\"workload\":\"{name}\",\"model\":\"{}\",\"batch\":{},\"seq\":{},\"threads\":{threads},\"dropout\":{},\"seconds_median\":{median:.4},\"seconds_min\":{min:.4},\"gflops\":{:.1},\"peak_rss_mib\":{:.0}}}",
            resolved.name,
            match w {
                Workload::GradLogit => 1,
                Workload::LpFit => task.train.len(),
                _ => args.batch,
            },
            args.seq,
            !args.no_dropout && matches!(w, Workload::FtStep | Workload::LoraStep),
            flops / median / 1e9,
            peak_rss_mib().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}

/// Multiply-add FLOPs of one encoder forward: 2·(dense weights)·tokens plus the two attention
/// matmuls 2·2·b·l²·h per layer.
fn forward_flops(cfg: &lpft::model::EncoderConfig, b: usize, l: usize) -> f64 {
    let (h, f) = (cfg.hidden_size as f64, cfg.intermediate_size as f64);
    let tokens = (b * l) as f64;
    let per_layer =
        2.0 * tokens * (4.0 * h * h + 2.0 * h * f) + 4.0 * b as f64 * (l * l) as f64 * h;
    per_layer * cfg.num_hidden_layers as f64
}
