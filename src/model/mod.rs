//! Encoders and the classification model: config, checkpoint loading, BERT/RoBERTa/MPNet, the head.
//!
//! `SequenceClassifier` mirrors Hugging Face's `*ForSequenceClassification` tree (`bert.` /
//! `roberta.` encoder + `classifier`), but with the paper's single linear head on the first token.

pub mod backprop;
pub mod bert;
pub mod config;
pub mod export;
pub mod fused;
pub mod head;
pub mod linear;
pub mod lora;
pub mod mode;
pub mod ops;
pub mod params;
pub mod record;

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
pub use bert::Encoder;
pub use config::{Arch, EncoderConfig};
pub use fused::Precision;
pub use head::{Head, Pooling};
pub use mode::Mode;
pub use params::{Checkpoint, LoadReport, Params, Trainable};
pub use record::{Recorder, Site};

/// A tokenised, padded batch on the host. All vectors are row-major `[batch, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    /// 1 for tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    pub batch: usize,
    pub seq_len: usize,
}

impl Inputs {
    /// Checks that every vector has `batch * seq_len` entries and each row has a token.
    pub fn check(&self) -> Result<()> {
        let n = self.batch * self.seq_len;
        for (what, len) in [
            ("input_ids", self.input_ids.len()),
            ("token_type_ids", self.token_type_ids.len()),
            ("attention_mask", self.attention_mask.len()),
        ] {
            if len != n {
                return Err(Error::Shape {
                    what: "Inputs",
                    expected: format!("{what} of {} x {} = {n}", self.batch, self.seq_len),
                    found: len.to_string(),
                });
            }
        }
        if n == 0 {
            return Err(Error::Shape {
                what: "Inputs",
                expected: "a non-empty batch".into(),
                found: "0 tokens".into(),
            });
        }
        Ok(())
    }

    /// Number of real (non-pad) tokens.
    pub fn token_count(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }
}

/// How to build a `SequenceClassifier`.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// Number of classes C.
    pub num_labels: usize,
    pub pooling: Pooling,
    pub trainable: Trainable,
    /// Seed of the `head_init` and `lora_init` streams (the reference's `model_seed`).
    pub model_seed: u64,
    /// LoRA adapters to add (LoRA, LP-LoRA).
    pub lora: Option<lora::LoraConfig>,
}

impl ModelOptions {
    /// The frozen pre-trained encoder with a `num_labels`-class head (from the checkpoint, or
    /// drawn from model seed 0): what feature extraction and inspection use.
    pub fn frozen(num_labels: usize, pooling: Pooling) -> Self {
        ModelOptions {
            num_labels,
            pooling,
            trainable: Trainable::None,
            model_seed: 0,
            lora: None,
        }
    }
}

/// Encoder + linear head.
pub struct SequenceClassifier {
    pub encoder: Encoder,
    pub head: Head,
    pub pooling: Pooling,
}

impl SequenceClassifier {
    /// Builds the model from a checkpoint. The head comes from the checkpoint's `classifier.*`
    /// when it has the right shape there, else it is drawn from the `head_init` stream.
    pub fn load(
        ckpt: &Checkpoint,
        cfg: &EncoderConfig,
        opts: &ModelOptions,
    ) -> Result<(Self, LoadReport)> {
        let streams = crate::rng::Streams::new(opts.model_seed);
        let mut p = Params::new(ckpt, opts.trainable.clone());
        if let Some(lora) = &opts.lora {
            lora.validate()?;
            p = p.with_lora(lora.clone(), streams.get("lora_init"));
        }
        let encoder = Encoder::load(&p, cfg)?;
        let mut rng = streams.get("head_init");
        let head = Head::load(
            &p,
            opts.num_labels,
            cfg.hidden_size,
            cfg.initializer_range,
            cfg.hidden_dropout_prob,
            &mut rng,
        )?;
        Ok((
            Self {
                encoder,
                head,
                pooling: opts.pooling,
            },
            p.finish(),
        ))
    }

    /// Builds the model from a model directory: its checkpoint (loaded onto `device`) and
    /// config, as [`SequenceClassifier::load`].
    pub fn build(
        files: &ModelFiles,
        opts: &ModelOptions,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        Self::load(&files.checkpoint(device)?, &files.config, opts)
    }

    /// φ(x). Shapes: inputs `[b, l]` → `[b, h]`.
    pub fn features(&self, inputs: &Inputs, mode: &mut Mode) -> Result<Tensor> {
        match self.pooling {
            Pooling::First => self.encoder.forward_first(inputs, mode),
            Pooling::Mean => {
                let hidden = self.encoder.forward(inputs, mode)?;
                self.pooling.apply(&hidden, inputs)
            }
        }
    }

    /// Logits. Shapes: inputs `[b, l]` → `[b, C]`.
    pub fn forward(&self, inputs: &Inputs, mode: &mut Mode) -> Result<Tensor> {
        let feats = self.features(inputs, mode)?;
        self.head.forward(&feats, mode)
    }
}

/// A model directory on disk: config, checkpoint path, tokenizer path.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub config: EncoderConfig,
    pub weights: std::path::PathBuf,
    pub tokenizer: std::path::PathBuf,
}

impl ModelFiles {
    /// Reads `config.json` of `dir` and locates `model.safetensors` (else `pytorch_model.bin`)
    /// and `tokenizer.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let config = EncoderConfig::load(&dir.join("config.json"))?;
        let weights = ["model.safetensors", "pytorch_model.bin"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists())
            .ok_or_else(|| Error::NoWeights {
                dir: dir.to_path_buf(),
            })?;
        let tokenizer = dir.join("tokenizer.json");
        if !tokenizer.exists() {
            return Err(Error::io(
                &tokenizer,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no tokenizer.json"),
            ));
        }
        Ok(Self {
            config,
            weights,
            tokenizer,
        })
    }

    /// Loads the checkpoint onto `device`.
    pub fn checkpoint(&self, device: &Device) -> Result<Checkpoint> {
        Checkpoint::load(&self.weights, self.config.arch(), device)
    }
}
