//! # lpft — linear probing then fine-tuning, and why it works
//!
//! A toolkit for fine-tuning pretrained Transformer text encoders the way Tomihari & Sato
//! ("Understanding Linear Probing then Fine-tuning Language Models from NTK Perspective",
//! NeurIPS 2024, arXiv 2405.16747) describe, and for analysing the result.
//!
//! ```
//! use candle_core::Device;
//! use lpft::data::batch::{TextTokenizer, TokenizeConfig};
//! use lpft::model::{Mode, ModelFiles, ModelOptions, Pooling, SequenceClassifier, Trainable};
//!
//! # fn main() -> lpft::Result<()> {
//! // A Hugging Face model directory (here the tiny test fixture; `lpft fetch-model minilm`
//! // prints the default model's).
//! let files = ModelFiles::open(std::path::Path::new("tests/fixtures/tiny-bert"))?;
//! let opts = ModelOptions {
//!     num_labels: 3,
//!     pooling: Pooling::First, // the paper's head: a linear map on the first token's state
//!     trainable: Trainable::None,
//!     model_seed: 1001,
//!     lora: None,
//! };
//! let ckpt = files.checkpoint(&Device::Cpu)?;
//! let (model, _) = SequenceClassifier::load(&ckpt, &files.config, &opts)?;
//! let pad = files.config.pad_token_id;
//! let tok = TextTokenizer::load(&files.tokenizer, pad, TokenizeConfig::default())?;
//! let encoded = tok.encode(&[("A man is playing a guitar.", Some("Someone plays music."))])?;
//! let logits = model.forward(&tok.batch(&[&encoded[0]]), &mut Mode::Eval)?;
//! assert_eq!(logits.dims(), &[1, 3]);
//! # Ok(())
//! # }
//! ```
//!
//! Whole runs (LP, FT, LP-FT, LoRA, LP-LoRA into a run directory) go through
//! [`stages::train::run`]; `examples/` has short programs: fine-tuning with LP-FT on your own
//! CSV files, the eNTK of a few sentences, and temperature scaling of a run. The pipeline:
//!
//! 1. [`hub::models`] resolves a model (built-in `minilm`, a local directory, a hub id) to files;
//!    [`model`] loads BERT, RoBERTa and MPNet encoders from Hugging Face checkpoints and adds
//!    the paper's head.
//! 2. [`data`] reads tasks in their original formats and applies the paper's split protocol;
//!    [`data::batch`] tokenises and pads.
//! 3. [`probe`] extracts frozen first-token features φ(x) in eval mode.
//!
//! Every random number comes from [`rng::Streams`], so a seed fixes a run.

pub mod analysis;
pub mod calibration;
pub mod data;
pub mod device;
pub mod error;
pub mod experiment;
pub mod fsutil;
pub mod hub;
pub mod linalg;
pub mod methods;
pub mod model;
pub mod ntk;
pub mod optim;
pub mod probe;
pub mod report;
pub mod rng;
pub mod rundir;
pub(crate) mod simd;
pub mod stages;

pub use error::{Error, Result};
