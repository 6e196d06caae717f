//! Rebuilding a trained model from its run directory (for `eval`, `predict`, the analyses).

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::data::batch::TextTokenizer;
use crate::error::{Error, Result};
use crate::methods::config::{Method, RunConfig};
use crate::methods::run::{read_metrics, RunMetrics};
use crate::model::source::{self, FetchOptions, ModelSource};
use crate::model::{Checkpoint, ModelFiles, ModelOptions, SequenceClassifier, Trainable};

/// A finished run, loaded.
pub struct TrainedRun {
    pub dir: PathBuf,
    pub config: RunConfig,
    pub metrics: RunMetrics,
    pub files: ModelFiles,
    pub model: SequenceClassifier,
    pub tokenizer: TextTokenizer,
}

/// Reads a run's `config.json`.
pub fn read_config(dir: &Path) -> Result<RunConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json { path, source: e })
}

/// Every tensor of a safetensors file in a run directory (an error naming it when missing).
pub fn read_tensors(path: &Path) -> Result<Vec<(String, candle_core::Tensor)>> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "missing from the run directory",
            ),
        ));
    }
    Ok(candle_core::safetensors::load(path, &Device::Cpu)?
        .into_iter()
        .collect())
}

/// Loads the trained model of a finished run: the base checkpoint with the run's weights over
/// it (the head for LP, the full model for FT, the adapter and head for LoRA).
pub fn load_run(dir: &Path) -> Result<TrainedRun> {
    let config = read_config(dir)?;
    let metrics = read_metrics(dir)?;
    let resolved = source::resolve(&ModelSource::parse(&config.model), &FetchOptions::default())?;
    let files = ModelFiles::open(&resolved.dir)?;
    let arch = files.config.arch();
    let mut ckpt = Checkpoint::load(&files.weights, arch, &Device::Cpu)?;
    match config.method {
        Method::Lp => ckpt.overlay(read_tensors(&dir.join("head.safetensors"))?, arch)?,
        Method::Ft | Method::LpFt => ckpt.overlay(
            read_tensors(&dir.join("model").join("model.safetensors"))?,
            arch,
        )?,
        Method::Lora | Method::LpLora => ckpt.overlay(
            read_tensors(&dir.join("adapter").join("adapter_model.safetensors"))?,
            arch,
        )?,
    }
    let opts = ModelOptions {
        num_labels: metrics.labels.len(),
        pooling: config.pooling,
        trainable: Trainable::None,
        model_seed: config.model_seed,
        lora: config.method.uses_lora().then(|| config.lora.clone()),
    };
    let (model, report) = SequenceClassifier::load(&ckpt, &files.config, &opts)?;
    if let Some(name) = report.created.first() {
        return Err(Error::MissingTensor {
            path: dir.to_path_buf(),
            name: name.clone(),
        });
    }
    let mut tok_cfg = config.tokenize;
    tok_cfg.max_len = tok_cfg.max_len.min(files.config.max_input_len());
    let tokenizer = TextTokenizer::load(&files.tokenizer, files.config.pad_token_id, tok_cfg)?;
    Ok(TrainedRun {
        dir: dir.to_path_buf(),
        config,
        metrics,
        files,
        model,
        tokenizer,
    })
}
