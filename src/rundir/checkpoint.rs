//! Checkpoints of the gradient stage: the best-validation parameters and the resumable state.
//!
//! `checkpoint/best.safetensors` holds the trainable parameters of the best epoch so far (REF:
//! `load_best_model_at_end`), with that epoch in its metadata; `checkpoint/state.safetensors`
//! holds the parameters, AdamW moments *and* the progress ([`TrainState`], as JSON in the
//! safetensors metadata) after the last completed epoch, so `--resume` continues exactly. Each is
//! one file written atomically (temp + fsync + rename), so the state is a single unit: weights and
//! moments can never be paired with another epoch's progress, whatever moment a crash comes at.
//! On load the metadata is checked (format, epoch, the best checkpoint's epoch).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::methods::train::{Checkpoints, TrainState};
use crate::optim::Moments;

/// The checkpoint directory of a run.
pub struct CheckpointDir {
    dir: PathBuf,
}

impl CheckpointDir {
    /// `run_dir/checkpoint`.
    pub fn new(run_dir: &Path) -> Self {
        Self {
            dir: run_dir.join(super::CHECKPOINT_DIR),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether a resumable state exists (a complete one: it only ever appears by a rename).
    pub fn has_state(&self) -> bool {
        self.path(STATE_FILE).exists() || self.path(OLD_STATE_JSON).exists()
    }

    /// Saves the current values of `vars` as the best checkpoint, tagged with `epoch`.
    pub fn save_best(&self, vars: &BTreeMap<String, Var>, epoch: usize) -> Result<()> {
        let map: HashMap<String, Tensor> = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let meta = HashMap::from([
            (FORMAT_KEY.to_string(), FORMAT.to_string()),
            (BEST_EPOCH_KEY.to_string(), epoch.to_string()),
        ]);
        crate::fsutil::save_tensors_with_metadata(&map, Some(meta), &self.path(BEST_FILE))
    }

    /// The best checkpoint's tensors; `epoch` must be the one it was saved for.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when the file is from another epoch or not lpft's.
    pub fn load_best(&self, device: &Device, epoch: usize) -> Result<BTreeMap<String, Tensor>> {
        let path = self.path(BEST_FILE);
        let meta = read_metadata(&path)?;
        let saved = meta
            .get(BEST_EPOCH_KEY)
            .and_then(|e| e.parse::<usize>().ok());
        if saved != Some(epoch) {
            return Err(Error::Checkpoint {
                path,
                reason: format!(
                    "holds the parameters of epoch {}, but the training state names epoch \
                     {epoch} as the best",
                    saved.map_or("(unknown)".to_string(), |e| e.to_string())
                ),
            });
        }
        load_map(&path, device)
    }

    /// Saves parameters, moments and progress after an epoch, as one file.
    pub fn save_state(
        &self,
        vars: &BTreeMap<String, Var>,
        moments: &BTreeMap<String, Moments>,
        state: &TrainState,
    ) -> Result<()> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (k, v) in vars {
            map.insert(format!("param.{k}"), v.as_tensor().clone());
        }
        for (k, m) in moments {
            if m.m.is_empty() {
                continue;
            }
            let n = m.m.len();
            map.insert(format!("m.{k}"), Tensor::from_slice(&m.m, n, &Device::Cpu)?);
            map.insert(format!("v.{k}"), Tensor::from_slice(&m.v, n, &Device::Cpu)?);
        }
        let path = self.path(STATE_FILE);
        let json = serde_json::to_string(state).map_err(|e| Error::Json {
            path: path.clone(),
            source: e,
        })?;
        let meta = HashMap::from([
            (FORMAT_KEY.to_string(), FORMAT.to_string()),
            (STATE_KEY.to_string(), json),
        ]);
        crate::fsutil::save_tensors_with_metadata(&map, Some(meta), &path)
    }

    /// Loads the resumable state: progress, parameter values and moments.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] for a state written by an older lpft (progress in a separate
    /// `state.json`, which a crash could leave out of step with the tensors) or one whose
    /// metadata is missing or does not parse; I/O and safetensors errors.
    #[allow(clippy::type_complexity)]
    pub fn load_state(
        &self,
        device: &Device,
    ) -> Result<(
        TrainState,
        BTreeMap<String, Tensor>,
        BTreeMap<String, Moments>,
    )> {
        let path = self.path(STATE_FILE);
        if self.path(OLD_STATE_JSON).exists() {
            return Err(Error::Checkpoint {
                path: self.path(OLD_STATE_JSON),
                reason: "written by an older lpft whose checkpoints were two files; \
                         start the run again with --overwrite"
                    .into(),
            });
        }
        let meta = read_metadata(&path)?;
        let json = meta.get(STATE_KEY).ok_or_else(|| Error::Checkpoint {
            path: path.clone(),
            reason: format!("no `{STATE_KEY}` in the metadata"),
        })?;
        let state: TrainState = serde_json::from_str(json).map_err(|e| Error::Checkpoint {
            path: path.clone(),
            reason: format!("`{STATE_KEY}` does not parse: {e}"),
        })?;
        if state.history.len() != state.epochs_done {
            return Err(Error::Checkpoint {
                path,
                reason: format!(
                    "{} epochs done but {} history records",
                    state.epochs_done,
                    state.history.len()
                ),
            });
        }
        let all = load_map(&path, device)?;
        let mut params = BTreeMap::new();
        let mut moments: BTreeMap<String, Moments> = BTreeMap::new();
        for (k, t) in all {
            if let Some(name) = k.strip_prefix("param.") {
                params.insert(name.to_string(), t);
            } else if let Some(name) = k.strip_prefix("m.") {
                moments.entry(name.to_string()).or_default().m = t.to_vec1()?;
            } else if let Some(name) = k.strip_prefix("v.") {
                moments.entry(name.to_string()).or_default().v = t.to_vec1()?;
            }
        }
        Ok((state, params, moments))
    }

    /// Removes the resumable state and best checkpoint (after a run finished and exported).
    pub fn remove(&self) -> Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(|e| Error::Write {
                path: self.dir.clone(),
                source: e,
            })?;
        }
        Ok(())
    }
}

impl Checkpoints for CheckpointDir {
    fn has_state(&self) -> bool {
        CheckpointDir::has_state(self)
    }

    fn load_state(
        &self,
        device: &Device,
    ) -> Result<(
        TrainState,
        BTreeMap<String, Tensor>,
        BTreeMap<String, Moments>,
    )> {
        CheckpointDir::load_state(self, device)
    }

    fn save_state(
        &self,
        vars: &BTreeMap<String, Var>,
        moments: &BTreeMap<String, Moments>,
        state: &TrainState,
    ) -> Result<()> {
        CheckpointDir::save_state(self, vars, moments, state)
    }

    fn save_best(&self, vars: &BTreeMap<String, Var>, epoch: usize) -> Result<()> {
        CheckpointDir::save_best(self, vars, epoch)
    }

    fn load_best(&self, device: &Device, epoch: usize) -> Result<BTreeMap<String, Tensor>> {
        CheckpointDir::load_best(self, device, epoch)
    }
}

/// The resumable state: parameters, moments and progress.
const STATE_FILE: &str = "state.safetensors";
/// The best-validation parameters.
const BEST_FILE: &str = "best.safetensors";
/// Where lpft before the single-file state kept the progress.
const OLD_STATE_JSON: &str = "state.json";
/// Metadata keys and the format tag.
const FORMAT_KEY: &str = "lpft.format";
const FORMAT: &str = "lpft-checkpoint-1";
const STATE_KEY: &str = "lpft.train_state";
const BEST_EPOCH_KEY: &str = "lpft.epoch";

/// Largest safetensors header read (the header of a 22M-parameter state is ~60 KB).
const MAX_HEADER: u64 = 64 << 20;

/// The metadata of a safetensors file (only its header is read), checked to be lpft's format.
fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    use std::io::Read;
    let bad = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER {
        return Err(bad(format!(
            "not a safetensors file (header of {len} bytes)"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("truncated safetensors header: {e}")))?;
    #[derive(Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__", default)]
        metadata: HashMap<String, String>,
    }
    let meta = serde_json::from_slice::<Header>(&header)
        .map_err(|e| bad(format!("unreadable safetensors header: {e}")))?
        .metadata;
    if meta.get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
        return Err(bad(format!(
            "not an lpft checkpoint (no `{FORMAT_KEY} = {FORMAT}` in the metadata)"
        )));
    }
    Ok(meta)
}

fn load_map(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such checkpoint"),
        ));
    }
    Ok(candle_core::safetensors::load(path, device)?
        .into_iter()
        .collect())
}
