//! Temperature scaling of a finished run (arXiv 2405.16747 §6, Table 3): T fitted on the
//! validation NLL, then the test split's calibration before and after.
//!
//! ```sh
//! cargo run --release --example calibrate_run -- RUN_DIR [adam]
//! ```
//!
//! RUN_DIR is a run directory (`runs/<task>/<method>/seed-<n>/`); `adam` fits with the paper's
//! Adam instead of the exact minimiser. Nothing is written (`lpft calibrate` also saves the
//! report as the run's `calibration.json`).

use std::path::Path;

use lpft::calibration::temperature::{TemperatureParams, TsMethod};
use lpft::stages::calibrate::calibrate_run;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let run = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: calibrate_run RUN_DIR [adam]"))?;
    let method = match args.next().as_deref() {
        Some("adam") => TsMethod::Adam,
        _ => TsMethod::Lbfgs,
    };
    let report = calibrate_run(Path::new(&run), &TemperatureParams::for_method(method))?;
    let (before, after) = (&report.test_before, &report.test_after);
    println!("T = {:.4}", report.temperature.t);
    println!("test ECE   {:.4} -> {:.4}", before.ece, after.ece);
    println!("test NLL   {:.4} -> {:.4}", before.nll, after.nll);
    println!("test Brier {:.4} -> {:.4}", before.brier, after.brier);
    println!("test accuracy {:.4} (unchanged by T)", after.accuracy);
    Ok(())
}
