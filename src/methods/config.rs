//! `RunConfig`: everything that defines a run, saved as the run's `config.json`.
//!
//! Per-method defaults for batch size and learning rate are the paper's Table 6 (docs/method.md §3);
//! every value can be overridden. The resolved config is what gets saved, so a run directory is
//! enough to rerun it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::batch::TokenizeConfig;
use crate::data::FileTask;
use crate::error::{Error, Result};
use crate::model::lora::LoraConfig;
use crate::model::{ModelOptions, Pooling, Precision, Trainable};
use crate::optim::AdamWConfig;
use crate::probe::logreg::SklearnCompat;

/// A fine-tuning method of the paper.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Linear probing: logistic regression on frozen features.
    Lp,
    /// Full fine-tuning from a random head.
    Ft,
    /// LP, then full fine-tuning from the LP head.
    #[value(alias = "lp_ft")]
    LpFt,
    /// LoRA on the chosen modules, head trainable, from a random head.
    Lora,
    /// LP, then LoRA from the LP head.
    #[value(alias = "lp_lora")]
    LpLora,
}

impl Method {
    /// All methods in the paper's table order.
    pub const ALL: [Method; 5] = [
        Method::Lp,
        Method::Ft,
        Method::Lora,
        Method::LpFt,
        Method::LpLora,
    ];

    /// The CLI / directory name (`lp`, `ft`, `lp-ft`, `lora`, `lp-lora`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Lp => "lp",
            Method::Ft => "ft",
            Method::LpFt => "lp-ft",
            Method::Lora => "lora",
            Method::LpLora => "lp-lora",
        }
    }

    /// Whether an LP stage runs first.
    pub fn has_lp(self) -> bool {
        matches!(self, Method::Lp | Method::LpFt | Method::LpLora)
    }

    /// Whether a gradient stage runs.
    pub fn has_gradient_stage(self) -> bool {
        self != Method::Lp
    }

    /// Whether the gradient stage trains LoRA adapters (else all parameters).
    pub fn uses_lora(self) -> bool {
        matches!(self, Method::Lora | Method::LpLora)
    }

    /// The paper's Table 6 batch size and learning rate for `task` (docs/method.md §3); tasks outside
    /// the table get the CB values.
    pub fn table6_defaults(self, task: &str) -> (usize, f64) {
        let col = match task {
            "cb" => 0,
            "rte" | "glue-rte" => 1,
            "boolq" => 2,
            "wic" => 3,
            "wsc" => 4,
            "cola" => 5,
            "sst2" => 6,
            "mrpc" => 7,
            "sst5" | "sst5-3" | "amazon" => 8,
            _ => 0,
        };
        const FT: [(usize, f64); 9] = [
            (16, 5e-5),
            (16, 1e-5),
            (32, 1e-5),
            (32, 1e-5),
            (16, 1e-3),
            (32, 5e-5),
            (32, 1e-5),
            (16, 1e-5),
            (16, 1e-5),
        ];
        const LORA: [(usize, f64); 9] = [
            (16, 1e-3),
            (16, 1e-3),
            (32, 5e-4),
            (16, 1e-3),
            (16, 1e-4),
            (16, 1e-3),
            (32, 5e-4),
            (32, 5e-4),
            (16, 1e-3),
        ];
        const LP_FT: [f64; 9] = [5e-6, 1e-5, 1e-5, 1e-5, 1e-3, 1e-5, 1e-5, 1e-5, 1e-6];
        const LP_LORA: [f64; 9] = [1e-4, 5e-4, 5e-4, 1e-3, 1e-4, 1e-3, 1e-3, 1e-3, 5e-4];
        match self {
            Method::Ft | Method::Lp => FT[col],
            Method::Lora => LORA[col],
            Method::LpFt => (8, LP_FT[col]),
            Method::LpLora => (8, LP_LORA[col]),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == s.to_ascii_lowercase().replace('_', "-"))
            .ok_or_else(|| Error::InvalidArgument {
                field: "method".into(),
                reason: format!("`{s}` is not one of lp, ft, lp-ft, lora, lp-lora"),
            })
    }
}

fn default_cs() -> Vec<f64> {
    // logspace(-4, 4, 10), scikit-learn's default grid.
    (0..10)
        .map(|i| 10f64.powf(-4.0 + 8.0 * i as f64 / 9.0))
        .collect()
}

/// The LP stage (docs/method.md §2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LpConfig {
    /// A fixed inverse regularisation C instead of cross-validation (`--lp-c`).
    pub c: Option<f64>,
    /// The CV grid (scikit-learn's `Cs=10`: logspace(−4, 4, 10)).
    #[serde(default = "default_cs")]
    pub cs: Vec<f64>,
    /// Stratified folds, not shuffled.
    pub folds: usize,
    /// L-BFGS tolerance on the projected gradient.
    pub tol: f64,
    /// L-BFGS iteration budget.
    pub max_iter: usize,
    /// Which scikit-learn's solver to reproduce: `sklearn-1.0` (the reference's pinned
    /// version, default) or `sklearn-1.9` (objective scaled by 1/n, sigmoid for binary).
    #[serde(default)]
    pub compat: SklearnCompat,
}

impl Default for LpConfig {
    fn default() -> Self {
        Self {
            c: None,
            cs: default_cs(),
            folds: 5,
            tol: 1e-4,
            max_iter: 5000,
            compat: SklearnCompat::default(),
        }
    }
}

/// The gradient stage (FT, LoRA, and the second stage of LP-FT / LP-LoRA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate; decays linearly to 0 (the reference trainer's default).
    pub lr: f64,
    /// Linear warm-up steps (0 in the reference).
    pub warmup_steps: usize,
    /// Warm-up as a share of all steps, rounded up (transformers' `warmup_ratio`); used only
    /// when `warmup_steps` is 0, as there. 0 in the reference.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup_ratio: f64,
    /// Stop after this many epochs in a row without a better validation score (transformers'
    /// `EarlyStoppingCallback`); `None` (the paper) runs every epoch. The best epoch's
    /// parameters are kept either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping_patience: Option<usize>,
    /// Log the training loss, gradient norm and learning rate every this many optimiser steps
    /// (and the validation metrics every epoch) to `log_history.jsonl`, with transformers'
    /// key names; `None` writes no such file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging_steps: Option<usize>,
    /// Also evaluate on the validation split every this many optimiser steps inside an epoch
    /// (transformers' `eval_steps`), logged to `log_history.jsonl` as `eval_*` entries. The
    /// best checkpoint and early stopping stay per epoch, as the paper's selection; `None`
    /// evaluates after each epoch only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_steps: Option<usize>,
    /// Keep the parameters of the newest this many epochs as `checkpoint-<step>/` exports in
    /// the run directory (and the best epoch's, which is never removed), as transformers'
    /// `save_total_limit`; `None` (the paper) keeps none beyond the final model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_total_limit: Option<usize>,
    /// Micro-batches of `batch_size` per optimiser step (transformers'
    /// `gradient_accumulation_steps`): each micro-batch's gradient is divided by this and
    /// summed, an epoch's last step takes what is left. 1 in the paper.
    #[serde(default = "one_step", skip_serializing_if = "is_one")]
    pub gradient_accumulation_steps: usize,
    /// Global L2 gradient-norm clip; 1.0 in the reference trainer, which the paper does not
    /// mention. 0 disables clipping.
    pub max_grad_norm: f64,
    pub adamw: AdamWConfig,
    /// Examples per forward pass when evaluating.
    pub eval_batch_size: usize,
    /// The operand precision of the training steps' GEMMs (`--precision`): fp32, as the
    /// paper, or bf16 mixed precision (see [`Precision`]). Evaluation stays fp32.
    #[serde(default, skip_serializing_if = "Precision::is_default")]
    pub precision: Precision,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn one_step() -> usize {
    1
}

fn is_one(x: &usize) -> bool {
    *x == 1
}

impl TrainConfig {
    /// Whether the run writes `log_history.jsonl`: with step logging or step evaluation.
    pub fn writes_log_history(&self) -> bool {
        self.logging_steps.is_some() || self.eval_steps.is_some()
    }

    /// The warm-up steps of a stage of `total_steps`: `warmup_steps`, or else
    /// ⌈`warmup_ratio` · total⌉ (transformers' `TrainingArguments.get_warmup_steps`).
    pub fn warmup(&self, total_steps: usize) -> usize {
        if self.warmup_steps > 0 {
            self.warmup_steps
        } else {
            (self.warmup_ratio * total_steps as f64).ceil() as usize
        }
    }
}

/// One run: task × method × seed and every setting that affects its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Built-in task name (see `lpft data --help`), or the name of a file task.
    pub task: String,
    /// The user's own files instead of a built-in task.
    #[serde(default)]
    pub files: Option<FileTask>,
    pub method: Method,
    /// Model spec: `minilm`, `mpnet`, a directory, or a hub id.
    pub model: String,
    /// Seed of data order, dropout and subsampling.
    pub seed: u64,
    /// Seed of head and LoRA initialisation (the reference sets it to `seed`).
    pub model_seed: u64,
    /// Data directory (None: the default search path).
    pub data_dir: Option<PathBuf>,
    pub max_train_samples: Option<usize>,
    pub tokenize: TokenizeConfig,
    pub pooling: Pooling,
    pub lp: LpConfig,
    pub train: TrainConfig,
    /// LoRA settings (used by LoRA and LP-LoRA).
    pub lora: LoraConfig,
    /// κ of the norm-scaling experiment (docs/method.md §8.2): the head V is multiplied by κ right
    /// before the gradient stage (after random init for FT/LoRA, after LP for LP-FT/LP-LoRA).
    /// INFERRED: V only, b is not scaled. 1 = no scaling.
    #[serde(default = "one")]
    pub head_scale: f64,
}

fn one() -> f64 {
    1.0
}

impl RunConfig {
    /// The paper's settings for `method` on `task` with `seed` (Table 6, 10 epochs, r 8, α 8).
    pub fn paper_defaults(task: &str, method: Method, model: &str, seed: u64) -> Self {
        let (batch_size, lr) = method.table6_defaults(task);
        Self {
            task: task.to_string(),
            files: None,
            method,
            model: model.to_string(),
            seed,
            model_seed: seed,
            data_dir: None,
            max_train_samples: None,
            tokenize: TokenizeConfig::default(),
            pooling: Pooling::First,
            lp: LpConfig::default(),
            train: TrainConfig {
                epochs: 10,
                batch_size,
                lr,
                warmup_steps: 0,
                warmup_ratio: 0.0,
                early_stopping_patience: None,
                logging_steps: None,
                eval_steps: None,
                save_total_limit: None,
                gradient_accumulation_steps: 1,
                max_grad_norm: 1.0,
                adamw: AdamWConfig::default(),
                eval_batch_size: 32,
                precision: Precision::Fp32,
            },
            lora: LoraConfig::default(),
            head_scale: 1.0,
        }
    }

    /// The options to build this run's model with: its pooling, model seed and (for LoRA
    /// methods) adapters, with a `num_labels`-class head and `trainable` parameters.
    pub fn model_options(&self, num_labels: usize, trainable: Trainable) -> ModelOptions {
        ModelOptions {
            num_labels,
            pooling: self.pooling,
            trainable,
            model_seed: self.model_seed,
            lora: self.method.uses_lora().then(|| self.lora.clone()),
        }
    }

    /// Checks every value once; code after this trusts them.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| Error::InvalidArgument {
            field: field.into(),
            reason,
        };
        let t = &self.train;
        if self.method.has_gradient_stage() {
            if t.epochs == 0 {
                return Err(bad("epochs", "must be at least 1".into()));
            }
            if t.batch_size == 0 {
                return Err(bad("batch_size", "must be at least 1".into()));
            }
            if !(t.lr > 0.0 && t.lr.is_finite()) {
                return Err(bad("lr", format!("{} is not a positive number", t.lr)));
            }
            if t.max_grad_norm < 0.0 {
                return Err(bad("max_grad_norm", "must be ≥ 0".into()));
            }
            if !(0.0..=1.0).contains(&t.warmup_ratio) {
                return Err(bad(
                    "warmup_ratio",
                    format!("{} is not in [0, 1]", t.warmup_ratio),
                ));
            }
            if t.gradient_accumulation_steps == 0 {
                return Err(bad(
                    "gradient_accumulation_steps",
                    "must be at least 1".into(),
                ));
            }
            if t.logging_steps == Some(0) {
                return Err(bad("logging_steps", "must be at least 1".into()));
            }
            if t.eval_steps == Some(0) {
                return Err(bad("eval_steps", "must be at least 1".into()));
            }
            if t.save_total_limit == Some(0) {
                return Err(bad("save_total_limit", "must be at least 1".into()));
            }
            if t.early_stopping_patience == Some(0) {
                return Err(bad("early_stopping_patience", "must be at least 1".into()));
            }
            let lora_dropout = self.method.uses_lora() && self.lora.dropout > 0.0;
            if t.precision == Precision::Bf16 && (self.pooling != Pooling::First || lora_dropout) {
                return Err(bad(
                    "precision",
                    "bf16 runs on the own backward, which needs the first-token head \
                     (pooling = \"first\") and no LoRA dropout; use fp32 here"
                        .into(),
                ));
            }
        }
        if t.eval_batch_size == 0 {
            return Err(bad("eval_batch_size", "must be at least 1".into()));
        }
        if let Some(c) = self.lp.c {
            if !(c > 0.0 && c.is_finite()) {
                return Err(bad("lp.c", format!("{c} is not a positive number")));
            }
        }
        if self.lp.folds < 2 {
            return Err(bad("lp.folds", "must be at least 2".into()));
        }
        if self.method.uses_lora() {
            self.lora.validate()?;
        }
        if !(self.head_scale > 0.0 && self.head_scale.is_finite()) {
            return Err(bad(
                "head_scale",
                format!("{} is not a positive number", self.head_scale),
            ));
        }
        if self.max_train_samples == Some(0) {
            return Err(bad("max_train_samples", "must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// transformers' rule: explicit steps win; otherwise the ratio of all steps, rounded up.
    #[test]
    fn warmup_steps_win_over_the_ratio_which_rounds_up() {
        let mut t = RunConfig::paper_defaults("cb", Method::Ft, "minilm", 1001).train;
        assert_eq!(t.warmup(320), 0);
        t.warmup_ratio = 0.1;
        assert_eq!(t.warmup(320), 32);
        assert_eq!(t.warmup(321), 33);
        t.warmup_steps = 5;
        assert_eq!(t.warmup(321), 5);
    }

    /// New optional fields stay out of a default config's JSON, so configs and the hashes
    /// made from them are those of earlier versions.
    #[test]
    fn default_train_config_serialises_as_before() {
        let t = RunConfig::paper_defaults("cb", Method::Ft, "minilm", 1001).train;
        let json = serde_json::to_string(&t).unwrap();
        assert!(
            !json.contains("warmup_ratio")
                && !json.contains("patience")
                && !json.contains("precision"),
            "{json}"
        );
    }
}
