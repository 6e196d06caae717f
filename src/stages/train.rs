//! The training stage: one (task, method, seed) cell into its run directory
//! (`<out>/<task>/<method>/seed-<seed>/`, laid out as [`crate::rundir`] describes): the LP stage,
//! the gradient stage with its per-epoch checkpoints, evaluation, export, and `metrics.json`
//! last.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::data::batch::TextTokenizer;
use crate::data::{self, LoadOptions, TaskData};
use crate::error::{Error, Result};
use crate::hub::models::{self, FetchOptions, ModelSource};
use crate::methods::config::{Method, RunConfig};
use crate::methods::evaluate;
use crate::methods::lp::{self, LpSummary};
use crate::methods::progress::Observer;
use crate::methods::train::{self, TrainInputs};
use crate::model::export;
use crate::model::{ModelFiles, SequenceClassifier, Trainable};
use crate::probe::logreg::LogReg;
use crate::rundir::{self, lock_path, run_dir, write_json, CheckpointDir, Manifest, RunMetrics};

/// How to treat an existing run directory.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue an interrupted run from its last completed epoch.
    pub resume: bool,
    /// Delete an existing run directory and start again.
    pub overwrite: bool,
    /// A folder of LP results shared by runs (a grid's): a run whose LP stage has the same
    /// inputs as one already there (model files, training examples, tokenisation, LP settings)
    /// reads the probe instead of fitting it again (see `LpCacheKey`).
    pub lp_cache: Option<PathBuf>,
}

/// Everything the LP stage's result depends on: LP, LP-FT and LP-LoRA of every seed of a
/// (task, model, LP setting) fit the same probe (the features are eval-mode and the fit is
/// deterministic), so a grid fits it once. The model enters by its files' paths, sizes and
/// modification times; a change to any of these inputs is a new key.
#[derive(Debug, Serialize)]
struct LpCacheKey<'a> {
    format: u32,
    weights: (String, u64, u128),
    config: (String, u64, u128),
    tokenizer: (String, u64, u128),
    tokenize: &'a crate::data::batch::TokenizeConfig,
    lp: &'a crate::methods::config::LpConfig,
    eval_batch_size: usize,
    /// sha256 of the training examples and labels.
    train: String,
}

/// What the cache keeps of an LP stage: the probe and what the summary reports of it.
#[derive(Debug, Serialize, Deserialize)]
struct CachedLp {
    key: serde_json::Value,
    probe: LogReg,
    c: f64,
    cv_mean: Option<Vec<f64>>,
    train_accuracy: f64,
}

pub(crate) fn file_stamp(path: &Path) -> Result<(String, u64, u128)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok((path.display().to_string(), meta.len(), mtime))
}

/// The cache file of an LP stage with these inputs, and the key it must hold.
fn lp_cache_entry(
    dir: &Path,
    files: &ModelFiles,
    cfg: &RunConfig,
    task: &TaskData,
) -> Result<(PathBuf, serde_json::Value)> {
    use sha2::{Digest, Sha256};
    let examples = serde_json::to_vec(&task.train).map_err(|e| Error::Json {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let config = files.weights.with_file_name("config.json");
    let key = LpCacheKey {
        format: 1,
        weights: file_stamp(&files.weights)?,
        config: file_stamp(&config)?,
        tokenizer: file_stamp(&files.tokenizer)?,
        tokenize: &cfg.tokenize,
        lp: &cfg.lp,
        eval_batch_size: cfg.train.eval_batch_size,
        train: crate::fsutil::to_hex(&Sha256::digest(&examples)),
    };
    let key = serde_json::to_value(&key).map_err(|e| Error::Json {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let digest = Sha256::digest(key.to_string().as_bytes());
    let name = format!("lp-{}.json", &crate::fsutil::to_hex(&digest)[..16]);
    Ok((dir.join(name), key))
}

/// A finished run.
pub struct RunOutcome {
    pub dir: PathBuf,
    pub metrics: RunMetrics,
}

/// Loads a task as a run config names it.
pub fn load_task(cfg: &RunConfig) -> Result<TaskData> {
    let opts = LoadOptions {
        max_train_samples: cfg.max_train_samples,
    };
    if let Some(files) = &cfg.files {
        return data::load_file_task(&cfg.task, files, &opts);
    }
    crate::hub::find_task(&cfg.task, cfg.data_dir.as_deref(), &opts).map(|(task, _)| task)
}

/// A resumed run must continue with the settings it started with: a run directory holding a
/// `config.json` and a checkpoint is only continued with an equal config.
fn check_resumed_config(dir: &Path, cfg: &RunConfig) -> Result<()> {
    let path = dir.join(rundir::CONFIG);
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
    let finished = rundir::is_finished(dir);
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
    write_json(&dir.join(rundir::CONFIG), cfg)?;

    let resolved = models::resolve(&ModelSource::parse(&cfg.model), &FetchOptions::default())?;
    let files = ModelFiles::open(&resolved.dir)?;
    let task = load_task(cfg)?;
    let train_labels = data::require_labels(&task.train, &format!("{} train", task.task))?;
    let val_labels = data::require_labels(&task.validation, &format!("{} validation", task.task))?;
    let test_labels = data::require_labels(&task.test, &format!("{} test", task.task))?;
    let n_classes = task.labels.len();

    let device = crate::device::current();
    let ckpt = files.checkpoint(&device)?;
    let trainable = match cfg.method {
        Method::Lp => Trainable::None,
        Method::Ft | Method::LpFt => Trainable::All,
        Method::Lora | Method::LpLora => {
            Trainable::Matching(vec!["lora_".into(), "classifier.".into()])
        }
    };
    let model_opts = cfg.model_options(n_classes, trainable);
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
    let tok = TextTokenizer::for_model(&files, cfg.tokenize)?;
    let train_enc = tok.encode_examples(&task.train)?;
    let val_enc = tok.encode_examples(&task.validation)?;
    let test_enc = tok.encode_examples(&task.test)?;
    let initial_classifier_norm = model.head.norm()?;

    let lp_summary = if cfg.method.has_lp() {
        let entry = match &opts.lp_cache {
            Some(dir) => Some(lp_cache_entry(dir, &files, cfg, &task)?),
            None => None,
        };
        let cached = match &entry {
            // An unreadable entry (a crash cannot leave one: writes are atomic) is refitted and
            // replaced, with a warning.
            Some((path, key)) => match crate::fsutil::read_json_opt::<CachedLp>(path) {
                Ok(c) => c.filter(|c| &c.key == key),
                Err(e) => {
                    log::warn!("ignoring the LP cache entry {}: {e}", path.display());
                    None
                }
            },
            None => None,
        };
        let cached = match cached {
            Some(c) => {
                observer.stage("LP: the probe this grid already fitted on these inputs");
                c
            }
            None => {
                observer.stage("LP: frozen features of the training split");
                let h = files.config.hidden_size;
                let x = lp::features(&model, &tok, &train_enc, cfg.train.eval_batch_size)?;
                observer.stage("LP: logistic regression");
                let (probe, c, cv_mean) =
                    lp::fit_probe(&cfg.lp, &x, train_enc.len(), h, &train_labels, n_classes)?;
                let train_accuracy = probe.accuracy(&x, train_enc.len(), &train_labels)?;
                let fitted = CachedLp {
                    key: entry
                        .as_ref()
                        .map_or(serde_json::Value::Null, |e| e.1.clone()),
                    probe,
                    c,
                    cv_mean,
                    train_accuracy,
                };
                if let Some((path, _)) = &entry {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| Error::Write {
                            path: parent.to_path_buf(),
                            source: e,
                        })?;
                    }
                    write_json(path, &fitted)?;
                }
                fitted
            }
        };
        let CachedLp {
            probe,
            c,
            cv_mean,
            train_accuracy,
            ..
        } = cached;
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
            train_accuracy,
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
        write_json(&dir.join(rundir::LP_SUMMARY), &summary)?;
        export::write_head(&model, &dir.join(rundir::LP_HEAD))?;
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
        let snapshots = cfg.train.save_total_limit.map(|limit| Snapshots {
            run: &dir,
            limit,
            model: &model,
            files: &files,
            cfg,
            labels: &task.labels,
            base_model: &resolved.name,
        });
        let ckpt_dir = RunCheckpoints {
            dir: CheckpointDir::new(&dir),
            snapshots,
        };
        let state = train::train(
            &model,
            &report.vars,
            &inputs,
            &ckpt_dir,
            opts.resume,
            observer,
        )?;
        rundir::write_history(&dir, &state.history)?;
        if cfg.train.writes_log_history() {
            rundir::write_log_history(&dir, &state.log)?;
        }
        best_epoch = state.best_epoch;
        epochs_run = state.epochs_done;
    }

    observer.stage("evaluating validation and test");
    let bs = cfg.train.eval_batch_size;
    let (val_logits, validation) = evaluate::evaluate(&model, &tok, &val_enc, &val_labels, bs)?;
    let (test_logits, test) = evaluate::evaluate(&model, &tok, &test_enc, &test_labels, bs)?;
    rundir::save_predictions(&dir, "validation", &val_logits, &val_labels, n_classes)?;
    rundir::save_predictions(&dir, "test", &test_logits, &test_labels, n_classes)?;

    export::write_head(&model, &dir.join(rundir::HEAD))?;
    let exported = match cfg.method {
        Method::Ft | Method::LpFt => Some(dir.join(rundir::MODEL_DIR)),
        Method::Lora | Method::LpLora => Some(dir.join(rundir::ADAPTER_DIR)),
        Method::Lp => None,
    };
    if let Some(to) = exported {
        write_export(&model, &files, cfg, &task.labels, &resolved.name, &to)?;
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
        device: Some(crate::device::describe(&device)),
    };
    write_json(&dir.join(rundir::MANIFEST), &manifest)?;
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
    write_json(&dir.join(rundir::METRICS), &metrics)?;
    Ok(RunOutcome { dir, metrics })
}

/// The trained model in the format its users load: an HF model directory (FT, LP-FT) or a PEFT
/// adapter (LoRA, LP-LoRA), into `to`. LP has nothing beyond its head.
fn write_export(
    model: &SequenceClassifier,
    files: &ModelFiles,
    cfg: &RunConfig,
    labels: &[String],
    base_model: &str,
    to: &Path,
) -> Result<()> {
    match cfg.method {
        Method::Ft | Method::LpFt => export::write_hf_model(model, files, labels, to),
        Method::Lora | Method::LpLora => {
            export::write_peft_adapter(model, files, &cfg.lora, base_model, to)
        }
        Method::Lp => Ok(()),
    }
}

/// The gradient stage's checkpoints: the resume state and the best parameters in
/// `checkpoint/`, and with `save_total_limit` the newest epochs' exports.
struct RunCheckpoints<'a> {
    dir: CheckpointDir,
    snapshots: Option<Snapshots<'a>>,
}

/// `save_total_limit` (transformers' name): after each epoch the model as `checkpoint-<step>/`
/// in the run directory (the same files as `model/` or `adapter/`, with `lpft_checkpoint.json`
/// naming the epoch and step), keeping the newest `limit` and the best epoch's.
struct Snapshots<'a> {
    run: &'a Path,
    limit: usize,
    model: &'a SequenceClassifier,
    files: &'a ModelFiles,
    cfg: &'a RunConfig,
    labels: &'a [String],
    base_model: &'a str,
}

/// What `lpft_checkpoint.json` in a `checkpoint-<step>/` says.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotInfo {
    epoch: usize,
    step: usize,
}

/// The name of a snapshot's file that says which epoch it holds.
const SNAPSHOT_INFO: &str = "lpft_checkpoint.json";

impl Snapshots<'_> {
    fn write(&self, epoch: usize, step: usize, best_epoch: Option<usize>) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e| Error::Write { path, source: e }
        };
        let name = format!("checkpoint-{step}");
        let tmp = self.run.join(format!(".{name}.tmp.d"));
        let to = self.run.join(&name);
        // A crash can leave a half-written temp folder, or (between the rename and the epoch's
        // state) a whole snapshot that the resumed epoch writes again, to the same bytes.
        for stale in [&tmp, &to] {
            if stale.exists() {
                std::fs::remove_dir_all(stale).map_err(io(stale))?;
            }
        }
        write_export(
            self.model,
            self.files,
            self.cfg,
            self.labels,
            self.base_model,
            &tmp,
        )?;
        write_json(&tmp.join(SNAPSHOT_INFO), &SnapshotInfo { epoch, step })?;
        std::fs::rename(&tmp, &to).map_err(io(&to))?;
        crate::fsutil::sync_dir(self.run);
        // Prune: the newest `limit` by step, and the best epoch's.
        let mut kept: Vec<(SnapshotInfo, PathBuf)> = Vec::new();
        let entries = std::fs::read_dir(self.run).map_err(io(self.run))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let is_snapshot = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("checkpoint-"))
                .is_some_and(|n| n.parse::<usize>().is_ok());
            if !is_snapshot {
                continue;
            }
            match crate::fsutil::read_json_opt::<SnapshotInfo>(&path.join(SNAPSHOT_INFO)) {
                Ok(Some(info)) => kept.push((info, path)),
                // Not one of ours (or unreadable): left alone.
                _ => log::warn!("{}: not an lpft snapshot, left in place", path.display()),
            }
        }
        kept.sort_by_key(|(info, _)| std::cmp::Reverse(info.step));
        for (rank, (info, path)) in kept.iter().enumerate() {
            if rank >= self.limit && Some(info.epoch) != best_epoch {
                std::fs::remove_dir_all(path).map_err(io(path))?;
            }
        }
        Ok(())
    }
}

impl train::Checkpoints for RunCheckpoints<'_> {
    fn has_state(&self) -> bool {
        self.dir.has_state()
    }

    fn load_state(
        &self,
        device: &Device,
    ) -> Result<(
        train::TrainState,
        std::collections::BTreeMap<String, candle_core::Tensor>,
        std::collections::BTreeMap<String, crate::optim::Moments>,
    )> {
        self.dir.load_state(device)
    }

    fn save_state(
        &self,
        vars: &std::collections::BTreeMap<String, candle_core::Var>,
        moments: &std::collections::BTreeMap<String, crate::optim::Moments>,
        state: &train::TrainState,
    ) -> Result<()> {
        self.dir.save_state(vars, moments, state)
    }

    fn save_best(
        &self,
        vars: &std::collections::BTreeMap<String, candle_core::Var>,
        epoch: usize,
    ) -> Result<()> {
        self.dir.save_best(vars, epoch)
    }

    fn load_best(
        &self,
        device: &Device,
        epoch: usize,
    ) -> Result<std::collections::BTreeMap<String, candle_core::Tensor>> {
        self.dir.load_best(device, epoch)
    }

    fn after_epoch(&self, epoch: usize, step: usize, best_epoch: Option<usize>) -> Result<()> {
        match &self.snapshots {
            Some(s) => s.write(epoch, step, best_epoch),
            None => Ok(()),
        }
    }
}
