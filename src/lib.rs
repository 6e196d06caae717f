//! # lpft — linear probing then fine-tuning, and why it works
//!
//! A toolkit for fine-tuning pretrained Transformer text encoders the way Tomihari & Sato
//! ("Understanding Linear Probing then Fine-tuning Language Models from NTK Perspective",
//! NeurIPS 2024) describe, and for analysing the result. The pipeline:
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
