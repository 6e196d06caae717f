//! End-to-end runs of the built binary on the tiny fixture models.

use std::path::Path;
use std::process::{Command, Output};

use crate::util::{self, fixtures, shared_data};

fn lpft(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_lpft"))
        .args(args)
        .env("LPFT_THREADS", "1")
        .output()
        .expect("running lpft");
    out
}

fn ok(args: &[&str]) -> String {
    let out = lpft(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "lpft {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn fails(args: &[&str]) -> String {
    let out = lpft(args);
    assert_eq!(out.status.code(), Some(2), "lpft {args:?} should exit 2");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn tiny(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

#[test]
fn help_works_for_every_subcommand() {
    let top = ok(&["--help"]);
    for sub in ["fetch-model", "inspect", "data", "features", "bench"] {
        assert!(top.contains(sub), "top-level help lists {sub}");
        ok(&[sub, "--help"]);
    }
}

#[test]
fn inspect_reports_the_architecture() {
    let out = ok(&["inspect", "--model", &tiny("tiny-roberta")]);
    assert!(out.contains("roberta"), "{out}");
    assert!(out.contains("layers         2"), "{out}");
    assert!(out.contains("hidden size    32"), "{out}");
}

#[test]
fn data_prints_the_paper_split_sizes_for_cb() {
    let data = shared_data();
    if !data.join("superglue/CB").exists() {
        panic!("../shared/data is required for this test (CI lays it beside the repo)");
    }
    let out = ok(&[
        "data",
        "--task",
        "cb",
        "--data-dir",
        &data.display().to_string(),
    ]);
    let sizes: Vec<(String, usize)> = out
        .lines()
        .skip(2)
        .map(|l| {
            let mut w = l.split_whitespace();
            (
                w.next().unwrap().to_string(),
                w.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sizes,
        vec![
            ("train".into(), 225),
            ("validation".into(), 25),
            ("test".into(), 56)
        ],
        "{out}"
    );
}

#[test]
fn features_of_a_user_csv_file_are_deterministic() {
    let dir = util::temp_dir("features_csv");
    let csv = dir.path().join("reviews.csv");
    std::fs::write(
        &csv,
        "id,review,stars\n1,\"great movie, would watch again\",pos\n2,a dull film,neg\n3,\"not bad\",pos\n",
    )
    .unwrap();
    let out1 = dir.path().join("f1.safetensors");
    let out2 = dir.path().join("f2.safetensors");
    for out in [&out1, &out2] {
        ok(&[
            "features",
            "--file",
            &csv.display().to_string(),
            "--text-a",
            "review",
            "--label",
            "stars",
            "--model",
            &tiny("tiny-bert"),
            "--out",
            &out.display().to_string(),
        ]);
    }
    let t = util::load_tensors(&out1);
    assert_eq!(t["features"].dims(), &[3, 32]);
    // Labels are numbered in sorted order: neg = 0, pos = 1.
    assert_eq!(util::ids(&t["labels"]), vec![1, 0, 1]);
    assert_eq!(std::fs::read(&out1).unwrap(), std::fs::read(&out2).unwrap());
}

#[test]
fn features_match_the_model_whatever_the_batching() {
    // Batch size 1 (no padding at all) and 4 (length-bucketed, padded) give the same rows.
    let dir = util::temp_dir("features_batching");
    let data = shared_data().display().to_string();
    let mut rows = Vec::new();
    for bs in ["1", "4"] {
        let out = dir.path().join(format!("f{bs}.safetensors"));
        ok(&[
            "features",
            "--task",
            "cb",
            "--split",
            "validation",
            "--data-dir",
            &data,
            "--model",
            &tiny("tiny-roberta"),
            "--batch-size",
            bs,
            "--out",
            &out.display().to_string(),
        ]);
        let t = util::load_tensors(&out);
        assert_eq!(t["features"].dims(), &[25, 32]);
        rows.push(util::values(&t["features"]));
    }
    let (d, i) = util::max_abs_diff(&rows[0], &rows[1]);
    // Masked padding changes only the summation order of f32 reductions.
    assert!(d < 1e-5, "batching changed a feature by {d} at {i}");
}

#[test]
fn errors_name_what_is_wrong() {
    let err = fails(&[
        "data",
        "--task",
        "nope",
        "--data-dir",
        &shared_data().display().to_string(),
    ]);
    assert!(err.contains("nope") && err.contains("cb"), "{err}");
    let missing = Path::new("/nonexistent/model-dir").display().to_string();
    let err = fails(&["inspect", "--model", &missing]);
    assert!(err.contains("/nonexistent/model-dir"), "{err}");
}
