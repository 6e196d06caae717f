//! `EncoderConfig`: the fields of a Hugging Face `config.json` that the encoders need.
//!
//! A config we read, so field names are the file's and unknown keys are ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Buckets of MPNet's relative positions (REF: transformers' `MPNetEncoder.compute_position_bias`
/// always buckets with 32, whatever the config says).
pub(crate) const RELATIVE_BUCKETS: usize = 32;
/// Relative distances beyond this share MPNet's last bucket of each direction.
pub const RELATIVE_MAX_DISTANCE: usize = 128;

/// The relative-position bucket of key position j seen from query position i (`relative` =
/// j − i), as transformers' `MPNetEncoder.relative_position_bucket`: half the buckets per
/// direction (keys after the query in the upper half), exact up to 8 apart, then logarithmic up
/// to [`RELATIVE_MAX_DISTANCE`], then the last bucket. Computed in f32 as torch does, then
/// truncated.
pub fn relative_bucket(relative: i64) -> usize {
    let half = RELATIVE_BUCKETS / 2;
    let n = -relative;
    let base = if n < 0 { half } else { 0 };
    let n = n.unsigned_abs() as usize;
    let exact = half / 2;
    if n < exact {
        return base + n;
    }
    // torch divides the f32 logarithm by Python's f64 `math.log`, cast to f32.
    let ratio = (RELATIVE_MAX_DISTANCE as f64 / exact as f64).ln() as f32;
    let large = exact + ((n as f32 / exact as f32).ln() / ratio * (half - exact) as f32) as usize;
    base + large.min(half - 1)
}

/// Encoder architecture, selected by `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// BERT: positions 0..L, token types.
    Bert,
    /// RoBERTa: padding-aware positions starting at `pad_token_id + 1`.
    Roberta,
    /// MPNet: RoBERTa's positions, no token types, and a relative-position attention bias
    /// shared by every layer.
    Mpnet,
}

impl Arch {
    /// The key prefix of this architecture in `*ForSequenceClassification` checkpoints.
    pub fn prefix(self) -> &'static str {
        match self {
            Arch::Bert => "bert",
            Arch::Roberta => "roberta",
            Arch::Mpnet => "mpnet",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.prefix())
    }
}

fn default_dropout() -> f64 {
    0.1
}
fn default_act() -> String {
    "gelu".to_string()
}
fn default_type_vocab() -> usize {
    2
}
fn default_position_type() -> String {
    "absolute".to_string()
}
fn default_init_range() -> f64 {
    0.02
}
fn default_buckets() -> usize {
    32
}

/// A BERT-family encoder configuration (Hugging Face `config.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// `bert` or `roberta` (also `xlm-roberta`, `camembert`: RoBERTa layout).
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon (BERT 1e-12, RoBERTa 1e-5).
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    /// Standard deviation of the head initialisation (`initializer_range`, 0.02).
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// MPNet: rows of the relative attention bias table (32).
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
}

/// The FFN activations of BERT-family configs (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: the exact (erf) form.
    Gelu,
    /// `gelu_new`: the tanh approximation.
    GeluNew,
    /// `relu`.
    Relu,
}

impl Activation {
    /// The activation a `hidden_act` name means, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Activation::Gelu),
            "gelu_new" => Some(Activation::GeluNew),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }
}

impl EncoderConfig {
    /// Reads and validates `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: EncoderConfig = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            source: e,
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The architecture named by `model_type`.
    pub fn arch(&self) -> Arch {
        match self.model_type.as_str() {
            "roberta" | "xlm-roberta" | "camembert" => Arch::Roberta,
            "mpnet" => Arch::Mpnet,
            _ => Arch::Bert,
        }
    }

    /// The FFN activation named by `hidden_act` (validated when the config is loaded).
    pub fn activation(&self) -> Activation {
        Activation::from_name(&self.hidden_act).unwrap_or(Activation::Gelu)
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, reason: String| Error::BadConfig {
            path: PathBuf::from(path),
            field: field.to_string(),
            reason,
        };
        match self.model_type.as_str() {
            "bert" | "roberta" | "xlm-roberta" | "camembert" | "mpnet" => {}
            other => {
                return Err(Error::UnsupportedArch {
                    path: path.to_path_buf(),
                    model_type: other.to_string(),
                })
            }
        }
        for (field, v) in [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return Err(bad(field, "must be at least 1".into()));
            }
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(bad(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        if Activation::from_name(&self.hidden_act).is_none() {
            return Err(bad(
                "hidden_act",
                format!(
                    "`{}` is not supported (gelu, gelu_new, relu)",
                    self.hidden_act
                ),
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(bad(
                "position_embedding_type",
                format!(
                    "`{}` is not supported (absolute)",
                    self.position_embedding_type
                ),
            ));
        }
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(bad(field, format!("{p} is not in [0, 1)")));
            }
        }
        if self.arch() == Arch::Mpnet && self.relative_attention_num_buckets < RELATIVE_BUCKETS {
            return Err(bad(
                "relative_attention_num_buckets",
                format!(
                    "{} is fewer than the {RELATIVE_BUCKETS} buckets MPNet's attention bias uses",
                    self.relative_attention_num_buckets
                ),
            ));
        }
        if matches!(self.arch(), Arch::Roberta | Arch::Mpnet)
            && self.max_position_embeddings <= self.pad_token_id as usize + 1
        {
            return Err(bad(
                "max_position_embeddings",
                "too small for RoBERTa's position offset".to_string(),
            ));
        }
        Ok(())
    }

    /// The longest input (in tokens, special tokens included) the position table allows.
    pub fn max_input_len(&self) -> usize {
        match self.arch() {
            Arch::Bert => self.max_position_embeddings,
            Arch::Roberta | Arch::Mpnet => {
                self.max_position_embeddings - self.pad_token_id as usize - 1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, json: &str) -> PathBuf {
        let p = dir.join("config.json");
        std::fs::write(&p, json).unwrap();
        p
    }

    #[test]
    fn rejects_unknown_arch_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            r#"{"model_type":"gpt2","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
               "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":8,
               "layer_norm_eps":1e-5}"#,
        );
        let err = EncoderConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("gpt2"), "{err}");
    }

    #[test]
    fn roberta_max_len_accounts_for_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            r#"{"model_type":"roberta","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
               "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":514,
               "layer_norm_eps":1e-5,"pad_token_id":1,"extra_field":[1,2]}"#,
        );
        let cfg = EncoderConfig::load(&p).unwrap();
        assert_eq!(cfg.arch(), Arch::Roberta);
        assert_eq!(cfg.max_input_len(), 512);
    }
}
