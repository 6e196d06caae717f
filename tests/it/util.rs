//! Shared test helpers: fixture paths, per-test temp dirs, tensor comparisons.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

/// The committed fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fresh temporary directory named after the test.
pub fn temp_dir(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("lpft-{test}-"))
        .tempdir()
        .expect("creating a temp dir")
}

/// Loads every tensor of a safetensors file.
pub fn load_tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// Flattened f32 values of a tensor.
pub fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Largest absolute difference, with the index where it occurs.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold(
            (0.0, 0),
            |(m, mi), (i, d)| if d > m { (d, i) } else { (m, mi) },
        )
}

/// ‖a − b‖ / ‖b‖ (in f64).
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// i64 tensor → u32 vector (token ids, masks).
pub fn ids(t: &Tensor) -> Vec<u32> {
    t.to_dtype(candle_core::DType::I64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|x| u32::try_from(x).expect("non-negative id"))
        .collect()
}

/// Writes a synthetic CB-format task (SuperGLUE jsonl) under `dir/superglue/CB/` that the tiny
/// models can learn: the label follows from a keyword of the hypothesis. `n` training rows
/// (split 9:1 into train/validation by the protocol) and `n_test` test rows.
pub fn synthetic_cb(dir: &Path, n: usize, n_test: usize) {
    let cb = dir.join("superglue/CB");
    std::fs::create_dir_all(&cb).unwrap();
    let subjects = [
        "the cat",
        "a man",
        "my friend",
        "the old car",
        "this movie",
        "the city",
    ];
    let verbs = [
        "is good",
        "was here",
        "can run",
        "looks nice",
        "will come",
        "has gone",
    ];
    let labels = ["entailment", "contradiction", "neutral"];
    let keys = ["yes", "no", "maybe"];
    let row = |i: usize| {
        let s = subjects[i % subjects.len()];
        let v = verbs[(i / 3) % verbs.len()];
        let l = (i * 7 + i / 5) % 3;
        format!(
            "{{\"premise\": \"{s} {v} today.\", \"hypothesis\": \"{} , {s} {v}\", \"label\": \"{}\", \"idx\": {i}}}\n",
            keys[l], labels[l]
        )
    };
    let train: String = (0..n).map(row).collect();
    let test: String = (n..n + n_test).map(row).collect();
    std::fs::write(cb.join("train.jsonl"), train).unwrap();
    std::fs::write(cb.join("val.jsonl"), test).unwrap();
}

/// Variables that would let a test read or write outside its own folders, or reach past the
/// servers it starts: they are removed from every `lpft` the tests run.
const OUTSIDE: [&str; 18] = [
    "LPFT_HOME",
    "LPFT_DATA_DIR",
    "LPFT_OFFLINE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_HUB_OFFLINE",
    "HF_ENDPOINT",
    "HF_TOKEN",
    "HF_TOKEN_PATH",
    "XDG_CACHE_HOME",
    "PIP_INDEX_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "LPFT_REAL_DATA",
];

/// A sandbox for running the binary as on a fresh machine: its own empty `HOME` (also
/// `LPFT_HOME`) and working directory, none of the caller's lpft/Hugging Face/pip variables.
pub struct Env {
    _dir: tempfile::TempDir,
    /// `HOME` and `LPFT_HOME`.
    pub home: PathBuf,
    /// The working directory (so no `./data` is found unless a test makes one).
    pub cwd: PathBuf,
}

impl Env {
    pub fn new(test: &str) -> Env {
        let dir = temp_dir(test);
        let home = dir.path().join("home");
        let cwd = dir.path().join("cwd");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&cwd).unwrap();
        Env {
            _dir: dir,
            home,
            cwd,
        }
    }

    /// `lpft` in the sandbox, with `vars` set on top, one thread.
    pub fn command(&self, vars: &[(&str, &str)]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lpft"));
        for var in OUTSIDE {
            cmd.env_remove(var);
        }
        cmd.current_dir(&self.cwd)
            .env("HOME", &self.home)
            .env("LPFT_HOME", &self.home)
            .env("LPFT_THREADS", "1");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd
    }
}

/// Runs the built `lpft` binary with one thread, without the caller's lpft/Hugging Face/pip
/// variables (see [`Env`]).
pub fn lpft(args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lpft"));
    for var in OUTSIDE {
        cmd.env_remove(var);
    }
    cmd.args(args)
        .env("LPFT_THREADS", "1")
        .output()
        .expect("running lpft")
}

/// A finished process's stdout then stderr, as text.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `lpft`, asserts success, returns stdout.
pub fn lpft_ok(args: &[&str]) -> String {
    let out = lpft(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "lpft {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A fixture's `expected.safetensors` and the batch of inputs it holds.
pub fn fixture_inputs(dir: &Path) -> (HashMap<String, Tensor>, lpft::model::Inputs) {
    let expected = load_tensors(&dir.join("expected.safetensors"));
    let (batch, seq_len) = expected["input_ids"].dims2().unwrap();
    let inputs = lpft::model::Inputs {
        input_ids: ids(&expected["input_ids"]),
        token_type_ids: ids(&expected["token_type_ids"]),
        attention_mask: ids(&expected["attention_mask"]),
        batch,
        seq_len,
    };
    (expected, inputs)
}

/// A tensor of N(0, std²) values drawn from `seed` (f32).
pub fn randn(dims: &[usize], seed: u64, std: f32) -> Tensor {
    let n = dims.iter().product();
    let v = lpft::rng::normal_vec(&mut lpft::rng::Streams::new(seed).get("t"), n, 0.0, std);
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}
