//! The five methods end to end on the tiny BERT and a synthetic CB-format task.

use std::path::Path;

use lpft::methods::progress::EpochRecord;
use lpft::methods::Observer;
use lpft::methods::{Method, RunConfig, SilentObserver};
use lpft::rundir::read_metrics;
use lpft::stages::train::RunOptions;

use crate::util::{self, fixtures};

/// Training examples of the synthetic task (train 54 / validation 6 after the 9:1 split).
const N_TRAIN: usize = 60;
const N_TEST: usize = 24;

fn config(data: &Path, method: Method, seed: u64) -> RunConfig {
    let model = fixtures().join("tiny-bert").display().to_string();
    let mut cfg = RunConfig::paper_defaults("cb", method, &model, seed);
    cfg.data_dir = Some(data.to_path_buf());
    cfg.train.epochs = 3;
    cfg.train.batch_size = 8;
    cfg.train.lr = match method {
        Method::Lora | Method::LpLora => 1e-2,
        _ => 1e-3,
    };
    cfg
}

fn setup(test: &str) -> tempfile::TempDir {
    let dir = util::temp_dir(test);
    util::synthetic_cb(&dir.path().join("data"), N_TRAIN, N_TEST);
    dir
}

fn run(cfg: &RunConfig, out: &Path) -> lpft::stages::train::RunOutcome {
    lpft::stages::train::run(cfg, out, &RunOptions::default(), &mut SilentObserver)
        .unwrap_or_else(|e| panic!("{} failed: {e}", cfg.method))
}

#[test]
fn every_method_trains_end_to_end_and_writes_its_artifacts() {
    let tmp = setup("every_method");
    let data = tmp.path().join("data");
    let out = tmp.path().join("runs");
    for method in Method::ALL {
        let cfg = config(&data, method, 1001);
        let outcome = run(&cfg, &out);
        let dir = &outcome.dir;
        assert_eq!(dir, &out.join("cb").join(method.as_str()).join("seed-1001"));
        let m = read_metrics(dir).unwrap();
        assert_eq!(m.test.n, N_TEST);
        assert_eq!(m.validation.n, 6);
        for f in [
            "config.json",
            "metrics.json",
            "manifest.json",
            "head.safetensors",
        ] {
            assert!(dir.join(f).exists(), "{method}: {f} missing");
        }
        assert!(
            !dir.join("checkpoint").exists(),
            "{method}: resume state removed at the end"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap())
                .unwrap();
        for key in ["task", "method", "seed", "model", "classifier_norm"] {
            assert!(
                json.get(key).is_some(),
                "{method}: metrics.json lacks {key}"
            );
        }
        for split in ["validation", "test"] {
            for key in ["accuracy", "f1_macro", "mcc", "nll", "ece", "mce", "brier"] {
                let v = json[split][key].as_f64();
                assert!(
                    v.is_some_and(f64::is_finite),
                    "{method}: {split}.{key} = {v:?}"
                );
            }
        }
        if method.has_gradient_stage() {
            let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
            assert_eq!(
                history.lines().count(),
                3,
                "{method}: one history line per epoch"
            );
            assert!(m.best_epoch.is_some());
        }
        match method {
            Method::Ft | Method::LpFt => assert!(dir.join("model/model.safetensors").exists()),
            Method::Lora | Method::LpLora => {
                assert!(dir.join("adapter/adapter_model.safetensors").exists())
            }
            Method::Lp => assert!(m.lp.as_ref().is_some_and(|lp| lp.cross_validated)),
        }
    }
}

#[test]
fn same_seed_same_metrics_different_seed_different() {
    let tmp = setup("determinism");
    let data = tmp.path().join("data");
    let read = |out: &str, seed| {
        let cfg = config(&data, Method::Ft, seed);
        let o = run(&cfg, &tmp.path().join(out));
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(o.dir.join("metrics.json")).unwrap())
                .unwrap();
        v.as_object_mut().unwrap().remove("seed");
        v
    };
    let a = read("a", 1001);
    let b = read("b", 1001);
    let c = read("c", 2002);
    assert_eq!(a, b, "same seed, same threads: identical metrics.json");
    assert_ne!(a, c, "a different seed changes the run");
}

/// Stops the process (here: panics) once an epoch is complete, like a kill after a checkpoint.
struct KillAfter(usize);
impl Observer for KillAfter {
    fn end_epoch(&mut self, r: &EpochRecord) {
        if r.epoch == self.0 {
            panic!("simulated kill after epoch {}", r.epoch);
        }
    }
}

#[test]
fn resume_after_kill_gives_identical_metrics() {
    let tmp = setup("resume");
    let data = tmp.path().join("data");
    for method in [Method::LpFt, Method::Lora] {
        let cfg = config(&data, method, 1001);
        let whole = run(&cfg, &tmp.path().join("whole"));
        let out = tmp.path().join("killed");
        let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lpft::stages::train::run(&cfg, &out, &RunOptions::default(), &mut KillAfter(2))
        }));
        assert!(killed.is_err(), "the simulated kill happened");
        let dir = lpft::rundir::run_dir(&out, &cfg);
        assert!(!dir.join("metrics.json").exists());
        // Without --resume the interrupted run is not silently overwritten.
        let err = lpft::stages::train::run(&cfg, &out, &RunOptions::default(), &mut SilentObserver)
            .err()
            .expect("an interrupted run needs --resume")
            .to_string();
        assert!(err.contains("--resume"), "{err}");
        let resumed = lpft::stages::train::run(
            &cfg,
            &out,
            &RunOptions {
                resume: true,
                ..RunOptions::default()
            },
            &mut SilentObserver,
        )
        .unwrap();
        let a = serde_json::to_value(&whole.metrics).unwrap();
        let b = serde_json::to_value(&resumed.metrics).unwrap();
        assert_eq!(a, b, "{method}: resumed run ends with the same metrics");
        let h1 = std::fs::read_to_string(whole.dir.join("history.jsonl")).unwrap();
        let h2 = std::fs::read_to_string(resumed.dir.join("history.jsonl")).unwrap();
        let strip = |h: &str| -> Vec<serde_json::Value> {
            h.lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let o = v.as_object_mut().unwrap();
                    o.remove("seconds");
                    o.remove("examples_per_s");
                    v
                })
                .collect()
        };
        assert_eq!(
            strip(&h1),
            strip(&h2),
            "{method}: same history apart from timings"
        );
    }
}

#[test]
fn lp_ft_starts_from_exactly_the_lp_head() {
    let tmp = setup("lp_ft_start");
    let data = tmp.path().join("data");
    let out = tmp.path().join("runs");
    let lp = run(&config(&data, Method::Lp, 1001), &out);
    let mut cfg = config(&data, Method::LpFt, 1001);
    // A vanishing learning rate: the FT stage then leaves the head where it started.
    cfg.train.lr = 1e-12;
    cfg.train.epochs = 1;
    let lpft = run(&cfg, &out);
    let lp_head = util::load_tensors(&lp.dir.join("head.safetensors"));
    let installed = util::load_tensors(&lpft.dir.join("lp_head.safetensors"));
    let after = util::load_tensors(&lpft.dir.join("head.safetensors"));
    for k in ["classifier.weight", "classifier.bias"] {
        assert_eq!(
            util::values(&lp_head[k]),
            util::values(&installed[k]),
            "{k}: LP-FT installs the LP solution"
        );
        let (d, _) = util::max_abs_diff(&util::values(&installed[k]), &util::values(&after[k]));
        // lr 1e-12 × Adam's unit-size steps: the head moves by ~1e-12.
        assert!(
            d < 1e-9,
            "{k}: FT stage started from the LP head (moved {d})"
        );
    }
    let ft = run(
        &{
            let mut c = config(&data, Method::Ft, 1001);
            c.train.lr = 1e-12;
            c.train.epochs = 1;
            c
        },
        &out,
    );
    let ft_head = util::load_tensors(&ft.dir.join("head.safetensors"));
    let (d, _) = util::max_abs_diff(
        &util::values(&ft_head["classifier.weight"]),
        &util::values(&installed["classifier.weight"]),
    );
    assert!(
        d > 1e-3,
        "control: FT starts from the random head, not the LP head"
    );
}

#[test]
fn trained_runs_reload_with_the_same_predictions() {
    let tmp = setup("reload");
    let data = tmp.path().join("data");
    let out = tmp.path().join("runs");
    for method in [Method::Lp, Method::Ft, Method::LpLora] {
        let mut cfg = config(&data, method, 1001);
        cfg.train.epochs = 2;
        let o = run(&cfg, &out);
        let trained = lpft::stages::load::load_run(&o.dir).unwrap();
        let task = lpft::stages::train::load_task(&cfg).unwrap();
        let texts: Vec<(&str, Option<&str>)> =
            task.test.iter().map(lpft::data::Example::texts).collect();
        let enc = trained.tokenizer.encode(&texts).unwrap();
        let z =
            lpft::methods::evaluate::logits(&trained.model, &trained.tokenizer, &enc, 7).unwrap();
        let saved = util::load_tensors(&o.dir.join("predictions/test.safetensors"));
        let saved = util::values(&saved["logits"]);
        let ours: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        let (d, i) = util::max_abs_diff(&ours, &saved);
        // Different batch composition only changes f32 summation order.
        assert!(d < 1e-5, "{method}: reloaded logits differ by {d} at {i}");
    }
}

#[test]
fn peft_adapter_layout() {
    let tmp = setup("peft_layout");
    let data = tmp.path().join("data");
    let o = run(&config(&data, Method::Lora, 1001), &tmp.path().join("runs"));
    let adapter = o.dir.join("adapter");
    let text = std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 8);
    assert_eq!(cfg["modules_to_save"], serde_json::json!(["classifier"]));
    let keys: Vec<&String> = cfg.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "adapter_config.json keys are sorted");
    let t = util::load_tensors(&adapter.join("adapter_model.safetensors"));
    let a = &t["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"];
    let b = &t["base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight"];
    assert_eq!(a.dims(), &[8, 32]);
    assert_eq!(b.dims(), &[32, 8]);
    assert!(
        util::values(b).iter().any(|&x| x != 0.0),
        "B moved away from 0 in training"
    );
    assert!(t.contains_key("base_model.model.classifier.weight"));
    assert!(
        !t.keys().any(|k| k.contains(".key.")),
        "only query and value are adapted"
    );
    assert_eq!(t.len(), 2 * 2 * 2 + 2);
}

/// Gradient accumulation: two micro-batches of 2 give the step of one batch of 4 (no dropout):
/// the same mean loss, the same gradient norm, and the same update of every parameter, on
/// both gradient engines.
#[test]
fn accumulated_step_equals_one_step_on_the_whole_batch() {
    use candle_core::Device;
    use lpft::methods::train::{accumulated_step, step, Backward};
    use lpft::model::{Inputs, Mode, ModelFiles, ModelOptions, Pooling, SequenceClassifier};
    use lpft::optim::{AdamW, AdamWConfig};

    /// f32 sums in another order: the losses and norms agree to ~1e-7 relative.
    const REL_TOL: f64 = 1e-5;
    /// AdamW's first step is lr · g/(|g| + ε) per entry: entries whose gradient is round-off
    /// (the key biases', exactly 0 in exact arithmetic) can move by up to lr either way.
    const LR: f64 = 1e-3;

    let dir = fixtures().join("tiny-bert");
    let files = ModelFiles::open(&dir).unwrap();
    let ckpt = files.checkpoint(&Device::Cpu).unwrap();
    let (_, full) = util::fixture_inputs(&dir);
    let rows = |from: usize, to: usize| {
        let l = full.seq_len;
        Inputs {
            input_ids: full.input_ids[from * l..to * l].to_vec(),
            token_type_ids: full.token_type_ids[from * l..to * l].to_vec(),
            attention_mask: full.attention_mask[from * l..to * l].to_vec(),
            batch: to - from,
            seq_len: l,
        }
    };
    let labels = vec![0, 1, 2, 1];
    for own in [true, false] {
        let load = || {
            let opts = ModelOptions {
                num_labels: 3,
                pooling: Pooling::First,
                trainable: lpft::model::Trainable::All,
                model_seed: 0,
                lora: None,
            };
            let (model, report) = SequenceClassifier::load(&ckpt, &files.config, &opts).unwrap();
            let opt = AdamW::new(&report.vars, AdamWConfig::default());
            let backward = if own {
                Backward::for_model(&model, &opt, lpft::model::Precision::Fp32).unwrap()
            } else {
                Backward::Autograd
            };
            (model, report.vars, opt, backward)
        };
        let (m1, v1, mut o1, mut b1) = load();
        let (m2, v2, mut o2, mut b2) = load();
        let whole = step(
            &m1,
            &mut o1,
            &mut b1,
            &full,
            &labels,
            &mut Mode::Eval,
            LR,
            0.0,
            (1, 1),
        )
        .unwrap();
        let halves = [
            (rows(0, 2), labels[..2].to_vec()),
            (rows(2, 4), labels[2..].to_vec()),
        ];
        let (acc, losses) = accumulated_step(
            &m2,
            &mut o2,
            &mut b2,
            &halves,
            2,
            &mut Mode::Eval,
            LR,
            0.0,
            (1, 1),
        )
        .unwrap();
        assert_eq!(losses.len(), 2);
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
        assert!(
            rel(acc.loss, whole.loss) < REL_TOL,
            "own {own}: loss {} vs {}",
            acc.loss,
            whole.loss
        );
        assert!(
            rel(acc.grad_norm, whole.grad_norm) < REL_TOL,
            "own {own}: norm {} vs {}",
            acc.grad_norm,
            whole.grad_norm
        );
        let mut moved = 0;
        for (name, a) in &v1 {
            let (a, b) = (
                util::values(a.as_tensor()),
                util::values(v2[name].as_tensor()),
            );
            let d = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            if name.ends_with("attention.self.key.bias") {
                assert!(f64::from(d) <= 2.0 * LR, "own {own}: {name} moved by {d}");
            } else {
                assert!(f64::from(d) < 1e-6, "own {own}: {name} differs by {d}");
                moved += 1;
            }
        }
        assert!(moved > 10, "own {own}: {moved} parameters compared");
    }
}
