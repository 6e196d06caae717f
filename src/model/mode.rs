//! `Mode`: evaluation (no dropout) or training (dropout from a seeded stream).
//!
//! PAPER: dropout p = 0.1 (`hidden_dropout_prob`) is active only when training. Features, LP,
//! and evaluation run in `Mode::Eval`; the eNTK runs in `Mode::Record`, which is `Eval` plus a
//! [`Recorder`] that the layers report their inputs and output probes to (docs/method.md §13).

use candle_core::{DType, Device, Shape, Tensor};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::Result;
use crate::model::record::Recorder;

/// Mask entries per parallel task when drawing a dropout mask.
const DROPOUT_CHUNK: usize = 1 << 15;

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
        match self.dropout_mask(xs.shape(), xs.device(), xs.dtype(), p)? {
            Some(mask) => Ok(xs.mul(&mask)?),
            None => Ok(xs.clone()),
        }
    }

    /// The mask [`Mode::dropout`] multiplies a tensor of this shape by (entries 0 or 1/(1-p),
    /// drawn in the same order from the same stream), or `None` where dropout is the identity.
    /// For fused ops that apply the mask themselves.
    pub fn dropout_mask(
        &mut self,
        shape: &Shape,
        device: &Device,
        dtype: DType,
        p: f64,
    ) -> Result<Option<Tensor>> {
        Ok(match self.dropout_values(shape.elem_count(), p) {
            Some(mask) => Some(Tensor::from_vec(mask, shape, device)?.to_dtype(dtype)?),
            None => None,
        })
    }

    /// The values of [`Mode::dropout_mask`] for `n` entries, as a plain vector (the training
    /// path's own backward applies masks itself).
    pub fn dropout_values(&mut self, n: usize, p: f64) -> Option<Vec<f32>> {
        let rng = match self {
            Mode::Train { rng } if p > 0.0 => rng,
            _ => return None,
        };
        let keep = 1.0 - p;
        let scale = (1.0 / keep) as f32;
        // Compare a 24-bit uniform integer against the threshold: exact and cheap.
        let threshold = (keep * (1u32 << 24) as f64) as u32;
        // Entry i uses word start + i of the stream, one u32 per entry as a sequential
        // `next_u32` loop would; chunks seek to their first word, so the mask is the same for
        // any thread count, and the stream ends up where the sequential loop leaves it.
        let start = rng.get_word_pos();
        let mut mask = vec![0f32; n];
        let base: &ChaCha8Rng = rng;
        mask.par_chunks_mut(DROPOUT_CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| {
                let mut r = base.clone();
                r.set_word_pos(start + (i * DROPOUT_CHUNK) as u128);
                for v in chunk {
                    *v = if (r.next_u32() >> 8) < threshold {
                        scale
                    } else {
                        0.0
                    };
                }
            });
        rng.set_word_pos(start + n as u128);
        Some(mask)
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

    /// The parallel mask is exactly what one sequential `next_u32` per entry gives, over
    /// several chunks and a partial one, and leaves the stream where that loop would.
    #[test]
    fn dropout_mask_equals_sequential_draws() {
        let n = 2 * DROPOUT_CHUNK + 1234;
        let shape = Shape::from(n);
        let mut rng = Streams::new(7).get("dropout");
        rng.next_u32(); // not at word 0
        let mut seq = rng.clone();
        let mask = Mode::Train { rng: &mut rng }
            .dropout_mask(&shape, &Device::Cpu, DType::F32, 0.25)
            .unwrap()
            .unwrap();
        let got: Vec<f32> = mask.to_vec1().unwrap();
        let threshold = (0.75 * (1u32 << 24) as f64) as u32;
        for (i, g) in got.iter().enumerate() {
            let want = if (seq.next_u32() >> 8) < threshold {
                (1.0f64 / 0.75) as f32
            } else {
                0.0
            };
            assert_eq!(*g, want, "entry {i}");
        }
        assert_eq!(
            rng.next_u32(),
            seq.next_u32(),
            "stream position after the mask"
        );
    }
}
