//! The library's one error type. Variants carry data, not prose; the binary adds context with `anyhow`.

use std::path::PathBuf;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file or directory.
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An I/O error while writing a named file.
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON document that does not parse or does not have the expected fields.
    #[error("{path}: invalid JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A figure could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),

    // -- model --
    /// `config.json` names an architecture lpft does not implement.
    #[error("{path}: unsupported model_type `{model_type}` (supported: bert, roberta, mpnet)")]
    UnsupportedArch { path: PathBuf, model_type: String },
    /// A field of a model config is missing or out of range.
    #[error("{path}: field `{field}`: {reason}")]
    BadConfig {
        path: PathBuf,
        field: String,
        reason: String,
    },
    /// A checkpoint lacks a tensor the model needs.
    #[error("checkpoint {path}: missing tensor `{name}`")]
    MissingTensor { path: PathBuf, name: String },
    /// A checkpoint tensor has the wrong shape.
    #[error("checkpoint {path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A model directory has no weights file lpft can read.
    #[error("{dir}: no model.safetensors or pytorch_model.bin")]
    NoWeights { dir: PathBuf },
    /// The tokenizer failed to load or to encode.
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    /// A tensor or argument has the wrong shape.
    #[error("{what}: expected {expected}, got {found}")]
    Shape {
        what: &'static str,
        expected: String,
        found: String,
    },
    /// An argument is out of range.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    // -- methods --
    /// The training loss became NaN or infinite.
    #[error("training loss is {loss} at epoch {epoch}, step {step}: lower the learning rate or check the data")]
    NonFiniteLoss {
        epoch: usize,
        step: usize,
        loss: f64,
    },
    /// A checkpoint that cannot be resumed from: not lpft's, from another epoch, or from an
    /// older format.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    /// Another process is writing the same run directory or grid.
    #[error("{what} is in use by another lpft process (it holds {lock}); wait for it to finish")]
    Locked { what: PathBuf, lock: PathBuf },
    /// A finished run already exists where a run would be written.
    #[error("{dir} already holds a finished run (metrics.json); pass --overwrite to replace it")]
    RunExists { dir: PathBuf },
    /// An interrupted run exists where a run would be written.
    #[error("{dir} holds an interrupted run; pass --resume to continue it or --overwrite to start again")]
    RunIncomplete { dir: PathBuf },
    // -- source (model provisioning) --
    /// A model spec names a directory that does not exist.
    #[error(
        "model directory {path} does not exist (and the name is neither a built-in model name \
         nor a Hugging Face id `owner/name`)"
    )]
    ModelDirNotFound { path: PathBuf },
    /// A model directory lacks a file lpft needs.
    #[error("model directory {dir}: missing {file}")]
    MissingModelFile { dir: PathBuf, file: String },
    /// A hub model is not in the Hugging Face cache and downloads are disabled (offline).
    #[error(
        "model {model} is not in the Hugging Face cache at {cache} (missing {file}) and {why}"
    )]
    HubNotCached {
        /// `repo (revision rev)`.
        model: String,
        cache: PathBuf,
        file: String,
        /// Why nothing was downloaded (offline mode, or downloads disabled), with any note, e.g.
        /// that a bare name is not a local directory either.
        why: String,
    },
    /// A hub model is not in the Hugging Face cache and downloading it failed.
    #[error(
        "model {model} is not in the Hugging Face cache at {cache} and downloading {file} \
         failed"
    )]
    HubDownload {
        /// `repo (revision rev)`, with any note (e.g. that a bare name is not a local
        /// directory either).
        model: String,
        cache: PathBuf,
        file: String,
        #[source]
        source: Box<hf_hub::api::sync::ApiError>,
    },
    /// A built-in model is not in lpft's cache and downloads are disabled.
    #[error("built-in model {name} is not in {dir} and {why}; nothing was downloaded")]
    BuiltinNotCached {
        name: String,
        dir: PathBuf,
        /// `offline mode is on (HF_HUB_OFFLINE is set)` or `downloading is disabled`.
        why: String,
    },
    /// A file's SHA-256 differs from the pinned one.
    #[error("{what}: sha256 is {found}, expected {expected}")]
    ChecksumMismatch {
        what: String,
        expected: String,
        found: String,
    },
    /// A download failed: no connection, an HTTP error status, a body cut off, or an index
    /// page that does not list the file.
    #[error("downloading {url}: {reason}")]
    Download { url: String, reason: String },
    /// Something is missing locally and offline mode (`HF_HUB_OFFLINE`, `LPFT_OFFLINE` or
    /// `--offline`) forbids fetching it.
    #[error("{what} is not available locally ({missing}) and offline mode is on ({switch}); nothing was downloaded")]
    Offline {
        what: String,
        missing: String,
        switch: String,
    },
    /// A zip archive (or wheel) cannot be read.
    #[error("{path}: cannot read zip archive")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    /// An archive (or a download directory) lacks an expected entry.
    #[error("{archive}: no entry {entry}")]
    MissingInArchive { archive: PathBuf, entry: String },

    // -- data --
    /// A data file does not exist, e.g. a built-in task whose files are not in the data directory.
    #[error("{path}: data file not found")]
    MissingData { path: PathBuf },
    /// A data file holds no examples (it is empty, blank, or every row was skipped).
    #[error("{path}: no examples")]
    EmptyData { path: PathBuf },
    /// A user data file whose format cannot be told from its extension.
    #[error("{path}: unknown data format (expected extension .csv, .tsv, .jsonl, .json or .txt)")]
    UnknownFormat { path: PathBuf },
    /// A malformed record. `line` is 1-based (a multi-line CSV record reports its first line);
    /// `field` names the column or key at fault, if one is.
    #[error(
        "{path}, line {line}{}: {message}",
        .field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default()
    )]
    Parse {
        path: PathBuf,
        line: usize,
        field: Option<String>,
        message: String,
    },
    /// A record lacks a required field, or a CSV/TSV header (at its line) a required column.
    #[error("{path}, line {line}: missing field `{field}`")]
    MissingField {
        path: PathBuf,
        line: usize,
        field: String,
    },
    /// A line of a JSONL file is not valid JSON.
    #[error("{path}, line {line}: invalid JSON")]
    JsonLine {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// The CSV/TSV reader rejected a record.
    #[error("{path}, line {line}: malformed CSV/TSV record")]
    Csv {
        path: PathBuf,
        line: usize,
        #[source]
        source: csv::Error,
    },
    /// A label value outside a fixed label set.
    #[error("{path}, line {line}: unknown label `{label}` (known: {})", .known.join(", "))]
    UnknownLabel {
        path: PathBuf,
        line: usize,
        label: String,
        known: Vec<String>,
    },
    /// A task name that is not built in.
    #[error("unknown task `{name}` (known: {})", .known.join(", "))]
    UnknownTask { name: String, known: Vec<String> },
    /// A split name other than train, validation (val, dev) or test.
    #[error("unknown split `{name}` (expected train, validation, val, dev or test)")]
    UnknownSplit { name: String },
    /// No place searched holds a built-in task's files.
    #[error(
        "task `{task}`: data not found. Looked for {looked_for} in:\n{}\n{fetch}",
        .tried.iter().map(|t| format!("  {t}")).collect::<Vec<_>>().join("\n")
    )]
    TaskDataNotFound {
        task: String,
        looked_for: String,
        tried: Vec<String>,
        fetch: String,
    },
    /// A data directory holds some but not all files of a task.
    #[error("task `{task}`: {dir} is incomplete: it has {present} but lacks {missing}")]
    IncompleteData {
        task: String,
        dir: PathBuf,
        present: String,
        missing: String,
    },
    /// `fetch-data` could not get a file from any of its sources; nothing was installed.
    #[error(
        "fetching `{task}`: no source gave {file} with its pinned sha256; nothing was installed. Tried:\n{}",
        .attempts.iter().map(|t| format!("  {t}")).collect::<Vec<_>>().join("\n")
    )]
    FetchFailed {
        task: String,
        file: String,
        attempts: Vec<String>,
    },
    /// A task whose distribution has no unlabelled (prediction-only) split.
    #[error("task `{task}` has no unlabelled split")]
    NoUnlabelledSplit { task: String },

    // -- calibration --
    /// Metrics or temperature scaling were asked for on zero examples.
    #[error("no examples (metrics and temperature scaling need at least one)")]
    NoExamples,
    /// A logits buffer whose length is not `n × C` (`n` = number of labels).
    #[error("{len} logits, expected n × C = {n} × {n_classes}")]
    LogitsShape {
        len: usize,
        n: usize,
        n_classes: usize,
    },
    /// A label outside `0..C`; `index` is the example's row.
    #[error("label {label} of example {index} is out of range for {n_classes} classes")]
    LabelOutOfRange {
        index: usize,
        label: usize,
        n_classes: usize,
    },
    /// A NaN or infinite logit at row `index`, column `class`.
    #[error("logit [{index}, {class}] is {value}, not finite")]
    NonFiniteLogit {
        index: usize,
        class: usize,
        value: f64,
    },

    // -- probe --
    /// A class has no training example (scikit-learn fits only the classes it sees).
    #[error("class {class} of {n_classes} has no training example")]
    EmptyClass { class: usize, n_classes: usize },
    /// A feature value is NaN or infinite.
    #[error("feature {feature} of example {index} is not finite ({value})")]
    NonFiniteFeature {
        index: usize,
        feature: usize,
        value: f64,
    },
    /// Stratified k-fold cannot split: every class has fewer examples than folds.
    #[error("cannot make {folds} stratified folds: the largest class has {largest} examples")]
    TooFewForFolds { folds: usize, largest: usize },

    // -- analysis --
    /// A kernel entry is NaN or infinite; `row`/`col` index the flattened `[n1·C, n2·C]` matrix.
    #[error("kernel entry [{row}, {col}] is {value}, not finite")]
    NonFiniteKernel { row: usize, col: usize, value: f64 },
    /// A statistic divides by a norm that is zero (an all-zero feature vector, kernel or
    /// denominator); `index` is the offending row or sample, if one is.
    #[error(
        "{what} has zero norm{}",
        .index.map(|i| format!(" at index {i}")).unwrap_or_default()
    )]
    ZeroNorm {
        what: &'static str,
        index: Option<usize>,
    },
    /// A matrix decomposition (faer) did not converge.
    #[error("{decomposition} of the {what} did not converge")]
    DecompositionFailed {
        what: &'static str,
        decomposition: &'static str,
    },
}

/// A chart could not be drawn: bad input or a drawing-backend failure.
#[derive(Debug, thiserror::Error)]
#[error("plot `{title}`: {reason}")]
pub struct PlotError {
    /// Title of the chart that failed.
    pub title: String,
    /// What went wrong.
    pub reason: String,
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
