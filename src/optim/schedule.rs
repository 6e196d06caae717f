//! Learning-rate schedule and global gradient-norm clipping (docs/method.md §2.2).
//!
//! REF: the reference trainer (HF `Trainer` defaults) decays the learning rate linearly from its
//! peak to 0 over all steps with no warm-up, and clips the global L2 norm of all gradients at
//! 1.0. The paper mentions neither; both are on by default here and configurable.

use candle_core::backprop::GradStore;
use candle_core::{DType, Var};

use crate::error::Result;

/// Linear warm-up from 0 over `warmup_steps`, then linear decay to 0 at `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    pub peak_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl LinearSchedule {
    /// The learning rate of (0-based) step `step`, as HF's `get_linear_schedule_with_warmup`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let remaining = self.total_steps.saturating_sub(step) as f64;
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        self.peak_lr * (remaining / span).max(0.0)
    }
}

/// The global L2 norm of the gradients of `vars` (missing gradients count as 0).
pub fn global_grad_norm(vars: &[&Var], grads: &GradStore) -> Result<f64> {
    let mut sq = 0.0;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    Ok(sq.sqrt())
}

/// The factor that clips a gradient of norm `norm` to at most `max_norm`
/// (REF: `clip_grad_norm_`: max_norm / (norm + 1e-6), capped at 1).
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    (max_norm / (norm + 1e-6)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_decay_without_warmup_reaches_zero() {
        let s = LinearSchedule {
            peak_lr: 1e-3,
            warmup_steps: 0,
            total_steps: 10,
        };
        assert_eq!(s.lr(0), 1e-3);
        assert!((s.lr(5) - 5e-4).abs() < 1e-15);
        assert_eq!(s.lr(10), 0.0);
        let w = LinearSchedule {
            peak_lr: 1.0,
            warmup_steps: 4,
            total_steps: 12,
        };
        assert_eq!(w.lr(0), 0.0);
        assert_eq!(w.lr(2), 0.5);
        assert_eq!(w.lr(4), 1.0);
        assert_eq!(w.lr(8), 0.5);
    }

    #[test]
    fn clipping_only_shrinks() {
        assert_eq!(clip_factor(0.5, 1.0), 1.0);
        assert!((clip_factor(4.0, 1.0) - 0.25).abs() < 1e-6);
        assert_eq!(clip_factor(4.0, 0.0), 1.0);
    }
}
