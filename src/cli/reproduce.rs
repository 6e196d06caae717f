//! `lpft reproduce --config configs/paper-cb.toml [--jobs N]`: runs every unfinished cell of an
//! experiment grid (so an interrupted grid continues where it stopped), then writes the report.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use lpft::experiment::grid::pending;
use lpft::experiment::ExperimentConfig;

use super::common::{self, label};

#[derive(Args, Debug)]
pub struct ReproduceArgs {
    /// Experiment file (TOML; see configs/).
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// Output directory (default: `reproduce/<config file stem>`); runs go to `<out>/runs/`,
    /// the report to `<out>/report/`.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Cells run at once (each uses the global thread count).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Override the experiment's seeds (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<u64>>,
    /// Override the epochs of every gradient stage (recorded in each run's config and in the
    /// report's list of differences from the paper).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override the model.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Data directory searched first (default: the experiment's); then $LPFT_DATA_DIR, ./data,
    /// $LPFT_HOME/data and lpft's embedded copy (CB).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Only list the cells and what each still needs.
    #[arg(long)]
    pub dry_run: bool,
}

impl TryFrom<&ReproduceArgs> for ExperimentConfig {
    type Error = anyhow::Error;
    fn try_from(a: &ReproduceArgs) -> anyhow::Result<Self> {
        let mut cfg = ExperimentConfig::from_file(&a.config)?;
        if let Some(s) = &a.seeds {
            cfg.seeds = s.clone();
        }
        if let Some(e) = a.epochs {
            let train = cfg
                .overrides
                .entry("train")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(t) = train.as_table_mut() else {
                anyhow::bail!("{}: `overrides.train` is not a table", a.config.display());
            };
            t.insert("epochs".into(), toml::Value::Integer(e as i64));
        }
        if let Some(m) = &a.model {
            cfg.model = m.clone();
        }
        if a.data_dir.is_some() {
            cfg.data_dir = a.data_dir.clone();
        }
        cfg.validate()
            .with_context(|| format!("{}", a.config.display()))?;
        Ok(cfg)
    }
}

pub fn run(args: ReproduceArgs) -> anyhow::Result<()> {
    let exp = ExperimentConfig::try_from(&args)?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("reproduce").join(
            args.config
                .file_stem()
                .map_or("experiment".into(), |s| s.to_string_lossy().into_owned()),
        )
    });
    if args.dry_run {
        for c in &exp.cells(&out)? {
            let p = pending(&exp, c);
            println!(
                "{:<40} {}",
                label(c),
                if p.is_empty() {
                    "finished".to_string()
                } else {
                    format!("{p:?}")
                }
            );
        }
        return Ok(());
    }
    let (report, failed) = common::run_experiment(&exp, &out, args.jobs)?;
    super::report::print_summary(&report);
    failed
}
