//! Bad input through the binary, one row per case: each is refused with exit code 2 and a
//! message naming the file, line and field (or the setting) at fault, and none may modify the
//! finished run that already sits in the same output folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, fixtures};

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let meta = std::fs::metadata(&p).unwrap();
                out.insert(
                    p.clone(),
                    (std::fs::read(&p).unwrap(), meta.modified().unwrap()),
                );
            }
        }
    }
    out
}

struct Bench {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    out: PathBuf,
    earlier: PathBuf,
    before: BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)>,
}

impl Bench {
    /// A good data directory, and a finished LP run in `out` that no case may touch.
    fn new(test: &str) -> Bench {
        let tmp = util::temp_dir(test);
        let root = tmp.path().to_path_buf();
        let data = root.join("data");
        util::synthetic_cb(&data, 60, 24);
        let out = root.join("runs");
        let o = lpft(&[
            "train",
            "--task",
            "cb",
            "--method",
            "lp",
            "--model",
            &tiny(),
            "--data-dir",
            &s(&data),
            "--out",
            &s(&out),
            "--seed",
            "1",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let earlier = out.join("cb/lp/seed-1");
        let before = snapshot(&earlier);
        Bench {
            _tmp: tmp,
            root,
            data,
            out,
            earlier,
            before,
        }
    }

    /// Runs `args`, checks exit code 2, every `needle` in stderr, and the earlier run intact.
    fn refuses(&self, case: &str, args: &[&str], needles: &[&str]) {
        let o = lpft(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{case}: exit code; stderr:\n{err}"
        );
        for n in needles {
            assert!(err.contains(n), "{case}: `{n}` not in:\n{err}");
        }
        assert!(
            snapshot(&self.earlier) == self.before,
            "{case}: the earlier run in {} was modified",
            self.earlier.display()
        );
    }

    /// A copy of the good data directory with `file` (under `superglue/CB/`) replaced.
    fn data_with(&self, name: &str, file: &str, contents: &[u8]) -> PathBuf {
        let dir = self.root.join(name);
        copy_dir(&self.data, &dir);
        std::fs::write(dir.join("superglue/CB").join(file), contents).unwrap();
        dir
    }

    /// A copy of the tiny BERT with `edit` applied.
    fn model_with(&self, name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
        let dir = self.root.join(name);
        copy_dir(&fixtures().join("tiny-bert"), &dir);
        edit(&dir);
        dir
    }

    /// `train --method M` on the tiny BERT, writing into the folder that holds the earlier run.
    fn train<'a>(&'a self, method: &'a str, data: &'a Path, extra: &[&'a str]) -> Vec<String> {
        let mut v: Vec<String> = [
            "train",
            "--task",
            "cb",
            "--method",
            method,
            "--model",
            &tiny(),
            "--data-dir",
            &s(data),
            "--out",
            &s(&self.out),
            "--seed",
            "2",
            "--epochs",
            "1",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn tiny() -> String {
    s(&fixtures().join("tiny-bert"))
}

fn lpft(args: &[&str]) -> std::process::Output {
    util::lpft(args)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn cb_row(premise: &str, hypothesis: &str, label: &str) -> String {
    format!("{{\"premise\": \"{premise}\", \"hypothesis\": \"{hypothesis}\", \"label\": \"{label}\", \"idx\": 0}}\n")
}

#[test]
fn bad_data_files_are_refused_naming_file_line_and_field() {
    let b = Bench::new("bad_data");
    let good = |n: usize| -> String { (0..n).map(|_| cb_row("a b", "c d", "neutral")).collect() };

    let d = b.data_with(
        "json",
        "train.jsonl",
        format!("{}{{\"premise\": \"x\",\n{}", good(2), good(20)).as_bytes(),
    );
    b.refuses(
        "malformed JSON",
        &strs(&b.train("lp", &d, &[])),
        &["train.jsonl", "line 3", "invalid JSON"],
    );

    let d = b.data_with(
        "column",
        "train.jsonl",
        format!(
            "{}{{\"premise\": \"x\", \"label\": \"neutral\"}}\n{}",
            good(1),
            good(20)
        )
        .as_bytes(),
    );
    b.refuses(
        "missing column",
        &strs(&b.train("lp", &d, &[])),
        &["train.jsonl", "line 2", "hypothesis"],
    );

    let d = b.data_with(
        "label",
        "train.jsonl",
        format!("{}{}{}", good(3), cb_row("a", "b", "maybe"), good(20)).as_bytes(),
    );
    b.refuses(
        "unknown label",
        &strs(&b.train("lp", &d, &[])),
        &["train.jsonl", "line 4", "unknown label `maybe`"],
    );

    let d = b.data_with(
        "range",
        "train.jsonl",
        format!("{}{}{}", good(4), cb_row("a", "b", "7"), good(20)).as_bytes(),
    );
    b.refuses(
        "label out of range",
        &strs(&b.train("lp", &d, &[])),
        &["train.jsonl", "line 5", "unknown label `7`"],
    );

    let d = b.data_with("empty", "val.jsonl", b"");
    b.refuses(
        "empty split",
        &strs(&b.train("lp", &d, &[])),
        &["val.jsonl", "no examples"],
    );

    let mut bytes = good(5).into_bytes();
    bytes.extend_from_slice(
        b"{\"premise\": \"caf\xe9\", \"hypothesis\": \"x\", \"label\": \"neutral\"}\n",
    );
    let d = b.data_with("utf8", "train.jsonl", &bytes);
    b.refuses(
        "non-UTF-8",
        &strs(&b.train("lp", &d, &[])),
        &["train.jsonl", "line 6", "UTF-8"],
    );

    // Files of one's own: a header and nothing else, and a ragged CSV row.
    let own = b.root.join("own");
    std::fs::create_dir_all(&own).unwrap();
    let header_only = own.join("header.csv");
    std::fs::write(&header_only, "text,label\n").unwrap();
    let test_csv = own.join("test.csv");
    std::fs::write(&test_csv, "text,label\na,x\nb,y\n").unwrap();
    let ragged = own.join("ragged.csv");
    std::fs::write(&ragged, "text,label\na,x\nb\nc,y\n").unwrap();
    for (case, file, needles) in [
        (
            "header only",
            &header_only,
            vec!["header.csv", "no examples"],
        ),
        ("ragged CSV", &ragged, vec!["ragged.csv", "line 3"]),
    ] {
        let args = [
            "train",
            "--method",
            "lp",
            "--model",
            &tiny(),
            "--train-file",
            &s(file),
            "--test-file",
            &s(&test_csv),
            "--out",
            &s(&b.out),
        ];
        b.refuses(case, &args, &needles);
    }
}

#[test]
fn bad_model_directories_are_refused_naming_what_is_wrong() {
    let b = Bench::new("bad_model");
    let edit_config = |key: &'static str, value: serde_json::Value| {
        move |dir: &Path| {
            let p = dir.join("config.json");
            let mut v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            v[key] = value;
            std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
        }
    };
    let cases: Vec<(&str, PathBuf, Vec<&str>)> = vec![
        (
            "no config.json",
            b.model_with("no-config", |d| {
                std::fs::remove_file(d.join("config.json")).unwrap()
            }),
            vec!["missing config.json"],
        ),
        (
            "no weights",
            b.model_with("no-weights", |d| {
                std::fs::remove_file(d.join("model.safetensors")).unwrap()
            }),
            vec!["no model.safetensors or pytorch_model.bin"],
        ),
        (
            "no tokenizer",
            b.model_with("no-tokenizer", |d| {
                std::fs::remove_file(d.join("tokenizer.json")).unwrap()
            }),
            vec!["missing tokenizer.json"],
        ),
        (
            "shapes that do not match the config",
            b.model_with("shape", edit_config("intermediate_size", 40.into())),
            vec![
                "model.safetensors",
                "intermediate.dense.weight",
                "has shape",
                "expected",
            ],
        ),
        (
            "vocabulary size unlike the embedding matrix",
            b.model_with("vocab", edit_config("vocab_size", 400.into())),
            vec![
                "model.safetensors",
                "word_embeddings.weight",
                "[328, 32]",
                "[400, 32]",
            ],
        ),
        (
            "unknown model_type",
            b.model_with("type", edit_config("model_type", "gpt2".into())),
            vec!["config.json", "unsupported model_type `gpt2`"],
        ),
    ];
    for (case, model, needles) in cases {
        let model = s(&model);
        let mut args = b.train("lp", &b.data, &[]);
        let i = args.iter().position(|a| a == "--model").unwrap();
        args[i + 1] = model;
        b.refuses(case, &strs(&args), &needles);
    }
}

#[test]
fn bad_settings_are_refused_naming_the_setting() {
    let b = Bench::new("bad_settings");
    for (case, method, extra, needles) in [
        (
            "lr 0",
            "ft",
            vec!["--lr", "0"],
            vec!["lr", "not a positive number"],
        ),
        (
            "lr < 0",
            "ft",
            vec!["--lr=-1e-3"],
            vec!["lr", "not a positive number"],
        ),
        (
            "batch size 0",
            "ft",
            vec!["--batch-size", "0"],
            vec!["batch_size", "at least 1"],
        ),
        (
            "LoRA r 0",
            "lora",
            vec!["--lora-r", "0"],
            vec!["lora.r", "at least 1"],
        ),
        (
            "epochs 0",
            "ft",
            vec!["--epochs", "0"],
            vec!["epochs", "at least 1"],
        ),
        (
            "max_len below the special tokens",
            "lp",
            vec!["--max-len", "2"],
            vec!["max_len"],
        ),
    ] {
        let mut args = b.train(method, &b.data, &[]);
        if extra[0] == "--epochs" {
            let i = args.iter().position(|a| a == "--epochs").unwrap();
            args[i + 1] = extra[1].to_string();
        } else {
            args.extend(extra.iter().map(|x| x.to_string()));
        }
        b.refuses(case, &strs(&args), &needles);
    }
    // The earlier run itself: refused unless --overwrite, and left as it was.
    let again = [
        "train",
        "--task",
        "cb",
        "--method",
        "lp",
        "--model",
        &tiny(),
        "--data-dir",
        &s(&b.data),
        "--out",
        &s(&b.out),
        "--seed",
        "1",
    ];
    b.refuses(
        "a finished run",
        &again,
        &["already holds a finished run", "--overwrite"],
    );
    b.refuses(
        "--resume of a finished run",
        &[&again[..], &["--resume"]].concat(),
        &["already holds a finished run"],
    );
    // A misspelt field of an experiment file: named with its file and line.
    let toml = b.root.join("grid.toml");
    std::fs::write(
        &toml,
        format!(
            "name = \"g\"\nmodel = \"{}\"\ntasks = [\"cb\"]\nmethods = [\"lp\"]\nseeds = [1]\n\
             [overrides]\ntrain = {{ epocs = 1 }}\n",
            tiny()
        ),
    )
    .unwrap();
    b.refuses(
        "misspelt TOML field",
        &[
            "reproduce",
            "--config",
            &s(&toml),
            "--out",
            &s(&b.root.join("grid")),
        ],
        &["grid.toml", "line 7", "epocs"],
    );
}

/// A second process on a run directory in use is refused by the lock (and the first finishes
/// unharmed); a loss that turns non-finite stops the run with the epoch and step.
#[test]
fn concurrent_runs_are_locked_out_and_a_diverging_loss_stops_the_run() {
    let b = Bench::new("lock_nan");
    let long = b.train("ft", &b.data, &["--epochs", "200"]);
    let long = {
        let mut v = long;
        let i = v.iter().position(|a| a == "--epochs").unwrap();
        v.remove(i);
        v.remove(i);
        v
    };
    let mut first = Command::new(env!("CARGO_BIN_EXE_lpft"))
        .env("LPFT_THREADS", "1")
        .args(&long)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = b.out.join("cb/ft/seed-2");
    let t = std::time::Instant::now();
    while !dir.join("config.json").exists() {
        assert!(t.elapsed().as_secs() < 60, "the first run never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    b.refuses(
        "a second process on the same run",
        &strs(&long),
        &["in use by another lpft process", "seed-2"],
    );
    // Once it has a checkpoint, kill it: resuming with other settings is refused too.
    while !dir.join("checkpoint/state.safetensors").exists() {
        assert!(
            t.elapsed().as_secs() < 120,
            "the first run never checkpointed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = first.kill();
    first.wait().unwrap();
    let mut other = long.clone();
    other.extend([
        "--resume".to_string(),
        "--lr".to_string(),
        "5e-3".to_string(),
    ]);
    b.refuses(
        "resuming with other settings",
        &strs(&other),
        &["--resume", "train.lr: saved", "now 0.005", "--overwrite"],
    );

    let nan = b.train("ft", &b.data, &["--lr", "1e37", "--overwrite"]);
    b.refuses(
        "a loss that turns NaN",
        &strs(&nan),
        &["training loss is", "epoch 1, step"],
    );
}
