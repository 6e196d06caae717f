//! `lpft report --runs DIR --out DIR`: tables beside the paper's values, SVG figures, findings
//! and an `index.html`, from finished run directories (nothing is retrained).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use lpft::report::{write_report, ReportOutcome};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Root of the run directories (searched recursively for `metrics.json`).
    #[arg(long, short = 'r')]
    pub runs: PathBuf,
    /// Where the report goes (`index.html`, `report.md`, `tables/`, `figures/`).
    #[arg(long, short = 'o', default_value = "report")]
    pub out: PathBuf,
}

/// Prints the headline tables and where the report is.
pub fn print_summary(r: &ReportOutcome) {
    for t in r
        .tables
        .iter()
        .filter(|t| t.id == "findings" || t.id.starts_with("table8-accuracy"))
    {
        println!("{}", t.to_markdown());
    }
    println!(
        "Report: {} ({} runs, {} tables, {} figures; Markdown {})",
        r.index_html.display(),
        r.runs,
        r.tables.len(),
        r.figures,
        r.markdown.display()
    );
    if !r.unfinished.is_empty() {
        println!(
            "{} cell(s) not finished (the report covers the finished runs): {}",
            r.unfinished.len(),
            r.unfinished.join(", ")
        );
    }
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let r = write_report(&args.runs, &args.out)
        .with_context(|| format!("reporting the runs under {}", args.runs.display()))?;
    print_summary(&r);
    Ok(())
}
