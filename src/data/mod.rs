//! Datasets: the built-in tasks of the paper, user data files, and the split protocol (docs/method.md §4).
//!
//! - [`tasks`]: the task registry (CB, RTE, BoolQ, WiC, WSC, SST-2, MRPC, CoLA, GLUE-RTE, SST-5,
//!   SST-5→3, DynaSent), each task's inputs, label names and metric (docs/method.md §4 table), read from
//!   the original distribution formats.
//! - [`split`]: the paper's split protocol (train 9:1 without shuffling, original dev = test).
//! - [`formats`]: low-level JSONL / CSV / TSV / text readers and the generic [`read_file`].
//! - [`batch`]: tokenisation and padding of examples.
//!
//! Every label is an index into a task's label names ([`TaskData::labels`], [`LabelMap`]).
//! Errors name the file, the 1-based line and, where one is at fault, the field.

pub mod batch;
pub mod custom;
pub mod embedded;
pub mod formats;
pub mod split;
pub mod tasks;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

pub use custom::{load_file_task, FileTask};
pub use formats::{read_file, FileFormat, FileSpec};
pub use split::{split_train_validation, truncate_train, validation_size};
pub use tasks::{load_task, load_unlabelled, task_names, Task};

/// One example: one or two texts and an optional label index.
///
/// `text_b` is the second segment of a pair task (`[CLS] A [SEP] B [SEP]`); `label` indexes the
/// label names of its task or [`LabelMap`], and is `None` for unlabelled (prediction) data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// First (or only) text segment.
    pub text_a: String,
    /// Second text segment of a pair task.
    pub text_b: Option<String>,
    /// Label id (index into the label names); `None` when unlabelled.
    pub label: Option<usize>,
}

impl Example {
    /// The texts as the tokenizer takes them: `(text_a, text_b)`.
    pub fn texts(&self) -> (&str, Option<&str>) {
        (self.text_a.as_str(), self.text_b.as_deref())
    }
}

/// One of the three splits of a task after the paper's protocol (docs/method.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The first 90% of the original training split.
    Train,
    /// The last ⌈10%⌉ of the original training split.
    Validation,
    /// The original validation (dev) split.
    Test,
}

impl Split {
    /// All splits in pipeline order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    /// The lowercase name, as in run directories and configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = Error;

    /// Parses `train`, `validation` (or `val`, `dev`) and `test`, ignoring ASCII case.
    ///
    /// # Errors
    /// [`Error::UnknownSplit`] for any other name.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "validation" | "val" | "dev" => Ok(Split::Validation),
            "test" => Ok(Split::Test),
            _ => Err(Error::UnknownSplit {
                name: s.to_string(),
            }),
        }
    }
}

/// The task metric reported in the paper's tables (docs/method.md §4 notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskMetric {
    /// Fraction of correct argmax predictions, in `[0, 1]`.
    Accuracy,
    /// Matthews correlation coefficient, in `[-1, 1]` (CoLA).
    Mcc,
}

/// A task's three splits after the paper's protocol, with its label names (index = label id).
///
/// Every example in the three splits is labelled. For an OOD evaluation set (DynaSent) only
/// `test` is filled and `train`/`validation` are empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskData {
    /// The task's registry name, e.g. `cb`.
    pub task: String,
    /// Label names; `labels[i]` is the name of label id `i`.
    pub labels: Vec<String>,
    /// First 90% of the original train split (then the first `max_train_samples` of those).
    pub train: Vec<Example>,
    /// Last ⌈0.1·n⌉ rows of the original train split.
    pub validation: Vec<Example>,
    /// The original validation / dev split.
    pub test: Vec<Example>,
    /// The metric used for model selection and reporting.
    pub metric: TaskMetric,
}

impl TaskData {
    /// The examples of one split.
    pub fn split(&self, s: Split) -> &[Example] {
        match s {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }

    /// Number of examples per label id in one split; length `labels.len()`.
    ///
    /// Unlabelled examples and ids outside the label set (impossible for loaded data) are not
    /// counted.
    pub fn label_counts(&self, s: Split) -> Vec<usize> {
        let mut counts = vec![0; self.labels.len()];
        for label in self.split(s).iter().filter_map(|e| e.label) {
            if let Some(c) = counts.get_mut(label) {
                *c += 1;
            }
        }
        counts
    }

    /// Number of classes, `labels.len()`.
    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }
}

/// The label ids of `examples`, all of which must be labelled.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `what` (e.g. `cb train`) and the first unlabelled example
/// (1-based), never a silent class 0.
pub fn require_labels(examples: &[Example], what: &str) -> crate::error::Result<Vec<usize>> {
    examples
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.label.ok_or_else(|| Error::InvalidArgument {
                field: format!("{what} example {}", i + 1),
                reason: "has no label".into(),
            })
        })
        .collect()
}

/// Options for [`load_task`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadOptions {
    /// Keep only the first k rows of the train part, after the 9:1 split (docs/method.md §4,
    /// `--max_train_samples`; not random). `None` keeps all.
    pub max_train_samples: Option<usize>,
}

/// Maps label strings (as they appear in data files) to label ids.
///
/// A *fixed* map (the label set of a built-in task, or one given by the user) rejects unknown
/// labels with [`Error::UnknownLabel`]. An *open* map adds unseen labels: [`read_file`] adds the
/// new labels of one file in sorted order (numerically if all are integers), so ids do not depend
/// on row order. Besides its name, a label may have aliases (e.g. `"0"`, `"false"`), matched
/// exactly after trimming surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    names: Vec<String>,
    ids: HashMap<String, usize>,
    fixed: bool,
}

impl LabelMap {
    /// An empty map that grows as labels are read.
    pub fn open() -> Self {
        LabelMap {
            names: Vec::new(),
            ids: HashMap::new(),
            fixed: false,
        }
    }

    /// A fixed map; id `i` is `names[i]`. A repeated name keeps its first id.
    pub fn fixed<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut map = LabelMap::open();
        for name in names {
            map.push(name.into());
        }
        map.fixed = true;
        map
    }

    /// A fixed map from `(name, aliases)` pairs; id `i` is `labels[i].0`.
    ///
    /// Each alias maps to its label's id; a key already taken (by an earlier name or alias)
    /// keeps its first id.
    pub fn fixed_with_aliases(labels: &[(&str, &[&str])]) -> Self {
        let mut map = LabelMap::fixed(labels.iter().map(|(name, _)| *name));
        for (id, (_, aliases)) in labels.iter().enumerate() {
            for alias in *aliases {
                map.ids.entry((*alias).to_string()).or_insert(id);
            }
        }
        map
    }

    /// Stops the map from growing: unknown labels are errors from now on.
    pub fn freeze(&mut self) {
        self.fixed = true;
    }

    /// Whether unknown labels are rejected.
    pub fn is_fixed(&self) -> bool {
        self.fixed
    }

    /// Label names; index = label id.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the map has no labels yet.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The id of a label name or alias (surrounding whitespace ignored), if known.
    pub fn id(&self, label: &str) -> Option<usize> {
        self.ids.get(label.trim()).copied()
    }

    /// Adds a label to an open or fixed map and returns its id (the existing id if known).
    pub fn insert(&mut self, name: &str) -> usize {
        match self.id(name) {
            Some(id) => id,
            None => self.push(name.trim().to_string()),
        }
    }

    fn push(&mut self, name: String) -> usize {
        if let Some(&id) = self.ids.get(&name) {
            return id;
        }
        let id = self.names.len();
        self.ids.insert(name.clone(), id);
        self.names.push(name);
        id
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Temp directories and the real-data location for the data tests.

    use std::path::{Path, PathBuf};

    /// A fresh, empty directory for one test, named after it.
    pub fn temp_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("lpft-data-tests-{}", std::process::id()))
            .join(test);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("clearing the test dir");
        }
        std::fs::create_dir_all(&dir).expect("creating the test dir");
        dir
    }

    /// Writes `contents` to `dir/name` (creating parents) and returns the path.
    pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating parent dirs");
        }
        std::fs::write(&path, contents).expect("writing a test file");
        path
    }

    /// Why the whole-dataset tests are `#[ignore]`d, shown by `cargo test` beside each of them.
    pub const REAL_DATA: &str =
        "needs the real datasets: LPFT_REAL_DATA=DIR cargo test -- --ignored real_data";

    /// The real-data directory named by `$LPFT_REAL_DATA`. These tests run only when asked for
    /// (`--ignored`), and then the directory must be there: a missing one fails the test rather
    /// than passing it by returning early.
    pub fn real_data_dir() -> PathBuf {
        let dir = std::env::var_os("LPFT_REAL_DATA")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{REAL_DATA}: LPFT_REAL_DATA is not set"));
        assert!(
            dir.join("superglue").is_dir(),
            "LPFT_REAL_DATA={} has no superglue/ directory",
            dir.display()
        );
        dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_parses_aliases_and_displays() {
        assert_eq!("train".parse::<Split>().unwrap(), Split::Train);
        for s in ["validation", "val", "dev", "DEV"] {
            assert_eq!(s.parse::<Split>().unwrap(), Split::Validation);
        }
        assert_eq!("test".parse::<Split>().unwrap(), Split::Test);
        let err = "holdout".parse::<Split>().unwrap_err();
        assert!(matches!(err, Error::UnknownSplit { ref name } if name == "holdout"));
        assert_eq!(Split::Validation.to_string(), "validation");
        assert_eq!(
            serde_json::to_string(&Split::Validation).unwrap(),
            "\"validation\""
        );
    }

    #[test]
    fn label_map_fixed_aliases_and_open() {
        let map = LabelMap::fixed_with_aliases(&[("False", &["false", "0"]), ("True", &["true"])]);
        assert_eq!(map.names(), ["False", "True"]);
        assert_eq!(map.id("false"), Some(0));
        assert_eq!(map.id(" True "), Some(1));
        assert_eq!(map.id("1"), None);
        assert!(map.is_fixed());

        let mut open = LabelMap::open();
        assert!(open.is_empty());
        assert_eq!(open.insert("b"), 0);
        assert_eq!(open.insert("a"), 1);
        assert_eq!(open.insert("b"), 0);
        open.freeze();
        assert!(open.is_fixed());
        assert_eq!(open.len(), 2);
    }

    #[test]
    fn label_counts_per_split() {
        let ex = |label| Example {
            text_a: "x".into(),
            text_b: None,
            label,
        };
        let data = TaskData {
            task: "t".into(),
            labels: vec!["a".into(), "b".into(), "c".into()],
            train: vec![ex(Some(0)), ex(Some(2)), ex(Some(2)), ex(None)],
            validation: vec![ex(Some(1))],
            test: vec![],
            metric: TaskMetric::Accuracy,
        };
        assert_eq!(data.label_counts(Split::Train), vec![1, 0, 2]);
        assert_eq!(data.label_counts(Split::Validation), vec![0, 1, 0]);
        assert_eq!(data.label_counts(Split::Test), vec![0, 0, 0]);
        assert_eq!(data.split(Split::Validation).len(), 1);
    }
}
