//! Evaluation of a model on a split: eval-mode logits and the per-run metrics (docs/method.md §5).

use candle_core::DType;

use crate::calibration::metrics::{self, Metrics};
use crate::data::batch::{length_bucketed, Encoded, TextTokenizer};
use crate::error::Result;
use crate::model::{Mode, SequenceClassifier};

/// Eval-mode logits of `encoded` examples, row-major `[n, C]`, in input order.
pub fn logits(
    model: &SequenceClassifier,
    tokenizer: &TextTokenizer,
    encoded: &[Encoded],
    batch_size: usize,
) -> Result<Vec<f64>> {
    let c = model.head.num_labels();
    let mut out = vec![0f64; encoded.len() * c];
    let lengths: Vec<usize> = encoded.iter().map(|e| e.ids.len()).collect();
    for idx in length_bucketed(&lengths, batch_size) {
        let rows: Vec<&Encoded> = idx.iter().map(|&i| &encoded[i]).collect();
        let inputs = tokenizer.batch(&rows);
        let z = model
            .forward(&inputs, &mut Mode::Eval)?
            .detach()
            .to_dtype(DType::F64)?;
        let z: Vec<Vec<f64>> = z.to_vec2()?;
        for (row, &i) in z.iter().zip(&idx) {
            out[i * c..(i + 1) * c].copy_from_slice(row);
        }
    }
    Ok(out)
}

/// Logits and metrics of a labelled split.
pub fn evaluate(
    model: &SequenceClassifier,
    tokenizer: &TextTokenizer,
    encoded: &[Encoded],
    labels: &[usize],
    batch_size: usize,
) -> Result<(Vec<f64>, Metrics)> {
    let z = logits(model, tokenizer, encoded, batch_size)?;
    let m = metrics::compute(&z, labels, model.head.num_labels())?;
    Ok((z, m))
}
