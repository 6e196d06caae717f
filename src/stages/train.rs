//! One run of one method: a (task, method, seed) cell into `runs/<task>/<method>/seed-<seed>/`.
//!
//! Layout (written atomically, `metrics.json` last, so its presence marks a finished run):
//! `config.json` (the resolved [`RunConfig`]), `lp.json` (LP stage), `history.jsonl` (one
//! [`EpochRecord`] per epoch), `head.safetensors`, `model/` (FT, LP-FT: Hugging Face layout),
//! `adapter/` (LoRA, LP-LoRA: PEFT layout), `predictions/{validation,test}.safetensors` (logits),
//! `manifest.json` (versions, checksums, threads, wall time), `metrics.json`.
//! `checkpoint/` exists only while a run is unfinished (resume state).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::calibration::metrics::Metrics;
use crate::data::batch::{Encoded, TextTokenizer};
use crate::data::{self, Example, LoadOptions, TaskData};
use crate::error::{Error, Result};
use crate::methods::checkpoint::CheckpointDir;
use crate::methods::config::{Method, RunConfig};
use crate::methods::lp::{self, LpSummary};
use crate::methods::train::{self, EpochRecord, TrainInputs};
use crate::methods::{evaluate, export};
use crate::model::source::{self, FetchOptions, ModelSource};
use crate::model::{ModelFiles, ModelOptions, SequenceClassifier, Trainable};

/// Progress callbacks; the library never prints. Every method has a no-op default.
pub trait Observer {
    /// A stage begins or a notable event happens (one line of text).
    fn stage(&mut self, _message: &str) {}
    /// An epoch begins.
    fn start_epoch(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    /// A training step finished.
    fn step(&mut self, _step: usize, _loss: f64, _examples: usize) {}
    /// An epoch finished (training and validation).
    fn end_epoch(&mut self, _record: &EpochRecord) {}
}

/// An observer that ignores everything.
pub struct SilentObserver;
impl Observer for SilentObserver {}

/// How to treat an existing run directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Continue an interrupted run from its last completed epoch.
    pub resume: bool,
    /// Delete an existing run directory and start again.
    pub overwrite: bool,
}

/// The metrics of a finished run (`metrics.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMetrics {
    pub task: String,
    pub method: Method,
    pub seed: u64,
    pub model: String,
    pub labels: Vec<String>,
    pub validation: Metrics,
    pub test: Metrics,
    /// ‖V‖_F of the final head (Norm(C)), bias excluded.
    pub classifier_norm: f64,
    /// ‖V‖_F of the randomly initialised head.
    pub initial_classifier_norm: f64,
    pub lp: Option<LpSummary>,
    /// 1-based epoch whose parameters were kept (None for LP).
    pub best_epoch: Option<usize>,
    pub epochs_run: usize,
    pub trainable_parameters: usize,
    /// ‖V‖_F at the start of the gradient stage (after LP and any κ scaling).
    #[serde(default)]
    pub stage_start_classifier_norm: Option<f64>,
}

/// Versions and provenance of a run (`manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub lpft_version: String,
    pub git_commit: Option<String>,
    pub model: String,
    pub model_dir: PathBuf,
    pub model_sha256: String,
    pub threads: usize,
    pub wall_seconds: f64,
    pub started_unix: u64,
}

/// A finished run.
pub struct RunOutcome {
    pub dir: PathBuf,
    pub metrics: RunMetrics,
}

/// `out_root/<task>/<method>/seed-<seed>`.
pub fn run_dir(out_root: &Path, cfg: &RunConfig) -> PathBuf {
    out_root
        .join(&cfg.task)
        .join(cfg.method.as_str())
        .join(format!("seed-{}", cfg.seed))
}

/// The lock file of a run directory: `.<name>.lock` beside it.
pub fn lock_path(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!(".{name}.lock"))
}

/// Writes `value` as pretty JSON at `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        source: e,
    })?;
    crate::fsutil::write_atomic(path, &bytes)
}

fn encode(tok: &TextTokenizer, examples: &[Example]) -> Result<Vec<Encoded>> {
    let texts: Vec<(&str, Option<&str>)> = examples
        .iter()
        .map(|e| (e.text_a.as_str(), e.text_b.as_deref()))
        .collect();
    tok.encode(&texts)
}

/// Loads a task as a run config names it.
pub fn load_task(cfg: &RunConfig) -> Result<TaskData> {
    let opts = LoadOptions {
        max_train_samples: cfg.max_train_samples,
    };
    if let Some(files) = &cfg.files {
        return data::load_file_task(&cfg.task, files, &opts);
    }
    data::find_task(&cfg.task, cfg.data_dir.as_deref(), &opts).map(|(task, _)| task)
}

/// A resumed run must continue with the settings it started with: a run directory holding a
/// `config.json` and a checkpoint is only continued with an equal config.
fn check_resumed_config(dir: &Path, cfg: &RunConfig) -> Result<()> {
    let path = dir.join("config.json");
    if !CheckpointDir::new(dir).has_state() || !path.exists() {
        return Ok(());
    }
    let saved: serde_json::Value = crate::fsutil::read_json(&path)?;
    let now = serde_json::to_value(cfg).map_err(|e| Error::Json {
        path: path.clone(),
        source: e,
    })?;
    let mut differ = Vec::new();
    json_diff("", &saved, &now, &mut differ);
    if differ.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidArgument {
        field: "--resume".into(),
        reason: format!(
            "the interrupted run in {} was started with other settings ({}); resume it with \
             the same ones, or start again with --overwrite",
            dir.display(),
            differ.join("; ")
        ),
    })
}

/// The paths (`train.lr`) at which two JSON values differ, with both values.
fn json_diff(at: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                let null = Value::Null;
                json_diff(
                    &path,
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{at}: saved {a}, now {b}")),
        _ => {}
    }
}

fn prepare_dir(dir: &Path, opts: &RunOptions) -> Result<()> {
    let finished = dir.join("metrics.json").exists();
    let partial = CheckpointDir::new(dir).has_state();
    if opts.overwrite && dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::Write {
            path: dir.to_path_buf(),
            source: e,
        })?;
    } else if finished {
        return Err(Error::RunExists {
            dir: dir.to_path_buf(),
        });
    } else if partial && !opts.resume {
        return Err(Error::RunIncomplete {
            dir: dir.to_path_buf(),
        });
    } else if dir.exists() {
        // Temporary files of writes a crash interrupted; never read, but not left to pile up.
        crate::fsutil::remove_stale_temps(dir);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Write {
        path: dir.to_path_buf(),
        source: e,
    })
}

/// Runs one cell. See the module docs for what it writes.
pub fn run(
    cfg: &RunConfig,
    out_root: &Path,
    opts: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<RunOutcome> {
    cfg.validate()?;
    let started = std::time::Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dir = run_dir(out_root, cfg);
    // Held for the whole run: a second process on the same directory is refused, never
    // interleaved. The lock file sits beside the run directory, so --overwrite can remove that.
    let _lock = crate::fsutil::try_lock(&lock_path(&dir), &dir)?;
    prepare_dir(&dir, opts)?;
    check_resumed_config(&dir, cfg)?;
    write_json(&dir.join("config.json"), cfg)?;

    let resolved = source::resolve(&ModelSource::parse(&cfg.model), &FetchOptions::default())?;
    let files = ModelFiles::open(&resolved.dir)?;
    let task = load_task(cfg)?;
    let train_labels = data::require_labels(&task.train, &format!("{} train", task.task))?;
    let val_labels = data::require_labels(&task.validation, &format!("{} validation", task.task))?;
    let test_labels = data::require_labels(&task.test, &format!("{} test", task.task))?;
    let n_classes = task.labels.len();

    let device = Device::Cpu;
    let ckpt = files.checkpoint(&device)?;
    let trainable = match cfg.method {
        Method::Lp => Trainable::None,
        Method::Ft | Method::LpFt => Trainable::All,
        Method::Lora | Method::LpLora => {
            Trainable::Matching(vec!["lora_".into(), "classifier.".into()])
        }
    };
    let model_opts = ModelOptions {
        num_labels: n_classes,
        pooling: cfg.pooling,
        trainable,
        model_seed: cfg.model_seed,
        lora: cfg.method.uses_lora().then(|| cfg.lora.clone()),
    };
    let (mut model, report) = SequenceClassifier::load(&ckpt, &files.config, &model_opts)?;
    let trainable_parameters = report.trainable_count();
    observer.stage(&format!(
        "{} {} seed {}: {} train / {} validation / {} test examples, {} trainable parameters",
        task.task,
        cfg.method,
        cfg.seed,
        task.train.len(),
        task.validation.len(),
        task.test.len(),
        trainable_parameters
    ));
    let mut tok_cfg = cfg.tokenize;
    tok_cfg.max_len = tok_cfg.max_len.min(files.config.max_input_len());
    let tok = TextTokenizer::load(&files.tokenizer, files.config.pad_token_id, tok_cfg)?;
    let train_enc = encode(&tok, &task.train)?;
    let val_enc = encode(&tok, &task.validation)?;
    let test_enc = encode(&tok, &task.test)?;
    let initial_classifier_norm = model.head.norm()?;

    let lp_summary = if cfg.method.has_lp() {
        observer.stage("LP: frozen features of the training split");
        let h = files.config.hidden_size;
        let x = lp::features(&model, &tok, &train_enc, cfg.train.eval_batch_size)?;
        observer.stage("LP: logistic regression");
        let (probe, c, cv_mean) =
            lp::fit_probe(&cfg.lp, &x, train_enc.len(), h, &train_labels, n_classes)?;
        lp::install_head(&mut model, &report.vars, &probe)?;
        let summary = LpSummary {
            c,
            cross_validated: cfg.lp.c.is_none(),
            cv_mean_accuracy: cv_mean.unwrap_or_default(),
            cs: if cfg.lp.c.is_none() {
                cfg.lp.cs.clone()
            } else {
                vec![]
            },
            n_iter: probe.n_iter,
            converged: probe.converged,
            train_accuracy: probe.accuracy(&x, train_enc.len(), &train_labels)?,
            head_norm: model.head.norm()?,
            random_head_norm: initial_classifier_norm,
            binary_halving: n_classes == 2,
        };
        observer.stage(&format!(
            "LP: C = {:.4e}{}, ‖V‖_F {:.4} (random head {:.4}){}",
            summary.c,
            if summary.cross_validated {
                " (cross-validated)"
            } else {
                " (fixed)"
            },
            summary.head_norm,
            initial_classifier_norm,
            if summary.binary_halving {
                "; binary task: head installed as [−w/2; w/2] like the reference"
            } else {
                ""
            }
        ));
        write_json(&dir.join("lp.json"), &summary)?;
        crate::methods::export::write_head(&model, &dir.join("lp_head.safetensors"))?;
        Some(summary)
    } else {
        None
    };

    let mut best_epoch = None;
    let mut epochs_run = 0;
    let mut stage_start_norm = None;
    if cfg.method.has_gradient_stage() {
        if cfg.head_scale != 1.0 {
            let scaled = (&model.head.weight * cfg.head_scale)?;
            match report.vars.get("classifier.weight") {
                Some(v) => v.set(&scaled)?,
                None => model.head.weight = scaled,
            }
            observer.stage(&format!(
                "head scaled by κ = {}: ‖V‖_F {:.4}",
                cfg.head_scale,
                model.head.norm()?
            ));
        }
        stage_start_norm = Some(model.head.norm()?);
        let inputs = TrainInputs {
            tokenizer: &tok,
            train: &train_enc,
            train_labels: &train_labels,
            validation: &val_enc,
            validation_labels: &val_labels,
            cfg: &cfg.train,
            seed: cfg.seed,
            metric: task.metric,
        };
        let ckpt_dir = CheckpointDir::new(&dir);
        let state = train::train(
            &model,
            &report.vars,
            &inputs,
            &ckpt_dir,
            opts.resume,
            observer,
        )?;
        let mut lines = Vec::new();
        for rec in &state.history {
            let line = serde_json::to_string(rec).map_err(|e| Error::Json {
                path: dir.join("history.jsonl"),
                source: e,
            })?;
            lines.push(line);
        }
        crate::fsutil::write_atomic(
            &dir.join("history.jsonl"),
            (lines.join("\n") + "\n").as_bytes(),
        )?;
        best_epoch = state.best_epoch;
        epochs_run = state.epochs_done;
    }

    observer.stage("evaluating validation and test");
    let bs = cfg.train.eval_batch_size;
    let (val_logits, validation) = evaluate::evaluate(&model, &tok, &val_enc, &val_labels, bs)?;
    let (test_logits, test) = evaluate::evaluate(&model, &tok, &test_enc, &test_labels, bs)?;
    save_predictions(&dir, "validation", &val_logits, &val_labels, n_classes)?;
    save_predictions(&dir, "test", &test_logits, &test_labels, n_classes)?;

    export::write_head(&model, &dir.join("head.safetensors"))?;
    match cfg.method {
        Method::Ft | Method::LpFt => {
            export::write_hf_model(&model, &files, &task.labels, &dir.join("model"))?
        }
        Method::Lora | Method::LpLora => export::write_peft_adapter(
            &model,
            &files,
            &cfg.lora,
            &resolved.name,
            &dir.join("adapter"),
        )?,
        Method::Lp => {}
    }
    let model_sha256 = match &resolved.sha256 {
        Some(s) => s.clone(),
        None => crate::fsutil::sha256_file(&files.weights)?,
    };
    let manifest = Manifest {
        lpft_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: option_env!("LPFT_GIT_COMMIT").map(str::to_string),
        model: resolved.name.clone(),
        model_dir: resolved.dir.clone(),
        model_sha256,
        threads: candle_core::utils::get_num_threads(),
        wall_seconds: started.elapsed().as_secs_f64(),
        started_unix,
    };
    write_json(&dir.join("manifest.json"), &manifest)?;
    let metrics = RunMetrics {
        task: task.task.clone(),
        method: cfg.method,
        seed: cfg.seed,
        model: resolved.name.clone(),
        labels: task.labels.clone(),
        validation,
        test,
        classifier_norm: model.head.norm()?,
        initial_classifier_norm,
        lp: lp_summary,
        best_epoch,
        epochs_run,
        trainable_parameters,
        stage_start_classifier_norm: stage_start_norm,
    };
    // The resume state goes before the finishing mark, so a finished run never carries one; a
    // crash between the two only means that a resumed run trains again (to the same bytes).
    CheckpointDir::new(&dir).remove()?;
    write_json(&dir.join("metrics.json"), &metrics)?;
    Ok(RunOutcome { dir, metrics })
}

/// Saves eval logits `[n, C]` (f32) and labels `[n]` as `predictions/<split>.safetensors`.
pub fn save_predictions(
    dir: &Path,
    split: &str,
    logits: &[f64],
    labels: &[usize],
    n_classes: usize,
) -> Result<()> {
    let n = labels.len();
    let z: Vec<f32> = logits.iter().map(|&v| v as f32).collect();
    let y: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    let map = HashMap::from([
        (
            "logits".to_string(),
            Tensor::from_vec(z, (n, n_classes), &Device::Cpu)?,
        ),
        ("labels".to_string(), Tensor::from_vec(y, n, &Device::Cpu)?),
    ]);
    crate::fsutil::save_tensors_atomic(
        &map,
        &dir.join("predictions").join(format!("{split}.safetensors")),
    )
}

/// Reads a finished run's metrics.
pub fn read_metrics(dir: &Path) -> Result<RunMetrics> {
    let path = dir.join("metrics.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json { path, source: e })
}
