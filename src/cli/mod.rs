//! Subcommands: one file each, a clap `Args` struct and a short `run` over the library.

mod analyze;
mod bench;
mod calibrate;
mod common;
mod data;
mod demo;
mod eval;
mod features;
mod fetch_data;
mod fetch_model;
mod inspect;
mod lp_path;
mod ntk;
mod ntk_align;
mod predict;
mod report;
mod reproduce;
mod sweep_norm;
mod train;

use std::sync::LazyLock;

use clap::{Args, Parser, Subcommand};
use indicatif::MultiProgress;

/// lpft: linear probing then fine-tuning (LP-FT) of Transformer text encoders, and the NTK
/// analysis of why it works.
#[derive(Parser, Debug)]
#[command(name = "lpft", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Args, Debug)]
pub struct GlobalArgs {
    /// Worker threads for tensor ops (default: all cores). Results are reproducible for a fixed
    /// seed and thread count.
    #[arg(long, global = true, env = "LPFT_THREADS")]
    pub threads: Option<usize>,
    /// Where models run: cpu (default), cuda (device 0) or cuda:N. CUDA needs a build with
    /// `--features cuda`; on the CPU results are reproducible for a fixed seed and thread count.
    #[arg(long, global = true, env = "LPFT_DEVICE", value_name = "cpu|cuda[:N]")]
    pub device: Option<String>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The whole pipeline on CB with the default model (reduced CPU preset): five methods,
    /// calibration, feature statistics, the eNTK.
    Demo(demo::DemoArgs),
    /// Download (or find in the cache) a model and print its local directory.
    FetchModel(fetch_model::FetchModelArgs),
    /// Install built-in tasks' data from their pinned public sources into $LPFT_HOME/data.
    FetchData(fetch_data::FetchDataArgs),
    /// Print a model's architecture, size and vocabulary.
    Inspect(inspect::InspectArgs),
    /// Print a task's split sizes and label counts.
    Data(data::DataArgs),
    /// Write the frozen encoder's features φ(x) of a task split to a safetensors file.
    Features(features::FeaturesArgs),
    /// Train one (task, method, seed) run: lp, ft, lp-ft, lora or lp-lora.
    Train(train::TrainArgs),
    /// Evaluate a trained run on a split, or on another task with the same labels.
    Eval(eval::EvalArgs),
    /// Predict labels and probabilities for a file of texts with a trained run.
    Predict(predict::PredictArgs),
    /// Temperature scaling of trained runs: fit T on validation, report test ECE/MCE/NLL.
    Calibrate(calibrate::CalibrateArgs),
    /// Feature statistics of trained runs against the pre-trained encoder (Table 1).
    Analyze(analyze::AnalyzeArgs),
    /// Empirical NTK of a run at the start of its gradient stage: P and F kernels, their rank,
    /// FN, FT ratio and kernel-regression accuracies (Table 2).
    Ntk(ntk::NtkArgs),
    /// Norm-scaling sweep: scale the head by κ before the gradient stage, record Diff(F).
    SweepNorm(sweep_norm::SweepNormArgs),
    /// LP classifier norm and training accuracy against the L-BFGS iteration budget.
    LpPath(lp_path::LpPathArgs),
    /// Kernel alignment of a LoRA run's F with an FT run's F (restricted to the adapted weights).
    NtkAlign(ntk_align::NtkAlignArgs),
    /// Time encoder workloads on a fixed batch, and the eNTK's F against the paper code's way.
    Bench(bench::BenchArgs),
    /// Run an experiment grid (TOML) and write its report; continues an interrupted grid.
    Reproduce(reproduce::ReproduceArgs),
    /// Tables beside the paper's values, SVG figures, findings and index.html from run directories.
    Report(report::ReportArgs),
}

/// Sets the thread count (before any tensor op), the compute device and the log level.
///
/// # Errors
/// `--threads 0`, or a thread pool that cannot be built with the count asked for (results are
/// reproducible only for a known thread count, so this is never ignored).
pub fn init(global: &GlobalArgs) -> anyhow::Result<()> {
    if let Some(n) = global.threads {
        anyhow::ensure!(
            n > 0,
            "--threads (or LPFT_THREADS) must be at least 1, got 0"
        );
        // candle's CPU kernels and rayon both read these at first use.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| anyhow::anyhow!("--threads {n}: cannot set up the thread pool: {e}"))?;
    }
    if let Some(spec) = &global.device {
        lpft::device::set(lpft::device::parse(spec)?);
    }
    let level = match global.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .build();
    let max = logger.filter();
    log::set_boxed_logger(Box::new(AboveBars(logger)))
        .map_err(|e| anyhow::anyhow!("setting up logging: {e}"))?;
    log::set_max_level(max);
    Ok(())
}

/// Every progress bar is drawn through this, so that `-v` log lines are printed above the bars
/// instead of through them.
pub static BARS: LazyLock<MultiProgress> = LazyLock::new(MultiProgress::new);

/// env_logger's logger, with the progress bars suspended while it writes a line.
struct AboveBars(env_logger::Logger);

impl log::Log for AboveBars {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if self.0.matches(record) {
            BARS.suspend(|| self.0.log(record));
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Runs one subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo(a) => demo::run(a),
        Command::FetchModel(a) => fetch_model::run(a),
        Command::FetchData(a) => fetch_data::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Data(a) => data::run(a),
        Command::Features(a) => features::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Analyze(a) => analyze::run(a),
        Command::Ntk(a) => ntk::run(a),
        Command::SweepNorm(a) => sweep_norm::run(a),
        Command::LpPath(a) => lp_path::run(a),
        Command::NtkAlign(a) => ntk_align::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Reproduce(a) => reproduce::run(a),
        Command::Report(a) => report::run(a),
    }
}
