//! `lpft bench`: time encoder workloads on a fixed batch.
//!
//! The batch is the first `--batch` CB training pairs, truncated and padded to exactly `--seq`
//! tokens (as the reference pads), so figures compare with `bench/pytorch/bench.py`.
//! Workloads: `forward` (eval, no autograd), `ft-step` (forward + backward + clip + AdamW on all
//! parameters, dropout on), `lora-step` (LoRA r 8 on query/value), `grad-logit` (gradient of
//! one logit of one example w.r.t. all parameters, eval mode), `lp-fit` (LP on cached features:
//! cross-validated logistic regression on CB's 225 training features, features not timed),
//! `entk` (F of the eNTK on the first `--ntk-examples` CB training examples with
//! [`lpft::ntk::compute`], the entry point of `lpft ntk`, against the paper code's
//! full-Jacobian way [`lpft::ntk::reference::jacobian_kernel`] timed on
//! `--reference-examples` of them and extrapolated; not in the default set: minutes).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use lpft::data::batch::{Padding, TextTokenizer, TokenizeConfig};
use lpft::data::LoadOptions;
use lpft::methods::train::Backward;
use lpft::model::backprop::Backprop;
use lpft::model::lora::LoraConfig;
use lpft::model::{
    Inputs, Mode, ModelFiles, ModelOptions, Pooling, Precision, SequenceClassifier, Trainable,
};
use lpft::ntk::reference::{gram_rows, jacobian_kernel, JACOBIAN_BLOCK};
use lpft::ntk::{layerwise, ContractionPrecision, EntkConfig, ParamSet};
use lpft::optim::{AdamW, AdamWConfig};
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
    /// F of the eNTK (all encoder parameters, random head) on the first `--ntk-examples` CB
    /// training examples, layer-wise, against the paper code's full-Jacobian way on
    /// `--reference-examples` of them, extrapolated (minutes).
    Entk,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Workloads to time (default: forward, ft-step, lora-step, grad-logit).
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
    /// Steps, and the eNTK's per-example passes, through candle's autograd even where lpft's own
    /// backward applies (the reference path, for A/B timing).
    #[arg(long)]
    pub autograd: bool,
    /// Operand precision of the ft-step and lora-step GEMMs (bf16: mixed precision, on the own
    /// backward only); the other workloads run in fp32.
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// entk: examples of the timed F: the first ones of CB's original training file (250; the
    /// first 225 are lpft's training split, the rest its validation split).
    #[arg(long, default_value_t = 64)]
    pub ntk_examples: usize,
    /// entk: examples the full-Jacobian way is run on (the first ones); its time is
    /// extrapolated to --ntk-examples. 0 times the layer-wise F alone.
    #[arg(long, default_value_t = 2)]
    pub reference_examples: usize,
    /// entk: arithmetic of the materialised contraction (f32: about 1.5× faster, see
    /// `lpft ntk --precision`).
    #[arg(long, value_enum, default_value_t = ContractionPrecision::F64)]
    pub ntk_precision: ContractionPrecision,
    /// entk: memory for stored per-example layer factors, MiB (as `lpft ntk --max-stored-mib`;
    /// fewer passes over the examples when more fits).
    #[arg(long, default_value_t = 4096)]
    pub ntk_max_stored_mib: usize,
    /// Data directory searched first for CB; then $LPFT_DATA_DIR, ./data, $LPFT_HOME/data and
    /// lpft's embedded copy.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

fn build(
    files: &ModelFiles,
    trainable: Trainable,
    lora: Option<LoraConfig>,
) -> anyhow::Result<(SequenceClassifier, lpft::model::LoadReport)> {
    let opts = ModelOptions {
        num_labels: 3,
        pooling: Pooling::First,
        trainable,
        model_seed: 1,
        lora,
    };
    Ok(SequenceClassifier::build(
        files,
        &opts,
        &lpft::device::current(),
    )?)
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

/// Median and minimum time of `args.iters` training steps (after one warm-up) on `model`,
/// through the own backward unless `--autograd`; each step draws its dropout from a new seed.
fn time_steps(
    model: &SequenceClassifier,
    report: &lpft::model::LoadReport,
    inputs: &Inputs,
    labels: &[usize],
    args: &BenchArgs,
) -> anyhow::Result<(f64, f64)> {
    let mut opt = AdamW::new(&report.vars, AdamWConfig::default());
    let mut backward = if args.autograd {
        Backward::Autograd
    } else {
        Backward::for_model(model, &opt, args.precision)?
    };
    let mut seed = 0;
    time(args.iters, || {
        seed += 1;
        let mut rng = Streams::new(seed).get("dropout");
        let mut mode = if args.no_dropout {
            Mode::Eval
        } else {
            Mode::Train { rng: &mut rng }
        };
        let (lr, clip, at) = (1e-5, 1.0, (1, 1));
        let b = &mut backward;
        lpft::methods::train::step(model, &mut opt, b, inputs, labels, &mut mode, lr, clip, at)?;
        Ok(())
    })
}

/// Resets the peak resident memory to the current one (Linux `clear_refs` 5), so that
/// [`peak_rss_mib`] measures from here; best effort.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
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
    let (task, _) = lpft::hub::find_task("cb", args.data_dir.as_deref(), &LoadOptions::default())
        .context("loading CB for the benchmark batch")?;
    let texts: Vec<(&str, Option<&str>)> = task
        .train
        .iter()
        .cycle()
        .take(args.batch)
        .map(lpft::data::Example::texts)
        .collect();
    let labels: Vec<usize> = lpft::data::require_labels(&task.train, "cb train")?
        .into_iter()
        .cycle()
        .take(args.batch)
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
        if w == Workload::Entk {
            // CB's original training file in order: lpft's 225 training examples, then its 25
            // validation ones (the paper's N = 250 is the whole file).
            let file: Vec<_> = task.train.iter().chain(&task.validation).cloned().collect();
            entk(&args, &files, &file, &resolved.name, threads)?;
            continue;
        }
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
                let t = time_steps(&model, &report, &inputs, &labels, &args)?;
                ("ft-step", t, 3.0 * forward_flops(cfg, args.batch, args.seq))
            }
            Workload::LoraStep => {
                let (model, report) = build(
                    &files,
                    Trainable::Matching(vec!["lora_".into(), "classifier.".into()]),
                    Some(LoraConfig::default()),
                )?;
                let t = time_steps(&model, &report, &inputs, &labels, &args)?;
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
                let train: Vec<(&str, Option<&str>)> =
                    task.train.iter().map(lpft::data::Example::texts).collect();
                let y = lpft::data::require_labels(&task.train, "cb train")?;
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
                let (model, report) = build(&files, Trainable::All, None)?;
                let vars: Vec<_> = report.vars.values().collect();
                let mut own = match args.autograd {
                    false if Backprop::supports(&model) => Some(Backprop::new(&model, &vars)?),
                    _ => None,
                };
                let mut first = vec![0f32; model.head.num_labels()];
                first[0] = 1.0;
                let t = time(args.iters, || {
                    match &mut own {
                        Some(own) => {
                            own.logit_grads(&model, &one, &first, &mut Mode::Eval)?;
                        }
                        None => {
                            let logits = model.forward(&one, &mut Mode::Eval)?;
                            let _grads = logits.narrow(1, 0, 1)?.sum_all()?.backward()?;
                        }
                    }
                    Ok(())
                })?;
                ("grad-logit", t, 3.0 * forward_flops(cfg, 1, args.seq))
            }
            Workload::Entk => unreachable!("handled above"),
        };
        println!(
            "{{\"workload\":\"{name}\",\"model\":\"{}\",\"batch\":{},\"seq\":{},\"threads\":{threads},\"dropout\":{},\"precision\":\"{}\",\"seconds_median\":{median:.4},\"seconds_min\":{min:.4},\"gflops\":{:.1},\"peak_rss_mib\":{:.0}}}",
            resolved.name,
            match w {
                Workload::GradLogit => 1,
                Workload::LpFit => task.train.len(),
                _ => args.batch,
            },
            args.seq,
            !args.no_dropout && matches!(w, Workload::FtStep | Workload::LoraStep),
            match w {
                Workload::FtStep | Workload::LoraStep => args.precision,
                _ => Precision::Fp32,
            }
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default(),
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

/// Agreement of the two ways' F on the examples both computed, as max |ΔF| / max |F|. Both
/// run the same f32 forward and backward passes and sum over parameters in f64; they differ
/// only in f32 round-off order (h per-dimension gradients weighted by V0 against one backward
/// pass of v_c·φ), which left 3e-8 on MiniLM (the tiny-model test bounds the same difference
/// by 1e-6). An actual error — a parameter group missing, another head — is 1e-3 or more.
const ENTK_AGREEMENT_TOL: f64 = 1e-6;

/// Columns of the slice on which the Gram of all `--ntk-examples` contracted rows is timed
/// (64 examples: 192 rows × 2^18 f64 = 384 MiB); the time is scaled to all P columns, which is
/// exact up to cache effects since the product is blocked over columns.
const GRAM_SLICE_COLUMNS: usize = 1 << 18;

/// The `entk` workload (see the module docs).
fn entk(
    args: &BenchArgs,
    files: &ModelFiles,
    train: &[lpft::data::Example],
    model_name: &str,
    threads: usize,
) -> anyhow::Result<()> {
    let (n, k) = (args.ntk_examples, args.reference_examples);
    anyhow::ensure!(
        (1..=train.len()).contains(&n),
        "--ntk-examples must be between 1 and the {} examples of CB's training file, got {n}",
        train.len()
    );
    anyhow::ensure!(
        k <= n,
        "--reference-examples must be between 0 and --ntk-examples ({n}), got {k}"
    );
    // Tokenised as `lpft ntk` does: up to 128 tokens, one unpadded sequence per example.
    let tok = TextTokenizer::for_model(files, TokenizeConfig::default())?;
    let texts: Vec<(&str, Option<&str>)> =
        train[..n].iter().map(lpft::data::Example::texts).collect();
    let x = layerwise::single_inputs(&tok, &tok.encode(&texts)?);
    let tokens: usize = x.iter().map(|i| i.seq_len).sum();
    let reference_tokens: usize = x[..k].iter().map(|i| i.seq_len).sum();

    // The layer-wise F, as `lpft ntk` computes it for FT (frozen model, random head).
    let (frozen, _) = build(files, Trainable::None, None)?;
    reset_peak_rss();
    let started = std::time::Instant::now();
    let cfg = EntkConfig {
        autograd: args.autograd,
        precision: args.ntk_precision,
        max_stored_bytes: args.ntk_max_stored_mib.saturating_mul(1 << 20),
        ..EntkConfig::new(ParamSet::Ft)
    };
    let fast = lpft::ntk::compute(&cfg, &frozen, &x, None, &mut |_| {})?;
    let fast_seconds = started.elapsed().as_secs_f64();
    let fast_peak = peak_rss_mib().unwrap_or(f64::NAN);
    drop(frozen);
    let engine = if fast.own_backward { "own" } else { "autograd" };
    let passes = fast.passes;
    let precision = match args.ntk_precision {
        ContractionPrecision::F64 => "f64",
        ContractionPrecision::F32 => "f32",
    };
    if k == 0 {
        println!(
            "eNTK F on CB, {model_name}: θ = all encoder parameters (P = {}), {n} examples \
             ({tokens} tokens), {threads} threads, {engine} backward, {precision} contraction, \
             {passes} pass(es): {fast_seconds:.1} s (gradients {:.1}, contraction {:.1}), peak RSS \
             {fast_peak:.0} MiB",
            fast.parameters, fast.gradient_seconds, fast.contraction_seconds
        );
        println!(
            "{{\"workload\":\"entk\",\"model\":\"{model_name}\",\"examples\":{n},\"tokens\":{tokens},\"threads\":{threads},\"parameters\":{},\"backward\":\"{engine}\",\"precision\":\"{precision}\",\"passes\":{passes},\"fast_seconds\":{fast_seconds:.2},\"gradient_seconds\":{:.2},\"contraction_seconds\":{:.2},\"fast_peak_rss_mib\":{fast_peak:.0}}}",
            fast.parameters, fast.gradient_seconds, fast.contraction_seconds
        );
        return Ok(());
    }

    // The full-Jacobian way on the first k examples (same checkpoint and head seed, as Vars).
    let (model, report) = build(files, Trainable::All, None)?;
    reset_peak_rss();
    let started = std::time::Instant::now();
    let reference = jacobian_kernel(
        &model,
        &report.vars,
        &ParamSet::Ft,
        &x[..k],
        None,
        &mut |done, total| {
            eprintln!(
                "full-Jacobian way: {done}/{total} examples ({:.0} s)",
                started.elapsed().as_secs_f64()
            )
        },
    )?;
    let reference_seconds = started.elapsed().as_secs_f64();
    let reference_peak = peak_rss_mib().unwrap_or(f64::NAN);
    drop((model, report));

    // The Gram of all n examples' contracted rows, timed on a column slice.
    let (c, p, h) = (
        reference.kernel.n_logits(),
        reference.parameters,
        reference.backward_passes_per_example,
    );
    let w = GRAM_SLICE_COLUMNS.min(p);
    let rows: Vec<f64> = (0..n * c * w)
        .map(|i| ((i % 1009) as f64 - 504.0) * 1e-3)
        .collect();
    let started = std::time::Instant::now();
    let _ = gram_rows(&rows, None, w);
    let gram_n = started.elapsed().as_secs_f64() * p as f64 / w as f64;
    drop(rows);
    let per_example = (reference_seconds - reference.gram_seconds) / k as f64;
    let extrapolated = per_example * n as f64 + gram_n;

    // Agreement on the k × k block both computed.
    let (mut max_diff, mut max_abs, mut diff2, mut ref2) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..k {
        for j in 0..k {
            for ca in 0..c {
                for cb in 0..c {
                    let want = reference.kernel.get(i, ca, j, cb).expect("in range");
                    let got = fast.kernel.get(i, ca, j, cb).expect("in range");
                    max_diff = max_diff.max((got - want).abs());
                    max_abs = max_abs.max(want.abs());
                    diff2 += (got - want).powi(2);
                    ref2 += want * want;
                }
            }
        }
    }
    let (max_rel, frob_rel) = (max_diff / max_abs, (diff2 / ref2).sqrt());
    let gib = |bytes: f64| bytes / f64::from(1u32 << 30);

    println!(
        "eNTK F on CB, {model_name}: C = {c}, θ = all encoder parameters (P = {p}), random head \
         (model seed 1), {threads} threads"
    );
    println!(
        "examples: the first {n} of CB train ({tokens} tokens, one unpadded sequence each); \
         the full-Jacobian way on the first {k} ({reference_tokens} tokens)"
    );
    println!();
    println!("| method | backward passes / example | examples | seconds | peak RSS MiB |");
    println!("|---|---|---|---|---|");
    println!(
        "| layer-wise (`lpft ntk`) | {} | {n} | {fast_seconds:.1} (gradients {:.1}, contraction {:.1}) | {fast_peak:.0} |",
        c * fast.passes,
        fast.gradient_seconds,
        fast.contraction_seconds
    );
    println!(
        "| full Jacobian of φ, then V0 (paper's code) | {h} | {k} | {reference_seconds:.1} (forward+backward {:.1}, V0 contraction {:.1}, Gram {:.2}) | {reference_peak:.0} |",
        reference.backward_seconds, reference.contraction_seconds, reference.gram_seconds
    );
    println!("| full Jacobian of φ, extrapolated | {h} | {n} | {extrapolated:.0} | – |");
    println!();
    println!(
        "extrapolation: (measured total − Gram) / {k} = {per_example:.1} s per example, × {n}, \
         plus the Gram of {n} examples' {} rows timed on a {w}-column slice and scaled to P \
         columns ({gram_n:.1} s)",
        n * c
    );
    println!(
        "ratio full-Jacobian / layer-wise for {n} examples: {:.0}×",
        extrapolated / fast_seconds
    );
    println!(
        "agreement on the {k} × {k} block: max |ΔF| / max |F| = {max_rel:.2e}, \
         ‖ΔF‖_F / ‖F‖_F = {frob_rel:.2e} (tolerance {ENTK_AGREEMENT_TOL:e})"
    );
    println!(
        "memory: the full Jacobians [h, P] of {n} examples would be {n} × {h} × {p} f32 = \
         {:.0} GiB ({:.1} GiB per example), far too much to hold; the full-Jacobian way here \
         holds {JACOBIAN_BLOCK} Jacobian rows [P] f32 at a time ({:.2} GiB) and the \
         V0-contracted rows of its {k} examples ({k} × {c} × P f64 = {:.2} GiB)",
        gib((n * h * p * 4) as f64),
        gib((h * p * 4) as f64),
        gib((JACOBIAN_BLOCK * p * 4) as f64),
        gib((k * c * p * 8) as f64)
    );
    println!(
        "{{\"workload\":\"entk\",\"model\":\"{model_name}\",\"examples\":{n},\"reference_examples\":{k},\"threads\":{threads},\"parameters\":{p},\"backward\":\"{}\",\"fast_seconds\":{fast_seconds:.2},\"gradient_seconds\":{:.2},\"contraction_seconds\":{:.2},\"reference_seconds\":{reference_seconds:.2},\"reference_extrapolated_seconds\":{extrapolated:.1},\"ratio\":{:.1},\"max_rel_diff\":{max_rel:.3e},\"fast_peak_rss_mib\":{fast_peak:.0},\"reference_peak_rss_mib\":{reference_peak:.0}}}",
        engine,
        fast.gradient_seconds,
        fast.contraction_seconds,
        extrapolated / fast_seconds
    );
    anyhow::ensure!(
        fast.parameters == p,
        "the two ways count different θ: {} vs {p} parameters",
        fast.parameters
    );
    anyhow::ensure!(
        max_rel <= ENTK_AGREEMENT_TOL,
        "the full-Jacobian F differs from the layer-wise F by {max_rel:e} (max |ΔF| / max |F|), \
         more than {ENTK_AGREEMENT_TOL:e}"
    );
    Ok(())
}
