//! φ(x) of the frozen encoder in eval mode (no dropout, no autograd): the one feature extractor,
//! for LP, the feature statistics, the eNTK's P and `lpft features`.
//!
//! Examples are batched longest-first so dynamic padding adds few pad tokens; features are
//! returned in input order. Results do not depend on the batch composition beyond f32 round-off
//! (padded positions are masked).

use crate::data::batch::{length_bucketed, Encoded, TextTokenizer};
use crate::error::Result;
use crate::model::{Mode, SequenceClassifier};

/// Features of `encoded` examples, row-major `[n, h]` (f32, as the model computes them; callers
/// that need f64 widen them exactly with [`crate::linalg::to_f64`]). `progress` is called with
/// the number of examples done after every batch.
pub fn features(
    model: &SequenceClassifier,
    tokenizer: &TextTokenizer,
    encoded: &[Encoded],
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<f32>> {
    let lengths: Vec<usize> = encoded.iter().map(|e| e.ids.len()).collect();
    let hidden = model.encoder.config().hidden_size;
    let mut out = vec![0f32; encoded.len() * hidden];
    let mut done = 0;
    for idx in length_bucketed(&lengths, batch_size) {
        let rows: Vec<&Encoded> = idx.iter().map(|&i| &encoded[i]).collect();
        let inputs = tokenizer.batch(&rows);
        let feats = model.features(&inputs, &mut Mode::Eval)?.detach();
        let feats: Vec<Vec<f32>> = feats.to_vec2()?;
        for (row, &i) in feats.iter().zip(&idx) {
            out[i * hidden..(i + 1) * hidden].copy_from_slice(row);
        }
        done += idx.len();
        progress(done);
    }
    Ok(out)
}

/// [`features`] widened to f64, without progress reports: what the probe and the statistics
/// work on.
pub fn features_f64(
    model: &SequenceClassifier,
    tokenizer: &TextTokenizer,
    encoded: &[Encoded],
    batch_size: usize,
) -> Result<Vec<f64>> {
    Ok(crate::linalg::to_f64(&features(
        model,
        tokenizer,
        encoded,
        batch_size,
        &mut |_| {},
    )?))
}
