//! The gradient stage (spec §2.2): AdamW, linear decay, global-norm clipping, dropout,
//! evaluation on the validation split after every epoch, best-validation checkpoint.
//!
//! Randomness: epoch e shuffles with the stream `data_order/epoch-e` and draws dropout from
//! `dropout/epoch-e` of the run's seed, so a run resumed after epoch k replays epochs k+1.. with
//! the same numbers as an uninterrupted run.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor, Var};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::calibration::metrics::Metrics;
use crate::data::batch::{Encoded, TextTokenizer};
use crate::data::TaskMetric;
use crate::error::{Error, Result};
use crate::methods::checkpoint::{CheckpointDir, TrainState};
use crate::methods::config::TrainConfig;
use crate::methods::evaluate;
use crate::methods::optim::AdamW;
use crate::methods::run::Observer;
use crate::methods::schedule::{clip_factor, global_grad_norm, LinearSchedule};
use crate::model::{ops, Mode, SequenceClassifier};
use crate::rng::Streams;

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

/// The data and settings of a gradient stage.
pub struct TrainInputs<'a> {
    pub tokenizer: &'a TextTokenizer,
    pub train: &'a [Encoded],
    pub train_labels: &'a [usize],
    pub validation: &'a [Encoded],
    pub validation_labels: &'a [usize],
    pub cfg: &'a TrainConfig,
    pub seed: u64,
    pub metric: TaskMetric,
}

/// The selection score of validation metrics (accuracy, or MCC for CoLA).
pub fn score(metric: TaskMetric, m: &Metrics) -> f64 {
    match metric {
        TaskMetric::Accuracy => m.accuracy,
        TaskMetric::Mcc => m.mcc,
    }
}

/// Mean cross-entropy of `logits` `[b, C]` against `labels`.
pub fn cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<Tensor> {
    let (b, c) = logits.dims2()?;
    let mut onehot = vec![0f32; b * c];
    for (i, &y) in labels.iter().enumerate() {
        onehot[i * c + y] = 1.0;
    }
    let onehot = Tensor::from_vec(onehot, (b, c), logits.device())?;
    let logp = ops::log_softmax_last(logits)?;
    Ok((logp.mul(&onehot)?.sum_all()? * (-1.0 / b as f64))?)
}

/// Runs (or resumes) the gradient stage and leaves the best-validation parameters in `vars`.
pub fn train(
    model: &SequenceClassifier,
    vars: &BTreeMap<String, Var>,
    inputs: &TrainInputs,
    ckpt: &CheckpointDir,
    resume: bool,
    observer: &mut dyn Observer,
) -> Result<TrainState> {
    let cfg = inputs.cfg;
    let n = inputs.train.len();
    let steps_per_epoch = n.div_ceil(cfg.batch_size);
    let schedule = LinearSchedule {
        peak_lr: cfg.lr,
        warmup_steps: cfg.warmup_steps,
        total_steps: steps_per_epoch * cfg.epochs,
    };
    let mut opt = AdamW::new(vars, cfg.adamw);
    let device = model.encoder.device().clone();
    let mut state = TrainState::default();
    if resume && ckpt.has_state() {
        let (saved, params, moments) = ckpt.load_state(&device)?;
        opt.load_values(&params)?;
        opt.restore(saved.step, moments)?;
        observer.stage(&format!("resuming after epoch {}", saved.epochs_done));
        state = saved;
    }
    let streams = Streams::new(inputs.seed);
    let var_list: Vec<&Var> = vars.values().collect();
    for epoch in state.epochs_done + 1..=cfg.epochs {
        let start = std::time::Instant::now();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut streams.get(&format!("data_order/epoch-{epoch}")));
        let mut dropout_rng = streams.get(&format!("dropout/epoch-{epoch}"));
        observer.start_epoch(epoch, cfg.epochs, steps_per_epoch);
        let (mut loss_sum, mut norm_sum, mut lr) = (0.0, 0.0, cfg.lr);
        for (i, idx) in order.chunks(cfg.batch_size).enumerate() {
            let rows: Vec<&Encoded> = idx.iter().map(|&j| &inputs.train[j]).collect();
            let labels: Vec<usize> = idx.iter().map(|&j| inputs.train_labels[j]).collect();
            let batch = inputs.tokenizer.batch(&rows);
            let logits = model.forward(
                &batch,
                &mut Mode::Train {
                    rng: &mut dropout_rng,
                },
            )?;
            let loss = cross_entropy(&logits, &labels)?;
            let loss_value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !loss_value.is_finite() {
                return Err(Error::NonFiniteLoss {
                    epoch,
                    step: i + 1,
                    loss: loss_value,
                });
            }
            let grads = loss.backward()?;
            let norm = global_grad_norm(&var_list, &grads)?;
            lr = schedule.lr(opt.step_count());
            opt.step(&grads, lr, clip_factor(norm, cfg.max_grad_norm))?;
            loss_sum += loss_value;
            norm_sum += norm;
            observer.step(i + 1, loss_value, idx.len());
        }
        let train_seconds = start.elapsed().as_secs_f64();
        let (_, validation) = evaluate::evaluate(
            model,
            inputs.tokenizer,
            inputs.validation,
            inputs.validation_labels,
            cfg.eval_batch_size,
        )?;
        let s = score(inputs.metric, &validation);
        // REF: HF keeps the first epoch with the best score (a later tie does not replace it).
        if state.best_score.is_none_or(|b| s > b) {
            state.best_score = Some(s);
            state.best_epoch = Some(epoch);
            ckpt.save_best(vars, epoch)?;
        }
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / steps_per_epoch as f64,
            grad_norm: norm_sum / steps_per_epoch as f64,
            lr,
            classifier_norm: model.head.norm()?,
            validation,
            seconds: start.elapsed().as_secs_f64(),
            examples_per_s: n as f64 / train_seconds.max(1e-9),
        };
        state.history.push(record.clone());
        state.epochs_done = epoch;
        state.step = opt.step_count();
        let (_, moments) = opt.state()?;
        ckpt.save_state(vars, &moments, &state)?;
        // After the state is on disk: an observer that stops the process here loses nothing.
        observer.end_epoch(&record);
    }
    let best_epoch = state.best_epoch.ok_or_else(|| Error::Checkpoint {
        path: std::path::PathBuf::from("checkpoint"),
        reason: "no epoch was run".into(),
    })?;
    let best = ckpt.load_best(&device, best_epoch)?;
    opt.load_values(&best)?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cross_entropy_matches_hand_computation() {
        let z = Tensor::new(&[[2.0f32, 0.0, -1.0], [0.0, 0.0, 0.0]], &Device::Cpu).unwrap();
        let l = cross_entropy(&z, &[0, 2])
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let lse0 = (2f32.exp() + 1.0 + (-1f32).exp()).ln();
        let want = ((lse0 - 2.0) + 3f32.ln()) / 2.0;
        assert!((l - want).abs() < 1e-6, "{l} vs {want}");
    }
}
