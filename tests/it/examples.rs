//! The programs in `examples/` run on the tiny fixture model: fine-tune with LP-FT on CSV files,
//! calibrate the run, compute the eNTK of a few sentences. `cargo test` builds them first.

use std::path::PathBuf;
use std::process::Command;

use crate::util::fixtures;

/// `target/<profile>/examples/<name>`, next to this test binary's `deps/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test` (it builds the examples), or \
         `cargo build --examples` first",
        path.display()
    );
    path
}

fn run(name: &str, args: &[&str]) -> String {
    let out = Command::new(example(name)).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn examples_fine_tune_calibrate_and_compute_the_entk() {
    let tmp = tempfile::tempdir().unwrap();
    let words = [
        "good", "bad", "great", "terrible", "fine", "poor", "nice", "awful",
    ];
    let mut train = String::from("text,label\n");
    for i in 0..48 {
        let w = words[i % words.len()];
        let label = if i % 2 == 0 { "pos" } else { "neg" };
        train.push_str(&format!("the film was {w} and the music was {w},{label}\n"));
    }
    let test: String = train.lines().take(17).map(|l| format!("{l}\n")).collect();
    let (train_path, test_path) = (tmp.path().join("reviews.csv"), tmp.path().join("test.csv"));
    std::fs::write(&train_path, train).unwrap();
    std::fs::write(&test_path, test).unwrap();
    let model = fixtures().join("tiny-bert").display().to_string();
    let out = tmp.path().join("runs").display().to_string();

    let text = run(
        "finetune_csv",
        &[
            &train_path.display().to_string(),
            &test_path.display().to_string(),
            &model,
            &out,
        ],
    );
    assert!(text.contains("test accuracy"), "{text}");
    let run_dir = tmp.path().join("runs/reviews/lp-ft/seed-1001");
    assert!(run_dir.join("metrics.json").exists(), "{text}");

    let text = run("calibrate_run", &[&run_dir.display().to_string()]);
    assert!(
        text.starts_with("T = ") && text.contains("test ECE"),
        "{text}"
    );

    let text = run("entk_sentences", &[&model]);
    assert!(text.contains("F over") && text.contains("query"), "{text}");
}
