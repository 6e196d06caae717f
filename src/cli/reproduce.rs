//! `lpft reproduce --config configs/paper-cb.toml [--jobs N]`: runs every unfinished cell of an
//! experiment grid (so an interrupted grid continues where it stopped), then writes the report.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context;
use clap::Args;
use indicatif::ProgressBar;

use lpft::experiment::config::Cell;
use lpft::experiment::grid::pending;
use lpft::experiment::{run_grid, ExperimentConfig, GridObserver};

use super::common;

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

struct Bars {
    pb: ProgressBar,
    log: Mutex<Vec<String>>,
}

impl GridObserver for Bars {
    fn cell_started(&self, _index: usize, cell: &Cell) {
        self.pb.set_message(label(cell));
    }
    fn stage(&self, cell: &Cell, stage: &str) {
        self.pb.set_message(format!("{}: {stage}", label(cell)));
    }
    fn cell_finished(&self, cell: &Cell, seconds: f64, error: Option<&str>) {
        self.pb.inc(1);
        let line = match error {
            None => format!("done   {} ({seconds:.0} s)", label(cell)),
            Some(e) => format!("FAILED {}: {e}", label(cell)),
        };
        if self.pb.is_hidden() {
            eprintln!("{line}");
        } else {
            self.pb.println(&line);
        }
        if let Ok(mut l) = self.log.lock() {
            l.push(line);
        }
    }
}

fn label(c: &Cell) -> String {
    format!("{}/{}/{}/seed-{}", c.variant, c.task, c.method, c.seed)
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
    let cells = exp.cells(&out)?;
    let todo: Vec<&Cell> = cells
        .iter()
        .filter(|c| !pending(&exp, c).is_empty())
        .collect();
    eprintln!(
        "{}: {} cells, {} finished, {} to run ({} job(s)); output {}",
        exp.name,
        cells.len(),
        cells.len() - todo.len(),
        todo.len(),
        args.jobs,
        out.display()
    );
    if args.dry_run {
        for c in &cells {
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
    let bars = Bars {
        pb: common::progress_bar(todo.len(), &exp.name),
        log: Mutex::new(Vec::new()),
    };
    let outcome = run_grid(&exp, &out, args.jobs, &bars)?;
    bars.pb.finish_and_clear();
    eprintln!(
        "grid: {} run now, {} already finished, {} failed, {:.0} s",
        outcome.completed,
        outcome.skipped,
        outcome.failed.len(),
        outcome.wall_seconds
    );
    for (dir, e) in &outcome.failed {
        eprintln!("  failed: {}: {e}", dir.display());
    }
    let report_dir = out.join("report");
    let report = lpft::report::write_report(&out.join("runs"), &report_dir)
        .with_context(|| format!("writing the report to {}", report_dir.display()))?;
    super::report::print_summary(&report);
    anyhow::ensure!(
        outcome.failed.is_empty(),
        "{} cell(s) failed (see above); rerun the same command to retry them",
        outcome.failed.len()
    );
    Ok(())
}
