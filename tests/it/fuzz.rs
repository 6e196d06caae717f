//! Fuzzing on the stable toolchain: a coverage-free mutation fuzzer (seeded, so every run is
//! repeatable) over the dataset readers, the experiment TOML parser, the model config reader
//! and the safetensors and pickle checkpoint loaders. Each target starts from real inputs (the
//! reader fixtures, the configs, the tiny checkpoints), mutates them (bit flips, byte inserts and
//! deletions, truncation, duplicated or spliced chunks, structural bytes) and requires that
//! every input ends in `Ok` or an `Err`, never a panic.
//!
//! `cargo test` runs a short pass per target (`DEFAULT_ITERS`); the long run is
//! `LPFT_FUZZ_ITERS=N LPFT_FUZZ_SEED=S cargo test --release --test it fuzz_`, see
//! docs/reliability.md. A panicking input is written to `target/fuzz-crashes/<target>/`; inputs
//! worth keeping go to `tests/fixtures/fuzz/<target>/`, which `fuzz_regressions_stay_fixed`
//! replays: hand-made hostile inputs (its first find: a `config.json` with `hidden_size` 0 was
//! accepted) and any input that ever made a target panic.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::util::{self, fixtures};

/// Mutated inputs per target in `cargo test`: about a second per target on one core.
const DEFAULT_ITERS: usize = 400;

fn iters() -> usize {
    std::env::var("LPFT_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ITERS)
}

fn seed() -> u64 {
    std::env::var("LPFT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Bytes that matter to the formats under test.
const STRUCTURAL: &[&[u8]] = &[
    b"\"",
    b"\t",
    b"\n",
    b"\r\n",
    b",",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"=",
    b"\\",
    b"\xff",
    b"\xef\xbb\xbf",
    b"null",
    b"-1",
    b"1e400",
    b"18446744073709551617",
    b"\x00",
    b"label",
    b"[[variants]]",
    b"\x80\x02",
    b".",
    b"\xe2\x80",
];

fn mutate(rng: &mut ChaCha8Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        let len = data.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..=len);
                data.insert(i, rng.random());
            }
            2 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(64));
                data.drain(i..i + n);
            }
            3 if len > 0 => data.truncate(rng.random_range(0..len)),
            4 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(256));
                let chunk = data[i..i + n].to_vec();
                let at = rng.random_range(0..=data.len());
                data.splice(at..at, chunk);
            }
            5 => {
                let token = STRUCTURAL[rng.random_range(0..STRUCTURAL.len())];
                let at = rng.random_range(0..=len);
                data.splice(at..at, token.iter().copied());
            }
            _ if len > 8 => {
                // Overwrite a little-endian integer (safetensors' header length, offsets).
                let i = rng.random_range(0..len - 8);
                let v: u64 = match rng.random_range(0..3) {
                    0 => u64::MAX,
                    1 => rng.random_range(0..1 << 20),
                    _ => rng.random(),
                };
                data[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            _ => {}
        }
    }
    data
}

/// Runs `target` on `iters()` mutated inputs written to `file`; panics (with the saved input's
/// path) if one of them panics.
fn fuzz(name: &str, seeds: &[Vec<u8>], file: &Path, target: impl Fn(&Path)) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed() ^ fnv(name));
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut crashes = Vec::new();
    for i in 0..iters() {
        let data = mutate(&mut rng, seeds);
        std::fs::write(file, &data).unwrap();
        if std::panic::catch_unwind(AssertUnwindSafe(|| target(file))).is_err() {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join("../fuzz-crashes")
                .join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let saved = dir.join(format!("crash-{i}"));
            std::fs::write(&saved, &data).unwrap();
            crashes.push(saved);
        }
    }
    std::panic::set_hook(quiet);
    assert!(crashes.is_empty(), "{name}: inputs that panic: {crashes:?}");
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap()
}

fn data_fixture(rel: &str) -> Vec<u8> {
    read(fixtures().join("data").join(rel))
}

/// A built-in task read from a data directory whose one file is the fuzzed input.
fn task_target(task: &'static str, rel: &'static str, dir: PathBuf) -> impl Fn(&Path) {
    move |input: &Path| {
        std::fs::copy(input, dir.join(rel)).unwrap();
        let _ = lpft::data::load_task(task, &dir, &Default::default());
        let _ = lpft::data::load_unlabelled(task, &dir);
    }
}

/// A scratch data directory holding every reader fixture.
fn scratch_data(test: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = util::temp_dir(test);
    let dir = tmp.path().join("data");
    copy_dir(&fixtures().join("data"), &dir);
    let cb = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/superglue/CB");
    copy_dir(&cb, &dir.join("superglue/CB"));
    (tmp, dir)
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

#[test]
fn fuzz_dataset_readers() {
    let (tmp, dir) = scratch_data("fuzz_data");
    for (task, rel) in [
        ("cb", "superglue/CB/train.jsonl"),
        ("sst2", "glue/SST-2/train.tsv"),
        ("mrpc", "glue/MRPC/dev.tsv"),
        ("cola", "glue/CoLA/train.tsv"),
        ("wic", "wic/train/train.gold.txt"),
        ("wic", "wic/dev/dev.data.txt"),
        ("sst5-3", "sst5/train.jsonl"),
        ("dynasent", "dynasent/round02-dynabench-dev.jsonl"),
    ] {
        let good = read(dir.join(rel));
        let input = tmp.path().join("input");
        let name = format!("data@{task}@{}", rel.replace('/', "+"));
        fuzz(
            &name,
            std::slice::from_ref(&good),
            &input,
            task_target(task, rel, dir.clone()),
        );
        std::fs::write(dir.join(rel), good).unwrap();
    }
}

#[test]
fn fuzz_user_file_readers() {
    let tmp = util::temp_dir("fuzz_files");
    let csv =
        b"id,review,stars\n1,\"great, really\",pos\n2,\"said \"\"no\"\"\",neg\n3,ok,pos\n".to_vec();
    let tsv = data_fixture("glue/SST-2/dev.tsv");
    let jsonl = data_fixture("sst5/dev.jsonl");
    let txt = b"one text\nanother one\n\nthird\n".to_vec();
    for (ext, seed, text_a, label) in [
        ("csv", csv, "review", Some("stars")),
        ("tsv", tsv, "sentence", Some("label")),
        ("jsonl", jsonl, "sentence", Some("label")),
        ("txt", txt, "text", None),
    ] {
        let input = tmp.path().join(format!("input.{ext}"));
        fuzz(&format!("file-{ext}"), &[seed], &input, |p| {
            let spec = lpft::data::FileSpec {
                path: p.to_path_buf(),
                format: None,
                text_a: text_a.into(),
                text_b: None,
                label: label.map(Into::into),
            };
            let _ = lpft::data::read_file(&spec, &mut lpft::data::LabelMap::open());
        });
    }
}

#[test]
fn fuzz_experiment_and_manifest_parsers() {
    let tmp = util::temp_dir("fuzz_toml");
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(&configs)
        .unwrap()
        .map(|e| read(e.unwrap().path()))
        .collect();
    let input = tmp.path().join("grid.toml");
    fuzz("experiment-toml", &seeds, &input, |p| {
        let _ = lpft::experiment::ExperimentConfig::from_file(p);
    });
    let manifest = read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/datasets.toml"));
    let input = tmp.path().join("datasets.toml");
    fuzz("datasets-toml", &[manifest], &input, |p| {
        let _ = lpft::hub::datasets::Manifest::from_file(p);
    });
}

#[test]
fn fuzz_model_config_and_checkpoints() {
    let tmp = util::temp_dir("fuzz_ckpt");
    let input = tmp.path().join("config.json");
    let seeds = vec![
        read(fixtures().join("tiny-bert/config.json")),
        read(fixtures().join("tiny-roberta/config.json")),
    ];
    fuzz("model-config", &seeds, &input, |p| {
        let _ = lpft::model::EncoderConfig::load(p);
    });
    let device = candle_core::Device::Cpu;
    for (name, file, arch) in [
        (
            "safetensors",
            fixtures().join("tiny-bert/model.safetensors"),
            lpft::model::Arch::Bert,
        ),
        (
            "pickle",
            fixtures().join("tiny-bert-noprefix-bin/pytorch_model.bin"),
            lpft::model::Arch::Bert,
        ),
    ] {
        let ext = file.extension().unwrap().to_string_lossy().into_owned();
        let input = tmp.path().join(format!("weights.{ext}"));
        fuzz(&format!("checkpoint-{name}"), &[read(&file)], &input, |p| {
            let _ = lpft::model::Checkpoint::load(p, arch, &device);
        });
    }
}

/// The kept hostile inputs, each through its target: every one is malformed by construction
/// (a header length past the file, offsets past the end, a truncated archive, heads that do not
/// divide the hidden size, a BOM-only file, ...) and must be refused with an error: not a
/// panic, and not accepted. Inputs that ever made a fuzz target panic are kept here too.
#[test]
fn fuzz_regressions_stay_fixed() {
    let root = fixtures().join("fuzz");
    let tmp = util::temp_dir("fuzz_regressions");
    let (_keep, data) = scratch_data("fuzz_regressions_data");
    let mut replayed = 0;
    for target in std::fs::read_dir(&root).unwrap().flatten() {
        let name = target.file_name().to_string_lossy().into_owned();
        for case in std::fs::read_dir(target.path()).unwrap().flatten() {
            let bytes = read(case.path());
            let case = case.file_name().to_string_lossy().into_owned();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                replay(&name, &bytes, tmp.path(), &data)
            }));
            match outcome {
                Err(_) => panic!("{name}/{case} panics"),
                Ok(Ok(())) => panic!("{name}/{case} is accepted"),
                Ok(Err(_)) => replayed += 1,
            }
        }
    }
    assert!(replayed >= 20, "{replayed} inputs under {}", root.display());
}

/// Runs one kept input through its target; `Err` is the message of the refusal.
fn replay(target: &str, bytes: &[u8], tmp: &Path, data: &Path) -> Result<(), String> {
    let write = |name: &str| {
        let p = tmp.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let cpu = candle_core::Device::Cpu;
    let bert = lpft::model::Arch::Bert;
    let res = match target {
        "checkpoint-safetensors" => {
            lpft::model::Checkpoint::load(&write("w.safetensors"), bert, &cpu).map(|_| ())
        }
        "checkpoint-pickle" => {
            lpft::model::Checkpoint::load(&write("w.bin"), bert, &cpu).map(|_| ())
        }
        "experiment-toml" => {
            lpft::experiment::ExperimentConfig::from_file(&write("g.toml")).map(|_| ())
        }
        "model-config" => lpft::model::EncoderConfig::load(&write("config.json")).map(|_| ()),
        t if t.starts_with("data@") => {
            // data@<task>@<path with / as +>
            let mut parts = t.split('@').skip(1);
            let (task, rel) = (
                parts.next().unwrap(),
                parts.next().unwrap().replace('+', "/"),
            );
            let good = read(data.join(&rel));
            std::fs::write(data.join(&rel), bytes).unwrap();
            let res = lpft::data::load_task(task, data, &Default::default()).map(|_| ());
            std::fs::write(data.join(&rel), good).unwrap();
            res
        }
        other => panic!("unknown fuzz target {other}"),
    };
    res.map_err(|e| e.to_string())
}
