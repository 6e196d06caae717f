//! `lpft fetch-data [TASK…|all]`: install built-in tasks from their pinned public sources into
//! `$LPFT_HOME/data`, where every command finds them.

use std::path::PathBuf;

use anyhow::Context;
use clap::builder::PossibleValuesParser;
use clap::Args;

use lpft::hub::datasets::{self, FetchOptions, Manifest, Outcome};

/// `all` and the task registry's names.
fn task_or_all() -> PossibleValuesParser {
    let names = lpft::data::Task::ALL.map(lpft::data::Task::name);
    PossibleValuesParser::new(std::iter::once("all").chain(names))
}

#[derive(Args, Debug)]
pub struct FetchDataArgs {
    /// Tasks to install; `all` (the default) is every task with a pinned source (a task without
    /// one is an error that lists those that have one).
    #[arg(value_name = "TASK", value_parser = task_or_all())]
    pub tasks: Vec<String>,
    /// Never touch the network: verify what is installed and list what is missing (also when
    /// HF_HUB_OFFLINE or LPFT_OFFLINE is set).
    #[arg(long)]
    pub offline: bool,
    /// Install into DIR instead of $LPFT_HOME/data.
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Fetch `https://HOST/PATH` from `MIRROR/HOST/PATH` instead (a local or institutional
    /// mirror); the pinned hashes still decide what is accepted.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// A manifest of your own, in the format of lpft's (`assets/datasets.toml`).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Download again even when the installed files already have their pinned hashes.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: FetchDataArgs) -> anyhow::Result<()> {
    let owned;
    let manifest = match &args.manifest {
        Some(path) => {
            owned = Manifest::from_file(path)?;
            &owned
        }
        None => Manifest::builtin(),
    };
    let mut opts = FetchOptions::from_env();
    if args.offline {
        opts.offline = Some("--offline".to_string());
    }
    if let Some(dest) = &args.dest {
        opts.data_dir = dest.clone();
    }
    opts.mirror = args.mirror.clone();
    opts.force = args.force;
    let entries = datasets::select(manifest, &args.tasks)?;
    datasets::fetch(&entries, &opts, &mut |task, outcome| match outcome {
        Outcome::Present { dir } => {
            println!("{task:<10} present and verified  {}", dir.display())
        }
        Outcome::Installed { dir, from } => {
            println!(
                "{task:<10} installed  {}  (from {})",
                dir.display(),
                from.join(", ")
            )
        }
    })
    .with_context(|| format!("installing into {}", opts.data_dir.display()))?;
    Ok(())
}
