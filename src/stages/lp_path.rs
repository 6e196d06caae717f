//! The LP path of a run (`lp-path.json`): the probe's classifier norm and training accuracy
//! after every L-BFGS iteration, at the run's C (docs/method.md §8.1; the paper's Fig. 1a/4a).

use crate::error::Result;
use crate::methods::lp::{self, LpPath};
use crate::model::SequenceClassifier;
use crate::rundir::{self, write_json};
use crate::stages::load::load_run;
use crate::stages::train::load_task;

/// The LP path of a finished run with an LP stage, at the run's C, on its training split (all of
/// it, as the LP stage saw it); written to `lp-path.json` in the run.
///
/// # Errors
/// [`crate::Error::InvalidArgument`] for a run without an LP stage; loading and fitting errors.
pub(crate) fn lp_path_of_run(dir: &std::path::Path) -> Result<LpPath> {
    let trained = load_run(dir)?;
    let cfg = &trained.config;
    let summary = trained
        .metrics
        .lp
        .as_ref()
        .ok_or_else(|| crate::Error::InvalidArgument {
            field: "run".into(),
            reason: format!("{} has no LP stage", dir.display()),
        })?;
    let task = load_task(cfg)?;
    let y = crate::data::require_labels(&task.train, &format!("{} train", task.task))?;
    let texts: Vec<(&str, Option<&str>)> =
        task.train.iter().map(crate::data::Example::texts).collect();
    let enc = trained.tokenizer.encode(&texts)?;
    // The run's model has the pre-trained encoder for LP; for LP-FT / LP-LoRA the encoder was
    // trained afterwards, so take the features from the pre-trained checkpoint.
    let base = if cfg.method == crate::methods::Method::Lp {
        None
    } else {
        let opts = crate::model::ModelOptions::frozen(task.labels.len(), cfg.pooling);
        Some(SequenceClassifier::build(&trained.files, &opts, &crate::device::current())?.0)
    };
    let model = base.as_ref().unwrap_or(&trained.model);
    let d = trained.files.config.hidden_size;
    let x = lp::features(model, &trained.tokenizer, &enc, cfg.train.eval_batch_size)?;
    let path = lp::lp_path(
        &cfg.lp,
        summary.c,
        &x,
        y.len(),
        d,
        &y,
        task.labels.len(),
        cfg.lp.max_iter,
    )?;
    write_json(&dir.join(rundir::LP_PATH), &path)?;
    Ok(path)
}
