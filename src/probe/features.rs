//! φ(x) of the frozen encoder in eval mode (no dropout, no autograd), for LP and the statistics.
//!
//! Examples are batched longest-first so dynamic padding adds few pad tokens; features are
//! returned in input order. Results do not depend on the batch composition beyond f32 round-off
//! (padded positions are masked).

use candle_core::Tensor;

use crate::data::batch::{length_bucketed, TextTokenizer};
use crate::error::Result;
use crate::model::{Mode, SequenceClassifier};

/// Features of `texts` (`[n, h]`, f32). `progress` is called with the number of examples done
/// after every batch.
pub fn extract_features(
    model: &SequenceClassifier,
    tokenizer: &TextTokenizer,
    texts: &[(&str, Option<&str>)],
    batch_size: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Tensor> {
    let encoded = tokenizer.encode(texts)?;
    let lengths: Vec<usize> = encoded.iter().map(|e| e.ids.len()).collect();
    let hidden = model.encoder.config().hidden_size;
    let mut out = vec![0f32; texts.len() * hidden];
    let mut done = 0;
    for idx in length_bucketed(&lengths, batch_size) {
        let rows: Vec<_> = idx.iter().map(|&i| &encoded[i]).collect();
        let inputs = tokenizer.batch(&rows);
        let feats = model.features(&inputs, &mut Mode::Eval)?.detach();
        let feats: Vec<Vec<f32>> = feats.to_vec2()?;
        for (row, &i) in feats.iter().zip(&idx) {
            out[i * hidden..(i + 1) * hidden].copy_from_slice(row);
        }
        done += idx.len();
        progress(done);
    }
    Ok(Tensor::from_vec(
        out,
        (texts.len(), hidden),
        model.encoder.device(),
    )?)
}
