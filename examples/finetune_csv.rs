//! Fine-tune with LP-FT on your own CSV files: a linear probe first, then full fine-tuning
//! from it (Tomihari & Sato 2024, arXiv 2405.16747 §3), with the paper's other settings.
//!
//! ```sh
//! cargo run --release --example finetune_csv -- TRAIN.csv TEST.csv [MODEL] [OUT]
//! ```
//!
//! The files need a `text` and a `label` column (a `text_b` column makes it a pair task);
//! validation is the last 10% of the training file. MODEL is `minilm` (the default), `mpnet`,
//! a Hugging Face directory or a Hub id; the run lands in `OUT/<task>/lp-ft/seed-1001/`.

use std::path::{Path, PathBuf};

use lpft::data::FileTask;
use lpft::methods::progress::SilentObserver;
use lpft::methods::{Method, RunConfig};
use lpft::stages::train::{self, RunOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [train_file, test_file, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: finetune_csv TRAIN.csv TEST.csv [MODEL] [OUT]");
    };
    let model = rest.first().map_or("minilm", String::as_str);
    let out = PathBuf::from(rest.get(1).map_or("runs", String::as_str));

    let task = Path::new(train_file)
        .file_stem()
        .map_or("my-task".into(), |s| s.to_string_lossy().into_owned());
    let mut cfg = RunConfig::paper_defaults(&task, Method::LpFt, model, 1001);
    let has_pairs = std::fs::read_to_string(train_file)?
        .lines()
        .next()
        .is_some_and(|header| header.split(',').any(|c| c.trim() == "text_b"));
    cfg.files = Some(FileTask {
        train: train_file.into(),
        validation: None,
        test: test_file.into(),
        format: None,
        text_a: "text".into(),
        text_b: has_pairs.then(|| "text_b".into()),
        label: "label".into(),
        labels: None,
        metric: lpft::data::TaskMetric::Accuracy,
    });

    let outcome = train::run(&cfg, &out, &RunOptions::default(), &mut SilentObserver)?;
    let m = &outcome.metrics;
    println!("run {}", outcome.dir.display());
    println!(
        "test accuracy {:.4}, macro-F1 {:.4}, ECE {:.4}; ‖V‖_F {:.3} → {:.3}",
        m.test.accuracy, m.test.f1_macro, m.test.ece, m.initial_classifier_norm, m.classifier_norm
    );
    Ok(())
}
