//! `lpft analyze --runs DIR.. --split test`: feature statistics of trained runs against the
//! pre-trained encoder (the paper's Table 1: CS(F), Diff(F), FDR(F), Norm(C)).

use std::path::PathBuf;

use clap::Args;

use lpft::data::Split;
pub use lpft::rundir::find_runs;
pub use lpft::stages::analyze::analyze_runs;

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// Run directories, or directories searched for finished runs (holding metrics.json).
    #[arg(long, required = true, num_args = 1..)]
    pub runs: Vec<PathBuf>,
    /// Split whose features are analysed.
    #[arg(long, short = 's', default_value = "test")]
    pub split: Split,
}

/// Finished run directories under `root` (itself included), sorted.
pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    let runs: Vec<PathBuf> = args.runs.iter().flat_map(|r| find_runs(r)).collect();
    anyhow::ensure!(
        !runs.is_empty(),
        "no finished runs (metrics.json) under {:?}",
        args.runs
    );
    let rows = analyze_runs(&runs, args.split)?;
    println!(
        "Table 1 layout ({} split): feature statistics and classifier norm",
        args.split
    );
    println!(
        "{:<44} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "run", "method", "CS(F)", "Diff(F)", "FDR(F)", "Norm(C)"
    );
    let fmt = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.4}"));
    for row in &rows {
        let (name, m) = match &row.run {
            Some(dir) => (dir.display().to_string(), row.method.to_string()),
            None => ("Pre-trained".to_string(), "–".to_string()),
        };
        let s = &row.stats;
        println!(
            "{:<44} {:>8} {:>10.4} {:>10} {:>10.4} {:>10}",
            name,
            m,
            s.cs,
            fmt(s.diff),
            s.fdr,
            fmt(s.norm)
        );
    }
    Ok(())
}
