//! Tasks made of the user's own files: CSV/TSV (with header), JSONL or text, with named text and
//! label columns. The split protocol is the paper's where a split is not given: without a
//! validation file the last ⌈10%⌉ of the training file is the validation split (unshuffled).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::data::formats::{read_file, FileFormat, FileSpec};
use crate::data::split::{split_train_validation, truncate_train};
use crate::data::{LabelMap, LoadOptions, TaskData, TaskMetric};
use crate::error::{Error, Result};

fn default_metric() -> TaskMetric {
    TaskMetric::Accuracy
}

/// A task read from files (a config we own; saved in the run config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTask {
    /// Training file.
    pub train: PathBuf,
    /// Validation file; `None` takes the last ⌈10%⌉ of the training file.
    pub validation: Option<PathBuf>,
    /// Test file (labelled).
    pub test: PathBuf,
    /// Format of every file; `None` infers it from each extension.
    pub format: Option<FileFormat>,
    /// Column (or JSON key) of the first text.
    pub text_a: String,
    /// Column of the second text of a pair task.
    pub text_b: Option<String>,
    /// Column of the label.
    pub label: String,
    /// Label names in id order; `None` takes the training file's labels in sorted order. Labels
    /// of the validation and test files must be among them.
    pub labels: Option<Vec<String>>,
    /// Selection metric: accuracy (default) or mcc.
    #[serde(default = "default_metric")]
    pub metric: TaskMetric,
}

/// Loads a file task named `name`.
pub fn load_file_task(name: &str, t: &FileTask, opts: &LoadOptions) -> Result<TaskData> {
    let spec = |path: &PathBuf| FileSpec {
        path: path.clone(),
        format: t.format,
        text_a: t.text_a.clone(),
        text_b: t.text_b.clone(),
        label: Some(t.label.clone()),
    };
    let mut labels = match &t.labels {
        Some(names) => LabelMap::fixed(names.iter().cloned()),
        None => LabelMap::open(),
    };
    let train_all = read_file(&spec(&t.train), &mut labels)?;
    labels.freeze();
    if labels.len() < 2 {
        return Err(Error::InvalidArgument {
            field: format!("{} (column {})", t.train.display(), t.label),
            reason: format!(
                "a classification task needs at least 2 labels, found {:?}",
                labels.names()
            ),
        });
    }
    let (mut train, validation) = match &t.validation {
        Some(path) => (train_all, read_file(&spec(path), &mut labels)?),
        None => split_train_validation(train_all),
    };
    truncate_train(&mut train, opts.max_train_samples);
    let test = read_file(&spec(&t.test), &mut labels)?;
    Ok(TaskData {
        task: name.to_string(),
        labels: labels.names().to_vec(),
        train,
        validation,
        test,
        metric: t.metric,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, name: &str, rows: &[(&str, &str)]) -> PathBuf {
        let p = dir.join(name);
        let mut s = String::from("id,review,stars\n");
        for (i, (t, l)) in rows.iter().enumerate() {
            s.push_str(&format!("{i},\"{t}\",{l}\n"));
        }
        std::fs::write(&p, s).unwrap();
        p
    }

    #[test]
    fn splits_train_and_rejects_unseen_test_labels() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<(&str, &str)> = (0..20)
            .map(|i| ("a text, quoted", if i % 2 == 0 { "pos" } else { "neg" }))
            .collect();
        let train = write(dir.path(), "train.csv", &rows);
        let test = write(dir.path(), "test.csv", &[("fine", "pos"), ("bad", "neg")]);
        let task = FileTask {
            train: train.clone(),
            validation: None,
            test: test.clone(),
            format: None,
            text_a: "review".into(),
            text_b: None,
            label: "stars".into(),
            labels: None,
            metric: TaskMetric::Accuracy,
        };
        let data = load_file_task("reviews", &task, &LoadOptions::default()).unwrap();
        assert_eq!(data.labels, vec!["neg", "pos"]);
        assert_eq!(
            (data.train.len(), data.validation.len(), data.test.len()),
            (18, 2, 2)
        );
        let bad = write(dir.path(), "bad.csv", &[("meh", "mixed")]);
        let err = load_file_task(
            "reviews",
            &FileTask { test: bad, ..task },
            &LoadOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("mixed") && err.contains("bad.csv"), "{err}");
    }
}
