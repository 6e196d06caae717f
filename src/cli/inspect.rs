//! `lpft inspect --model M`: architecture, size and vocabulary of a model.

use candle_core::Device;
use clap::Args;

use super::common::{self, ModelArgs};

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let loaded = common::load(&args.model, 2, &Device::Cpu)?;
    let cfg = &loaded.files.config;
    let encoder_params: usize = loaded
        .model
        .encoder
        .parameters()
        .iter()
        .map(|(_, t)| t.elem_count())
        .sum();
    println!("model          {}", loaded.resolved.name);
    println!("directory      {}", loaded.resolved.dir.display());
    println!("weights        {}", loaded.files.weights.display());
    if let Some(sha) = &loaded.resolved.sha256 {
        println!("sha256         {sha}");
    }
    println!(
        "architecture   {} (model_type {})",
        cfg.arch(),
        cfg.model_type
    );
    println!("layers         {}", cfg.num_hidden_layers);
    println!("hidden size    {}", cfg.hidden_size);
    println!("heads          {}", cfg.num_attention_heads);
    println!("ffn size       {}", cfg.intermediate_size);
    println!("max positions  {}", cfg.max_position_embeddings);
    println!("layer norm eps {:e}", cfg.layer_norm_eps);
    println!(
        "vocab          {} (tokenizer: {})",
        cfg.vocab_size,
        loaded.tokenizer.vocab_size()
    );
    println!(
        "parameters     {:.1}M in the checkpoint ({}); {:.1}M used by the encoder ({})",
        loaded.checkpoint_params as f64 / 1e6,
        loaded.checkpoint_params,
        encoder_params as f64 / 1e6,
        encoder_params
    );
    if !loaded.report.unexpected.is_empty() {
        println!("unused tensors {}", loaded.report.unexpected.join(", "));
    }
    Ok(())
}
