//! Checkpoints of the gradient stage: the best-validation parameters and the resumable state.
//!
//! `checkpoint/best.safetensors` holds the trainable parameters of the best epoch so far (REF:
//! `load_best_model_at_end`); `checkpoint/state.safetensors` + `state.json` hold the parameters,
//! AdamW moments and progress after the last completed epoch, so `--resume` continues exactly.
//! Every file is written atomically (temp + rename); `state.json` is written last and names the
//! epoch its tensors belong to.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::methods::optim::Moments;
use crate::methods::train::EpochRecord;

/// Progress of the gradient stage after a completed epoch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainState {
    /// Completed epochs.
    pub epochs_done: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// Best validation score so far and its (1-based) epoch.
    pub best_score: Option<f64>,
    pub best_epoch: Option<usize>,
    /// Per-epoch records so far.
    pub history: Vec<EpochRecord>,
}

/// The checkpoint directory of a run.
pub struct CheckpointDir {
    dir: PathBuf,
}

impl CheckpointDir {
    /// `run_dir/checkpoint`.
    pub fn new(run_dir: &Path) -> Self {
        Self {
            dir: run_dir.join("checkpoint"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether a resumable state exists.
    pub fn has_state(&self) -> bool {
        self.path("state.json").exists()
    }

    /// Saves the current values of `vars` as the best checkpoint.
    pub fn save_best(&self, vars: &BTreeMap<String, Var>) -> Result<()> {
        let map: HashMap<String, Tensor> = vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        crate::fsutil::save_tensors_atomic(&map, &self.path("best.safetensors"))
    }

    /// The best checkpoint's tensors.
    pub fn load_best(&self, device: &Device) -> Result<BTreeMap<String, Tensor>> {
        load_map(&self.path("best.safetensors"), device)
    }

    /// Saves parameters, moments and progress after an epoch.
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
        crate::fsutil::save_tensors_atomic(&map, &self.path("state.safetensors"))?;
        let json = serde_json::to_vec_pretty(state).map_err(|e| Error::Json {
            path: self.path("state.json"),
            source: e,
        })?;
        crate::fsutil::write_atomic(&self.path("state.json"), &json)
    }

    /// Loads the resumable state: progress, parameter values and moments.
    #[allow(clippy::type_complexity)]
    pub fn load_state(
        &self,
        device: &Device,
    ) -> Result<(
        TrainState,
        BTreeMap<String, Tensor>,
        BTreeMap<String, Moments>,
    )> {
        let path = self.path("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let state: TrainState =
            serde_json::from_str(&text).map_err(|e| Error::Json { path, source: e })?;
        let all = load_map(&self.path("state.safetensors"), device)?;
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
