//! Out-of-distribution evaluation of a finished run (`ood/<name>.json` and its predictions
//! `ood/<name>.safetensors`): another built-in task's split, or a labelled file, with the run's
//! label names.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::calibration::metrics::Metrics;
use crate::data::{self, FileSpec, LabelMap, LoadOptions, Split};
use crate::error::{Error, Result};
use crate::rundir::{self, save_predictions, write_json};
use crate::stages::load::{evaluate_run_on, load_run};

/// Metrics of a run on an OOD set (`ood/<name>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OodResult {
    pub name: String,
    /// The task and split, or the file, the examples came from.
    pub source: String,
    pub metrics: Metrics,
}

/// Where an OOD set's examples come from.
#[derive(Debug, Clone)]
pub(crate) enum OodData {
    /// A built-in task's split, found like any task (`data_dir` first).
    Task { task: String, split: Split },
    /// A labelled file; its labels are mapped onto the run's label names.
    File(FileSpec),
}

/// Evaluates the run in `dir` on `data` and writes `ood/<name>.json` and
/// `ood/<name>.safetensors`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `ood.<name>` when the task's labels are not the run's; data,
/// model and write errors.
pub(crate) fn evaluate_ood(
    dir: &Path,
    name: &str,
    data: &OodData,
    data_dir: Option<&Path>,
) -> Result<OodResult> {
    let trained = load_run(dir)?;
    let labels = &trained.metrics.labels;
    let (examples, source) = match data {
        OodData::Task { task, split } => {
            let (t, _) = crate::hub::find_task(task, data_dir, &LoadOptions::default())?;
            if &t.labels != labels {
                return Err(Error::InvalidArgument {
                    field: format!("ood.{name}"),
                    reason: format!(
                        "task {task} has labels {:?}, the run was trained on {labels:?}",
                        t.labels
                    ),
                });
            }
            (t.split(*split).to_vec(), format!("{task}/{split}"))
        }
        OodData::File(spec) => {
            let mut map = LabelMap::fixed(labels.iter().map(String::as_str));
            (
                data::read_file(spec, &mut map)?,
                spec.path.display().to_string(),
            )
        }
    };
    let (z, y, m) = evaluate_run_on(&trained, &examples, &source)?;
    let out = dir.join(rundir::OOD_DIR);
    save_predictions(&out, name, &z, &y, labels.len())?;
    let result = OodResult {
        name: name.to_string(),
        source,
        metrics: m,
    };
    write_json(&out.join(format!("{name}.json")), &result)?;
    Ok(result)
}
