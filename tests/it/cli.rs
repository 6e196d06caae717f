//! End-to-end runs of the built binary on the tiny fixture models.

use std::path::Path;

use crate::util::{self, fixtures};

use crate::util::{lpft, lpft_ok as ok};

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
    for sub in [
        "demo",
        "fetch-model",
        "inspect",
        "data",
        "features",
        "train",
        "eval",
        "predict",
        "calibrate",
        "analyze",
        "sweep-norm",
        "lp-path",
        "reproduce",
        "report",
        "ntk",
        "ntk-align",
        "bench",
    ] {
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
    // Nothing configured: the embedded CB (the SuperGLUE distribution files).
    let env = util::Env::new("data_cb");
    let out = env
        .command(&[])
        .args(["data", "--task", "cb"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    let sizes: Vec<(String, usize)> = out
        .lines()
        .skip(2)
        .take(3)
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
    let mut rows = Vec::new();
    for bs in ["1", "4"] {
        let out = dir.path().join(format!("f{bs}.safetensors"));
        ok(&[
            "features",
            "--task",
            "cb",
            "--split",
            "validation",
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
    let err = fails(&["data", "--task", "nope"]);
    assert!(err.contains("nope") && err.contains("cb"), "{err}");
    let missing = Path::new("/nonexistent/model-dir").display().to_string();
    let err = fails(&["inspect", "--model", &missing]);
    assert!(err.contains("/nonexistent/model-dir"), "{err}");
}

/// train → eval → calibrate → predict → analyze through the binary, on the tiny model.
#[test]
fn pipeline_from_train_to_analysis() {
    let dir = util::temp_dir("pipeline");
    let data = dir.path().join("data");
    util::synthetic_cb(&data, 60, 24);
    let runs = dir.path().join("runs");
    let (data_s, runs_s, model) = (
        data.display().to_string(),
        runs.display().to_string(),
        tiny("tiny-bert"),
    );
    for method in ["lp", "lp-ft"] {
        let out = ok(&[
            "train",
            "--task",
            "cb",
            "--method",
            method,
            "--model",
            &model,
            "--data-dir",
            &data_s,
            "--out",
            &runs_s,
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--lr",
            "1e-3",
            "--seed",
            "7",
        ]);
        assert!(out.contains("test"), "{out}");
    }
    let lpft_dir = runs.join("cb/lp-ft/seed-7");
    let run_s = lpft_dir.display().to_string();
    // Running the same cell again refuses to overwrite a finished run.
    let err = fails(&[
        "train",
        "--task",
        "cb",
        "--method",
        "lp-ft",
        "--model",
        &model,
        "--data-dir",
        &data_s,
        "--out",
        &runs_s,
        "--epochs",
        "2",
        "--seed",
        "7",
    ]);
    assert!(err.contains("--overwrite"), "{err}");
    let out = ok(&["eval", "--run", &run_s, "--split", "validation"]);
    assert!(out.contains("accuracy"), "{out}");
    assert!(lpft_dir.join("eval/cb-validation.json").exists());
    let out = ok(&["calibrate", "--run", &run_s]);
    assert!(out.contains(&run_s), "{out}");
    let cal: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lpft_dir.join("calibration.json")).unwrap())
            .unwrap();
    let t = cal["temperature"]["t"].as_f64().unwrap();
    assert!(t > 0.0);
    assert_eq!(cal["reliability_before"].as_array().unwrap().len(), 15);
    let input = dir.path().join("new.jsonl");
    std::fs::write(
        &input,
        "{\"premise\": \"the cat is good today.\", \"hypothesis\": \"yes , the cat is good\"}\n{\"premise\": \"a man was here.\", \"hypothesis\": \"no , a man was here\"}\n",
    )
    .unwrap();
    let out = ok(&[
        "predict",
        "--run",
        &run_s,
        "--input",
        &input.display().to_string(),
        "--text-a",
        "premise",
        "--text-b",
        "hypothesis",
    ]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        let p: f64 = l["probabilities"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!((p - 1.0).abs() < 1e-9, "probabilities sum to 1: {l}");
        assert_eq!(
            l["temperature"].as_f64().unwrap(),
            t,
            "predict applies the fitted temperature"
        );
    }
    let out = ok(&["analyze", "--runs", &runs_s, "--split", "test"]);
    assert!(
        out.contains("Pre-trained") && out.contains("lp-ft"),
        "{out}"
    );
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lpft_dir.join("analysis.json")).unwrap())
            .unwrap();
    assert!(
        a["run"]["diff"].as_f64().unwrap() > 0.0,
        "LP-FT changed the features"
    );
    let lp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join("cb/lp/seed-7/analysis.json")).unwrap(),
    )
    .unwrap();
    assert!(
        lp["run"]["diff"].is_null(),
        "LP keeps the pre-trained features"
    );
    // CS of the pre-trained features, against the definition (mean pairwise cosine over
    // i < j) applied to the features `lpft features` writes for the same split.
    let feats = runs.join("feats.safetensors");
    ok(&[
        "features",
        "--task",
        "cb",
        "--split",
        "test",
        "--data-dir",
        &data.display().to_string(),
        "--model",
        &tiny("tiny-bert"),
        "--out",
        &feats.display().to_string(),
    ]);
    let t = util::load_tensors(&feats);
    let (n, d) = t["features"].dims2().unwrap();
    let phi: Vec<f64> = util::values(&t["features"])
        .into_iter()
        .map(f64::from)
        .collect();
    let row = |i: usize| &phi[i * d..(i + 1) * d];
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut cs = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            cs += dot(row(i), row(j)) / (dot(row(i), row(i)) * dot(row(j), row(j))).sqrt();
        }
    }
    cs /= (n * (n - 1) / 2) as f64;
    let reported = lp["pretrained"]["cs"].as_f64().unwrap();
    // The features file is f32 and the analysis works from the same features in f64: cosines
    // of 32-dim vectors then agree to ~1e-7.
    const CS_TOL: f64 = 1e-6;
    assert!(
        (reported - cs).abs() < CS_TOL,
        "CS {reported} vs the definition {cs}"
    );
}

#[test]
fn norm_sweep_scales_the_starting_head_and_lp_path_records_iterations() {
    let dir = util::temp_dir("sweep");
    let data = dir.path().join("data");
    util::synthetic_cb(&data, 60, 24);
    let out = dir.path().join("sweep");
    let (data_s, out_s, model) = (
        data.display().to_string(),
        out.display().to_string(),
        tiny("tiny-bert"),
    );
    ok(&[
        "sweep-norm",
        "--kappas",
        "1,10",
        "--model",
        &model,
        "--task",
        "cb",
        "--data-dir",
        &data_s,
        "--out",
        &out_s,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
    ]);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep-norm.json")).unwrap())
            .unwrap();
    assert_eq!(rows.len(), 2);
    let s1 = rows[0]["start_norm"].as_f64().unwrap();
    let s10 = rows[1]["start_norm"].as_f64().unwrap();
    assert!(
        (s10 / s1 - 10.0).abs() < 1e-4,
        "κ scales ‖V‖ at the start: {s1} → {s10}"
    );
    assert!(rows
        .iter()
        .all(|r| r["feature_change"].as_f64().is_some_and(|d| d > 0.0)));
    let path_out = dir.path().join("lp-path.json");
    ok(&[
        "lp-path",
        "--task",
        "cb",
        "--model",
        &model,
        "--data-dir",
        &data_s,
        "--lp-c",
        "100",
        "--max-iter",
        "30",
        "--out",
        &path_out.display().to_string(),
    ]);
    let path: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path_out).unwrap()).unwrap();
    assert_eq!(path["c"].as_f64(), Some(100.0));
    let points = path["points"].as_array().unwrap();
    assert!(!points.is_empty() && points.len() <= 30);
    let iters: Vec<u64> = points
        .iter()
        .map(|p| p["iteration"].as_u64().unwrap())
        .collect();
    assert!(
        iters.windows(2).all(|w| w[1] == w[0] + 1),
        "one point per iteration: {iters:?}"
    );
    let first = points[0]["classifier_norm"].as_f64().unwrap();
    let last = points.last().unwrap()["classifier_norm"].as_f64().unwrap();
    assert!(
        last > first,
        "the norm grows with the budget at C = 100: {first} → {last}"
    );
}

#[test]
fn train_on_your_own_csv_files() {
    let dir = util::temp_dir("own_files");
    let mut train = String::from("id,review,stars\n");
    for i in 0..40 {
        let (t, l) = if i % 2 == 0 {
            ("a good movie , yes", "pos")
        } else {
            ("a bad film , no", "neg")
        };
        train.push_str(&format!("{i},\"{t} {i}\",{l}\n"));
    }
    let train_p = dir.path().join("reviews-train.csv");
    let test_p = dir.path().join("reviews-test.csv");
    std::fs::write(&train_p, &train).unwrap();
    std::fs::write(
        &test_p,
        "id,review,stars\n1,\"good , yes\",pos\n2,\"bad , no\",neg\n",
    )
    .unwrap();
    let runs = dir.path().join("runs");
    let out = ok(&[
        "train",
        "--method",
        "ft",
        "--model",
        &tiny("tiny-bert"),
        "--train-file",
        &train_p.display().to_string(),
        "--test-file",
        &test_p.display().to_string(),
        "--text-a",
        "review",
        "--label",
        "stars",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--out",
        &runs.display().to_string(),
    ]);
    assert!(out.contains("test"), "{out}");
    let run = runs.join("reviews-train/ft/seed-1001");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["labels"], serde_json::json!(["neg", "pos"]));
    assert_eq!(m["test"]["n"], 2);
    assert_eq!(m["validation"]["n"], 4, "the last 10% of the training file");
    let out = ok(&[
        "eval",
        "--run",
        &run.display().to_string(),
        "--split",
        "test",
    ]);
    assert!(out.contains("2 examples"), "{out}");
}

#[test]
fn demo_runs_the_whole_pipeline_on_a_tiny_model() {
    let dir = util::temp_dir("demo");
    let data = dir.path().join("data");
    util::synthetic_cb(&data, 60, 24);
    let out = dir.path().join("demo");
    let stdout = ok(&[
        "demo",
        "--model",
        &tiny("tiny-bert"),
        "--data-dir",
        &data.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--epochs",
        "1",
        "--ntk-examples",
        "4",
    ]);
    // The demo is the `configs/demo.toml` grid: its report's headline tables, in order.
    let mut at = 0;
    for needle in [
        "Table 8 layout",
        "Table 3 layout",
        "Table 1 layout",
        "Table 13 layout",
        "Table 2 layout",
        "LoRA's F against FT's F",
        "Findings",
    ] {
        let i = stdout[at..].find(needle).unwrap_or_else(|| {
            panic!("demo prints {needle} (after the previous table):\n{stdout}")
        });
        at += i;
    }
    let runs = out.join("runs/base/cb");
    for m in ["lp", "ft", "lp-ft", "lora", "lp-lora"] {
        let run = runs.join(m).join("seed-1001");
        for f in ["metrics.json", "calibration.json", "analysis.json"] {
            assert!(run.join(f).exists(), "{m}: {f}");
        }
    }
    assert!(runs.join("lp/seed-1001/lp-path.json").exists());
    // The eNTK for FT, LP-FT and LoRA only.
    for (m, has) in [
        ("ft", true),
        ("lp-ft", true),
        ("lora", true),
        ("lp", false),
        ("lp-lora", false),
    ] {
        assert_eq!(
            runs.join(m).join("seed-1001/kernels/ntk.json").exists(),
            has,
            "{m}"
        );
    }
    let align: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join("lora/seed-1001/kernels/alignment.json")).unwrap(),
    )
    .unwrap();
    let a = align["alignment_restricted"].as_f64().unwrap();
    assert!(
        (-1.0..=1.0 + 1e-12).contains(&a),
        "alignment is a cosine: {a}"
    );
    assert!(stdout.contains("LoRA's F against FT's F"), "{stdout}");
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("Report: "),
        "the demo ends with the report path:\n{stdout}"
    );
    assert!(out.join("report/index.html").exists());
    assert!(out.join("report/figures/fig2-spectra-cb-base.svg").exists());
}

/// A small grid on the tiny model: every analysis, a fixed-C variant, a norm sweep and an OOD
/// file, then the report; deleting some outputs and rerunning redoes only those.
#[test]
fn reproduce_runs_a_grid_writes_the_report_and_continues_where_it_stopped() {
    let dir = util::temp_dir("reproduce");
    let data = dir.path().join("data");
    util::synthetic_cb(&data, 60, 24);
    let ood = dir.path().join("ood.csv");
    let mut csv = String::from("sentence,gold\n");
    for i in 0..12 {
        let l = ["entailment", "contradiction", "neutral"][i % 3];
        csv.push_str(&format!("the cat {i} is here,{l}\n"));
    }
    std::fs::write(&ood, csv).unwrap();
    let config = dir.path().join("grid.toml");
    std::fs::write(
        &config,
        format!(
            r#"
name = "tiny-grid"
description = "test grid"
model = "{model}"
data_dir = "{data}"
tasks = ["cb"]
methods = ["lp", "ft", "lora", "lp-ft", "lp-lora"]
seeds = [1, 2]
[overrides]
train = {{ epochs = 1, batch_size = 8, lr = 1e-3 }}
[[variants]]
name = "lp-c100"
methods = ["lp", "lp-ft"]
seeds = [1]
overrides = {{ lp = {{ c = 100.0 }} }}
[analyses]
features = {{ split = "test" }}
calibration = {{ method = "lbfgs" }}
lp_path = true
ntk = {{ max_examples = 4, seeds = [1], precision = "f32" }}
norm_sweep = {{ kappas = [1.0, 10.0], methods = ["lp-ft"], seeds = [1] }}
[[ood]]
name = "mine"
train_tasks = ["cb"]
file = "{ood}"
text_a = "sentence"
label = "gold"
"#,
            model = tiny("tiny-bert"),
            data = data.display(),
            ood = ood.display(),
        ),
    )
    .unwrap();
    let out = dir.path().join("grid");
    let (config_s, out_s) = (config.display().to_string(), out.display().to_string());
    let run = || {
        let o = lpft(&["reproduce", "--config", &config_s, "--out", &out_s]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        );
        assert!(o.status.success(), "reproduce failed\n{stdout}\n{stderr}");
        (stdout, stderr)
    };
    let (stdout, stderr) = run();
    // The sweep's κ = 1 cell is the base lp-ft cell of seed 1: run once, read under both.
    let cells = 10 + 2 + 1;
    assert!(
        stderr.contains(&format!("{cells} cells, 0 finished, {cells} to run")),
        "{stderr}"
    );
    assert!(stdout.contains("Findings"), "{stdout}");
    assert!(stdout.contains("Report: "), "{stdout}");
    let runs = out.join("runs");
    let ft = runs.join("base/cb/ft/seed-1");
    for f in [
        "metrics.json",
        "analysis.json",
        "calibration.json",
        "cell.json",
        "kernels/ntk.json",
        "ood/mine.json",
    ] {
        assert!(ft.join(f).exists(), "ft: {f}");
    }
    let ntk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ft.join("kernels/ntk.json")).unwrap())
            .unwrap();
    assert_eq!(
        ntk["config"]["precision"], "f32",
        "the grid's ntk.precision"
    );
    assert!(runs.join("base/cb/lp/seed-2/lp-path.json").exists());
    assert!(runs
        .join("base/cb/lora/seed-1/kernels/alignment.json")
        .exists());
    assert!(
        !runs.join("base/cb/ft/seed-2/kernels").exists(),
        "eNTK only for seed 1"
    );
    let c100: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join("lp-c100/cb/lp/seed-1/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(c100["lp"]["c"].as_f64(), Some(100.0));
    let k10: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join("kappa-10/cb/lp-ft/seed-1/metrics.json")).unwrap(),
    )
    .unwrap();
    assert!(!runs.join("kappa-1").exists(), "κ = 1 is not run twice");
    let cell: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join("base/cb/lp-ft/seed-1/cell.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cell["also"], serde_json::json!(["kappa-1"]), "{cell}");
    let plan = ok(&[
        "reproduce",
        "--config",
        &config_s,
        "--out",
        &out_s,
        "--dry-run",
    ]);
    assert!(
        plan.lines()
            .any(|l| l.contains("base/cb/lp-ft/seed-1 ") && l.ends_with("finished (also kappa-1)")),
        "{plan}"
    );
    let k1: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join("base/cb/lp-ft/seed-1/metrics.json")).unwrap(),
    )
    .unwrap();
    let ratio = k10["stage_start_classifier_norm"].as_f64().unwrap()
        / k1["stage_start_classifier_norm"].as_f64().unwrap();
    assert!((ratio - 10.0).abs() < 1e-4, "κ scales the head: {ratio}");
    // One LP fit per LP setting (cross-validated, and C = 100), shared by every method, seed
    // and sweep cell; the heads it installs are the same bytes.
    let cached = std::fs::read_dir(out.join("cache/lp")).unwrap().count();
    assert_eq!(cached, 2, "LP fits in the grid's cache");
    let head = |r: &str| std::fs::read(runs.join(r).join("lp_head.safetensors")).unwrap();
    assert_eq!(head("base/cb/lp/seed-1"), head("base/cb/lp-lora/seed-2"));
    assert_eq!(
        head("base/cb/lp-ft/seed-1"),
        head("kappa-10/cb/lp-ft/seed-1")
    );
    assert_ne!(head("base/cb/lp/seed-1"), head("lp-c100/cb/lp/seed-1"));
    // The pre-trained features of the test split: computed once for the whole grid, and the
    // same statistics as `lpft analyze` computes without the cache.
    let phi0 = std::fs::read_dir(out.join("cache/features"))
        .unwrap()
        .count();
    assert_eq!(phi0, 1, "pre-trained features in the grid's cache");
    let analysis = |r: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(runs.join(r).join("analysis.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let grid_stats = analysis("base/cb/lp-ft/seed-2");
    ok(&[
        "analyze",
        "--runs",
        &runs.join("base/cb/lp-ft/seed-2").display().to_string(),
        "--split",
        "test",
    ]);
    assert_eq!(analysis("base/cb/lp-ft/seed-2"), grid_stats);

    // P depends only on the pre-trained features: identical for every method's eNTK.
    let p_of = |m: &str| {
        util::load_tensors(&runs.join(format!(
            "base/cb/{m}/seed-1/kernels/P_train_train.safetensors"
        )))["kernel"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    };
    let p_ft = p_of("ft");
    for m in ["lora", "lp-ft", "lp-lora"] {
        assert_eq!(p_of(m), p_ft, "P of {m} equals P of ft");
    }

    // The report: every table and figure kind, numbers that match the runs.
    let report = out.join("report");
    for f in ["index.html", "report.md", "tables.json", "findings.json"] {
        assert!(report.join(f).exists(), "report/{f}");
    }
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for needle in [
        "## Findings",
        "Table 8 layout",
        "Table 1 layout",
        "Table 13 layout",
        "Table 2 layout",
        "Table 3 layout",
        "Table 10 layout",
        "Norm-scaling sweep",
        "LP raises the classifier norm",
        "What differs from the paper",
        "1 epochs (the paper: 10)",
        "2 seed(s)",
        "the paper's Table 10 models were trained on Amazon",
        // Where the runs computed (results differ across instruction sets, README "Threads").
        "thread(s), cpu on ",
    ] {
        assert!(md.contains(needle), "report.md has {needle}");
    }
    let figures: Vec<String> = std::fs::read_dir(report.join("figures"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for prefix in [
        "fig1a-lp-norm-cb-base",
        "fig1b-epoch-norm-cb-base",
        "fig1c-norms-cb-base",
        "fig2-spectra-cb-base",
        "fig3-sweep-cb",
        "reliability-cb-base-lp-ft",
        "heatmap-F-cb-base-ft",
    ] {
        assert!(
            figures.iter().any(|f| f.starts_with(prefix)),
            "figure {prefix} in {figures:?}"
        );
    }
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert_eq!(
        html.matches("<img ").count(),
        figures.len(),
        "index.html shows every figure"
    );
    let sweep = std::fs::read_to_string(report.join("tables/sweep-norm-cb.csv")).unwrap();
    let kappas: Vec<&str> = sweep
        .lines()
        .filter(|l| l.starts_with("lp-ft,"))
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(
        kappas,
        ["1", "10"],
        "the sweep's rows, κ = 1 from the base cell\n{sweep}"
    );
    let csv = std::fs::read_to_string(report.join("tables/table8-accuracy-base.csv")).unwrap();
    let ft_row = csv.lines().find(|l| l.starts_with("ft,")).unwrap();
    let mean: f64 = ft_row.split(',').nth(1).unwrap().parse().unwrap();
    let accs: Vec<f64> = [1, 2]
        .iter()
        .map(|s| {
            let m: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(runs.join(format!("base/cb/ft/seed-{s}/metrics.json")))
                    .unwrap(),
            )
            .unwrap();
            m["test"]["accuracy"].as_f64().unwrap()
        })
        .collect();
    assert!(
        (mean - (accs[0] + accs[1]) / 2.0).abs() < 1e-12,
        "the table's mean is the mean of the runs: {mean} vs {accs:?}"
    );
    let findings: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(report.join("findings.json")).unwrap())
            .unwrap();
    assert_eq!(
        findings.len(),
        6 + 5,
        "six claims on the base variant, five on the fixed-C one (the spectrum claim has no LP)"
    );

    // Interrupted grid: lose one run and two analyses; the rerun redoes only those.
    std::fs::remove_dir_all(runs.join("base/cb/lp-lora/seed-2")).unwrap();
    std::fs::remove_file(runs.join("base/cb/ft/seed-2/calibration.json")).unwrap();
    std::fs::remove_file(runs.join("base/cb/ft/seed-1/kernels/ntk.json")).unwrap();
    let before = std::fs::read_to_string(runs.join("base/cb/lp/seed-1/metrics.json")).unwrap();
    let (_, stderr) = run();
    assert!(
        stderr.contains(&format!("{cells} cells, {} finished, 3 to run", cells - 3)),
        "{stderr}"
    );
    assert!(stderr.contains("3 run now"), "{stderr}");
    assert!(runs.join("base/cb/lp-lora/seed-2/metrics.json").exists());
    assert!(runs.join("base/cb/ft/seed-2/calibration.json").exists());
    assert_eq!(
        before,
        std::fs::read_to_string(runs.join("base/cb/lp/seed-1/metrics.json")).unwrap(),
        "finished runs are left alone"
    );
    let (_, stderr) = run();
    assert!(stderr.contains("0 to run"), "{stderr}");

    // A grid from before κ = 1 was folded into its base cell has a kappa-1 directory of its
    // own: the report reads that one, not the same run twice.
    let base = runs.join("base/cb/lp-ft/seed-1");
    let old = runs.join("kappa-1/cb/lp-ft/seed-1");
    std::fs::create_dir_all(&old).unwrap();
    for f in ["metrics.json", "config.json", "analysis.json"] {
        std::fs::copy(base.join(f), old.join(f)).unwrap();
    }
    std::fs::write(
        old.join("cell.json"),
        r#"{"experiment": "tiny-grid", "variant": "kappa-1", "head_scale": 1.0}"#,
    )
    .unwrap();
    let again = dir.path().join("report-again");
    ok(&[
        "report",
        "--runs",
        &runs.display().to_string(),
        "--out",
        &again.display().to_string(),
    ]);
    let sweep = std::fs::read_to_string(again.join("tables/sweep-norm-cb.csv")).unwrap();
    let n_of_k1: Vec<&str> = sweep
        .lines()
        .filter(|l| l.starts_with("lp-ft,1,"))
        .map(|l| l.split(',').nth(4).unwrap())
        .collect();
    assert_eq!(n_of_k1, ["1"], "one run behind κ = 1\n{sweep}");
}

#[test]
fn reproduce_rejects_a_misspelt_override_naming_it() {
    let dir = util::temp_dir("reproduce_bad");
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "name = \"x\"\ntasks = [\"cb\"]\nmethods = [\"ft\"]\nseeds = [1]\n[overrides]\ntrain = { epoch = 2 }\n",
    )
    .unwrap();
    let o = lpft(&[
        "reproduce",
        "--config",
        &config.display().to_string(),
        "--dry-run",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml") && err.contains("epoch"), "{err}");
}

/// Every command that takes a task lists the task registry's names in its help, and a name
/// outside the registry is a usage error (exit 2) that lists them.
#[test]
fn task_options_list_the_registry() {
    for cmd in ["train", "data", "eval", "lp-path", "fetch-data"] {
        let help = ok(&[cmd, "--help"]);
        for task in lpft::data::Task::ALL {
            assert!(
                help.contains(task.name()),
                "{cmd} --help lacks {}",
                task.name()
            );
        }
    }
    let err = fails(&["data", "--task", "nope"]);
    assert!(
        err.contains("possible values") && err.contains("dynasent-r2"),
        "{err}"
    );
}

/// transformers' spellings of the common flags are aliases: a run made with them records the
/// same config as one made with lpft's own spellings.
#[test]
fn transformers_flag_spellings_are_aliases() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().display().to_string();
    let model = tiny("tiny-bert");
    let config = || {
        let path = tmp.path().join("cb/lp/seed-1001/config.json");
        std::fs::read_to_string(path).unwrap()
    };
    let common = [
        "train",
        "--task",
        "cb",
        "--method",
        "lp",
        "--max-train-samples",
        "40",
    ];
    let ours = [
        "--model",
        &model,
        "-o",
        &out,
        "--lr",
        "1e-5",
        "--epochs",
        "1",
        "--max-len",
        "32",
        "--batch-size",
        "4",
    ];
    ok(&[&common[..], &ours[..]].concat());
    let want = config();
    let theirs = [
        "--model-name-or-path",
        &model,
        "--output-dir",
        &out,
        "--learning-rate",
        "1e-5",
        "--num-train-epochs",
        "1",
        "--max-seq-length",
        "32",
        "--per-device-train-batch-size",
        "4",
        "--overwrite",
    ];
    ok(&[&common[..], &theirs[..]].concat());
    assert_eq!(config(), want);
    assert!(want.contains("\"max_len\": 32"), "{want}");
    // --warmup-ratio (transformers' spelling and lpft's) is recorded in the run's config.
    ok(&[
        &common[..],
        &ours[..],
        &["--warmup-ratio", "0.25", "--overwrite"],
    ]
    .concat());
    assert!(config().contains("\"warmup_ratio\": 0.25"), "{}", config());
}

/// Enumerated options list their values in --help.
#[test]
fn enum_options_list_their_values() {
    let help = ok(&["train", "--help"]);
    for value in ["lp-ft", "lp-lora", "dynamic", "fixed", "first", "mean"] {
        assert!(help.contains(value), "train --help lacks {value}");
    }
    let help = ok(&["calibrate", "--help"]);
    assert!(help.contains("lbfgs") && help.contains("adam"), "{help}");
    let help = ok(&["ntk", "--help"]);
    assert!(
        help.contains("token-pairs") && help.contains("materialize"),
        "{help}"
    );
}

/// `--early-stopping-patience 1` ends the stage after the first epoch that does not beat the
/// best validation score, keeps the best epoch, and changes nothing before it stops: its epochs
/// are those of a run without it.
#[test]
fn early_stopping_ends_after_patience_epochs_without_improvement() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny("tiny-bert");
    let run = |out: &str, extra: &[&str]| {
        let dir = tmp.path().join(out);
        let dir_s = dir.display().to_string();
        let args = [
            "train",
            "--task",
            "cb",
            "--method",
            "ft",
            "--model",
            &model,
            "--epochs",
            "6",
            "--max-train-samples",
            "40",
            "-o",
            &dir_s,
        ];
        ok(&[&args[..], extra].concat());
        let run = dir.join("cb/ft/seed-1001");
        let metrics: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap())
                .unwrap();
        let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
        (
            metrics,
            history.lines().map(str::to_string).collect::<Vec<_>>(),
        )
    };
    let (m, stopped) = run("patience", &["--early-stopping-patience", "1"]);
    let (full_m, full) = run("full", &[]);
    let (ran, best) = (
        m["epochs_run"].as_u64().unwrap(),
        m["best_epoch"].as_u64().unwrap(),
    );
    // On this fixture the validation accuracy does not improve after epoch 1.
    assert!(ran < 6, "early stopping never triggered: {m}");
    assert_eq!(ran, best + 1, "stops one epoch after the best: {m}");
    assert_eq!(full_m["epochs_run"].as_u64(), Some(6));
    assert_eq!(stopped.len() as u64, ran);
    // Same epochs until it stopped (the wall-clock fields aside).
    let strip = |line: &str| {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("seconds");
        o.remove("examples_per_s");
        v
    };
    for (a, b) in stopped.iter().zip(&full) {
        assert_eq!(strip(a), strip(b));
    }
}

/// `--logging-steps 1` writes `log_history.jsonl` with Trainer's keys: one training entry per
/// optimiser step whose losses average to the epoch's `train_loss` in `history.jsonl`, and one
/// evaluation entry per epoch with the validation metrics; without the flag there is no file.
#[test]
fn logging_steps_write_trainer_style_log_history() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().display().to_string();
    let model = tiny("tiny-bert");
    let args = [
        "train",
        "--task",
        "cb",
        "--method",
        "ft",
        "--model",
        &model,
        "--epochs",
        "2",
        "--max-train-samples",
        "40",
        "-o",
        &out,
    ];
    ok(&[&args[..], &["--logging-steps", "1"]].concat());
    let run = tmp.path().join("cb/ft/seed-1001");
    let read = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(run.join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (log, history) = (read("log_history.jsonl"), read("history.jsonl"));
    for (e, epoch) in history.iter().enumerate() {
        let steps: Vec<&serde_json::Value> = log
            .iter()
            .filter(|x| x.get("loss").is_some())
            .filter(|x| x["epoch"].as_f64().unwrap().ceil() as usize == e + 1)
            .collect();
        assert!(!steps.is_empty(), "no step entries in epoch {}", e + 1);
        for s in &steps {
            for key in ["loss", "grad_norm", "learning_rate", "epoch", "step"] {
                assert!(s.get(key).is_some(), "{key} missing in {s}");
            }
        }
        let mean = steps
            .iter()
            .map(|s| s["loss"].as_f64().unwrap())
            .sum::<f64>()
            / steps.len() as f64;
        let want = epoch["train_loss"].as_f64().unwrap();
        assert!(
            (mean - want).abs() < 1e-12,
            "epoch {}: {mean} vs {want}",
            e + 1
        );
        let eval = log
            .iter()
            .find(|x| x.get("eval_accuracy").is_some() && x["epoch"] == (e + 1) as f64)
            .unwrap_or_else(|| panic!("no eval entry for epoch {}", e + 1));
        assert_eq!(eval["eval_accuracy"], epoch["validation"]["accuracy"]);
        assert_eq!(eval["eval_loss"], epoch["validation"]["nll"]);
    }
    // Optimiser steps are numbered 1.. without gaps.
    let steps: Vec<u64> = log
        .iter()
        .filter(|x| x.get("loss").is_some())
        .map(|x| x["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=steps.len() as u64).collect::<Vec<_>>());
    // The report draws the loss curves from it: one point per logged step.
    let report = tmp.path().join("report");
    ok(&[
        "report",
        "--runs",
        &out,
        "-o",
        &report.display().to_string(),
    ]);
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for fig in ["train-loss-cb-base", "val-loss-cb-base"] {
        assert!(md.contains(fig), "report.md lacks {fig}");
        let svg = std::fs::read_to_string(report.join(format!("figures/{fig}.svg"))).unwrap();
        assert!(svg.contains("<svg"), "{fig}");
    }
    ok(&[&args[..], &["--overwrite"]].concat());
    assert!(!run.join("log_history.jsonl").exists());
}

/// `eval --file` on a labelled CSV: the metrics equal those of `eval` on the task's own split
/// written out as that file, with the reliability data; a label the run does not know is an
/// error naming the file and line (exit 2).
#[test]
fn eval_on_any_labelled_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().display().to_string();
    let model = tiny("tiny-bert");
    ok(&[
        "train",
        "--task",
        "cb",
        "--method",
        "lp",
        "--model",
        &model,
        "-o",
        &out,
        "--max-train-samples",
        "60",
    ]);
    let run = tmp.path().join("cb/lp/seed-1001");
    let run_s = run.display().to_string();
    // CB's test split as a CSV file with other column names.
    let export = tmp.path().join("export");
    ok(&[
        "data",
        "--task",
        "cb",
        "--export",
        &export.display().to_string(),
    ]);
    let csv = tmp.path().join("cb-test.csv");
    let mut w = csv::Writer::from_path(&csv).unwrap();
    w.write_record(["p", "h", "gold"]).unwrap();
    // SuperGLUE's CB validation file is the paper's test split.
    let jsonl = export.join("superglue/CB/val.jsonl");
    for line in std::fs::read_to_string(jsonl).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let field = |k: &str| v[k].as_str().unwrap().to_string();
        w.write_record([field("premise"), field("hypothesis"), field("label")])
            .unwrap();
    }
    w.flush().unwrap();
    ok(&["eval", "--run", &run_s]);
    let csv_s = csv.display().to_string();
    ok(&[
        "eval", "--run", &run_s, "--file", &csv_s, "--text-a", "p", "--text-b", "h", "--label",
        "gold",
    ]);
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run.join("eval").join(name)).unwrap())
            .unwrap()
    };
    let (split, file) = (read("cb-test.json"), read("file-cb-test.json"));
    assert_eq!(
        file["metrics"], split,
        "the same examples give the same metrics"
    );
    assert_eq!(file["reliability"].as_array().unwrap().len(), 15);

    std::fs::write(&csv, "p,h,gold\na,b,entailment\nc,d,maybe\n").unwrap();
    let err = fails(&[
        "eval", "--run", &run_s, "--file", &csv_s, "--text-a", "p", "--text-b", "h", "--label",
        "gold",
    ]);
    assert!(err.contains("line 3") && err.contains("maybe"), "{err}");
}

/// `--gradient-accumulation-steps 2` takes one optimiser step per two micro-batches (an
/// epoch's last step takes what is left), as the step log shows.
#[test]
fn gradient_accumulation_halves_the_optimiser_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny("tiny-bert");
    let steps = |k: &str| {
        let out = tmp.path().join(format!("k{k}"));
        let out_s = out.display().to_string();
        ok(&[
            "train",
            "--task",
            "cb",
            "--method",
            "ft",
            "--model",
            &model,
            "--epochs",
            "2",
            "--max-train-samples",
            "56",
            "--batch-size",
            "8",
            "--logging-steps",
            "1",
            "--gradient-accumulation-steps",
            k,
            "-o",
            &out_s,
        ]);
        let log = std::fs::read_to_string(out.join("cb/ft/seed-1001/log_history.jsonl")).unwrap();
        log.lines().filter(|l| l.contains("\"loss\"")).count()
    };
    let (one, two) = (steps("1"), steps("2"));
    // 56 training examples in batches of 8: 7 micro-batches an epoch, so 4 steps with k = 2
    // (the last one of a single micro-batch).
    assert_eq!(one, 2 * 7);
    assert_eq!(two, 2 * 4);
}

/// `--eval-steps 2` adds validation entries inside each epoch to `log_history.jsonl` without
/// changing training, and `--save-total-limit 1` leaves the newest epoch's `checkpoint-<step>/`
/// and the best epoch's, the latter holding exactly the parameters of `model/`.
#[test]
fn eval_steps_and_save_total_limit_as_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny("tiny-bert");
    let run = |out: &str, extra: &[&str]| {
        let dir = tmp.path().join(out);
        let dir_s = dir.display().to_string();
        let args = [
            "train",
            "--task",
            "cb",
            "--method",
            "ft",
            "--model",
            &model,
            "--epochs",
            "3",
            "--max-train-samples",
            "40",
            "--batch-size",
            "8",
            "-o",
            &dir_s,
        ];
        ok(&[&args[..], extra].concat());
        dir.join("cb/ft/seed-1001")
    };
    let with = run("with", &["--eval-steps", "2", "--save-total-limit", "1"]);
    let without = run("without", &[]);
    // Training is the same: every epoch's record (wall-clock fields aside) and the final metrics.
    let lines = |dir: &Path, name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                if let Some(o) = v.as_object_mut() {
                    o.remove("seconds");
                    o.remove("examples_per_s");
                }
                v
            })
            .collect()
    };
    assert_eq!(
        lines(&with, "history.jsonl"),
        lines(&without, "history.jsonl")
    );
    let metrics = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
    };
    assert_eq!(metrics(&with)["test"], metrics(&without)["test"]);
    assert!(!without.join("log_history.jsonl").exists());
    // 40 examples in batches of 8: 5 steps an epoch; evaluations at every even step and at
    // each epoch's end, mid-epoch ones at fractional epochs.
    let log = lines(&with, "log_history.jsonl");
    let evals: Vec<(u64, f64)> = log
        .iter()
        .filter(|e| e.get("eval_accuracy").is_some())
        .map(|e| (e["step"].as_u64().unwrap(), e["epoch"].as_f64().unwrap()))
        .collect();
    let steps: Vec<u64> = evals.iter().map(|e| e.0).collect();
    assert_eq!(steps, [2, 4, 5, 6, 8, 10, 12, 14, 15]);
    for (step, epoch) in &evals {
        assert!((epoch - *step as f64 / 5.0).abs() < 1e-12, "{step} {epoch}");
    }
    // Snapshots: the newest (step 15) and the best epoch's.
    let best = metrics(&with)["best_epoch"].as_u64().unwrap();
    let mut found: Vec<String> = std::fs::read_dir(&with)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint"))
        .collect();
    found.sort();
    let mut want = vec![
        "checkpoint-15".to_string(),
        format!("checkpoint-{}", best * 5),
    ];
    want.sort();
    want.dedup();
    assert_eq!(found, want, "best epoch {best}");
    let snap = with.join(format!("checkpoint-{}", best * 5));
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(snap.join("lpft_checkpoint.json")).unwrap())
            .unwrap();
    assert_eq!(info["epoch"].as_u64(), Some(best));
    assert!(snap.join("config.json").exists());
    let (a, b) = (
        util::load_tensors(&snap.join("model.safetensors")),
        util::load_tensors(&with.join("model/model.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for (k, t) in &b {
        assert_eq!(util::values(&a[k]), util::values(t), "{k}");
    }
}

/// `train --help` as committed in `tests/snapshots/train-help.txt`: its flags under headings
/// (task and data, model and method, optimisation, LoRA, LP, output) and the examples at the
/// end. A deliberate change is recorded with `LPFT_BLESS=1 cargo test --test it train_help`.
#[test]
fn train_help_matches_its_snapshot() {
    let help = ok(&["train", "--help"]);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/train-help.txt");
    if std::env::var_os("LPFT_BLESS").is_some() {
        std::fs::write(&path, &help).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (LPFT_BLESS=1 writes it)", path.display()));
    assert_eq!(
        help,
        want,
        "train --help changed; if that is meant, rerun with LPFT_BLESS=1 and commit {}",
        path.display()
    );
    for heading in [
        "Task and data:",
        "Model and method:",
        "Optimisation:",
        "LoRA:",
        "LP:",
        "Output and evaluation:",
        "Examples:",
    ] {
        assert!(help.contains(heading), "no {heading}");
    }
}

/// `predict --task T --split test` writes the benchmark's submission file for the official
/// (unlabelled) test split with its ids passed through: SuperGLUE CB as JSON lines with `idx`
/// and a label name, GLUE SST-2 as `index<TAB>prediction` with class numbers; a run trained on
/// other labels is refused (exit 2) naming its metrics file.
#[test]
fn predict_writes_benchmark_submission_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().display().to_string();
    let model = tiny("tiny-bert");
    let data = fixtures().join("data").display().to_string();
    for task in ["cb", "sst2"] {
        ok(&[
            "train",
            "--task",
            task,
            "--method",
            "lp",
            "--model",
            &model,
            "--data-dir",
            &data,
            "--lp-c",
            "1",
            "--max-train-samples",
            "40",
            "-o",
            &out,
        ]);
    }
    // CB: the embedded copy's test.jsonl, 250 rows with idx 0..249 in file order.
    let cb = tmp.path().join("cb/lp/seed-1001");
    let cb_s = cb.display().to_string();
    let printed = ok(&["predict", "--run", &cb_s, "--task", "cb", "--split", "test"]);
    let file = cb.join("submission/CB.jsonl");
    assert_eq!(printed.trim(), file.display().to_string());
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 250);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.as_object().unwrap().len(), 2, "{r}");
        assert_eq!(r["idx"], serde_json::json!(i));
        let label = r["label"].as_str().unwrap();
        assert!(
            ["entailment", "contradiction", "neutral"].contains(&label),
            "{r}"
        );
    }
    // (No cross-validation: the SST-2 excerpt has 6 training rows.)
    // SST-2 from the fixture data: the test file's `index` column and 0/1 predictions.
    let sst = tmp.path().join("sst2/lp/seed-1001");
    let target = tmp.path().join("SST-2.tsv");
    ok(&[
        "predict",
        "--run",
        &sst.display().to_string(),
        "--task",
        "sst2",
        "--data-dir",
        &data,
        "-o",
        &target.display().to_string(),
    ]);
    let text = std::fs::read_to_string(&target).unwrap();
    let test = std::fs::read_to_string(fixtures().join("data/glue/SST-2/test.tsv")).unwrap();
    let want_ids: Vec<&str> = test
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("index\tprediction"));
    let got: Vec<(&str, &str)> = lines.map(|l| l.split_once('\t').unwrap()).collect();
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), want_ids);
    assert!(got.iter().all(|g| g.1 == "0" || g.1 == "1"), "{text}");
    // A CB run cannot fill SST-2's file.
    let err = fails(&[
        "predict",
        "--run",
        &cb_s,
        "--task",
        "sst2",
        "--data-dir",
        &data,
    ]);
    assert!(
        err.contains("metrics.json") && err.contains("not task `sst2`"),
        "{err}"
    );
}

/// `--lora-dropout 0.1` (peft's `lora_dropout`) trains, is recorded in `config.json` and in the
/// PEFT `adapter_config.json`, and changes training; 0 (the default) leaves the config as it
/// was; a probability outside [0, 1) is an error naming the field.
#[test]
fn lora_dropout_is_recorded_and_changes_training() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny("tiny-bert");
    let run = |out: &str, extra: &[&str]| {
        let dir = tmp.path().join(out);
        let dir_s = dir.display().to_string();
        let args = [
            "train",
            "--task",
            "cb",
            "--method",
            "lora",
            "--model",
            &model,
            "--epochs",
            "2",
            "--max-train-samples",
            "40",
            "-o",
            &dir_s,
        ];
        ok(&[&args[..], extra].concat());
        dir.join("cb/lora/seed-1001")
    };
    let json = |path: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let with = run("with", &["--lora-dropout", "0.1"]);
    let without = run("without", &[]);
    assert_eq!(json(with.join("config.json"))["lora"]["dropout"], 0.1);
    assert!(json(without.join("config.json"))["lora"]
        .get("dropout")
        .is_none());
    assert_eq!(
        json(with.join("adapter/adapter_config.json"))["lora_dropout"],
        0.1
    );
    assert_eq!(
        json(without.join("adapter/adapter_config.json"))["lora_dropout"],
        0.0
    );
    let loss = |dir: &Path| -> f64 {
        let text = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        first["train_loss"].as_f64().unwrap()
    };
    assert_ne!(loss(&with), loss(&without));
    let err = fails(&[
        "train",
        "--task",
        "cb",
        "--method",
        "lora",
        "--model",
        &model,
        "--lora-dropout",
        "1",
        "-o",
        &tmp.path().join("bad").display().to_string(),
    ]);
    assert!(err.contains("lora.dropout"), "{err}");
}

/// A grid of LP, FT and LoRA on 40 synthetic CB examples (12 test) in `dir/data`, one seed, one
/// epoch, with features and the eNTK on 4 examples with the LoRA/FT alignment, plus the
/// `[analyses]` lines in `extra_analyses`; written to `dir/grid.toml`, whose path it returns.
fn tiny_grid(dir: &Path, name: &str, extra_analyses: &str) -> std::path::PathBuf {
    let data = dir.join("data");
    util::synthetic_cb(&data, 40, 12);
    let config = dir.join("grid.toml");
    std::fs::write(
        &config,
        format!(
            r#"
name = "{name}"
model = "{model}"
data_dir = "{data}"
tasks = ["cb"]
methods = ["lp", "ft", "lora"]
seeds = [1]
[overrides]
train = {{ epochs = 1, batch_size = 8, lr = 1e-3 }}
[analyses]
features = {{ split = "test" }}
ntk = {{ max_examples = 4, seeds = [1], alignment = true }}
{extra_analyses}"#,
            model = tiny("tiny-bert"),
            data = data.display(),
        ),
    )
    .unwrap();
    config
}

/// `reproduce --emit slurm` writes an array script with one cell per task, a finishing script
/// and `submit.sh` chaining them with `--dependency=afterok`. Run here the way Slurm runs them
/// (bash with `SLURM_ARRAY_TASK_ID`; `#SBATCH` lines are comments to it), two tasks at once: the
/// cells finish, `lpft report` on a partial grid lists the cells not finished, a rerun of every
/// task runs only what is left, and the finishing job adds the alignment and the report.
#[test]
fn slurm_scripts_run_the_grid_one_cell_per_task() {
    let dir = util::temp_dir("slurm");
    let config = tiny_grid(dir.path(), "tiny-slurm", "");
    let out = dir.path().join("grid");
    let (config_s, out_s) = (config.display().to_string(), out.display().to_string());
    let printed = ok(&[
        "reproduce",
        "--config",
        &config_s,
        "--out",
        &out_s,
        "--emit",
        "slurm",
        "--partition",
        "debug",
        "--time",
        "00:10:00",
        "--cpus-per-task",
        "1",
        "--mem",
        "2G",
        "--precision",
        "bf16",
    ]);
    let slurm = out.join("slurm");
    assert_eq!(
        printed.trim(),
        slurm.join("submit.sh").display().to_string()
    );
    let grid = std::fs::read_to_string(slurm.join("grid.sbatch")).unwrap();
    for line in [
        "#SBATCH --array=0-2",
        "#SBATCH --partition=debug",
        "#SBATCH --time=00:10:00",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=2G",
        "--cell \"$SLURM_ARRAY_TASK_ID\"",
        "--precision bf16",
    ] {
        assert!(grid.contains(line), "grid.sbatch lacks {line}:\n{grid}");
    }
    let submit = std::fs::read_to_string(slurm.join("submit.sh")).unwrap();
    assert!(submit.contains("--dependency=afterok:"), "{submit}");
    assert!(!out.join("runs").exists(), "--emit runs nothing");
    // A task as Slurm starts it.
    let task = |script: &str, id: Option<usize>| {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(slurm.join(script)).env("SLURM_CPUS_PER_TASK", "1");
        for var in [
            "LPFT_THREADS",
            "LPFT_DATA_DIR",
            "LPFT_OFFLINE",
            "HF_HUB_OFFLINE",
        ] {
            cmd.env_remove(var);
        }
        if let Some(id) = id {
            cmd.env("SLURM_ARRAY_TASK_ID", id.to_string());
        }
        cmd
    };
    let wait = |mut cmd: std::process::Command| {
        let o = cmd.output().unwrap();
        let text = util::output_text(&o);
        assert!(o.status.success(), "{text}");
        text
    };
    // Tasks 0 and 1 at once (no grid lock between them), task 2 not yet.
    let (a, b) = (task("grid.sbatch", Some(0)), task("grid.sbatch", Some(1)));
    let (a, b) = (
        std::thread::spawn(move || wait(a)),
        std::thread::spawn(move || wait(b)),
    );
    assert!(a.join().unwrap().contains("cell 0 base/cb/lp/seed-1: done"));
    assert!(b.join().unwrap().contains("cell 1 base/cb/ft/seed-1: done"));
    let report = dir.path().join("partial");
    let partial = ok(&[
        "report",
        "--runs",
        &out.join("runs").display().to_string(),
        "--out",
        &report.display().to_string(),
    ]);
    assert!(
        partial.contains("1 cell(s) not finished") && partial.contains("base/cb/lora/seed-1"),
        "{partial}"
    );
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("cell(s) of the grid not finished"), "{md}");
    // Resubmitting the whole array runs only the missing cell.
    let reruns: Vec<String> = (0..3).map(|i| wait(task("grid.sbatch", Some(i)))).collect();
    assert!(reruns[0].contains("already finished"), "{}", reruns[0]);
    assert!(reruns[1].contains("already finished"), "{}", reruns[1]);
    assert!(
        reruns[2].contains("cell 2 base/cb/lora/seed-1: done"),
        "{}",
        reruns[2]
    );
    let runs = out.join("runs/base/cb");
    assert!(!runs.join("lora/seed-1/kernels/alignment.json").exists());
    // The finishing job: the alignment that spans two cells, then the report.
    let finish = wait(task("finish.sbatch", None));
    assert!(finish.contains("0 run now, 3 already finished"), "{finish}");
    assert!(runs.join("lora/seed-1/kernels/alignment.json").exists());
    let md = std::fs::read_to_string(out.join("report/report.md")).unwrap();
    assert!(!md.contains("not finished"), "{md}");
    // `--precision` reached every cell's training and the report.
    let config = std::fs::read_to_string(runs.join("ft/seed-1/config.json")).unwrap();
    assert!(config.contains("\"precision\": \"bf16\""), "{config}");
    assert!(md.contains("bf16 mixed-precision training steps"), "{md}");
}

/// `scripts/grid-state.sh` carries a grid's finished cells, without their weights, to a fresh
/// folder (another machine): there `reproduce` runs only the cell that was not finished, and the
/// LoRA/FT alignment and the report are computed from what was carried.
#[test]
fn grid_state_carries_finished_cells_without_weights() {
    let dir = util::temp_dir("grid-state");
    let config = tiny_grid(
        dir.path(),
        "tiny-state",
        "calibration = { method = \"lbfgs\" }\n",
    );
    let config_s = config.display().to_string();
    let old = dir.path().join("old");
    let old_s = old.display().to_string();
    for cell in ["0", "1"] {
        ok(&[
            "reproduce",
            "--config",
            &config_s,
            "--out",
            &old_s,
            "--cell",
            cell,
        ]);
    }
    assert!(old.join("runs/base/cb/ft/seed-1/model").is_dir());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/grid-state.sh");
    let state = dir.path().join("state");
    let new = dir.path().join("new");
    let run = |args: &[&str]| {
        let o = std::process::Command::new("bash")
            .arg(&script)
            .args(args)
            .env("LPFT", env!("CARGO_BIN_EXE_lpft"))
            .env("LPFT_THREADS", "1")
            .env_remove("LPFT_DATA_DIR")
            .output()
            .unwrap();
        (o.status.code(), util::output_text(&o))
    };
    let (code, text) = run(&[
        "save",
        &old_s,
        &state.display().to_string(),
        "--",
        "--config",
        &config_s,
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("saved 2 finished cells"), "{text}");
    let ft = state.join("runs/base/cb/ft/seed-1");
    assert!(ft.join("metrics.json").exists() && ft.join("kernels/ntk.json").exists());
    assert!(!ft.join("model").exists(), "the weights are not carried");
    assert!(!state.join("runs/base/cb/lora").exists(), "unfinished");
    let (code, text) = run(&[
        "restore",
        &state.display().to_string(),
        &new.display().to_string(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("restored 2 cells"), "{text}");
    let o = util::lpft(&[
        "reproduce",
        "--config",
        &config_s,
        "--out",
        &new.display().to_string(),
    ]);
    let finish = util::output_text(&o);
    assert!(o.status.success(), "{finish}");
    assert!(finish.contains("1 run now, 2 already finished"), "{finish}");
    let runs = new.join("runs/base/cb");
    assert!(
        !runs.join("ft/seed-1/model").exists(),
        "FT was not retrained"
    );
    assert!(runs.join("lora/seed-1/kernels/alignment.json").exists());
    let md = std::fs::read_to_string(new.join("report/report.md")).unwrap();
    assert!(!md.contains("not finished"), "{md}");
    // The carried metrics are the original run's, byte for byte.
    assert_eq!(
        std::fs::read(old.join("runs/base/cb/ft/seed-1/metrics.json")).unwrap(),
        std::fs::read(runs.join("ft/seed-1/metrics.json")).unwrap()
    );
    // A misuse exits 2 with the usage.
    let (code, text) = run(&["restore", "only-one"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("usage"), "{text}");
}

/// `-v` log lines go above the progress bars, not through them: in a terminal (a pty from
/// util-linux's `script`), every log line of a grid run starts on a cleared line (`\r` + erase
/// line, or a fresh line) instead of after a half-drawn bar. Skipped, visibly, without `script`.
#[test]
fn verbose_log_lines_do_not_break_progress_bars() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: verbose_log_lines_do_not_break_progress_bars: no `script` (util-linux) for a pty");
        return;
    }
    let dir = util::temp_dir("bars");
    let data = dir.path().join("data");
    util::synthetic_cb(&data, 40, 12);
    let config = dir.path().join("g.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"bars\"\nmodel = \"{}\"\ndata_dir = \"{}\"\ntasks = [\"cb\"]\n\
             methods = [\"lp\", \"ft\", \"lora\"]\nseeds = [1]\n[overrides]\n\
             train = {{ epochs = 1 }}\n",
            tiny("tiny-bert"),
            data.display()
        ),
    )
    .unwrap();
    let cmd = format!(
        "{} -v reproduce --config {} --out {}",
        env!("CARGO_BIN_EXE_lpft"),
        config.display(),
        dir.path().join("out").display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("LPFT_THREADS", "1")
        .env_remove("LPFT_DATA_DIR")
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{raw}");
    // env_logger's coloured level tag: a grey `[`, then the level.
    let tag = "\u{1b}[90m[\u{1b}[0m";
    let starts: Vec<usize> = raw.match_indices(tag).map(|(i, _)| i).collect();
    assert!(
        starts.len() >= 3,
        "expected an INFO line per cell: {}",
        raw.escape_debug()
    );
    // At least one of them while a bar was drawn (else this checks nothing).
    assert!(
        raw.contains("\r\u{1b}[2K\u{1b}[90m["),
        "{}",
        raw.escape_debug()
    );
    for i in starts {
        let before = &raw[..i];
        assert!(
            before.is_empty() || before.ends_with('\n') || before.ends_with("\r\u{1b}[2K"),
            "a log line written after a bar: {:?}",
            &raw[i.saturating_sub(80)..(i + 60).min(raw.len())]
        );
    }
}

/// `--device cpu` is the default: a run with it writes the same history and metrics as one
/// without. A device that is not one, or CUDA in a build without the `cuda` feature, is exit 2
/// naming `--device`, before anything is written.
#[test]
fn device_cpu_is_the_default_and_other_devices_are_checked() {
    let dir = util::temp_dir("device_flag");
    let data = dir.path().join("data");
    util::synthetic_cb(&data, 40, 16);
    let data_s = data.display().to_string();
    let model = tiny("tiny-bert");
    let run = |out: &Path, extra: &[&str]| {
        let out_s = out.display().to_string();
        let mut args = vec![
            "train",
            "--task",
            "cb",
            "--method",
            "lp-ft",
            "--model",
            &model,
            "--data-dir",
            &data_s,
            "--out",
            &out_s,
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--seed",
            "3",
            "--threads",
            "1",
        ];
        args.extend_from_slice(extra);
        ok(&args);
        let run = out.join("cb/lp-ft/seed-3");
        (
            std::fs::read_to_string(run.join("history.jsonl")).unwrap(),
            std::fs::read_to_string(run.join("metrics.json")).unwrap(),
        )
    };
    let plain = run(&dir.path().join("plain"), &[]);
    let cpu = run(&dir.path().join("cpu"), &["--device", "cpu"]);
    // Both files carry wall times; everything else must be equal.
    fn strip(v: &mut serde_json::Value) {
        if let Some(o) = v.as_object_mut() {
            o.retain(|k, _| !k.contains("seconds") && !k.ends_with("_per_s"));
            o.values_mut().for_each(strip);
        }
    }
    let values = |s: &str| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| {
                let mut v = serde_json::from_str(l).unwrap();
                strip(&mut v);
                v
            })
            .collect()
    };
    assert_eq!(values(&plain.0), values(&cpu.0), "history.jsonl");
    let one = |s: &str| values(&s.replace('\n', " "));
    assert_eq!(one(&plain.1), one(&cpu.1), "metrics.json");

    let out = dir.path().join("refused");
    let out_s = out.display().to_string();
    let mut bad = vec![("tpu", "cpu, cuda or cuda:N")];
    if !cfg!(feature = "cuda") {
        bad.push(("cuda:0", "--features cuda"));
    }
    for (device, needle) in bad {
        let err = fails(&[
            "train",
            "--task",
            "cb",
            "--method",
            "lp",
            "--model",
            &model,
            "--data-dir",
            &data_s,
            "--out",
            &out_s,
            "--device",
            device,
        ]);
        assert!(
            err.contains("--device") && err.contains(needle),
            "{device}: {err}"
        );
        assert!(!out.exists(), "{device}: nothing written");
    }
}

/// `--precision bf16` (and transformers' `--bf16`) trains on the own backward's bf16 GEMMs:
/// recorded in the run's config, a finite loss, different numbers from fp32, the same ones for
/// both spellings; where the own backward does not apply (mean pooling) it is exit 2 naming
/// `precision`, before anything is written.
#[test]
fn bf16_precision_trains_and_is_recorded() {
    let dir = util::temp_dir("bf16_flag");
    let data = dir.path().join("data");
    util::synthetic_cb(&data, 40, 16);
    let data_s = data.display().to_string();
    let model = tiny("tiny-bert");
    let args = |out: &str| -> Vec<String> {
        [
            "train",
            "--task",
            "cb",
            "--method",
            "ft",
            "--model",
            &model,
            "--data-dir",
            &data_s,
            "--out",
            out,
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--seed",
            "3",
            "--threads",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut a = args(&out.display().to_string());
        a.extend(extra.iter().map(|s| s.to_string()));
        ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
        let run = out.join("cb/ft/seed-3");
        let config = std::fs::read_to_string(run.join("config.json")).unwrap();
        let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(history.lines().next().unwrap()).unwrap();
        (config, first["train_loss"].as_f64().unwrap())
    };
    let (c32, l32) = run("fp32", &[]);
    let (c16, l16) = run("bf16", &["--precision", "bf16"]);
    let (c16b, l16b) = run("bf16-alias", &["--bf16"]);
    assert!(!c32.contains("precision"), "fp32 configs as before: {c32}");
    assert!(c16.contains("\"precision\": \"bf16\""), "{c16}");
    assert_eq!(
        c16,
        c16b.replace("bf16-alias", "bf16"),
        "--bf16 = --precision bf16"
    );
    assert_eq!(
        l16.to_bits(),
        l16b.to_bits(),
        "same loss for both spellings"
    );
    assert!(l16.is_finite() && l16 != l32, "bf16 {l16} vs fp32 {l32}");
    // A report over bf16 runs says so among the settings that differ from the paper.
    let report = dir.path().join("report");
    let runs = dir.path().join("bf16").display().to_string();
    ok(&[
        "report",
        "--runs",
        &runs,
        "--out",
        &report.display().to_string(),
    ]);
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(md.contains("bf16 mixed-precision training steps"), "{md}");

    let out = dir.path().join("refused");
    let mut a = args(&out.display().to_string());
    a.extend(["--precision", "bf16", "--pooling", "mean"].map(String::from));
    let err = fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("precision"), "{err}");
    assert!(!out.exists(), "nothing written");
}
