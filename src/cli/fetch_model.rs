//! `lpft fetch-model [NAME]`: provision a model and print its directory.

use clap::Args;

#[derive(Args, Debug)]
pub struct FetchModelArgs {
    /// `minilm` (default), `mpnet`, a local directory, or a Hub id `owner/name[@revision]` or
    /// `name[@revision]` (e.g. `roberta-base`) from the Hugging Face cache, downloaded if missing
    /// (not with HF_HUB_OFFLINE=1).
    #[arg(default_value = "minilm")]
    pub name: String,
}

pub fn run(args: FetchModelArgs) -> anyhow::Result<()> {
    let resolved = super::common::resolve(&args.name)?;
    println!("{}", resolved.dir.display());
    Ok(())
}
