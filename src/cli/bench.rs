//! `lpft bench`: time encoder workloads on a fixed batch (issue #2: forward throughput).
//!
//! The batch is the first `--batch` CB training pairs, truncated and padded to exactly `--seq`
//! tokens (as the reference pads), so figures compare with `bench/pytorch/bench_forward.py`.

use std::path::PathBuf;

use anyhow::Context;
use candle_core::Device;
use clap::Args;

use lpft::data::batch::{Padding, TextTokenizer, TokenizeConfig};
use lpft::data::{self, LoadOptions};
use lpft::model::Mode;

use super::common::{self, ModelArgs};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sequences per batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Tokens per sequence (every sequence is padded to this).
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Timed repetitions after one warm-up run; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Data directory for the CB sentences (default: $LPFT_DATA_DIR, else ./data, else ../shared/data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let device = Device::Cpu;
    let loaded = common::load(&args.model, 3, &device)?;
    let dir = args.data_dir.unwrap_or_else(data::default_data_dir);
    let task = data::load_task("cb", &dir, &LoadOptions::default())
        .with_context(|| format!("loading CB from {} for the benchmark batch", dir.display()))?;
    let texts: Vec<(&str, Option<&str>)> = task
        .train
        .iter()
        .cycle()
        .take(args.batch)
        .map(|e| (e.text_a.as_str(), e.text_b.as_deref()))
        .collect();
    let tok = TextTokenizer::load(
        &loaded.files.tokenizer,
        loaded.files.config.pad_token_id,
        TokenizeConfig {
            max_len: args.seq,
            padding: Padding::Fixed,
        },
    )?;
    let enc = tok.encode(&texts)?;
    let inputs = tok.batch(&enc.iter().collect::<Vec<_>>());
    let run_once = || -> anyhow::Result<f64> {
        let t = std::time::Instant::now();
        let feats = loaded.model.features(&inputs, &mut Mode::Eval)?;
        // Force the computation to finish (CPU ops are eager; this also reads the result).
        let _ = feats.sum_all()?.to_scalar::<f32>()?;
        Ok(t.elapsed().as_secs_f64())
    };
    run_once()?;
    let mut times = (0..args.iters.max(1))
        .map(|_| run_once())
        .collect::<anyhow::Result<Vec<f64>>>()?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let cfg = &loaded.files.config;
    let flops = forward_flops(cfg, args.batch, args.seq);
    let threads = candle_core::utils::get_num_threads();
    println!(
        "{{\"workload\":\"forward\",\"model\":\"{}\",\"batch\":{},\"seq\":{},\"threads\":{},\"seconds_median\":{:.4},\"seconds_min\":{:.4},\"sequences_per_s\":{:.1},\"gflops\":{:.1}}}",
        loaded.resolved.name,
        args.batch,
        args.seq,
        threads,
        median,
        times[0],
        args.batch as f64 / median,
        flops / median / 1e9
    );
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
