//! Small file-system helpers shared by the modules that write artifacts: crash-safe writes and
//! streaming SHA-256.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The variable naming the file `kill_point` stops at.
pub const KILL_VAR: &str = "LPFT_KILL_BEFORE_RENAME";

/// Crash-safety test hook: when `$LPFT_KILL_BEFORE_RENAME` is `path`'s file name, the process
/// kills itself with SIGKILL after the temporary file is written and before the rename: the one
/// moment at which a crash could expose a half-written file. The kill tests set it to prove
/// that moment safe; with the variable unset this is one environment lookup per file written.
fn kill_point(path: &Path) {
    let Some(target) = std::env::var_os(KILL_VAR) else {
        return;
    };
    if path.file_name() == Some(target.as_os_str()) {
        #[cfg(unix)]
        // SAFETY: kill(2) on our own pid with a signal that cannot be caught has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}

/// Writes `bytes` to `path` so that readers see either the old file or the complete new one.
///
/// The bytes go to a temporary file in the same directory, which is flushed to disk (`fsync`) and
/// then renamed over `path`. Missing parent directories are created. On Unix the directory is
/// synced too, so that the rename itself survives a crash.
///
/// # Errors
/// [`Error::Write`] naming `path` (or the parent directory) when creating, writing, syncing or
/// renaming fails; the temporary file is removed in that case.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let write_err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(|source| Error::Write {
        path: parent.to_path_buf(),
        source,
    })?;
    let file_name = path.file_name().ok_or_else(|| {
        write_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path has no file name",
        ))
    })?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(file_name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(parent)
        .map_err(write_err)?;
    tmp.write_all(bytes).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    kill_point(path);
    // `persist` renames; on failure the returned `NamedTempFile` is dropped, deleting the file.
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    sync_dir(parent);
    Ok(())
}

/// Saves named tensors as safetensors at `path` atomically (a temp file in the same directory,
/// then a rename), so an interrupted write never leaves a truncated file behind.
pub fn save_tensors_atomic(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    path: &Path,
) -> Result<()> {
    save_tensors_with_metadata(tensors, None, path)
}

/// As [`save_tensors_atomic`], with a safetensors metadata header (e.g. `format: pt`, which
/// `transformers` and `peft` expect).
pub(crate) fn save_tensors_with_metadata(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    metadata: Option<std::collections::HashMap<String, String>>,
    path: &Path,
) -> Result<()> {
    let mut named: Vec<(&String, candle_core::Tensor)> = Vec::with_capacity(tensors.len());
    for (k, t) in tensors {
        // safetensors writes raw row-major data: make every tensor contiguous first.
        named.push((k, t.contiguous()?));
    }
    named.sort_by(|a, b| a.0.cmp(b.0));
    let bytes = safetensors::serialize(named.iter().map(|(k, t)| (k.as_str(), t)), metadata)
        .map_err(|e| crate::Error::Write {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
    write_atomic(path, &bytes)
}

/// An exclusive lock on a file, held until dropped (or the process ends, however it ends: the
/// operating system releases it, so a killed process never leaves a stale lock behind).
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

/// Takes an exclusive lock on `path` (created if missing) without waiting.
///
/// # Errors
/// [`Error::Locked`] naming `what` and the lock file when another process holds it;
/// [`Error::Write`] when the lock file cannot be created.
pub(crate) fn try_lock(path: &Path, what: &Path) -> Result<FileLock> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| Error::Write {
            path: parent.to_path_buf(),
            source: e,
        })?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::Write {
            path: path.to_path_buf(),
            source: e,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(FileLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked {
            what: what.to_path_buf(),
            lock: path.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(Error::Write {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Removes the temporary files [`write_atomic`] leaves when a crash interrupts it
/// (`.<name>.<random>.tmp`), under `dir` and its subdirectories. Best effort: a file that cannot
/// be removed is only left over.
pub(crate) fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            remove_stale_temps(&path);
        } else if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Flushes a directory's entries to disk so that a preceding rename is durable.
///
/// Best effort: some file systems refuse to sync a directory, and the data itself is already
/// synced, so a failure here is not worth failing the write for.
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Returns the SHA-256 of the file at `path` as 64 lowercase hex digits.
///
/// Reads the file in 1 MiB chunks, so memory use does not grow with the file size.
///
/// # Errors
/// [`Error::Io`] naming `path` when it cannot be opened or read.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let io_err = |source| Error::io(path, source);
    let mut file = File::open(path).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(to_hex(&hasher.finalize()))
}

/// Lowercase hex of a byte string.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Reads and parses a JSON file.
///
/// # Errors
/// [`Error::Io`] naming `path` if it cannot be read; [`Error::Json`] if it does not parse as `T`.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        source: e,
    })
}

/// [`read_json`], or `None` when the file does not exist.
///
/// # Errors
/// As [`read_json`] for a file that exists.
pub(crate) fn read_json_opt<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    read_json(path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_creates_parents_and_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/c.json");
        write_atomic(&path, b"first").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        // No temporary files are left next to the target.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c.json")]);
    }

    #[test]
    fn write_atomic_error_names_path() {
        let tmp = tempfile::tempdir().unwrap();
        // The target is an existing non-empty directory, so the final rename must fail.
        let path = tmp.path().join("dir");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), b"x").unwrap();
        let err = write_atomic(&path, b"data").unwrap_err();
        match err {
            Error::Write { path: p, .. } => assert_eq!(p, path),
            other => panic!("unexpected error {other:?}"),
        }
        let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "temporary file left behind");
    }

    #[test]
    fn sha256_known_vectors() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("empty");
        fs::write(&empty, b"").unwrap();
        assert_eq!(
            sha256_file(&empty).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let abc = tmp.path().join("abc");
        fs::write(&abc, b"abc").unwrap();
        assert_eq!(
            sha256_file(&abc).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn sha256_streams_across_chunks() {
        // 2.5 MiB spans several read chunks; compare with a one-shot digest.
        let data: Vec<u8> = (0..(5usize << 19)).map(|i| (i * 31 % 251) as u8).collect();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("big");
        fs::write(&path, &data).unwrap();
        assert_eq!(sha256_file(&path).unwrap(), to_hex(&Sha256::digest(&data)));
    }

    #[test]
    fn sha256_missing_file_is_io_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("nope");
        match sha256_file(&path).unwrap_err() {
            Error::Io { path: p, .. } => assert_eq!(p, path),
            other => panic!("unexpected error {other:?}"),
        }
    }
}
