//! `lpft predict --run DIR --input FILE`: labels and probabilities for new texts.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use lpft::calibration::metrics::softmax_rows;
use lpft::data::{self, FileFormat, FileSpec, LabelMap};
use lpft::methods::evaluate;
use lpft::stages::calibrate::read_temperature;
use lpft::stages::load::load_run;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A finished run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// Input: JSONL, CSV or TSV (with header), or a .txt file with one text per line.
    #[arg(long, short = 'i')]
    pub input: PathBuf,
    /// Format of --input when its extension does not say: csv, tsv, jsonl, text.
    #[arg(long)]
    pub format: Option<FileFormat>,
    /// Column (or JSON key) of the first text.
    #[arg(long, default_value = "text")]
    pub text_a: String,
    /// Column (or JSON key) of the second text of a pair.
    #[arg(long)]
    pub text_b: Option<String>,
    /// Output JSONL file (default: stdout). One line per input: label, label id, probabilities.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let trained =
        load_run(&args.run).with_context(|| format!("loading run {}", args.run.display()))?;
    let spec = FileSpec {
        path: args.input.clone(),
        format: args.format,
        text_a: args.text_a.clone(),
        text_b: args.text_b.clone(),
        label: None,
    };
    let examples = data::read_file(&spec, &mut LabelMap::open())?;
    let enc = trained.tokenizer.encode_examples(&examples)?;
    let logits = evaluate::logits(
        &trained.model,
        &trained.tokenizer,
        &enc,
        trained.config.train.eval_batch_size,
    )?;
    let labels = &trained.metrics.labels;
    let c = labels.len();
    // A temperature fitted by `lpft calibrate` rescales the logits (argmax unchanged).
    let temperature = read_temperature(&args.run)?;
    let logits: Vec<f64> = match temperature {
        Some(t) => logits.iter().map(|z| z / t).collect(),
        None => logits,
    };
    let probs = softmax_rows(&logits, c);
    let mut lines = Vec::with_capacity(examples.len());
    for row in probs.chunks(c) {
        let best = row
            .iter()
            .enumerate()
            .fold(0, |b, (i, &p)| if p > row[b] { i } else { b });
        let probabilities: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .zip(row)
            .map(|(l, &p)| (l.clone(), serde_json::json!(p)))
            .collect();
        lines.push(
            serde_json::json!({
                "label": labels[best],
                "label_id": best,
                "probabilities": probabilities,
                "temperature": temperature.unwrap_or(1.0),
            })
            .to_string(),
        );
    }
    let text = lines.join("\n") + "\n";
    match &args.out {
        Some(path) => {
            lpft::fsutil::write_atomic(path, text.as_bytes())?;
            eprintln!("wrote {} predictions to {}", examples.len(), path.display());
        }
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(())
}
