//! `lpft ntk-align --lora DIR --ft DIR`: how close LoRA's F is to FT's F (the paper's Prop. 4.4;
//! this statistic is ours, not the paper's): kernel alignment ⟨A, B⟩_F / (‖A‖_F ‖B‖_F) of the
//! LoRA run's F with the FT run's F restricted to the adapted weights (the `query` and `value`
//! parameter groups by default) and with the whole F^FT, and the ratio of their norms. Both runs
//! need `lpft ntk` on the same examples first (same task, `--max-examples` and seed).

use std::path::PathBuf;

use clap::Args;

use lpft::rundir::ALIGNMENT as ALIGNMENT_FILE;
use lpft::stages::kernels::align_runs;

#[derive(Args, Debug)]
pub struct NtkAlignArgs {
    /// A LoRA or LP-LoRA run whose kernels/ `lpft ntk` has written.
    #[arg(long)]
    pub lora: PathBuf,
    /// An FT or LP-FT run whose kernels/ `lpft ntk` has written, on the same examples.
    #[arg(long)]
    pub ft: PathBuf,
    /// Parameter groups of F^FT that LoRA adapts.
    #[arg(long, value_delimiter = ',', default_value = "query,value")]
    pub groups: Vec<String>,
}

pub fn run(args: NtkAlignArgs) -> anyhow::Result<()> {
    let a = align_runs(&args.lora, &args.ft, &args.groups)?;
    println!(
        "alignment of F^LoRA with F^FT restricted to {}: {:.4} (with all of F^FT: {:.4})",
        args.groups.join("+"),
        a.alignment_restricted,
        a.alignment_full
    );
    println!(
        "‖F^LoRA‖ / ‖F^FT restricted‖ = {:.4e}; ‖F^LoRA‖ / ‖F^FT‖ = {:.4e}",
        a.norm_ratio_restricted, a.norm_ratio_full
    );
    println!("wrote {}", args.lora.join(ALIGNMENT_FILE).display());
    Ok(())
}
