//! `lpft fetch-model [NAME]`: provision a model and print its directory.

use clap::Args;

#[derive(Args, Debug)]
pub struct FetchModelArgs {
    /// `minilm` (default), `mpnet`, a local directory or a hub id `owner/name[@revision]`.
    #[arg(default_value = "minilm")]
    pub name: String,
}

pub fn run(args: FetchModelArgs) -> anyhow::Result<()> {
    let resolved = super::common::resolve(&args.name)?;
    println!("{}", resolved.dir.display());
    Ok(())
}
