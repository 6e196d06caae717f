//! Where a built-in task's files are found: per task, in a fixed order of places.
//!
//! 1. the directory given on the command line (`--data-dir`) or in a config;
//! 2. `$LPFT_DATA_DIR`;
//! 3. `./data`;
//! 4. `$LPFT_HOME/data`, where `lpft fetch-data` installs;
//! 5. the copy compiled into lpft (CB only; see [`crate::data::embedded`]).
//!
//! A place holds a task when it holds every file of one of the task's layouts
//! ([`Task::layouts`]). A place holding only some of them is an error rather than a reason to
//! look further, so that a half-copied directory never silently gives way to another copy.
//! When no place holds the task, the error lists every place tried and the command that gets it.

use std::path::{Path, PathBuf};

use crate::data::embedded;
use crate::data::tasks::Task;
use crate::data::{LoadOptions, TaskData};
use crate::error::{Error, Result};

/// One place to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// How the user names it: `--data-dir`, `$LPFT_DATA_DIR`, `./data`, `$LPFT_HOME/data`,
    /// `embedded`.
    pub label: &'static str,
    /// The directory; `None` when the place is not configured (an unset variable).
    pub dir: Option<PathBuf>,
}

/// The places searched, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSearch {
    pub places: Vec<Place>,
}

/// Where a task was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The data directory to read the task from (for the embedded copy, [`embedded::ROOT`]).
    pub dir: PathBuf,
    /// The place's label, e.g. `$LPFT_HOME/data`.
    pub place: &'static str,
    /// The files of the layout found, relative to `dir`.
    pub files: Vec<PathBuf>,
}

impl Located {
    /// `<dir> (<place>)`, or `lpft's embedded copy` — for logs and manifests.
    pub fn describe(&self) -> String {
        if self.place == "embedded" {
            "lpft's embedded copy".to_string()
        } else {
            format!("{} ({})", self.dir.display(), self.place)
        }
    }
}

impl Located {
    /// Copies the task's files into `dest` in the same layout (e.g. to hand the embedded copy to
    /// another program), and returns the paths written.
    ///
    /// # Errors
    /// [`Error::MissingData`] / [`Error::Io`] reading, [`Error::Write`] writing.
    pub fn export(&self, dest: &Path) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for rel in &self.files {
            let from = self.dir.join(rel);
            let bytes = match embedded::read(&from) {
                Some(b) => b.to_vec(),
                None => std::fs::read(&from).map_err(|e| Error::io(&from, e))?,
            };
            let to = dest.join(rel);
            crate::fsutil::write_atomic(&to, &bytes)?;
            written.push(to);
        }
        Ok(written)
    }
}

impl DataSearch {
    /// The standard order, with `explicit` (`--data-dir`) first, from the environment.
    pub fn from_env(explicit: Option<&Path>) -> DataSearch {
        let env = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        DataSearch::standard(
            explicit.map(Path::to_path_buf),
            env("LPFT_DATA_DIR"),
            super::lpft_home().join("data"),
        )
    }

    /// The standard order from given values (tests use this instead of the environment).
    pub fn standard(
        explicit: Option<PathBuf>,
        env_dir: Option<PathBuf>,
        home_data: PathBuf,
    ) -> DataSearch {
        DataSearch {
            places: vec![
                Place {
                    label: "--data-dir",
                    dir: explicit,
                },
                Place {
                    label: "$LPFT_DATA_DIR",
                    dir: env_dir,
                },
                Place {
                    label: "./data",
                    dir: Some(
                        std::path::absolute("data").unwrap_or_else(|_| PathBuf::from("data")),
                    ),
                },
                Place {
                    label: "$LPFT_HOME/data",
                    dir: Some(home_data),
                },
                Place {
                    label: "embedded",
                    dir: Some(PathBuf::from(embedded::ROOT)),
                },
            ],
        }
    }

    /// The first place holding `task`.
    ///
    /// # Errors
    /// [`Error::IncompleteData`] when a place holds some but not all files of a layout (the
    /// first such place, before any complete one); [`Error::TaskDataNotFound`] listing every
    /// place when none holds the task.
    pub fn locate(&self, task: Task) -> Result<Located> {
        let layouts = task.layouts();
        for place in &self.places {
            let Some(dir) = &place.dir else { continue };
            let mut partial = None;
            for files in &layouts {
                let (present, missing): (Vec<&PathBuf>, Vec<&PathBuf>) =
                    files.iter().partition(|f| embedded::is_file(&dir.join(f)));
                if missing.is_empty() {
                    return Ok(Located {
                        dir: dir.clone(),
                        place: place.label,
                        files: files.clone(),
                    });
                }
                if !present.is_empty() && partial.is_none() {
                    partial = Some((present, missing));
                }
            }
            if let Some((present, missing)) = partial {
                let join = |v: Vec<&PathBuf>| {
                    v.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(Error::IncompleteData {
                    task: task.name().to_string(),
                    dir: dir.clone(),
                    present: join(present),
                    missing: join(missing),
                });
            }
        }
        Err(self.not_found(task))
    }

    fn not_found(&self, task: Task) -> Error {
        let looked_for = task
            .layouts()
            .iter()
            .map(|files| {
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect::<Vec<_>>()
            .join("; or ");
        let tried = self
            .places
            .iter()
            .map(|p| match (&p.dir, p.label) {
                (_, "embedded") => "lpft's embedded copy (holds cb only)".to_string(),
                (None, label) => format!("{label} (not set)"),
                (Some(dir), label) => format!("{label}: {}", dir.display()),
            })
            .collect();
        let fetch = match super::datasets::source_of(task) {
            Some(_) => format!("get it with: lpft fetch-data {}", task.name()),
            None => format!(
                "`lpft fetch-data` has no pinned source for `{}`: put its files under one of \
                 these places, or pass --data-dir",
                task.name()
            ),
        };
        Error::TaskDataNotFound {
            task: task.name().to_string(),
            looked_for,
            tried,
            fetch,
        }
    }

    /// Finds `task` and loads it after the paper's split protocol.
    ///
    /// # Errors
    /// Those of [`DataSearch::locate`] and of [`Task::load`].
    pub fn load(&self, task: Task, opts: &LoadOptions) -> Result<(TaskData, Located)> {
        let located = self.locate(task)?;
        log::info!("task {task}: reading {}", located.describe());
        let data = task.load(&located.dir, opts)?;
        Ok((data, located))
    }
}

/// Loads the built-in task `name`, looked up in the standard places with `explicit`
/// (`--data-dir`) first.
///
/// # Errors
/// [`Error::UnknownTask`] and those of [`DataSearch::load`].
pub fn find_task(
    name: &str,
    explicit: Option<&Path>,
    opts: &LoadOptions,
) -> Result<(TaskData, Located)> {
    DataSearch::from_env(explicit).load(name.parse()?, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{temp_dir, write};

    fn search(explicit: Option<PathBuf>, env: Option<PathBuf>, home: PathBuf) -> DataSearch {
        DataSearch::standard(explicit, env, home)
    }

    #[test]
    fn the_first_complete_place_wins_and_cb_falls_back_to_the_embedded_copy() {
        let dir = temp_dir("locate-order");
        let (a, b, home) = (dir.join("a"), dir.join("b"), dir.join("home"));
        let cb = ["train.jsonl", "val.jsonl"];
        for f in cb {
            write(&b, &format!("superglue/CB/{f}"), "{}\n");
            write(&home, &format!("superglue/CB/{f}"), "{}\n");
        }
        // `a` is empty for CB, so the env dir is next.
        let s = search(Some(a.clone()), Some(b.clone()), home.clone());
        let found = s.locate(Task::Cb).unwrap();
        assert_eq!((found.dir, found.place), (b.clone(), "$LPFT_DATA_DIR"));
        let s = search(None, None, home.clone());
        assert_eq!(s.locate(Task::Cb).unwrap().place, "$LPFT_HOME/data");
        let s = search(None, None, dir.join("nothing"));
        let found = s.locate(Task::Cb).unwrap();
        assert_eq!(found.place, "embedded");
        assert_eq!(found.describe(), "lpft's embedded copy");
        // The embedded copy loads with the paper's split sizes.
        let (data, _) = s.load(Task::Cb, &LoadOptions::default()).unwrap();
        assert_eq!(
            (data.train.len(), data.validation.len(), data.test.len()),
            (225, 25, 56)
        );
    }

    #[test]
    fn a_missing_task_lists_every_place_and_the_fetch_command() {
        let dir = temp_dir("locate-missing");
        let s = search(Some(dir.join("given")), None, dir.join("home"));
        let err = s.locate(Task::Rte).unwrap_err();
        let msg = err.to_string();
        for needle in [
            "superglue/RTE/train.jsonl",
            "superglue/RTE/val.jsonl",
            "--data-dir",
            "given",
            "$LPFT_DATA_DIR (not set)",
            "./data",
            "$LPFT_HOME/data",
            "embedded copy",
            "lpft fetch-data rte",
        ] {
            assert!(msg.contains(needle), "`{needle}` not in: {msg}");
        }
        // A task without a pinned source says so instead of suggesting fetch-data.
        let msg = s.locate(Task::BoolQ).unwrap_err().to_string();
        assert!(msg.contains("no pinned source"), "{msg}");
    }

    #[test]
    fn a_half_copied_place_is_an_error_not_a_fallthrough() {
        let dir = temp_dir("locate-partial");
        let given = dir.join("given");
        write(&given, "superglue/CB/train.jsonl", "{}\n");
        let s = search(Some(given), None, dir.join("home"));
        let msg = s.locate(Task::Cb).unwrap_err().to_string();
        assert!(
            msg.contains("superglue/CB/train.jsonl")
                && msg.contains("lacks superglue/CB/val.jsonl"),
            "{msg}"
        );
    }

    #[test]
    fn wic_is_found_in_either_layout() {
        let dir = temp_dir("locate-wic");
        for split in ["train", "dev"] {
            write(&dir, &format!("wic/{split}/{split}.data.txt"), "x\n");
            write(&dir, &format!("wic/{split}/{split}.gold.txt"), "T\n");
        }
        let s = search(Some(dir.clone()), None, dir.join("home"));
        assert_eq!(s.locate(Task::Wic).unwrap().dir, dir);
    }
}
