//! `lpft data --task T`: split sizes and label counts after the paper's split protocol, and
//! where the files were found; `--export DIR` copies them out.

use std::path::PathBuf;

use clap::Args;

use super::common::InputArgs;

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Copy the task's files, wherever they were found (the embedded copy included), into DIR in
    /// the layout lpft reads, e.g. for another program.
    #[arg(long, value_name = "DIR", requires = "task")]
    pub export: Option<PathBuf>,
}

pub fn run(args: DataArgs) -> anyhow::Result<()> {
    let input = args.input.load()?;
    println!(
        "task {} ({} classes: {})",
        input.name,
        input.labels.len(),
        input.labels.join(", ")
    );
    println!("{:<12} {:>7}  label counts", "split", "size");
    for (split, examples) in &input.splits {
        let mut counts = vec![0usize; input.labels.len()];
        let mut unlabelled = 0;
        for e in examples {
            match e.label {
                Some(l) => counts[l] += 1,
                None => unlabelled += 1,
            }
        }
        let mut parts: Vec<String> = input
            .labels
            .iter()
            .zip(&counts)
            .map(|(l, c)| format!("{l}={c}"))
            .collect();
        if unlabelled > 0 {
            parts.push(format!("unlabelled={unlabelled}"));
        }
        println!("{split:<12} {:>7}  {}", examples.len(), parts.join(" "));
    }
    if let Some(located) = &input.located {
        println!("read from {}", located.describe());
        if let Some(dest) = &args.export {
            for path in located.export(dest)? {
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
