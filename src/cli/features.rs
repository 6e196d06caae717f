//! `lpft features --task T --split S --out F`: frozen first-token features of a split.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::Tensor;
use clap::Args;

use lpft::data::Split;
use lpft::probe::features::features;

use super::common::{self, InputArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Split: train, validation or test (after the paper's split protocol; ignored for --file).
    #[arg(long, short = 's', default_value = "train")]
    pub split: Split,
    /// Output safetensors file: `features` `[n, hidden]` f32 and `labels` `[n]` i64 (-1 if unlabelled).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

pub fn run(args: FeaturesArgs) -> anyhow::Result<()> {
    let input = args.input.load()?;
    let examples = input.split(args.split);
    anyhow::ensure!(
        !examples.is_empty(),
        "{} has no {} examples",
        input.name,
        args.split
    );
    let device = lpft::device::current();
    let loaded = common::load(&args.model, input.labels.len().max(2), &device)?;
    let encoded = loaded.tokenizer.encode_examples(examples)?;
    let pb = common::progress_bar(encoded.len(), &format!("{} {}", input.name, args.split));
    let start = std::time::Instant::now();
    let hidden = loaded.files.config.hidden_size;
    let feats = features(
        &loaded.model,
        &loaded.tokenizer,
        &encoded,
        args.batch_size,
        &mut |done| pb.set_position(done as u64),
    )?;
    let feats = Tensor::from_vec(feats, (encoded.len(), hidden), &device)?;
    pb.finish_and_clear();
    let labels: Vec<i64> = examples
        .iter()
        .map(|e| e.label.map_or(-1, |l| l as i64))
        .collect();
    let n = labels.len();
    let tensors = HashMap::from([
        ("features".to_string(), feats.clone()),
        ("labels".to_string(), Tensor::from_vec(labels, n, &device)?),
    ]);
    lpft::fsutil::save_tensors_atomic(&tensors, &args.out)?;
    let (rows, cols) = feats.dims2()?;
    println!(
        "wrote {}: features [{rows}, {cols}] of {} {} ({} model, {:.1}s)",
        args.out.display(),
        input.name,
        args.split,
        loaded.resolved.name,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
