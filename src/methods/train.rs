//! The gradient stage (docs/method.md §2.2): AdamW, linear decay, global-norm clipping, dropout,
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
use crate::methods::config::TrainConfig;
use crate::methods::evaluate;
use crate::methods::progress::{EpochRecord, LogEntry, Observer};
use crate::model::backprop::Backprop;
use crate::model::{ops, Mode, Precision, SequenceClassifier};
use crate::optim::schedule::{clip_factor, global_grad_norm, LinearSchedule};
use crate::optim::{AdamW, Moments};
use crate::rng::Streams;

/// Progress of the gradient stage after a completed epoch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainState {
    /// Completed epochs.
    pub epochs_done: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// Best validation score so far and its (1-based) epoch.
    pub best_score: Option<f64>,
    pub best_epoch: Option<usize>,
    /// Per-epoch records so far.
    pub history: Vec<EpochRecord>,
    /// The epoch after which early stopping ended the stage, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<usize>,
    /// `log_history.jsonl`'s entries so far (with `logging_steps`), completed epochs only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<LogEntry>,
}

impl TrainState {
    /// Whether `patience` epochs in a row have passed without a better validation score.
    fn out_of_patience(&self, patience: Option<usize>) -> bool {
        match (patience, self.best_epoch) {
            (Some(p), Some(best)) => self.epochs_done >= best + p,
            _ => false,
        }
    }
}

/// Where the gradient stage keeps its resumable state and its best parameters: the run
/// directory's `checkpoint/` ([`crate::rundir::CheckpointDir`]), so that this module does no
/// file I/O of its own.
pub trait Checkpoints {
    /// Whether a resumable state exists.
    fn has_state(&self) -> bool;
    /// The state after the last completed epoch: progress, parameter values, moments.
    #[allow(clippy::type_complexity)]
    fn load_state(
        &self,
        device: &candle_core::Device,
    ) -> Result<(
        TrainState,
        BTreeMap<String, Tensor>,
        BTreeMap<String, Moments>,
    )>;
    /// Saves the state after an epoch, as one unit.
    fn save_state(
        &self,
        vars: &BTreeMap<String, Var>,
        moments: &BTreeMap<String, Moments>,
        state: &TrainState,
    ) -> Result<()>;
    /// Saves the parameters of the best epoch so far.
    fn save_best(&self, vars: &BTreeMap<String, Var>, epoch: usize) -> Result<()>;
    /// The parameters saved for `epoch` by [`Checkpoints::save_best`].
    fn load_best(
        &self,
        device: &candle_core::Device,
        epoch: usize,
    ) -> Result<BTreeMap<String, Tensor>>;
    /// Called after each epoch's state is saved, with the optimiser steps so far and the best
    /// epoch: where a run keeps per-epoch snapshots (`save_total_limit`), it writes and prunes
    /// them here. Nothing by default.
    fn after_epoch(&self, _epoch: usize, _step: usize, _best_epoch: Option<usize>) -> Result<()> {
        Ok(())
    }
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
    let onehot = Tensor::from_vec(onehot, (b, c), logits.device())?.to_dtype(logits.dtype())?;
    let logp = ops::log_softmax_last(logits)?;
    Ok((logp.mul(&onehot)?.sum_all()? * (-1.0 / b as f64))?)
}

/// What one optimiser step saw.
#[derive(Debug, Clone, Copy)]
pub struct StepOutcome {
    /// The batch's mean cross-entropy before the update.
    pub loss: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
}

/// One optimiser step on a batch: forward in `mode` (dropout in training), cross-entropy,
/// backward, global-norm clipping to `max_grad_norm` (0: none), AdamW at `lr`. The step of the
/// gradient stage, and of `lpft bench`'s step workloads.
///
/// # Errors
/// [`Error::NonFiniteLoss`] (with `epoch` and `step` for the message) when the loss is not
/// finite, before any update; tensor errors.
#[allow(clippy::too_many_arguments)]
pub fn step(
    model: &SequenceClassifier,
    opt: &mut AdamW,
    backward: &mut Backward,
    inputs: &crate::model::Inputs,
    labels: &[usize],
    mode: &mut Mode,
    lr: f64,
    max_grad_norm: f64,
    (epoch, step): (usize, usize),
) -> Result<StepOutcome> {
    let non_finite = |loss| Error::NonFiniteLoss { epoch, step, loss };
    match backward {
        Backward::Own(engine) => {
            let loss = engine.loss_and_grads(model, inputs, labels, mode)?;
            if !loss.is_finite() {
                return Err(non_finite(loss));
            }
            let vars = opt.vars();
            let norm = engine.grad_norm(&vars);
            let engine = &*engine;
            opt.step_with(|v| engine.grad(v), lr, clip_factor(norm, max_grad_norm))?;
            Ok(StepOutcome {
                loss,
                grad_norm: norm,
            })
        }
        Backward::Autograd => {
            let logits = model.forward(inputs, mode)?;
            let loss = cross_entropy(&logits, labels)?;
            let loss_value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !loss_value.is_finite() {
                return Err(non_finite(loss_value));
            }
            let grads = loss.backward()?;
            let norm = global_grad_norm(&opt.vars(), &grads)?;
            opt.step(&grads, lr, clip_factor(norm, max_grad_norm))?;
            Ok(StepOutcome {
                loss: loss_value,
                grad_norm: norm,
            })
        }
    }
}

/// One optimiser step over several micro-batches (gradient accumulation, as transformers'
/// `Trainer`): each micro-batch's gradient of its mean cross-entropy is divided by `k` and
/// summed on the host, then clipped and applied as in [`step`]. Returns the step (loss: the
/// mean of the micro-batches') and each micro-batch's loss. The variables must be f32.
///
/// # Errors
/// As [`step`].
#[allow(clippy::too_many_arguments)]
pub fn accumulated_step(
    model: &SequenceClassifier,
    opt: &mut AdamW,
    backward: &mut Backward,
    batches: &[(crate::model::Inputs, Vec<usize>)],
    k: usize,
    mode: &mut Mode,
    lr: f64,
    max_grad_norm: f64,
    (epoch, first_step): (usize, usize),
) -> Result<(StepOutcome, Vec<f64>)> {
    let vars: Vec<Var> = opt.vars().into_iter().cloned().collect();
    let mut acc: Vec<Vec<f32>> = vars.iter().map(|v| vec![0f32; v.elem_count()]).collect();
    let scale = 1.0 / k as f32;
    let add = |a: &mut [f32], g: &[f32]| a.iter_mut().zip(g).for_each(|(a, g)| *a += g * scale);
    let mut losses = Vec::with_capacity(batches.len());
    for (j, (inputs, labels)) in batches.iter().enumerate() {
        let non_finite = |loss| Error::NonFiniteLoss {
            epoch,
            step: first_step + j,
            loss,
        };
        let loss = match backward {
            Backward::Own(engine) => {
                let loss = engine.loss_and_grads(model, inputs, labels, mode)?;
                if !loss.is_finite() {
                    return Err(non_finite(loss));
                }
                for (a, v) in acc.iter_mut().zip(&vars) {
                    if let Some(g) = engine.grad(v) {
                        add(a, g);
                    }
                }
                loss
            }
            Backward::Autograd => {
                let logits = model.forward(inputs, mode)?;
                let loss = cross_entropy(&logits, labels)?;
                let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                if !value.is_finite() {
                    return Err(non_finite(value));
                }
                let grads = loss.backward()?;
                for (a, v) in acc.iter_mut().zip(&vars) {
                    if let Some(g) = grads.get(v.as_tensor()) {
                        add(a, &g.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?);
                    }
                }
                value
            }
        };
        losses.push(loss);
    }
    let norm = acc
        .iter()
        .flatten()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    let index: std::collections::HashMap<_, _> = vars
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_tensor().id(), i))
        .collect();
    opt.step_with(
        |v| index.get(&v.as_tensor().id()).map(|&i| acc[i].as_slice()),
        lr,
        clip_factor(norm, max_grad_norm),
    )?;
    let loss = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
    Ok((
        StepOutcome {
            loss,
            grad_norm: norm,
        },
        losses,
    ))
}

/// How [`step`] computes gradients: the training path's own backward where it applies
/// ([`Backprop::supports`]), else candle's autograd over the composed forward.
pub enum Backward {
    Own(Box<Backprop>),
    Autograd,
}

impl Backward {
    /// The own backward for `model` and the optimiser's variables where it applies, else
    /// autograd; its GEMMs at `precision`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bf16 where the own backward does not apply (mean pooling,
    /// a device other than the CPU): autograd's path has no bf16 mode.
    pub fn for_model(
        model: &SequenceClassifier,
        opt: &AdamW,
        precision: Precision,
    ) -> Result<Self> {
        if Backprop::supports(model) {
            let own = Backprop::new(model, &opt.vars())?.with_precision(precision);
            Ok(Backward::Own(Box::new(own)))
        } else if precision != Precision::Fp32 {
            Err(Error::InvalidArgument {
                field: "precision".into(),
                reason: "bf16 runs on the training path's own backward, which needs the \
                         first-token head on the CPU (not mean pooling or a GPU); use fp32"
                    .into(),
            })
        } else {
            Ok(Backward::Autograd)
        }
    }
}

/// Runs (or resumes) the gradient stage and leaves the best-validation parameters in `vars`.
pub fn train(
    model: &SequenceClassifier,
    vars: &BTreeMap<String, Var>,
    inputs: &TrainInputs,
    ckpt: &dyn Checkpoints,
    resume: bool,
    observer: &mut dyn Observer,
) -> Result<TrainState> {
    let cfg = inputs.cfg;
    let n = inputs.train.len();
    let k = cfg.gradient_accumulation_steps.max(1);
    // Micro-batches of `batch_size`, and optimiser steps of up to `k` of them.
    let micro_per_epoch = n.div_ceil(cfg.batch_size);
    let steps_per_epoch = micro_per_epoch.div_ceil(k);
    let total_steps = steps_per_epoch * cfg.epochs;
    // As transformers: the schedule spans every epoch even when early stopping may end sooner.
    let schedule = LinearSchedule {
        peak_lr: cfg.lr,
        warmup_steps: cfg.warmup(total_steps),
        total_steps,
    };
    let mut opt = AdamW::new(vars, cfg.adamw);
    let mut backward = Backward::for_model(model, &opt, cfg.precision)?;
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
    for epoch in state.epochs_done + 1..=cfg.epochs {
        if state.out_of_patience(cfg.early_stopping_patience) {
            break;
        }
        let start = std::time::Instant::now();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut streams.get(&format!("data_order/epoch-{epoch}")));
        let mut dropout_rng = streams.get(&format!("dropout/epoch-{epoch}"));
        observer.start_epoch(epoch, cfg.epochs, micro_per_epoch);
        let (mut loss_sum, mut norm_sum, mut lr) = (0.0, 0.0, cfg.lr);
        // Loss since the last step-log entry, and how many steps it sums.
        let (mut log_loss, mut log_steps) = (0.0, 0usize);
        let micro: Vec<&[usize]> = order.chunks(cfg.batch_size).collect();
        for (i, group) in micro.chunks(k).enumerate() {
            let batches: Vec<(crate::model::Inputs, Vec<usize>)> = group
                .iter()
                .map(|idx| {
                    let rows: Vec<&Encoded> = idx.iter().map(|&j| &inputs.train[j]).collect();
                    let labels = idx.iter().map(|&j| inputs.train_labels[j]).collect();
                    (inputs.tokenizer.batch(&rows), labels)
                })
                .collect();
            lr = schedule.lr(opt.step_count());
            let mut mode = Mode::Train {
                rng: &mut dropout_rng,
            };
            let first = i * k + 1;
            let (out, micro_losses) = match batches.as_slice() {
                // One micro-batch per step (the paper's): the plain step.
                [(batch, labels)] if k == 1 => {
                    let out = step(
                        model,
                        &mut opt,
                        &mut backward,
                        batch,
                        labels,
                        &mut mode,
                        lr,
                        cfg.max_grad_norm,
                        (epoch, first),
                    )?;
                    (out, vec![out.loss])
                }
                _ => accumulated_step(
                    model,
                    &mut opt,
                    &mut backward,
                    &batches,
                    k,
                    &mut mode,
                    lr,
                    cfg.max_grad_norm,
                    (epoch, first),
                )?,
            };
            for (j, (idx, l)) in group.iter().zip(&micro_losses).enumerate() {
                loss_sum += l;
                observer.step(first + j, *l, idx.len());
            }
            norm_sum += out.grad_norm;
            (log_loss, log_steps) = (log_loss + out.loss, log_steps + 1);
            let done = opt.step_count();
            if cfg.logging_steps.is_some_and(|k| done.is_multiple_of(k)) {
                state.log.push(LogEntry {
                    epoch: (epoch - 1) as f64 + (i + 1) as f64 / steps_per_epoch as f64,
                    step: done,
                    loss: Some(log_loss / log_steps as f64),
                    grad_norm: Some(out.grad_norm),
                    learning_rate: Some(schedule.lr(done)),
                    eval_loss: None,
                    eval_accuracy: None,
                    eval_f1: None,
                    eval_mcc: None,
                    eval_ece: None,
                });
                (log_loss, log_steps) = (0.0, 0);
            }
            // Evaluation inside the epoch (the epoch's end has its own, below).
            let epoch_end = i + 1 == steps_per_epoch;
            if !epoch_end && cfg.eval_steps.is_some_and(|k| done.is_multiple_of(k)) {
                let (_, m) = evaluate::evaluate(
                    model,
                    inputs.tokenizer,
                    inputs.validation,
                    inputs.validation_labels,
                    cfg.eval_batch_size,
                )?;
                observer.stage(&format!(
                    "step {done}: validation loss {:.4}, accuracy {:.4}, mcc {:.4}",
                    m.nll, m.accuracy, m.mcc
                ));
                let at = (epoch - 1) as f64 + (i + 1) as f64 / steps_per_epoch as f64;
                state.log.push(LogEntry::eval(at, done, &m));
            }
        }
        let train_seconds = start.elapsed().as_secs_f64();
        let (_, validation) = evaluate::evaluate(
            model,
            inputs.tokenizer,
            inputs.validation,
            inputs.validation_labels,
            cfg.eval_batch_size,
        )?;
        if cfg.writes_log_history() {
            state
                .log
                .push(LogEntry::eval(epoch as f64, opt.step_count(), &validation));
        }
        let s = score(inputs.metric, &validation);
        // REF: HF keeps the first epoch with the best score (a later tie does not replace it).
        if state.best_score.is_none_or(|b| s > b) {
            state.best_score = Some(s);
            state.best_epoch = Some(epoch);
            ckpt.save_best(vars, epoch)?;
        }
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / micro_per_epoch as f64,
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
        if epoch < cfg.epochs && state.out_of_patience(cfg.early_stopping_patience) {
            state.stopped_early = Some(epoch);
            observer.stage(&format!(
                "early stopping: no better validation score for {} epochs (best: epoch {})",
                epoch - state.best_epoch.unwrap_or(epoch),
                state.best_epoch.unwrap_or(epoch)
            ));
        }
        let (_, moments) = opt.state()?;
        ckpt.save_state(vars, &moments, &state)?;
        ckpt.after_epoch(epoch, state.step, state.best_epoch)?;
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
