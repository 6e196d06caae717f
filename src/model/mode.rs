//! `Mode`: evaluation (no dropout) or training (dropout from a seeded stream).
//!
//! PAPER: dropout p = 0.1 (`hidden_dropout_prob`) is active only when training. Features, LP,
//! and evaluation run in `Mode::Eval`; the eNTK runs in `Mode::Record`, which is `Eval` plus a
//! [`Recorder`] that the layers report their inputs and output probes to (spec §13).

use candle_core::Tensor;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::model::record::Recorder;

/// Forward mode of a model.
pub enum Mode<'a> {
    /// No dropout.
    Eval,
    /// Dropout active; masks are drawn from `rng` (the run's `dropout` stream).
    Train { rng: &'a mut ChaCha8Rng },
    /// No dropout; the layers selected by the recorder register their eNTK sites with it
    /// (see [`crate::model::record`]). The forward's values are those of `Eval`.
    Record(&'a Recorder),
}

impl<'a> Mode<'a> {
    /// The recorder of `Mode::Record`, else `None`. The reference is copied out of the mode, so
    /// holding it does not borrow the mode (layers keep calling `dropout` meanwhile).
    pub fn recorder(&self) -> Option<&'a Recorder> {
        match self {
            Mode::Record(r) => Some(*r),
            _ => None,
        }
    }

    /// Whether dropout is active.
    pub fn is_train(&self) -> bool {
        matches!(self, Mode::Train { .. })
    }

    /// Inverted dropout: zeroes each entry with probability `p` and scales the rest by 1/(1-p).
    /// The identity in `Eval`, `Record` or when `p == 0`. The mask is a constant, so the
    /// gradient is `mask ⊙ upstream`.
    pub fn dropout(&mut self, xs: &Tensor, p: f64) -> Result<Tensor> {
        let rng = match self {
            Mode::Train { rng } if p > 0.0 => rng,
            _ => return Ok(xs.clone()),
        };
        let keep = 1.0 - p;
        let scale = (1.0 / keep) as f32;
        let n = xs.elem_count();
        // Compare a 24-bit uniform integer against the threshold: exact and cheap.
        let threshold = (keep * (1u32 << 24) as f64) as u32;
        let mask: Vec<f32> = (0..n)
            .map(|_| {
                if (rng.random::<u32>() >> 8) < threshold {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
        Ok(xs.mul(&mask)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Streams;
    use candle_core::Device;

    #[test]
    fn eval_is_identity_and_train_drops_about_p() {
        let xs = Tensor::ones((100, 100), candle_core::DType::F32, &Device::Cpu).unwrap();
        let same = Mode::Eval.dropout(&xs, 0.1).unwrap();
        assert_eq!(
            same.sum_all().unwrap().to_scalar::<f32>().unwrap(),
            10_000.0
        );
        let mut rng = Streams::new(1).get("dropout");
        let out = Mode::Train { rng: &mut rng }.dropout(&xs, 0.1).unwrap();
        let v: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        let zeros = v.iter().filter(|&&x| x == 0.0).count();
        // Binomial(10000, 0.1): sd = 30, so ±150 is a 5-sigma band.
        assert!((850..=1150).contains(&zeros), "{zeros} zeros");
        assert!(v.iter().all(|&x| x == 0.0 || (x - 1.0 / 0.9).abs() < 1e-6));
    }
}
