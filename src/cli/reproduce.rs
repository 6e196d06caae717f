//! `lpft reproduce --config configs/paper-cb.toml [--jobs N]`: runs every unfinished cell of an
//! experiment grid (so an interrupted grid continues where it stopped), then writes the report.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use lpft::experiment::config::Cell;
use lpft::experiment::grid::{pending, run_one_cell, GridObserver};
use lpft::experiment::ExperimentConfig;
use lpft::model::Precision;

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
    /// The training steps' GEMM precision in every cell (fp32, as the paper; bf16 is mixed
    /// precision, see `lpft train --help`), recorded in each run's config.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Override the model.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Data directory searched first (default: the experiment's); then $LPFT_DATA_DIR, ./data,
    /// $LPFT_HOME/data and lpft's embedded copy (CB).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Only list the cells (numbered from 0, as --cell takes them) and what each still needs.
    #[arg(long)]
    pub dry_run: bool,
    /// Run only the cell with this number (see --dry-run), without the cross-cell alignments
    /// and the report: one task of a Slurm array. A finished cell is left as it is.
    #[arg(long, conflicts_with_all = ["dry_run", "emit"])]
    pub cell: Option<usize>,
    /// Write scripts that run the grid on a cluster instead of running it here: `slurm` writes
    /// `<out>/slurm/grid.sbatch` (an array, one cell per task, each resuming as it does
    /// locally), `finish.sbatch` (the alignments and the report, after the array succeeded)
    /// and `submit.sh`, which submits both with `--dependency=afterok`.
    #[arg(long, value_enum, conflicts_with = "dry_run")]
    pub emit: Option<Emit>,
    /// Slurm partition (`#SBATCH --partition`).
    #[arg(long, requires = "emit", help_heading = "Slurm (with --emit slurm)")]
    pub partition: Option<String>,
    /// Time limit of each task (`#SBATCH --time`, e.g. 04:00:00).
    #[arg(long, requires = "emit", help_heading = "Slurm (with --emit slurm)")]
    pub time: Option<String>,
    /// CPUs of each task (`#SBATCH --cpus-per-task`); lpft's --threads follows it.
    #[arg(
        long,
        requires = "emit",
        default_value_t = 2,
        help_heading = "Slurm (with --emit slurm)"
    )]
    pub cpus_per_task: usize,
    /// Generic resources of each task (`#SBATCH --gres`, e.g. gpu:1).
    #[arg(long, requires = "emit", help_heading = "Slurm (with --emit slurm)")]
    pub gres: Option<String>,
    /// Memory of each task (`#SBATCH --mem`, e.g. 16G).
    #[arg(long, requires = "emit", help_heading = "Slurm (with --emit slurm)")]
    pub mem: Option<String>,
}

/// The name `--precision` and the configs spell `p` with.
fn precision_name(p: Precision) -> String {
    p.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// What `--emit` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// Slurm batch scripts.
    Slurm,
}

impl TryFrom<&ReproduceArgs> for ExperimentConfig {
    type Error = anyhow::Error;
    fn try_from(a: &ReproduceArgs) -> anyhow::Result<Self> {
        let mut cfg = ExperimentConfig::from_file(&a.config)?;
        if let Some(s) = &a.seeds {
            cfg.seeds = s.clone();
        }
        let mut set_train = |key: &str, value: toml::Value| -> anyhow::Result<()> {
            let train = cfg
                .overrides
                .entry("train")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(t) = train.as_table_mut() else {
                anyhow::bail!("{}: `overrides.train` is not a table", a.config.display());
            };
            t.insert(key.into(), value);
            Ok(())
        };
        if let Some(e) = a.epochs {
            set_train("epochs", toml::Value::Integer(e as i64))?;
        }
        if let Some(p) = a.precision.filter(|p| !p.is_default()) {
            set_train("precision", toml::Value::String(precision_name(p)))?;
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
        for (i, c) in exp.cells(&out)?.iter().enumerate() {
            let p = pending(&exp, c);
            let also = if c.also.is_empty() {
                String::new()
            } else {
                format!(" (also {})", c.also.join(", "))
            };
            println!(
                "{i:>4}  {:<40} {}{also}",
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
    if let Some(index) = args.cell {
        let (cell, ran) = run_one_cell(&exp, &out, index, &CellLines)
            .with_context(|| format!("cell {index} of {}", exp.name))?;
        println!(
            "cell {index} {}: {}",
            label(&cell),
            if ran { "done" } else { "already finished" }
        );
        return Ok(());
    }
    if args.emit == Some(Emit::Slurm) {
        return emit_slurm(&args, &exp, &out);
    }
    let (report, failed) = common::run_experiment(&exp, &out, args.jobs)?;
    super::report::print_summary(&report);
    failed
}

/// A cell's progress as lines on stderr (a Slurm task's log has no terminal for bars).
struct CellLines;

impl GridObserver for CellLines {
    fn stage(&self, cell: &Cell, stage: &str) {
        eprintln!("{}: {stage}", label(cell));
    }
    fn cell_finished(&self, cell: &Cell, seconds: f64, error: Option<&str>) {
        match error {
            None => eprintln!("{}: finished in {seconds:.0} s", label(cell)),
            Some(e) => eprintln!("{}: FAILED after {seconds:.0} s: {e}", label(cell)),
        }
    }
}

/// A word for a POSIX shell: single-quoted, with `'` written as `'\''`.
fn sh(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// `--emit slurm`: the array script, the dependent finishing script and `submit.sh`.
fn emit_slurm(
    args: &ReproduceArgs,
    exp: &ExperimentConfig,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let cells = exp.cells(out)?;
    anyhow::ensure!(
        !cells.is_empty(),
        "{}: the grid has no cells",
        args.config.display()
    );
    let abs =
        |p: &std::path::Path| std::path::absolute(p).with_context(|| format!("{}", p.display()));
    let (out_abs, config_abs) = (abs(out)?, abs(&args.config)?);
    let exe = std::env::current_exe().context("locating the lpft executable")?;
    let dir = out_abs.join("slurm");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    // The same grid as here: every override given on this command line.
    let mut command = vec![
        sh(&exe.display().to_string()),
        "reproduce".into(),
        "--config".into(),
        sh(&config_abs.display().to_string()),
        "--out".into(),
        sh(&out_abs.display().to_string()),
    ];
    if let Some(s) = &args.seeds {
        let s: Vec<String> = s.iter().map(u64::to_string).collect();
        command.extend(["--seeds".into(), s.join(",")]);
    }
    if let Some(e) = args.epochs {
        command.extend(["--epochs".into(), e.to_string()]);
    }
    if let Some(p) = args.precision {
        command.extend(["--precision".into(), precision_name(p)]);
    }
    if let Some(m) = &args.model {
        command.extend(["--model".into(), sh(m)]);
    }
    if let Some(d) = &args.data_dir {
        command.extend(["--data-dir".into(), sh(&abs(d)?.display().to_string())]);
    }
    command.extend(["--threads".into(), "\"${SLURM_CPUS_PER_TASK:-1}\"".into()]);
    // The cells run where this command was told to run (`--device cuda` with `--gres gpu:1`).
    let device = lpft::device::current();
    if !device.is_cpu() {
        command.extend(["--device".into(), lpft::device::spec(&device)]);
    }
    let header = |job: &str, log: &str, array: Option<String>| {
        let mut h = vec![
            "#!/bin/bash".to_string(),
            format!("#SBATCH --job-name={job}"),
            format!("#SBATCH --output={}", logs.join(log).display()),
            format!("#SBATCH --cpus-per-task={}", args.cpus_per_task),
        ];
        if let Some(a) = array {
            h.push(format!("#SBATCH --array={a}"));
        }
        for (key, value) in [
            ("partition", &args.partition),
            ("time", &args.time),
            ("gres", &args.gres),
            ("mem", &args.mem),
        ] {
            if let Some(v) = value {
                h.push(format!("#SBATCH --{key}={v}"));
            }
        }
        h.push(String::new());
        h.push("set -euo pipefail".into());
        h.join("\n")
    };
    let job = format!("lpft-{}", exp.name);
    let listing: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| format!("#   {i:>4}  {}", label(c)))
        .collect();
    let grid = format!(
        "{}\n# One cell per array task (--cell = the task id); each resumes where it stopped, and a\n\
         # finished cell exits at once, so resubmitting runs only what is left. Cells:\n{}\n\
         exec {} --cell \"$SLURM_ARRAY_TASK_ID\"\n",
        header(&job, "cell-%a.out", Some(format!("0-{}", cells.len() - 1))),
        listing.join("\n"),
        command.join(" ")
    );
    let finish = format!(
        "{}\n# After every cell: the kernel alignments that span cells, then the report (any cell\n\
         # still unfinished is run here first).\nexec {}\n",
        header(&format!("{job}-finish"), "finish.out", None),
        command.join(" ")
    );
    let submit = "#!/bin/sh\n# Submits the array, then the finishing job to start once every array task succeeded.\n\
        set -eu\ncd \"$(dirname \"$0\")\"\narray=$(sbatch --parsable grid.sbatch)\n\
        array=${array%%;*}\necho \"array job $array\"\nsbatch --dependency=afterok:\"$array\" finish.sbatch\n";
    for (name, text) in [
        ("grid.sbatch", grid),
        ("finish.sbatch", finish),
        ("submit.sh", submit.to_string()),
    ] {
        let path = dir.join(name);
        lpft::fsutil::write_atomic(&path, text.as_bytes())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("{}", path.display()))?;
        }
    }
    eprintln!(
        "{}: {} cells as a Slurm array; submit with: sh {}",
        exp.name,
        cells.len(),
        dir.join("submit.sh").display()
    );
    println!("{}", dir.join("submit.sh").display());
    Ok(())
}
