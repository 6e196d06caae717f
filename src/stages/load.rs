//! Rebuilding a trained model from its run directory (for `eval`, `predict`, the analyses), and
//! evaluating it on any labelled examples.

use std::path::{Path, PathBuf};

use crate::calibration::metrics::Metrics;
use crate::data::batch::TextTokenizer;
use crate::error::{Error, Result};
use crate::hub::models::{self, FetchOptions, ModelSource};
use crate::methods::config::{Method, RunConfig};
use crate::methods::evaluate::evaluate;
use crate::model::{Checkpoint, ModelFiles, SequenceClassifier, Trainable};
use crate::rundir::{self, read_config, read_metrics, read_tensors, RunMetrics};

/// A finished run, loaded.
pub struct TrainedRun {
    pub dir: PathBuf,
    pub config: RunConfig,
    pub metrics: RunMetrics,
    pub files: ModelFiles,
    pub model: SequenceClassifier,
    pub tokenizer: TextTokenizer,
}

/// Loads the trained model of a finished run: the base checkpoint with the run's weights over
/// it (the head for LP, the full model for FT, the adapter and head for LoRA).
pub fn load_run(dir: &Path) -> Result<TrainedRun> {
    let config = read_config(dir)?;
    let metrics = read_metrics(dir)?;
    let resolved = models::resolve(&ModelSource::parse(&config.model), &FetchOptions::default())?;
    let files = ModelFiles::open(&resolved.dir)?;
    let arch = files.config.arch();
    let mut ckpt = Checkpoint::load(&files.weights, arch, &crate::device::current())?;
    match config.method {
        Method::Lp => ckpt.overlay(read_tensors(&dir.join(rundir::HEAD))?, arch)?,
        Method::Ft | Method::LpFt => ckpt.overlay(
            read_tensors(&dir.join(rundir::MODEL_DIR).join("model.safetensors"))?,
            arch,
        )?,
        Method::Lora | Method::LpLora => ckpt.overlay(
            read_tensors(
                &dir.join(rundir::ADAPTER_DIR)
                    .join("adapter_model.safetensors"),
            )?,
            arch,
        )?,
    }
    let opts = config.model_options(metrics.labels.len(), Trainable::None);
    let (model, report) = SequenceClassifier::load(&ckpt, &files.config, &opts)?;
    if let Some(name) = report.created.first() {
        return Err(Error::MissingTensor {
            path: dir.to_path_buf(),
            name: name.clone(),
        });
    }
    let tokenizer = TextTokenizer::for_model(&files, config.tokenize)?;
    Ok(TrainedRun {
        dir: dir.to_path_buf(),
        config,
        metrics,
        files,
        model,
        tokenizer,
    })
}

/// Logits and metrics of a loaded run on labelled `examples` (its own split, or another data
/// set with the same labels).
///
/// # Errors
/// [`crate::Error::InvalidArgument`] naming the example without a label (`what` names the data);
/// tokenizer and model errors.
pub fn evaluate_run_on(
    trained: &TrainedRun,
    examples: &[crate::data::Example],
    what: &str,
) -> Result<(Vec<f64>, Vec<usize>, Metrics)> {
    let labels: Vec<usize> = examples
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.label.ok_or_else(|| crate::Error::InvalidArgument {
                field: what.to_string(),
                reason: format!("example {} has no label", i + 1),
            })
        })
        .collect::<Result<_>>()?;
    let enc = trained.tokenizer.encode_examples(examples)?;
    let (z, m) = evaluate(
        &trained.model,
        &trained.tokenizer,
        &enc,
        &labels,
        trained.config.train.eval_batch_size,
    )?;
    Ok((z, labels, m))
}
