//! Progress of the training stages: the per-epoch record (`history.jsonl`) and the callbacks
//! through which callers see it; the library never prints.

use serde::{Deserialize, Serialize};

use crate::calibration::metrics::Metrics;

/// One epoch of the history (`history.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Mean global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate after the epoch's last step.
    pub lr: f64,
    /// ‖V‖_F at the end of the epoch.
    pub classifier_norm: f64,
    pub validation: Metrics,
    /// Wall time of the epoch (training and evaluation), seconds.
    pub seconds: f64,
    /// Training examples per second.
    pub examples_per_s: f64,
}

/// One line of `log_history.jsonl`, with transformers' `Trainer` key names
/// (`trainer_state.json`'s `log_history`): a training entry every `logging_steps` optimiser
/// steps (`loss` averaged over the steps since the last one in the same epoch, so that a resumed
/// run logs what an uninterrupted one does; `grad_norm` of the logged step
/// before clipping, `learning_rate` for the next step, as Trainer logs it after the scheduler
/// steps), and an evaluation entry after every epoch (`eval_*`, on the validation split).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Fractional epoch: completed epochs plus the share of the current one.
    pub epoch: f64,
    /// Optimiser steps so far.
    pub step: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// Validation cross-entropy (nats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_accuracy: Option<f64>,
    /// Macro F1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_f1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_mcc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_ece: Option<f64>,
}

impl LogEntry {
    /// The evaluation entry of validation metrics `m` at (`epoch`, `step`).
    pub fn eval(epoch: f64, step: usize, m: &Metrics) -> Self {
        Self {
            epoch,
            step,
            loss: None,
            grad_norm: None,
            learning_rate: None,
            eval_loss: Some(m.nll),
            eval_accuracy: Some(m.accuracy),
            eval_f1: Some(m.f1_macro),
            eval_mcc: Some(m.mcc),
            eval_ece: Some(m.ece),
        }
    }
}

/// Progress callbacks; the library never prints. Every method has a no-op default.
pub trait Observer {
    /// A stage begins or a notable event happens (one line of text).
    fn stage(&mut self, _message: &str) {}
    /// An epoch begins.
    fn start_epoch(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    /// A training step finished.
    fn step(&mut self, _step: usize, _loss: f64, _examples: usize) {}
    /// An epoch finished (training and validation).
    fn end_epoch(&mut self, _record: &EpochRecord) {}
}

/// An observer that ignores everything.
pub struct SilentObserver;
impl Observer for SilentObserver {}
