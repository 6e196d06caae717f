//! Tokenisation and batching: `tokenizers` with our own truncation and padding.
//!
//! REF: the reference truncates `longest_first` to `max_seq_length` = 128 and pads every batch
//! to 128. lpft truncates the same way but pads dynamically to the longest sequence in the batch
//! by default (identical outputs: padded positions are masked), with fixed padding as an option.
//! Truncation and padding baked into a `tokenizer.json` (MiniLM's has 128/128) are ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};
use crate::model::Inputs;

/// How batches are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// To the longest sequence in the batch.
    #[default]
    #[value(alias = "longest")]
    Dynamic,
    /// To `max_len` always (the reference's `pad_to_max_length`).
    #[value(alias = "max_length")]
    Fixed,
}

impl std::str::FromStr for Padding {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dynamic" | "longest" => Ok(Padding::Dynamic),
            "fixed" | "max_length" => Ok(Padding::Fixed),
            other => Err(Error::InvalidArgument {
                field: "padding".into(),
                reason: format!("`{other}` is not one of dynamic, fixed"),
            }),
        }
    }
}

/// Tokeniser settings (a config we own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeConfig {
    /// Maximum tokens per example, special tokens included (`max_seq_length`, 128).
    pub max_len: usize,
    pub padding: Padding,
}

impl Default for TokenizeConfig {
    fn default() -> Self {
        Self {
            max_len: 128,
            padding: Padding::Dynamic,
        }
    }
}

/// One tokenised example, unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

/// A `tokenizer.json` with lpft's truncation and padding.
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    pad_id: u32,
    cfg: TokenizeConfig,
}

impl TextTokenizer {
    /// Loads `path`; `pad_id` is the model's `pad_token_id` (used for padding and RoBERTa
    /// positions).
    pub fn load(path: &Path, pad_id: u32, cfg: TokenizeConfig) -> Result<Self> {
        let err = |message: String| Error::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        if cfg.max_len < 4 {
            return Err(Error::InvalidArgument {
                field: "max_len".into(),
                reason: format!("{} is too small (at least 4)", cfg.max_len),
            });
        }
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no tokenizer.json"),
            ));
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: cfg.max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            pad_id,
            cfg,
        })
    }

    /// Tokenises examples (their [`super::Example::texts`]), unpadded, in order.
    pub fn encode_examples(&self, examples: &[super::Example]) -> Result<Vec<Encoded>> {
        let texts: Vec<(&str, Option<&str>)> = examples.iter().map(super::Example::texts).collect();
        self.encode(&texts)
    }

    /// The tokenizer of a model directory, with `cfg`'s maximum length clamped to what the
    /// model's position table allows and the model's pad id.
    pub fn for_model(files: &crate::model::ModelFiles, mut cfg: TokenizeConfig) -> Result<Self> {
        cfg.max_len = cfg.max_len.min(files.config.max_input_len());
        Self::load(&files.tokenizer, files.config.pad_token_id, cfg)
    }

    /// The settings in force.
    pub fn config(&self) -> TokenizeConfig {
        self.cfg
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokenises single texts (`b = None`) or pairs, with special tokens, truncated.
    pub fn encode(&self, texts: &[(&str, Option<&str>)]) -> Result<Vec<Encoded>> {
        use tokenizers::EncodeInput;
        let inputs: Vec<EncodeInput> = texts
            .iter()
            .map(|&(a, b)| match b {
                Some(b) => EncodeInput::Dual(a.into(), b.into()),
                None => EncodeInput::Single(a.into()),
            })
            .collect();
        let encs = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| Error::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(encs
            .into_iter()
            .map(|e| Encoded {
                ids: e.get_ids().to_vec(),
                type_ids: e.get_type_ids().to_vec(),
            })
            .collect())
    }

    /// Pads `rows` into one batch (right padding with the pad id, mask 0, type 0).
    pub fn batch(&self, rows: &[&Encoded]) -> Inputs {
        let longest = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        let seq_len = match self.cfg.padding {
            Padding::Dynamic => longest,
            Padding::Fixed => self.cfg.max_len.max(longest),
        };
        let n = rows.len() * seq_len;
        let mut inputs = Inputs {
            input_ids: Vec::with_capacity(n),
            token_type_ids: Vec::with_capacity(n),
            attention_mask: Vec::with_capacity(n),
            batch: rows.len(),
            seq_len,
        };
        for r in rows {
            let pad = seq_len - r.ids.len();
            inputs.input_ids.extend_from_slice(&r.ids);
            inputs
                .input_ids
                .extend(std::iter::repeat_n(self.pad_id, pad));
            inputs.token_type_ids.extend_from_slice(&r.type_ids);
            inputs.token_type_ids.extend(std::iter::repeat_n(0, pad));
            inputs
                .attention_mask
                .extend(std::iter::repeat_n(1, r.ids.len()));
            inputs.attention_mask.extend(std::iter::repeat_n(0, pad));
        }
        inputs
    }
}

/// Batches of example indices for inference, longest first: dynamic padding then adds few pad
/// tokens. Each batch lists its indices, so results can be scattered back to input order.
pub(crate) fn length_bucketed(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // Stable sort: ties keep their input order, so the batching is deterministic.
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}
