//! Evaluation of a model on a split: eval-mode logits and the per-run metrics (spec §5).

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

/// Logits and metrics of a loaded run on labelled `examples` (its own split, or another data
/// set with the same labels).
///
/// # Errors
/// [`crate::Error::InvalidArgument`] naming the example without a label (`what` names the data);
/// tokenizer and model errors.
pub fn evaluate_run_on(
    trained: &crate::methods::load::TrainedRun,
    examples: &[crate::data::Example],
    what: &str,
) -> Result<(Vec<f64>, Vec<usize>, Metrics)> {
    let labels: Vec<usize> = examples
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.label.ok_or_else(|| crate::Error::InvalidArgument {
                field: what.to_string(),
                reason: format!("example {} has no label", i + 1),
            })
        })
        .collect::<Result<_>>()?;
    let texts: Vec<(&str, Option<&str>)> = examples
        .iter()
        .map(|e| (e.text_a.as_str(), e.text_b.as_deref()))
        .collect();
    let enc = trained.tokenizer.encode(&texts)?;
    let (z, m) = evaluate(
        &trained.model,
        &trained.tokenizer,
        &enc,
        &labels,
        trained.config.train.eval_batch_size,
    )?;
    Ok((z, labels, m))
}
