//! `lpft fetch-data`: installs built-in tasks into `$LPFT_HOME/data` from their public sources,
//! as the checked-in manifest (`assets/datasets.toml`) pins them.
//!
//! For each task: every file is downloaded (or extracted from its zip archive, or converted from
//! parquet) into a staging folder beside the destination and checked against its pinned SHA-256;
//! a source whose bytes differ is skipped for the next one. Only when every file of the task is
//! verified is the staging folder renamed into place, so an interrupted or corrupted download
//! leaves nothing installed. Offline (`--offline`, `HF_HUB_OFFLINE`, `LPFT_OFFLINE`) nothing
//! touches the network: installed tasks are verified and the missing ones listed.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::data::tasks::Task;
use crate::error::{Error, Result};
use crate::fsutil::sha256_file;

/// The manifest compiled into lpft.
const BUILTIN_MANIFEST: &str = include_str!("../../assets/datasets.toml");

/// Sources and pinned hashes of the tasks `fetch-data` installs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "task")]
    pub tasks: Vec<TaskEntry>,
}

/// One task: the directory it owns under the data directory, and its files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskEntry {
    /// A built-in task name (`cb`, `rte`, ...).
    pub name: String,
    /// Relative directory under the data directory, installed as a unit (e.g. `superglue/CB`).
    pub dir: String,
    #[serde(rename = "file")]
    pub files: Vec<FileEntry>,
}

/// One installed file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the task's `dir`.
    pub path: String,
    /// SHA-256 of the installed file.
    pub sha256: String,
    /// Where to get it, in order of preference.
    pub sources: Vec<SourceEntry>,
}

/// One place a file can come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    /// `https://...`, or `hf://datasets/OWNER/NAME@REVISION/PATH` (a Hub dataset repo file).
    pub url: String,
    /// The file's path inside the zip archive at `url`.
    #[serde(default)]
    pub member: Option<String>,
    /// Which version of the distribution this is (for people; URLs pin it where they can).
    #[serde(default)]
    pub revision: Option<String>,
    /// `parquet-jsonl`: the file at `url` is parquet, installed as JSON lines.
    #[serde(default)]
    pub convert: Option<String>,
}

impl Manifest {
    /// The manifest compiled into lpft.
    pub fn builtin() -> &'static Manifest {
        static MANIFEST: OnceLock<Manifest> = OnceLock::new();
        MANIFEST.get_or_init(|| {
            Manifest::parse(BUILTIN_MANIFEST, Path::new("assets/datasets.toml"))
                .expect("the built-in manifest is checked by a test")
        })
    }

    /// Reads a manifest file (`fetch-data --manifest`).
    ///
    /// # Errors
    /// [`Error::Io`], or [`Error::Parse`] naming the file and what is wrong.
    pub fn from_file(path: &Path) -> Result<Manifest> {
        let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Manifest::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Manifest> {
        let bad = |line: usize, field: Option<String>, message: String| Error::Parse {
            path: path.to_path_buf(),
            line,
            field,
            message,
        };
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map_or(0, |s| 1 + text[..s.start].matches('\n').count());
            bad(line, None, e.message().to_string())
        })?;
        let mut seen = std::collections::HashSet::new();
        for t in &manifest.tasks {
            let field = |f: &str| Some(format!("task `{}`: {f}", t.name));
            t.name
                .parse::<Task>()
                .map_err(|e| bad(0, field("name"), e.to_string()))?;
            if !seen.insert(t.name.as_str()) {
                return Err(bad(0, field("name"), "listed twice".into()));
            }
            if !is_relative_path(&t.dir) {
                return Err(bad(
                    0,
                    field("dir"),
                    format!("`{}` is not a relative path", t.dir),
                ));
            }
            if t.files.is_empty() {
                return Err(bad(0, field("file"), "no files".into()));
            }
            for f in &t.files {
                let field = |what: &str| field(&format!("file `{}`: {what}", f.path));
                if !is_relative_path(&f.path) {
                    return Err(bad(0, field("path"), "not a relative path".into()));
                }
                let hex = f.sha256.len() == 64 && f.sha256.bytes().all(|b| b.is_ascii_hexdigit());
                if !hex {
                    return Err(bad(0, field("sha256"), "not 64 hex digits".into()));
                }
                if f.sources.is_empty() {
                    return Err(bad(0, field("sources"), "no sources".into()));
                }
                for s in &f.sources {
                    if let Some(c) = s.convert.as_deref().filter(|c| *c != "parquet-jsonl") {
                        return Err(bad(
                            0,
                            field("convert"),
                            format!("unknown conversion `{c}` (known: parquet-jsonl)"),
                        ));
                    }
                    if s.convert.is_some() && s.member.is_some() {
                        return Err(bad(
                            0,
                            field("member"),
                            "cannot convert an archive member".into(),
                        ));
                    }
                }
            }
        }
        Ok(manifest)
    }

    /// The entry installing `task` (`sst5-3` is installed with `sst5`).
    pub fn entry(&self, task: Task) -> Option<&TaskEntry> {
        let name = match task {
            Task::Sst5To3 => "sst5",
            Task::DynaSentR1 | Task::DynaSentR2 => "dynasent",
            t => t.name(),
        };
        self.tasks.iter().find(|t| t.name == name)
    }
}

/// A `/`-separated relative path without `..`, `.` or empty parts.
fn is_relative_path(p: &str) -> bool {
    !p.is_empty()
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && !p.contains('\\')
}

/// The built-in manifest's entry for `task`, if `fetch-data` can get it.
pub(crate) fn source_of(task: Task) -> Option<&'static TaskEntry> {
    Manifest::builtin().entry(task)
}

/// How [`fetch`] works.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The data directory installed into (`$LPFT_HOME/data`).
    pub data_dir: PathBuf,
    /// `Some(switch)` when offline (the switch is named in errors): nothing is downloaded.
    pub offline: Option<String>,
    /// A mirror that `https://HOST/PATH` URLs are rewritten onto as `MIRROR/HOST/PATH`.
    pub mirror: Option<String>,
    /// The Hugging Face endpoint `hf://` URLs resolve against (`$HF_ENDPOINT`, else
    /// `https://huggingface.co`).
    pub hf_endpoint: String,
    /// Re-download tasks that are already installed and verified.
    pub force: bool,
}

impl FetchOptions {
    /// Defaults from the environment: `$LPFT_HOME/data`, offline when `HF_HUB_OFFLINE` or
    /// `LPFT_OFFLINE` is set, `$HF_ENDPOINT`.
    pub fn from_env() -> FetchOptions {
        FetchOptions {
            data_dir: crate::hub::models::lpft_home().join("data"),
            offline: crate::hub::http::offline_from_env().map(|v| format!("{v} is set")),
            mirror: None,
            hf_endpoint: std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| "https://huggingface.co".to_string()),
            force: false,
        }
    }

    /// The URL actually requested for a manifest URL.
    pub fn resolve_url(&self, url: &str) -> Result<String> {
        if let Some(rest) = url.strip_prefix("hf://datasets/") {
            // OWNER/NAME@REVISION/PATH -> ENDPOINT/datasets/OWNER/NAME/resolve/REVISION/PATH
            let bad = || Error::Download {
                url: url.to_string(),
                reason: "expected hf://datasets/OWNER/NAME@REVISION/PATH".into(),
            };
            let (repo, path) = rest
                .split_once('@')
                .and_then(|(repo, rest)| rest.split_once('/').map(|(rev, p)| (repo, (rev, p))))
                .ok_or_else(bad)?;
            let (rev, path) = path;
            return Ok(format!(
                "{}/datasets/{repo}/resolve/{rev}/{path}",
                self.hf_endpoint.trim_end_matches('/')
            ));
        }
        match (&self.mirror, url.split_once("://")) {
            (Some(mirror), Some((_, host_path))) => {
                Ok(format!("{}/{host_path}", mirror.trim_end_matches('/')))
            }
            _ => Ok(url.to_string()),
        }
    }
}

/// What [`fetch`] did for one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every file was already there with its pinned hash.
    Present { dir: PathBuf },
    /// Downloaded and installed; the URLs the files came from.
    Installed { dir: PathBuf, from: Vec<String> },
}

/// Resolves `fetch-data`'s task arguments: names (`sst5-3` means `sst5`), or `all`.
///
/// # Errors
/// [`Error::UnknownTask`], or [`Error::InvalidArgument`] for a built-in task the manifest has
/// no source for.
pub fn select<'m>(manifest: &'m Manifest, names: &[String]) -> Result<Vec<&'m TaskEntry>> {
    if names.is_empty() || names.iter().any(|n| n == "all") {
        return Ok(manifest.tasks.iter().collect());
    }
    let mut out: Vec<&TaskEntry> = Vec::new();
    for name in names {
        let task: Task = name.parse()?;
        let entry = manifest.entry(task).ok_or_else(|| Error::InvalidArgument {
            field: format!("task `{name}`"),
            reason: format!(
                "no pinned source to fetch it from (fetchable: {}); put its files under \
                 --data-dir or $LPFT_DATA_DIR instead",
                manifest
                    .tasks
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        if !out.iter().any(|e| e.name == entry.name) {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Installs `entries` (see the module docs). Tasks are done in turn; the first failure stops.
///
/// # Errors
/// [`Error::Offline`] listing every missing file when offline; [`Error::FetchFailed`] naming
/// the task, the file and every source's failure; [`Error::Write`] on the local side.
pub fn fetch(
    entries: &[&TaskEntry],
    opts: &FetchOptions,
    report: &mut dyn FnMut(&str, &Outcome),
) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    let mut missing = Vec::new();
    for entry in entries {
        let dir = opts.data_dir.join(&entry.dir);
        let bad = check_installed(entry, &dir)?;
        if bad.is_empty() && !opts.force {
            let outcome = Outcome::Present { dir };
            report(&entry.name, &outcome);
            outcomes.push(outcome);
            continue;
        }
        if opts.offline.is_some() {
            missing.push(format!("{}: {}", entry.name, bad.join(", ")));
            continue;
        }
        let outcome = install(entry, opts, &dir)?;
        report(&entry.name, &outcome);
        outcomes.push(outcome);
    }
    if !missing.is_empty() {
        return Err(Error::Offline {
            what: format!("data under {}", opts.data_dir.display()),
            missing: format!("missing or not as pinned: {}", missing.join("; ")),
            switch: opts.offline.clone().unwrap_or_default(),
        });
    }
    Ok(outcomes)
}

/// The files of `entry` under `dir` that are missing or differ from their pin.
fn check_installed(entry: &TaskEntry, dir: &Path) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    for f in &entry.files {
        let path = dir.join(&f.path);
        let ok = path.is_file() && sha256_file(&path)?.eq_ignore_ascii_case(&f.sha256);
        if !ok {
            bad.push(format!("{}/{}", entry.dir, f.path));
        }
    }
    Ok(bad)
}

/// Downloads, verifies and installs one task.
fn install(entry: &TaskEntry, opts: &FetchOptions, dest: &Path) -> Result<Outcome> {
    let parent = dest.parent().unwrap_or(&opts.data_dir);
    fs::create_dir_all(parent).map_err(|e| Error::Write {
        path: parent.to_path_buf(),
        source: e,
    })?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".staging-{}-", entry.name))
        .tempdir_in(parent)
        .map_err(|e| Error::Write {
            path: parent.to_path_buf(),
            source: e,
        })?;
    let payload = staging.path().join("payload");
    let downloads = staging.path().join("downloads");
    for d in [&payload, &downloads] {
        fs::create_dir_all(d).map_err(|e| Error::Write {
            path: d.clone(),
            source: e,
        })?;
    }
    let agent = crate::hub::http::agent();
    // One download per URL, shared by the files of the task (an archive holds several).
    let mut fetched: HashMap<String, std::result::Result<PathBuf, String>> = HashMap::new();
    let mut from = Vec::new();
    for file in &entry.files {
        let out = payload.join(&file.path);
        if let Some(p) = out.parent() {
            fs::create_dir_all(p).map_err(|e| Error::Write {
                path: p.to_path_buf(),
                source: e,
            })?;
        }
        let mut attempts = Vec::new();
        let mut done = false;
        for source in &file.sources {
            let url = opts.resolve_url(&source.url)?;
            let got = fetched.entry(url.clone()).or_insert_with(|| {
                let local = downloads.join(fetched_name(&url));
                let mut bar = crate::hub::http::progress_bar(&url);
                crate::hub::http::download(&agent, &url, &local, None, &mut bar)
                    .map(|_| local)
                    .map_err(|e| e.to_string())
            });
            let result = match got {
                Ok(local) => place(local, source, &out, &file.sha256),
                Err(e) => Err(e.clone()),
            };
            match result {
                Ok(()) => {
                    from.push(url);
                    done = true;
                    break;
                }
                Err(reason) => {
                    let _ = fs::remove_file(&out);
                    let what = match &source.member {
                        Some(m) => format!("{url} (member {m})"),
                        None => url,
                    };
                    attempts.push(format!("{what}: {reason}"));
                }
            }
        }
        if !done {
            return Err(Error::FetchFailed {
                task: entry.name.clone(),
                file: format!("{}/{}", entry.dir, file.path),
                attempts,
            });
        }
    }
    from.dedup();
    swap_into_place(&payload, dest, staging.path())?;
    Ok(Outcome::Installed {
        dir: dest.to_path_buf(),
        from,
    })
}

/// A file name for a downloaded URL inside the staging folder.
fn fetched_name(url: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = crate::fsutil::to_hex(&Sha256::digest(url.as_bytes()));
    let base = url.rsplit('/').next().unwrap_or("download");
    let base: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    format!("{}-{base}", &hash[..12])
}

/// Produces `out` from the downloaded `local` as `source` says, and checks its hash. The error
/// is a reason for the attempt list.
fn place(
    local: &Path,
    source: &SourceEntry,
    out: &Path,
    sha256: &str,
) -> std::result::Result<(), String> {
    match (&source.member, source.convert.as_deref()) {
        (Some(member), _) => extract_member(local, member, out)?,
        (None, Some("parquet-jsonl")) => parquet_to_jsonl(local, out)?,
        _ => {
            fs::copy(local, out).map_err(|e| format!("copying to {}: {e}", out.display()))?;
        }
    }
    let found = sha256_file(out).map_err(|e| e.to_string())?;
    if found.eq_ignore_ascii_case(sha256) {
        Ok(())
    } else {
        Err(format!("sha256 is {found}, expected {sha256}"))
    }
}

fn extract_member(archive: &Path, member: &str, out: &Path) -> std::result::Result<(), String> {
    let file = File::open(archive).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| format!("not a readable zip archive: {e}"))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| format!("no member {member}: {e}"))?;
    let mut bytes = Vec::new();
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading member {member}: {e}"))?;
    write_synced(out, &bytes)
}

fn write_synced(out: &Path, bytes: &[u8]) -> std::result::Result<(), String> {
    let mut f = File::create(out).map_err(|e| format!("writing {}: {e}", out.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("writing {}: {e}", out.display()))
}

/// Converts a parquet file to JSON lines: one object per row, keys sorted (serde_json's map),
/// values as JSON (integers, floats, strings, booleans, null, lists and nested groups).
fn parquet_to_jsonl(parquet: &Path, out: &Path) -> std::result::Result<(), String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = File::open(parquet).map_err(|e| e.to_string())?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| format!("not a readable parquet file: {e}"))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| format!("reading parquet rows: {e}"))?;
    let mut text = String::new();
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| format!("parquet row {}: {e}", i + 1))?;
        let mut object = serde_json::Map::new();
        for (name, field) in row.get_column_iter() {
            object.insert(
                name.clone(),
                field_json(field).map_err(|e| format!("row {}, column {name}: {e}", i + 1))?,
            );
        }
        text.push_str(&serde_json::Value::Object(object).to_string());
        text.push('\n');
    }
    write_synced(out, text.as_bytes())
}

fn field_json(field: &parquet::record::Field) -> std::result::Result<serde_json::Value, String> {
    use parquet::record::Field as F;
    use serde_json::Value as V;
    Ok(match field {
        F::Null => V::Null,
        F::Bool(b) => V::Bool(*b),
        F::Byte(v) => V::from(*v),
        F::Short(v) => V::from(*v),
        F::Int(v) => V::from(*v),
        F::Long(v) => V::from(*v),
        F::UByte(v) => V::from(*v),
        F::UShort(v) => V::from(*v),
        F::UInt(v) => V::from(*v),
        F::ULong(v) => V::from(*v),
        F::Float(v) => serde_json::Number::from_f64(f64::from(*v)).map_or(V::Null, V::Number),
        F::Double(v) => serde_json::Number::from_f64(*v).map_or(V::Null, V::Number),
        F::Str(s) => V::String(s.clone()),
        F::Group(row) => {
            let mut object = serde_json::Map::new();
            for (name, f) in row.get_column_iter() {
                object.insert(name.clone(), field_json(f)?);
            }
            V::Object(object)
        }
        F::ListInternal(list) => V::Array(
            list.elements()
                .iter()
                .map(field_json)
                .collect::<std::result::Result<_, _>>()?,
        ),
        other => return Err(format!("unsupported parquet value {other}")),
    })
}

/// Renames `payload` to `dest`. An existing `dest` (a partial or outdated install) is first
/// moved into `staging` and deleted with it, so `dest` is at every moment absent, the old
/// install, or the complete new one.
fn swap_into_place(payload: &Path, dest: &Path, staging: &Path) -> Result<()> {
    if dest.exists() {
        let old = staging.join("old");
        fs::rename(dest, &old).map_err(|e| Error::Write {
            path: dest.to_path_buf(),
            source: e,
        })?;
    }
    fs::rename(payload, dest).map_err(|e| Error::Write {
        path: dest.to_path_buf(),
        source: e,
    })?;
    if let Some(parent) = dest.parent() {
        crate::fsutil::sync_dir(parent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_parses_and_pins_the_embedded_copy() {
        let m = Manifest::builtin();
        let names: Vec<&str> = m.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["cb", "rte", "wic", "sst2", "mrpc", "cola", "sst5", "dynasent"]
        );
        // The embedded CB is byte for byte what fetch-data installs.
        let cb = m.entry(Task::Cb).unwrap();
        for f in &cb.files {
            let path = Path::new(crate::data::embedded::ROOT)
                .join(&cb.dir)
                .join(&f.path);
            let bytes = crate::data::embedded::read(&path).unwrap();
            use sha2::{Digest, Sha256};
            assert_eq!(
                crate::fsutil::to_hex(&Sha256::digest(bytes)),
                f.sha256,
                "{}",
                f.path
            );
        }
        // Every task's installed files are exactly what its reader needs.
        for entry in &m.tasks {
            let task: Task = entry.name.parse().unwrap();
            let installed: Vec<PathBuf> = entry
                .files
                .iter()
                .map(|f| Path::new(&entry.dir).join(&f.path))
                .collect();
            assert!(
                task.layouts()
                    .iter()
                    .any(|layout| layout.iter().all(|f| installed.contains(f))),
                "{}: {installed:?} does not cover {:?}",
                entry.name,
                task.layouts()
            );
        }
        assert_eq!(m.entry(Task::Sst5To3).unwrap().name, "sst5");
        assert!(m.entry(Task::BoolQ).is_none());
    }

    #[test]
    fn manifest_errors_name_the_file_and_field() {
        let path = Path::new("m.toml");
        let err = Manifest::parse("[[task]]\nname = \"cb\"\ndir = \"x\"\nfiles = []\n", path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.toml") && err.contains("files"), "{err}");
        let bad_sha = "[[task]]\nname = \"cb\"\ndir = \"x\"\n[[task.file]]\npath = \"a\"\n\
                       sha256 = \"12\"\nsources = [{ url = \"https://h/a\" }]\n";
        let err = Manifest::parse(bad_sha, path).unwrap_err().to_string();
        assert!(err.contains("sha256") && err.contains("task `cb`"), "{err}");
        let escape = bad_sha.replace("dir = \"x\"", "dir = \"../x\"");
        let err = Manifest::parse(&escape, path).unwrap_err().to_string();
        assert!(err.contains("dir"), "{err}");
    }

    #[test]
    fn urls_map_onto_mirrors_and_the_hub() {
        let opts = FetchOptions {
            data_dir: PathBuf::from("d"),
            offline: None,
            mirror: Some("http://127.0.0.1:9/m/".into()),
            hf_endpoint: "http://hub.local/".into(),
            force: false,
        };
        assert_eq!(
            opts.resolve_url("https://dl.example.com/glue/CB.zip")
                .unwrap(),
            "http://127.0.0.1:9/m/dl.example.com/glue/CB.zip"
        );
        assert_eq!(
            opts.resolve_url("hf://datasets/aps/super_glue@abc123/boolq/train.parquet")
                .unwrap(),
            "http://hub.local/datasets/aps/super_glue/resolve/abc123/boolq/train.parquet"
        );
        assert!(opts.resolve_url("hf://datasets/no-revision/x").is_err());
    }
}
