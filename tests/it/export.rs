//! Exports load where transformers users load models: an FT run's `model/` through
//! `AutoModelForSequenceClassification(..., trust_remote_code=True)` and `pipeline(...)`, with
//! lpft's logits (`scripts/check_auto_model.py`), on the tiny BERT, RoBERTa and MPNet fixtures.
//! Needs a Python with torch and transformers: `LPFT_PYTHON=/path/to/python`; `scripts/test.sh`
//! runs it when that is set and prints a `skipped:` line otherwise.

use std::process::Command;

use crate::util::{fixtures, lpft_ok as ok};

#[test]
#[ignore = "needs LPFT_PYTHON (a Python with torch and transformers); scripts/test.sh runs it when set"]
fn exported_models_load_in_transformers_with_lpfts_logits() {
    let python = std::env::var("LPFT_PYTHON").expect("LPFT_PYTHON");
    let tmp = tempfile::tempdir().unwrap();
    let export = tmp.path().join("data");
    ok(&[
        "data",
        "--task",
        "cb",
        "--export",
        &export.display().to_string(),
    ]);
    let data = export.join("superglue/CB/val.jsonl");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_auto_model.py");
    for name in ["tiny-bert", "tiny-roberta", "tiny-mpnet"] {
        let out = tmp.path().join(name).display().to_string();
        let model = fixtures().join(name).display().to_string();
        // 60 tokens: the tiny models have 64 positions.
        ok(&[
            "train",
            "--task",
            "cb",
            "--method",
            "ft",
            "--model",
            &model,
            "--epochs",
            "1",
            "--max-train-samples",
            "40",
            "--max-len",
            "60",
            "-o",
            &out,
        ]);
        let run = tmp.path().join(name).join("cb/ft/seed-1001");
        let res = Command::new(&python)
            .arg(&script)
            .arg(&run)
            .arg(&data)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        );
        println!("{name}: {text}");
        assert!(res.status.success(), "{name}: {text}");
    }
}
