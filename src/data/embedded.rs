//! The dataset compiled into lpft: SuperGLUE CB (train/val/test jsonl, 224 KB, byte for byte the
//! distribution files), so that the demo and the tests run on a machine with no data at all.
//!
//! Its files are read through [`read`] under the pseudo-directory [`ROOT`]: the task readers
//! join their usual relative paths onto it, and errors name e.g.
//! `<embedded>/superglue/CB/train.jsonl`.

use std::path::{Component, Path};

/// The directory name under which the embedded files appear.
pub const ROOT: &str = "<embedded>";

/// `(path under ROOT, bytes)`.
const FILES: [(&str, &[u8]); 3] = [
    (
        "superglue/CB/train.jsonl",
        include_bytes!("../../assets/data/superglue/CB/train.jsonl"),
    ),
    (
        "superglue/CB/val.jsonl",
        include_bytes!("../../assets/data/superglue/CB/val.jsonl"),
    ),
    (
        "superglue/CB/test.jsonl",
        include_bytes!("../../assets/data/superglue/CB/test.jsonl"),
    ),
];

/// The path relative to [`ROOT`] if `path` lies under it.
fn relative(path: &Path) -> Option<String> {
    let mut components = path.components();
    match components.next() {
        Some(Component::Normal(first)) if first == ROOT => {}
        _ => return None,
    }
    let parts: Vec<&str> = components
        .map(|c| c.as_os_str().to_str())
        .collect::<Option<_>>()?;
    Some(parts.join("/"))
}

/// Whether `path` lies under [`ROOT`] (whether or not such a file is embedded).
pub(crate) fn is_embedded(path: &Path) -> bool {
    relative(path).is_some()
}

/// The bytes of an embedded file, or `None` if `path` names none.
pub fn read(path: &Path) -> Option<&'static [u8]> {
    let rel = relative(path)?;
    FILES.iter().find(|(p, _)| *p == rel).map(|(_, b)| *b)
}

/// Every embedded file as `(path under ROOT, bytes)`.
pub fn files() -> impl Iterator<Item = (&'static str, &'static [u8])> {
    FILES.iter().copied()
}

/// Whether `path` is a file: an embedded one under [`ROOT`], else on disk.
pub(crate) fn is_file(path: &Path) -> bool {
    if is_embedded(path) {
        read(path).is_some()
    } else {
        path.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_cb_is_found_only_under_its_root() {
        let root = Path::new(ROOT);
        let train = read(&root.join("superglue/CB/train.jsonl")).unwrap();
        assert_eq!(train.iter().filter(|&&b| b == b'\n').count(), 250);
        assert!(is_file(&root.join("superglue/CB/val.jsonl")));
        assert!(!is_file(&root.join("superglue/RTE/train.jsonl")));
        assert!(!is_embedded(Path::new("data/superglue/CB/train.jsonl")));
        assert!(read(Path::new("superglue/CB/train.jsonl")).is_none());
        assert_eq!(files().count(), 3);
    }
}
