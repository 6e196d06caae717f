//! Exports load where transformers and peft users load models: an FT run's `model/` through
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

/// Adapters load where peft users load them: a LoRA and an LP-LoRA run's `adapter/` through
/// `PeftModel.from_pretrained` on the tiny BERT, every tensor bit for bit, lpft's test logits
/// within 1e-4 before and after `merge_and_unload()`, and the tensor names peft's own
/// `save_pretrained` writes (`scripts/check_export.py`, whose FT checks run on an FT run too).
/// Needs `LPFT_PYTHON` with torch, transformers and peft.
#[test]
#[ignore = "needs LPFT_PYTHON (a Python with torch, transformers and peft); scripts/test.sh runs it when set"]
fn exported_adapters_load_in_peft_with_lpfts_logits() {
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
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_export.py");
    let model = fixtures().join("tiny-bert").display().to_string();
    let out = tmp.path().join("runs").display().to_string();
    for method in ["lora", "lp-lora", "ft"] {
        ok(&[
            "train",
            "--task",
            "cb",
            "--method",
            method,
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
        let run = tmp.path().join("runs/cb").join(method).join("seed-1001");
        let res = Command::new(&python)
            .arg(&script)
            .arg(&run)
            .arg("--data")
            .arg(&data)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        );
        println!("{method}: {text}");
        assert!(res.status.success(), "{method}: {text}");
        assert!(text.contains(" 0 failed"), "{method}: {text}");
    }
}
