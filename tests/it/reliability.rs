//! Crash safety, determinism and learning, through the binary: runs killed with SIGKILL at
//! random moments (and at the one moment a checkpoint file is half written) resume to outputs
//! identical byte for byte to an uninterrupted run; a grid killed mid-way reruns only what is
//! missing; the same seed gives the same bytes and another seed another loss history; each
//! method learns a learnable task. `docs/reliability.md` lists these guarantees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::util::{self, fixtures};

fn tiny() -> String {
    fixtures().join("tiny-bert").display().to_string()
}

/// `lpft train` on the synthetic CB task with the tiny BERT (one thread; 4 epochs, batch 8,
/// seed 7 and a learning rate for the method, unless `extra` sets them).
fn train_cmd(data: &Path, out: &Path, method: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lpft"));
    let lr = if method.contains("lora") {
        "1e-2"
    } else {
        "1e-3"
    };
    cmd.env("LPFT_THREADS", "1")
        .env_remove(lpft::fsutil::KILL_VAR)
        .args([
            "train",
            "--task",
            "cb",
            "--method",
            method,
            "--model",
            &tiny(),
        ])
        .args(["--data-dir", &data.display().to_string()])
        .args(["--out", &out.display().to_string()]);
    for (flag, value) in [
        ("--epochs", "4"),
        ("--batch-size", "8"),
        ("--lr", lr),
        ("--seed", "7"),
    ] {
        if !extra.contains(&flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(extra);
    cmd
}

fn run_ok(mut cmd: Command) -> std::process::Output {
    let out = cmd.output().expect("running lpft");
    assert!(
        out.status.success(),
        "lpft failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file of a finished run that must not depend on how it got there, with its bytes:
/// everything but `manifest.json` (wall time) and `history.jsonl` (per-epoch timings, compared
/// separately without them).
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if rel != "manifest.json" && rel != "history.jsonl" {
                files.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    files
}

/// `history.jsonl` without its timings.
fn history(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("seconds");
            o.remove("examples_per_s");
            v
        })
        .collect()
}

fn assert_same_run(a: &Path, b: &Path, what: &str) {
    let (x, y) = (outputs(a), outputs(b));
    assert_eq!(
        x.keys().collect::<Vec<_>>(),
        y.keys().collect::<Vec<_>>(),
        "{what}: the same files"
    );
    for (name, bytes) in &x {
        assert!(&y[name] == bytes, "{what}: {name} differs");
    }
    assert_eq!(history(a), history(b), "{what}: history.jsonl");
}

/// Kills a training exactly while `state.safetensors` is half written and while
/// `best.safetensors` is, then at random moments (several per run, from a fixed-seed generator),
/// resuming each time; the finished run equals an uninterrupted one byte for byte. (Before the
/// checkpoint became one file, a kill between its two renames paired one epoch's tensors with
/// the previous epoch's progress, and this test failed.)
#[test]
fn training_killed_anywhere_resumes_to_identical_outputs() {
    let tmp = util::temp_dir("kill_train");
    let data = tmp.path().join("data");
    util::synthetic_cb(&data, 60, 24);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
    for method in ["ft", "lp-lora"] {
        let whole = tmp.path().join(format!("whole-{method}"));
        let t = Instant::now();
        run_ok(train_cmd(&data, &whole, method, &[]));
        let full = t.elapsed();
        let whole_dir = whole.join("cb").join(method).join("seed-7");

        let killed = tmp.path().join(format!("killed-{method}"));
        let dir = killed.join("cb").join(method).join("seed-7");
        let finished = || dir.join("metrics.json").exists();
        // At the moment a checkpoint file is written but not yet renamed into place: the
        // process kills itself there, leaving the temporary file behind.
        for file in ["state.safetensors", "best.safetensors"] {
            let status = train_cmd(&data, &killed, method, &["--resume"])
                .env(lpft::fsutil::KILL_VAR, file)
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(
                !status.success(),
                "{method}: the kill point {file} was reached"
            );
            let names: Vec<String> = std::fs::read_dir(dir.join("checkpoint"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                names
                    .iter()
                    .any(|n| n.starts_with(&format!(".{file}.")) && n.ends_with(".tmp")),
                "{method}: killed mid-write of {file}: {names:?}"
            );
        }
        // At random moments, from the start of a process to past its expected end.
        let mut kills = 0;
        while !finished() && kills < RANDOM_KILLS {
            let mut child = train_cmd(&data, &killed, method, &["--resume"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let wait = rng.random_range(0..full.as_millis() as u64 + 1);
            std::thread::sleep(Duration::from_millis(wait));
            let _ = child.kill();
            child.wait().unwrap();
            kills += 1;
        }
        if !finished() {
            run_ok(train_cmd(&data, &killed, method, &["--resume"]));
        }
        assert_same_run(&whole_dir, &dir, method);
        assert!(!dir.join("checkpoint").exists());
    }
}

fn grid_toml(dir: &Path, data: &Path) -> PathBuf {
    let path = dir.join("grid.toml");
    std::fs::write(
        &path,
        format!(
            r#"
name = "kill-grid"
model = "{model}"
data_dir = "{data}"
tasks = ["cb"]
methods = ["lp", "ft", "lora"]
seeds = [1, 2]
[overrides]
train = {{ epochs = 2, batch_size = 8, lr = 1e-3 }}
[analyses]
calibration = {{ method = "lbfgs" }}
"#,
            model = tiny(),
            data = data.display(),
        ),
    )
    .unwrap();
    path
}

/// The finished cells of a grid (trained and calibrated) and the bytes of their `metrics.json`.
fn finished_cells(runs: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for method in ["lp", "ft", "lora"] {
        for seed in [1, 2] {
            let dir = runs.join(format!("base/cb/{method}/seed-{seed}"));
            if !dir.join("calibration.json").exists() {
                continue;
            }
            if let Ok(bytes) = std::fs::read(dir.join("metrics.json")) {
                out.insert(format!("{method}/{seed}"), bytes);
            }
        }
    }
    out
}

/// A grid killed mid-way: the rerun finishes exactly the missing cells (finished ones keep their
/// files untouched) and ends where an uninterrupted grid ends, whatever `--jobs`.
#[test]
fn grid_killed_mid_way_reruns_only_what_is_missing() {
    let tmp = util::temp_dir("kill_grid");
    let data = tmp.path().join("data");
    util::synthetic_cb(&data, 60, 24);
    let config = grid_toml(tmp.path(), &data);
    let reproduce = |out: &Path, jobs: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lpft"));
        cmd.env("LPFT_THREADS", "1").args([
            "reproduce",
            "--config",
            &config.display().to_string(),
            "--out",
            &out.display().to_string(),
            "--jobs",
            jobs,
        ]);
        cmd
    };
    let whole = tmp.path().join("whole");
    let t = Instant::now();
    run_ok(reproduce(&whole, "1"));
    let full = t.elapsed();
    let reference = finished_cells(&whole.join("runs"));
    assert_eq!(reference.len(), 6);

    let killed = tmp.path().join("killed");
    let mut child = reproduce(&killed, "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill as soon as a first cell is finished (polled, so that a loaded machine's timing
    // cannot put the kill before the first cell or after the last); a cell takes far longer
    // than one poll.
    let deadline = Instant::now() + full * 20;
    while finished_cells(&killed.join("runs")).is_empty() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = child.kill();
    child.wait().unwrap();
    let before = finished_cells(&killed.join("runs"));
    assert!(!before.is_empty(), "the kill came after a first cell");
    assert!(before.len() < 6, "the kill came before the grid's end");
    let mtimes: BTreeMap<String, std::time::SystemTime> = before
        .keys()
        .map(|k| {
            let (m, s) = k.split_once('/').unwrap();
            let p = killed.join(format!("runs/base/cb/{m}/seed-{s}/metrics.json"));
            (k.clone(), std::fs::metadata(p).unwrap().modified().unwrap())
        })
        .collect();
    let out = run_ok(reproduce(&killed, "2"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("6 cells, {} finished", before.len())),
        "{stderr}"
    );
    let after = finished_cells(&killed.join("runs"));
    assert_eq!(
        after, reference,
        "the same results as an uninterrupted grid"
    );
    for (k, t) in mtimes {
        let (m, s) = k.split_once('/').unwrap();
        let p = killed.join(format!("runs/base/cb/{m}/seed-{s}/metrics.json"));
        assert_eq!(
            std::fs::metadata(p).unwrap().modified().unwrap(),
            t,
            "{k} was finished and must not be redone"
        );
    }
}

/// The same seed and thread count give the same bytes; with the model seed fixed, another data
/// seed gives another loss history (data order and dropout), not just another head.
#[test]
fn seeds_decide_the_run_and_nothing_else_does() {
    let tmp = util::temp_dir("seeds");
    let data = tmp.path().join("data");
    util::synthetic_cb(&data, 60, 24);
    let run = |out: &str, seed: &str| {
        let out = tmp.path().join(out);
        run_ok(train_cmd(
            &data,
            &out,
            "ft",
            &["--seed", seed, "--model-seed", "5", "--epochs", "2"],
        ));
        out.join("cb/ft").join(format!("seed-{seed}"))
    };
    let a = run("a", "11");
    let b = run("b", "11");
    assert_same_run(&a, &b, "same seed");
    let c = run("c", "12");
    let (ha, hc) = (history(&a), history(&c));
    assert_ne!(
        ha[0]["train_loss"], hc[0]["train_loss"],
        "another --seed changes the loss history"
    );
    // The model seed alone fixed the initial head: both started from the same one.
    let m = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("metrics.json")).unwrap()).unwrap()
    };
    assert_eq!(
        m(&a)["initial_classifier_norm"],
        m(&c)["initial_classifier_norm"]
    );
}

/// `--config` reruns a saved config with its own seed and model seed; flags still override them.
#[test]
fn a_saved_config_keeps_its_seed() {
    let tmp = util::temp_dir("config_seed");
    let data = tmp.path().join("data");
    util::synthetic_cb(&data, 60, 24);
    let first = tmp.path().join("first");
    run_ok(train_cmd(
        &data,
        &first,
        "lp",
        &["--seed", "7", "--model-seed", "9"],
    ));
    let saved = first.join("cb/lp/seed-7/config.json");
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let rerun = |out: &str, extra: &[&str]| -> serde_json::Value {
        let out_dir = tmp.path().join(out);
        let mut args = vec![
            "train".to_string(),
            "--config".into(),
            saved.display().to_string(),
            "--out".into(),
            out_dir.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = util::lpft(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let seed = extra
            .iter()
            .position(|a| *a == "--seed")
            .map_or("7", |i| extra[i + 1]);
        read(&out_dir.join(format!("cb/lp/seed-{seed}/config.json")))
    };
    let same = rerun("same", &[]);
    assert_eq!(
        (same["seed"].as_u64(), same["model_seed"].as_u64()),
        (Some(7), Some(9))
    );
    assert_eq!(same, read(&saved), "the rerun's config is the saved one");
    let other = rerun("other", &["--seed", "8"]);
    assert_eq!(
        (other["seed"].as_u64(), other["model_seed"].as_u64()),
        (Some(8), Some(9))
    );
}

/// Every method learns the learnable synthetic task: the training loss falls over the epochs
/// and the test accuracy beats always answering the majority class. (A sign error in the
/// update, or a gradient that never reaches the weights, fails this.)
#[test]
fn every_method_learns_a_learnable_task() {
    let tmp = util::temp_dir("learning");
    let data = tmp.path().join("data");
    util::synthetic_cb(&data, 120, 60);
    let majority = {
        let text = std::fs::read_to_string(data.join("superglue/CB/val.jsonl")).unwrap();
        let mut counts = BTreeMap::new();
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            *counts
                .entry(v["label"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        *counts.values().max().unwrap() as f64 / text.lines().count() as f64
    };
    let out = tmp.path().join("runs");
    // LP-LoRA starts from the cross-validated LP head, whose large logits the rank-8 adapters of
    // a width-32 model take longer to turn: 12 epochs there, 6 elsewhere.
    for (method, lr, epochs) in [
        ("lp", "3e-3", "6"),
        ("ft", "3e-3", "6"),
        ("lp-ft", "3e-3", "6"),
        ("lora", "3e-2", "6"),
        ("lp-lora", "3e-2", "12"),
    ] {
        run_ok(train_cmd(
            &data,
            &out,
            method,
            &["--epochs", epochs, "--lr", lr, "--batch-size", "8"],
        ));
        let dir = out.join("cb").join(method).join("seed-7");
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap())
                .unwrap();
        let acc = m["test"]["accuracy"].as_f64().unwrap();
        assert!(
            acc > majority + LEARNING_MARGIN,
            "{method}: test accuracy {acc:.3} against majority {majority:.3}"
        );
        if method != "lp" {
            let h = history(&dir);
            let (first, last) = (
                h[0]["train_loss"].as_f64().unwrap(),
                h[h.len() - 1]["train_loss"].as_f64().unwrap(),
            );
            assert!(
                last < first,
                "{method}: training loss {first:.4} → {last:.4}"
            );
        }
    }
}

/// How far above the majority-class rate a method must land on the learnable task: one test
/// example in 60 is 0.017, so 0.05 is three examples, more than a lucky tie-break.
const LEARNING_MARGIN: f64 = 0.05;

/// Random SIGKILLs per method in the kill test (each resumed from where it stopped).
const RANDOM_KILLS: usize = 8;
