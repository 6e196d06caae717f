//! LoRA adapters: W_eff = W0 + (α/r)·B·A on chosen linear modules (docs/method.md §2.3).
//!
//! REF (loralib, as used by the reference code): A ∈ R^{r×in} is kaiming-uniform with a = √5,
//! i.e. U(−1/√in, 1/√in); B ∈ R^{out×r} is 0; LoRA dropout 0; the adapted layer's bias stays
//! frozen. Target modules follow PEFT's rule for a list: a module matches when its path equals a
//! target or ends with `.target`. The head (`classifier`) is never adapted (PEFT
//! `modules_to_save`).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// LoRA hyper-parameters (a config we own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank r (8 in the paper).
    pub r: usize,
    /// Scale numerator α; the update is scaled by α / r (8 in the paper's scripts, so 1).
    pub alpha: f64,
    /// Module names to adapt (`query`, `value` by default).
    pub targets: Vec<String>,
    /// Dropout on the adapter's input while training (peft's `lora_dropout`): the update is
    /// s·((x ⊙ m) Aᵀ) Bᵀ with a fresh inverted-dropout mask m per adapted layer and step, the
    /// frozen layer's x Wᵀ + b untouched. 0 in the paper.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropout: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 8,
            alpha: 8.0,
            targets: vec!["query".into(), "value".into()],
            dropout: 0.0,
        }
    }
}

impl LoraConfig {
    /// Checks r > 0, α > 0 and at least one target.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| Error::InvalidArgument {
            field: field.into(),
            reason,
        };
        if self.r == 0 {
            return Err(bad("lora.r", "must be at least 1".into()));
        }
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return Err(bad(
                "lora.alpha",
                format!("{} is not a positive number", self.alpha),
            ));
        }
        if self.targets.is_empty() {
            return Err(bad("lora.targets", "name at least one module".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(bad(
                "lora.dropout",
                format!("{} is not in [0, 1)", self.dropout),
            ));
        }
        Ok(())
    }

    /// The scale s = α / r.
    pub fn scale(&self) -> f64 {
        self.alpha / self.r as f64
    }

    /// Whether the module at `path` (e.g. `encoder.layer.0.attention.self.query`) is adapted.
    /// MPNet's attention projections are `attention.attn.{q,k,v,o}`; `query`, `key` and
    /// `value` name them too, so the paper's `query,value` means the same layers on every
    /// encoder.
    pub fn matches(&self, path: &str) -> bool {
        if path.starts_with("classifier") {
            return false;
        }
        self.targets.iter().any(|t| {
            let alias = match t.as_str() {
                "query" => Some("attn.q"),
                "key" => Some("attn.k"),
                "value" => Some("attn.v"),
                _ => None,
            };
            path == t
                || path.ends_with(&format!(".{t}"))
                || alias.is_some_and(|a| path.ends_with(&format!(".{a}")))
        })
    }
}

/// The low-rank factors of one adapted layer. Shapes: `a` `[r, in]`, `b` `[out, r]`.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
    /// Dropout probability on the adapter's input in training ([`LoraConfig::dropout`]).
    pub dropout: f64,
}

impl LoraAdapter {
    /// The adapter's contribution s·(x Aᵀ) Bᵀ. Shapes: `xs` `[rows, in]` → `[rows, out]`.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let low = xs.matmul(&self.a.t()?)?;
        Ok((low.matmul(&self.b.t()?)? * self.scale)?)
    }

    /// s·B·A, the dense update `[out, in]` (for merging).
    pub fn delta(&self) -> Result<Tensor> {
        Ok((self.b.matmul(&self.a)? * self.scale)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_list_matching() {
        let cfg = LoraConfig::default();
        assert!(cfg.matches("encoder.layer.0.attention.self.query"));
        assert!(cfg.matches("value"));
        assert!(!cfg.matches("encoder.layer.0.attention.self.key"));
        assert!(!cfg.matches("encoder.layer.0.attention.self.queryx"));
        assert!(!cfg.matches("classifier"));
    }
}
