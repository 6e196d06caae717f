//! The empirical NTK of the fine-tuning stage on a few sentences: F(x, x′) = V0 Θ^φ(x, x′) V0ᵀ
//! over every encoder parameter (arXiv 2405.16747 §4.1, the part of the NTK that moves the
//! features), with its split over parameter groups.
//!
//! ```sh
//! cargo run --release --example entk_sentences -- [MODEL]
//! ```
//!
//! MODEL is `minilm` (the default), `mpnet`, a Hugging Face directory or a Hub id. The head V0
//! is the paper's random initialisation (C = 2 here).

use candle_core::Device;
use lpft::data::batch::{TextTokenizer, TokenizeConfig};
use lpft::hub::models::{self, FetchOptions, ModelSource};
use lpft::model::{ModelFiles, ModelOptions, Pooling, SequenceClassifier, Trainable};
use lpft::ntk::{EntkConfig, ParamSet};

fn main() -> anyhow::Result<()> {
    let spec = std::env::args().nth(1).unwrap_or_else(|| "minilm".into());
    let resolved = models::resolve(&ModelSource::parse(&spec), &FetchOptions::default())?;
    let files = ModelFiles::open(&resolved.dir)?;
    let ckpt = files.checkpoint(&Device::Cpu)?;
    let opts = ModelOptions {
        num_labels: 2,
        pooling: Pooling::First,
        trainable: Trainable::None,
        model_seed: 1001,
        lora: None,
    };
    let (model, _) = SequenceClassifier::load(&ckpt, &files.config, &opts)?;
    let tok = TextTokenizer::load(
        &files.tokenizer,
        files.config.pad_token_id,
        TokenizeConfig::default(),
    )?;

    let sentences = [
        "The film was a delight from start to finish.",
        "I would not watch it again.",
        "A quiet, patient and beautifully acted story.",
    ];
    let texts: Vec<(&str, Option<&str>)> = sentences.iter().map(|s| (*s, None)).collect();
    let encoded = tok.encode(&texts)?;
    // One example per `Inputs`: the eNTK works example by example.
    let xs: Vec<_> = encoded.iter().map(|e| tok.batch(&[e])).collect();

    let f = lpft::ntk::compute(
        &EntkConfig::new(ParamSet::Ft),
        &model,
        &xs,
        None,
        &mut |_| {},
    )?;
    let [n, c, _, _] = f.kernel.shape();
    println!(
        "F over {} parameters: {n} examples × {c} logits, ‖F‖_F = {:.4e}",
        f.parameters,
        f.kernel.frobenius_norm()
    );
    for (i, s) in sentences.iter().enumerate() {
        let row: Vec<String> = (0..n)
            .map(|j| format!("{:>10.3e}", f.kernel.get(i, 0, j, 0).unwrap_or(f64::NAN)))
            .collect();
        println!("F[{i}, 0; ·, 0] {}   {s}", row.join(" "));
    }
    for (group, norm) in f.group_norms() {
        println!("{:>22}  ‖F_g‖_F {norm:.4e}", group.as_str());
    }
    Ok(())
}
