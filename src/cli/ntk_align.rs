//! `lpft ntk-align --lora DIR --ft DIR`: how close LoRA's F is to FT's F (the paper's Prop. 4.4;
//! this statistic is ours, not the paper's): kernel alignment ⟨A, B⟩_F / (‖A‖_F ‖B‖_F) of the
//! LoRA run's F with the FT run's F restricted to the adapted weights (the `query` and `value`
//! parameter groups by default) and with the whole F^FT, and the ratio of their norms. Both runs
//! need `lpft ntk` on the same examples first (same task, `--max-examples` and seed).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use lpft::analysis::kernel_stats::kernel_alignment;
use lpft::methods::run::write_json;
use lpft::ntk::kernel::{Kernel, KernelMatrix};

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

#[derive(Serialize)]
struct Alignment {
    lora: PathBuf,
    ft: PathBuf,
    groups: Vec<String>,
    alignment_restricted: f64,
    alignment_full: f64,
    norm_ratio_restricted: f64,
    norm_ratio_full: f64,
}

fn load(path: &Path, name: &str) -> anyhow::Result<candle_core::Tensor> {
    let t = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .with_context(|| format!("reading {} (run `lpft ntk` first)", path.display()))?;
    t.get(name)
        .cloned()
        .with_context(|| format!("{}: no tensor `{name}`", path.display()))
}

fn kernel(t: &candle_core::Tensor) -> anyhow::Result<Kernel> {
    let dims = t.dims();
    anyhow::ensure!(dims.len() == 4, "a kernel has 4 dimensions, found {dims:?}");
    let data: Vec<f64> = t.flatten_all()?.to_vec1()?;
    Ok(Kernel::from_parts(
        data,
        [dims[0], dims[1], dims[2], dims[3]],
    )?)
}

pub fn run(args: NtkAlignArgs) -> anyhow::Result<()> {
    let lora_file = args.lora.join("kernels/F_train_train.safetensors");
    let ft_file = args.ft.join("kernels/F_train_train.safetensors");
    let idx_lora: Vec<i64> = load(&lora_file, "indices1")?.to_vec1()?;
    let idx_ft: Vec<i64> = load(&ft_file, "indices1")?.to_vec1()?;
    anyhow::ensure!(
        idx_lora == idx_ft,
        "the two runs' kernels are on different examples"
    );
    let f_lora = kernel(&load(&lora_file, "kernel")?)?.flatten();
    let f_ft = kernel(&load(&ft_file, "kernel")?)?.flatten();
    let groups_file = args.ft.join("kernels/F_groups_train_train.safetensors");
    let mut restricted: Option<Kernel> = None;
    for g in &args.groups {
        let k = kernel(&load(&groups_file, g)?)?;
        restricted = Some(match restricted {
            Some(r) => r.add(&k)?,
            None => k,
        });
    }
    let restricted: KernelMatrix = restricted.context("name at least one group")?.flatten();
    let a = Alignment {
        lora: args.lora.clone(),
        ft: args.ft.clone(),
        groups: args.groups.clone(),
        alignment_restricted: kernel_alignment(&f_lora, &restricted)?,
        alignment_full: kernel_alignment(&f_lora, &f_ft)?,
        norm_ratio_restricted: f_lora.frobenius_norm() / restricted.frobenius_norm(),
        norm_ratio_full: f_lora.frobenius_norm() / f_ft.frobenius_norm(),
    };
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
    let out = args.lora.join("kernels/alignment.json");
    write_json(&out, &a)?;
    println!("wrote {}", out.display());
    Ok(())
}
