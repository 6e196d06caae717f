//! `lpft calibrate --run DIR`: temperature scaling fitted on validation NLL (docs/method.md §9).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use lpft::calibration::{TemperatureParams, TsMethod};
use lpft::rundir::write_json;
use lpft::stages::calibrate::calibrate_run;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Finished run directories.
    #[arg(long, required = true, num_args = 1..)]
    pub run: Vec<PathBuf>,
    /// Optimiser of the validation NLL over T.
    #[arg(long, value_enum, default_value_t = TsMethod::Lbfgs)]
    pub method: TsMethod,
}

pub fn run(args: CalibrateArgs) -> anyhow::Result<()> {
    let params = TemperatureParams::for_method(args.method);
    println!(
        "{:<40} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "run", "T", "ECE", "ECE(TS)", "MCE", "MCE(TS)", "NLL", "NLL(TS)"
    );
    for dir in &args.run {
        let report = calibrate_run(dir, &params)
            .with_context(|| format!("calibrating {}", dir.display()))?;
        write_json(&dir.join("calibration.json"), &report)?;
        let (b, a) = (&report.test_before, &report.test_after);
        println!(
            "{:<40} {:>7.3} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4}",
            dir.display(),
            report.temperature.t,
            b.ece,
            a.ece,
            b.mce,
            a.mce,
            b.nll,
            a.nll
        );
    }
    Ok(())
}
