//! `lpft predict --run DIR --input FILE`: labels and probabilities for new texts; and
//! `lpft predict --run DIR --task T --split test`: a benchmark's submission file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use lpft::calibration::metrics::softmax_rows;
use lpft::data::tasks::SubmissionFormat;
use lpft::data::{self, FileFormat, FileSpec, LabelMap, Task};
use lpft::methods::evaluate;
use lpft::stages::calibrate::read_temperature;
use lpft::stages::load::load_run;

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A finished run directory.
    #[arg(long)]
    pub run: PathBuf,
    /// Input: JSONL, CSV or TSV (with header), or a .txt file with one text per line.
    #[arg(
        long,
        short = 'i',
        required_unless_present = "task",
        conflicts_with = "task"
    )]
    pub input: Option<PathBuf>,
    /// Instead of --input: a built-in task's official test split, written in its benchmark's
    /// submission format (SuperGLUE `CB.jsonl` with `idx` and `label`, GLUE `SST-2.tsv` with
    /// `index` and `prediction`), to --out or `<run>/submission/<file>`.
    #[arg(long, short = 't', value_parser = super::common::task_parser())]
    pub task: Option<String>,
    /// The split of --task: `test`, the official unlabelled one (the only split a benchmark
    /// scores).
    #[arg(long, requires = "task", default_value = "test", value_parser = ["test"])]
    pub split: String,
    /// Data directory searched first for --task; then $LPFT_DATA_DIR, ./data, $LPFT_HOME/data
    /// and lpft's embedded copy (CB).
    #[arg(long, requires = "task")]
    pub data_dir: Option<PathBuf>,
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
    if let Some(task) = &args.task {
        return submission(&args, &trained, task);
    }
    let input = args.input.clone().expect("clap requires --input or --task");
    let spec = FileSpec {
        path: input,
        format: args.format,
        text_a: args.text_a.clone(),
        text_b: args.text_b.clone(),
        label: None,
    };
    let examples = data::read_file(&spec, &mut LabelMap::open())?;
    let logits = logits_of(&trained, &examples)?;
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

/// `--task T --split test`: the official test split's predictions in the benchmark's format.
fn submission(
    args: &PredictArgs,
    trained: &lpft::stages::load::TrainedRun,
    name: &str,
) -> anyhow::Result<()> {
    let task: Task = name.parse()?;
    let Some(format) = task.submission() else {
        anyhow::bail!("task `{name}` has no benchmark test split to submit");
    };
    // The run must have been trained on this task's labels, in this order.
    let labels = &trained.metrics.labels;
    if labels != &task.label_names() {
        anyhow::bail!(
            "{}: the run's labels [{}] are not task `{name}`'s [{}]",
            args.run.join("metrics.json").display(),
            labels.join(", "),
            task.label_names().join(", ")
        );
    }
    let located = lpft::hub::DataSearch::from_env(args.data_dir.as_deref())
        .locate(task)
        .with_context(|| format!("locating task `{name}`"))?;
    let examples = task.load_unlabelled(&located.dir)?;
    let ids = task.test_ids(&located.dir)?;
    anyhow::ensure!(
        ids.len() == examples.len(),
        "task `{name}`: {} ids for {} test examples in {}",
        ids.len(),
        examples.len(),
        located.dir.display()
    );
    let logits = logits_of(trained, &examples)?;
    let c = labels.len();
    let mut text = String::new();
    if format.format == SubmissionFormat::Tsv {
        text.push_str("index\tprediction\n");
    }
    for (id, row) in ids.iter().zip(logits.chunks(c)) {
        let best = row
            .iter()
            .enumerate()
            .fold(0, |b, (i, &z)| if z > row[b] { i } else { b });
        let label = task.submission_label(best);
        match format.format {
            SubmissionFormat::Jsonl => {
                text.push_str(&serde_json::json!({ "idx": id, "label": label }).to_string());
            }
            SubmissionFormat::Tsv => {
                let cell = |v: &serde_json::Value| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                text.push_str(&format!("{}\t{}", cell(id), cell(&label)));
            }
        }
        text.push('\n');
    }
    let path = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.join("submission").join(format.file_name));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    lpft::fsutil::write_atomic(&path, text.as_bytes())?;
    eprintln!(
        "wrote {} predictions on {name}'s test split ({}) to {}",
        examples.len(),
        located.dir.display(),
        path.display()
    );
    println!("{}", path.display());
    Ok(())
}

/// The run's logits `[n, C]` (row-major) of `examples`, in eval mode.
fn logits_of(
    trained: &lpft::stages::load::TrainedRun,
    examples: &[lpft::data::Example],
) -> anyhow::Result<Vec<f64>> {
    let enc = trained.tokenizer.encode_examples(examples)?;
    Ok(evaluate::logits(
        &trained.model,
        &trained.tokenizer,
        &enc,
        trained.config.train.eval_batch_size,
    )?)
}
