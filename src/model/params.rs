//! Checkpoint → tensors: key prefixes, missing / unexpected / wrong-shape tensors, trainable set.
//!
//! A checkpoint's keys may carry the `*ForSequenceClassification` prefix (`bert.`, `roberta.`) or
//! none (sentence-transformers' MiniLM). Keys are stored here without it; the head keeps its
//! Hugging Face name `classifier.*`. Tensors the model does not use (pooler, `position_ids`
//! buffers) are reported as unexpected; a tensor the model needs and the checkpoint lacks is an
//! error naming it, unless it is declared new (the head, LoRA factors).
//!
//! Frozen parameters are plain tensors; trainable ones are `Var`s. Backward runs through every
//! reachable `Var`, so freezing means never making one.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};

use crate::error::{Error, Result};
use crate::model::config::Arch;
use crate::model::lora::{LoraAdapter, LoraConfig};
use rand_chacha::ChaCha8Rng;

/// Which parameters become `Var`s.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Trainable {
    /// Nothing (features, evaluation, LP).
    #[default]
    None,
    /// Every parameter (FT).
    All,
    /// Only the head `classifier.*`.
    Head,
    /// Parameters whose name contains any of these substrings (e.g. `lora_`, `classifier.`).
    Matching(Vec<String>),
}

impl Trainable {
    fn includes(&self, name: &str) -> bool {
        match self {
            Trainable::None => false,
            Trainable::All => true,
            Trainable::Head => name.starts_with("classifier."),
            Trainable::Matching(pats) => pats.iter().any(|p| name.contains(p.as_str())),
        }
    }
}

/// The tensors of a checkpoint, keyed without the architecture prefix, as f32 on `device`.
pub struct Checkpoint {
    /// The weights file.
    pub path: PathBuf,
    /// The prefix that was stripped (`"bert"`, `"roberta"`), if any.
    pub prefix: Option<String>,
    tensors: BTreeMap<String, Tensor>,
}

/// Reads a PyTorch zip checkpoint (`pytorch_model.bin`) with candle's pickle reader, after
/// checking every member's CRC-32 (a corrupted file is then an error naming it, not whatever the
/// pickle reader makes of it). The reader can panic on malformed pickle streams (found by
/// fuzzing); that is caught and reported as a malformed checkpoint.
fn read_pickle(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bad = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| bad(format!("not a PyTorch zip checkpoint: {e}")))?;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| bad(format!("unreadable member {i}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| bad(format!("member {i} has an unreadable name: {e}")))?
            .to_string();
        // Reading a member to its end makes the zip crate check its CRC-32.
        std::io::copy(&mut entry, &mut std::io::sink())
            .map_err(|e| bad(format!("member {name} is corrupted: {e}")))?;
    }
    match std::panic::catch_unwind(|| candle_core::pickle::read_all(path)) {
        Ok(tensors) => Ok(tensors?),
        Err(_) => Err(bad(
            "malformed pickle data (the pickle reader gave up)".into()
        )),
    }
}

impl Checkpoint {
    /// Loads `model.safetensors` or (through candle's pickle reader) `pytorch_model.bin`.
    /// Floating tensors are converted to f32; integer buffers are kept as they are.
    pub fn load(path: &Path, arch: Arch, device: &Device) -> Result<Self> {
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let is_pickle = path
            .extension()
            .is_some_and(|e| e == "bin" || e == "pt" || e == "pth");
        let raw: Vec<(String, Tensor)> = if is_pickle {
            read_pickle(path)?
        } else {
            candle_core::safetensors::load(path, device)?
                .into_iter()
                .collect()
        };
        Self::from_tensors(path, raw, arch, device)
    }

    /// Builds a checkpoint from named tensors (used by `load` and by tests).
    pub fn from_tensors(
        path: &Path,
        raw: Vec<(String, Tensor)>,
        arch: Arch,
        device: &Device,
    ) -> Result<Self> {
        let want = format!("{}.", arch.prefix());
        let prefixed = raw.iter().any(|(k, _)| k.starts_with(&want));
        let mut tensors = BTreeMap::new();
        for (key, t) in raw {
            let name = match key.strip_prefix(&want) {
                Some(rest) if prefixed => rest.to_string(),
                _ => key,
            };
            let t = if t.dtype().is_float() {
                t.to_dtype(DType::F32)?
            } else {
                t
            };
            tensors.insert(name, t.to_device(device)?);
        }
        Ok(Self {
            path: path.to_path_buf(),
            prefix: prefixed.then(|| arch.prefix().to_string()),
            tensors,
        })
    }

    /// Adds or replaces tensors from another file (trained weights over a base checkpoint).
    /// PEFT's `base_model.model.` and the architecture prefix are stripped from the keys.
    pub fn overlay(&mut self, raw: Vec<(String, Tensor)>, arch: Arch) -> Result<()> {
        let want = format!("{}.", arch.prefix());
        for (key, t) in raw {
            let key = key.strip_prefix("base_model.model.").unwrap_or(&key);
            let name = key.strip_prefix(&want).unwrap_or(key).to_string();
            let t = if t.dtype().is_float() {
                t.to_dtype(DType::F32)?
            } else {
                t
            };
            let device = self
                .tensors
                .values()
                .next()
                .map(|x| x.device().clone())
                .unwrap_or(Device::Cpu);
            self.tensors.insert(name, t.to_device(&device)?);
        }
        Ok(())
    }

    /// The checkpoint with every floating tensor in `dtype` (f32 on loading). An f64 copy runs
    /// the model through candle's composed ops instead of the fused f32 kernels, which is how the
    /// tests check the kernels against an independent path, whole model included.
    pub fn to_dtype(mut self, dtype: DType) -> Result<Self> {
        for t in self.tensors.values_mut() {
            if t.dtype().is_float() {
                *t = t.to_dtype(dtype)?;
            }
        }
        Ok(self)
    }

    /// The dtype of the floating tensors (f32 unless converted with [`Checkpoint::to_dtype`]).
    pub fn float_dtype(&self) -> DType {
        self.tensors
            .values()
            .map(Tensor::dtype)
            .find(|d| d.is_float())
            .unwrap_or(DType::F32)
    }

    /// Names of all tensors (prefix stripped), sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of floating-point scalars in the checkpoint (integer buffers such as
    /// `position_ids` excluded).
    pub fn parameter_count(&self) -> usize {
        self.tensors
            .values()
            .filter(|t| t.dtype().is_float())
            .map(Tensor::elem_count)
            .sum()
    }

    /// The tensor called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }
}

/// Hands checkpoint tensors to layer constructors, checks shapes, makes trainable ones `Var`s and
/// records which names were used.
pub struct Params<'a> {
    ckpt: &'a Checkpoint,
    trainable: Trainable,
    lora: Option<(LoraConfig, RefCell<ChaCha8Rng>)>,
    device: Device,
    used: RefCell<BTreeSet<String>>,
    vars: RefCell<BTreeMap<String, Var>>,
    created: RefCell<BTreeSet<String>>,
    /// Every tensor handed out, with its name, in the order the model asked for them.
    loaded: RefCell<Vec<(String, Tensor)>>,
}

impl<'a> Params<'a> {
    /// Parameters drawn from `ckpt`, with `trainable` deciding which become `Var`s.
    pub fn new(ckpt: &'a Checkpoint, trainable: Trainable) -> Self {
        let device = ckpt
            .tensors
            .values()
            .next()
            .map(|t| t.device().clone())
            .unwrap_or(Device::Cpu);
        Self {
            ckpt,
            trainable,
            lora: None,
            device,
            used: RefCell::default(),
            vars: RefCell::default(),
            created: RefCell::default(),
            loaded: RefCell::default(),
        }
    }

    /// Every tensor handed out so far, `(name, tensor)` in the order the layers loaded them: the
    /// one list of a model's parameter names, which the layers spell once, when they load.
    pub fn loaded(&self) -> Vec<(String, Tensor)> {
        self.loaded.borrow().clone()
    }

    /// Adds LoRA adapters to the modules `cfg` targets; new factors are drawn from `rng`
    /// (the `lora_init` stream) in module order.
    pub fn with_lora(mut self, cfg: LoraConfig, rng: ChaCha8Rng) -> Self {
        self.lora = Some((cfg, RefCell::new(rng)));
        self
    }

    /// The adapter of module `path` if LoRA targets it: `{path}.lora_A.weight` `[r, in]` and
    /// `{path}.lora_B.weight` `[out, r]` from the checkpoint, else A ~ U(−1/√in, 1/√in), B = 0.
    pub fn lora_adapter(
        &self,
        path: &str,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<Option<LoraAdapter>> {
        let Some((cfg, rng)) = &self.lora else {
            return Ok(None);
        };
        if !cfg.matches(path) {
            return Ok(None);
        }
        let r = cfg.r;
        let a = self.get_or_init(&format!("{path}.lora_A.weight"), &[r, in_dim], || {
            // REF: kaiming_uniform_(a=√5) on [r, in]: bound = gain·√(3/fan_in) = 1/√in.
            let bound = 1.0 / (in_dim as f32).sqrt();
            let v = crate::rng::uniform_vec(&mut *rng.borrow_mut(), r * in_dim, -bound, bound);
            Ok(Tensor::from_vec(v, (r, in_dim), &self.device)?)
        })?;
        let b = self.get_or_init(&format!("{path}.lora_B.weight"), &[out_dim, r], || {
            Ok(Tensor::zeros((out_dim, r), DType::F32, &self.device)?)
        })?;
        Ok(Some(LoraAdapter {
            a,
            b,
            scale: cfg.scale(),
            dropout: cfg.dropout,
        }))
    }

    /// The device the tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The checkpoint tensor `name`, which must have shape `dims`.
    pub fn get(&self, name: &str, dims: &[usize]) -> Result<Tensor> {
        let t = self.ckpt.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.ckpt.path.clone(),
            name: self.full_name(name),
        })?;
        if t.dims() != dims {
            return Err(Error::TensorShape {
                path: self.ckpt.path.clone(),
                name: self.full_name(name),
                expected: dims.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        self.used.borrow_mut().insert(name.to_string());
        self.wrap(name, t.clone())
    }

    /// The checkpoint tensor `name` if present with shape `dims`, else `init()`: for tensors a
    /// model declares new, such as a fresh head. A checkpoint tensor of another shape (a head
    /// trained for another number of classes) is left unused, so it is reported as unexpected.
    pub fn get_or_init(
        &self,
        name: &str,
        dims: &[usize],
        init: impl FnOnce() -> Result<Tensor>,
    ) -> Result<Tensor> {
        match self.ckpt.get(name) {
            Some(t) if t.dims() == dims => return self.get(name, dims),
            Some(t) => log::warn!(
                "{}: `{}` has shape {:?}, not {:?}: initialising a new one",
                self.ckpt.path.display(),
                self.full_name(name),
                t.dims(),
                dims
            ),
            None => {}
        }
        let mut t = init()?;
        // New tensors (a head, LoRA factors) are drawn in f32; they follow the checkpoint.
        let dtype = self.ckpt.float_dtype();
        if t.dtype().is_float() && t.dtype() != dtype {
            t = t.to_dtype(dtype)?;
        }
        if t.dims() != dims {
            return Err(Error::Shape {
                what: "initialised parameter",
                expected: format!("{dims:?}"),
                found: format!("{:?}", t.dims()),
            });
        }
        self.created.borrow_mut().insert(name.to_string());
        self.wrap(name, t)
    }

    fn wrap(&self, name: &str, t: Tensor) -> Result<Tensor> {
        let out = if self.trainable.includes(name) {
            let var = Var::from_tensor(&t)?;
            let out = var.as_tensor().clone();
            self.vars.borrow_mut().insert(name.to_string(), var);
            out
        } else {
            t.detach()
        };
        self.loaded
            .borrow_mut()
            .push((name.to_string(), out.clone()));
        Ok(out)
    }

    fn full_name(&self, name: &str) -> String {
        match &self.ckpt.prefix {
            Some(p) if !name.starts_with("classifier.") => format!("{p}.{name}"),
            _ => name.to_string(),
        }
    }

    /// Closes the loading: what was unused, what was created, and the trainable `Var`s.
    pub fn finish(self) -> LoadReport {
        let used = self.used.borrow().clone();
        let unexpected = self
            .ckpt
            .names()
            .filter(|n| !used.contains(*n))
            .map(|n| self.full_name(n))
            .collect();
        LoadReport {
            unexpected,
            created: self.created.into_inner().into_iter().collect(),
            vars: self.vars.into_inner(),
        }
    }
}

/// What loading a model found and made.
pub struct LoadReport {
    /// Checkpoint tensors the model does not use (pooler, `position_ids`), full names.
    pub unexpected: Vec<String>,
    /// Parameters that were not in the checkpoint and were initialised (the head, adapters).
    pub created: Vec<String>,
    /// Trainable parameters by name (prefix stripped), sorted.
    pub vars: BTreeMap<String, Var>,
}

impl LoadReport {
    /// Number of trainable scalars.
    pub fn trainable_count(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }
}
