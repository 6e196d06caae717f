//! Parity with Hugging Face transformers on tiny random-weight checkpoints
//! (`scripts/fixtures/gen_encoders.py`), and the real MiniLM against stored features.

use std::path::Path;

use candle_core::{Device, Tensor};
use lpft::data::batch::{Padding, TextTokenizer, TokenizeConfig};
use lpft::model::{
    Checkpoint, Inputs, Mode, ModelFiles, ModelOptions, Pooling, SequenceClassifier, Trainable,
};

use crate::util::{self, fixtures};

/// Hidden states and logits: f32 forward against a float64 reference; two layers of width 32
/// accumulate round-off of a few 1e-7.
const FORWARD_ABS_TOL: f32 = 1e-5;
/// Per-tensor relative L2 error of gradients (the bound).
const GRAD_REL_TOL: f64 = 1e-4;
/// The key bias's gradient is exactly 0 in exact arithmetic; ours is f32 round-off.
const KEY_BIAS_ABS_TOL: f32 = 1e-5;
/// Real-model first-token features (MiniLM 6 × 384, MPNet 12 × 768; f32 on both sides,
/// different summation orders in GEMM): measured differences are 1.4e-6 (MiniLM) and 7.5e-7
/// (MPNet); 1e-4 leaves room for other CPUs' kernels.
const REAL_ABS_TOL: f32 = 1e-4;

struct Fixture {
    model: SequenceClassifier,
    report: lpft::model::LoadReport,
    inputs: Inputs,
    expected: std::collections::HashMap<String, Tensor>,
    prefix: String,
}

fn load_fixture(name: &str, trainable: Trainable) -> Fixture {
    let dir = fixtures().join(name);
    let files = ModelFiles::open(&dir).expect("fixture model dir");
    let ckpt = files.checkpoint(&Device::Cpu).expect("checkpoint");
    let opts = ModelOptions {
        num_labels: 3,
        pooling: Pooling::First,
        trainable,
        model_seed: 0,
        lora: None,
    };
    let (model, report) = SequenceClassifier::load(&ckpt, &files.config, &opts).expect("model");
    let (expected, inputs) = util::fixture_inputs(&dir);
    Fixture {
        model,
        report,
        inputs,
        expected,
        prefix: files.config.arch().prefix().to_string(),
    }
}

/// The attention key bias (BERT/RoBERTa, MPNet), whose true gradient is 0.
fn is_key_bias(name: &str) -> bool {
    name.ends_with("attention.self.key.bias") || name.ends_with("attention.attn.k.bias")
}

fn check_forward(name: &str) {
    let f = load_fixture(name, Trainable::None);
    let hidden = f.model.encoder.forward(&f.inputs, &mut Mode::Eval).unwrap();
    let (d, i) = util::max_abs_diff(
        &util::values(&hidden),
        &util::values(&f.expected["last_hidden_state"]),
    );
    assert!(
        d <= FORWARD_ABS_TOL,
        "{name}: last_hidden_state differs by {d} at flat index {i}"
    );
    let logits = f.model.forward(&f.inputs, &mut Mode::Eval).unwrap();
    let ours = util::values(&logits);
    let theirs = util::values(&f.expected["logits"]);
    let (d, i) = util::max_abs_diff(&ours, &theirs);
    assert!(
        d <= FORWARD_ABS_TOL,
        "{name}: logits differ by {d} at {i}: ours {ours:?} vs {theirs:?}"
    );
    assert!(
        f.report.created.is_empty(),
        "head must come from the checkpoint"
    );
    assert!(
        f.report.unexpected.iter().any(|n| n.contains("pooler")),
        "the pooler is reported as unused: {:?}",
        f.report.unexpected
    );
}

fn check_gradients(name: &str) {
    let f = load_fixture(name, Trainable::All);
    let logits = f.model.forward(&f.inputs, &mut Mode::Eval).unwrap();
    let s = logits.narrow(1, 1, 1).unwrap().sum_all().unwrap();
    let grads = s.backward().unwrap();
    let mut checked = 0;
    for (pname, var) in &f.report.vars {
        let full = if pname.starts_with("classifier.") {
            pname.clone()
        } else {
            format!("{}.{pname}", f.prefix)
        };
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient reached {full}"));
        let ours = util::values(g);
        let theirs = util::values(
            f.expected
                .get(&format!("grad.{full}"))
                .unwrap_or_else(|| panic!("{name}: fixture has no grad.{full}")),
        );
        if is_key_bias(pname) {
            // The key bias shifts every score of a query row by the same amount, which softmax
            // ignores: its true gradient is 0 (the reference holds ~1e-16 round-off).
            let norm = ours.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(
                norm <= KEY_BIAS_ABS_TOL,
                "{name}: grad of {full} should vanish, norm {norm}"
            );
            checked += 1;
            continue;
        }
        assert!(
            ours.iter().any(|&x| x != 0.0),
            "{name}: gradient of {full} is all zero"
        );
        let err = util::rel_err(&ours, &theirs);
        assert!(
            err <= GRAD_REL_TOL,
            "{name}: grad of {full}: relative error {err:e}"
        );
        checked += 1;
    }
    let expected_count = f.expected.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(
        checked, expected_count,
        "{name}: every reference gradient is checked"
    );
}

fn check_tokenizer(name: &str) {
    let dir = fixtures().join(name);
    let files = ModelFiles::open(&dir).unwrap();
    let tok = TextTokenizer::load(
        &files.tokenizer,
        files.config.pad_token_id,
        TokenizeConfig {
            max_len: 128,
            padding: Padding::Dynamic,
        },
    )
    .unwrap();
    let texts: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("inputs.json")).unwrap()).unwrap();
    let pairs: Vec<(String, Option<String>)> = texts
        .iter()
        .map(|v| {
            (
                v["a"].as_str().unwrap().to_string(),
                v["b"].as_str().map(str::to_string),
            )
        })
        .collect();
    let refs: Vec<(&str, Option<&str>)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_deref()))
        .collect();
    let enc = tok.encode(&refs).unwrap();
    let inputs = tok.batch(&enc.iter().collect::<Vec<_>>());
    let expected = util::load_tensors(&dir.join("expected.safetensors"));
    assert_eq!(
        inputs.input_ids,
        util::ids(&expected["input_ids"]),
        "{name}: input_ids"
    );
    assert_eq!(
        inputs.token_type_ids,
        util::ids(&expected["token_type_ids"]),
        "{name}: token_type_ids"
    );
    assert_eq!(
        inputs.attention_mask,
        util::ids(&expected["attention_mask"]),
        "{name}: attention_mask"
    );
}

#[test]
fn bert_forward_matches_transformers() {
    check_forward("tiny-bert");
}

#[test]
fn roberta_forward_matches_transformers() {
    check_forward("tiny-roberta");
}

#[test]
fn bert_gradients_match_transformers() {
    check_gradients("tiny-bert");
}

#[test]
fn roberta_gradients_match_transformers() {
    check_gradients("tiny-roberta");
}

#[test]
fn bert_tokenizer_matches_transformers() {
    check_tokenizer("tiny-bert");
}

#[test]
fn roberta_tokenizer_matches_transformers() {
    check_tokenizer("tiny-roberta");
}

#[test]
fn mpnet_forward_matches_transformers() {
    check_forward("tiny-mpnet");
}

#[test]
fn mpnet_gradients_match_transformers() {
    check_gradients("tiny-mpnet");
}

#[test]
fn mpnet_tokenizer_matches_transformers() {
    check_tokenizer("tiny-mpnet");
}

/// MPNet's relative-position buckets against transformers' `relative_position_bucket` over
/// relative positions −300..300 (the exact, logarithmic and clipped ranges, both directions).
#[test]
fn mpnet_relative_buckets_match_transformers() {
    let expected = util::load_tensors(&fixtures().join("tiny-mpnet/expected.safetensors"));
    let rel = expected["relative_positions"].to_vec1::<i64>().unwrap();
    let want = expected["relative_buckets"].to_vec1::<i64>().unwrap();
    assert_eq!(rel.len(), 601);
    for (r, w) in rel.iter().zip(&want) {
        let got = lpft::model::config::relative_bucket(*r) as i64;
        assert_eq!(got, *w, "relative position {r}");
    }
}

#[test]
fn pickle_checkpoint_without_prefix_loads_the_same_encoder() {
    let dir = fixtures().join("tiny-bert-noprefix-bin");
    let files = ModelFiles::open(&dir).unwrap();
    assert!(files.weights.ends_with("pytorch_model.bin"));
    let ckpt = files.checkpoint(&Device::Cpu).unwrap();
    assert_eq!(ckpt.prefix, None);
    let opts = ModelOptions {
        num_labels: 3,
        pooling: Pooling::First,
        trainable: Trainable::None,
        model_seed: 0,
        lora: None,
    };
    let (model, report) = SequenceClassifier::load(&ckpt, &files.config, &opts).unwrap();
    assert_eq!(
        report.created,
        vec![
            "classifier.bias".to_string(),
            "classifier.weight".to_string()
        ]
    );
    let reference = load_fixture("tiny-bert", Trainable::None);
    let ours = model
        .encoder
        .forward(&reference.inputs, &mut Mode::Eval)
        .unwrap();
    let (d, _) = util::max_abs_diff(
        &util::values(&ours),
        &util::values(&reference.expected["last_hidden_state"]),
    );
    assert!(d <= FORWARD_ABS_TOL, "pickle checkpoint differs by {d}");
}

#[test]
fn missing_tensor_is_an_error_naming_it() {
    let dir = fixtures().join("tiny-bert");
    let files = ModelFiles::open(&dir).unwrap();
    let mut raw: Vec<(String, Tensor)> =
        candle_core::safetensors::load(&files.weights, &Device::Cpu)
            .unwrap()
            .into_iter()
            .collect();
    raw.retain(|(k, _)| k != "bert.encoder.layer.1.attention.self.key.bias");
    let ckpt = Checkpoint::from_tensors(
        Path::new("x.safetensors"),
        raw,
        files.config.arch(),
        &Device::Cpu,
    )
    .unwrap();
    let opts = ModelOptions {
        num_labels: 3,
        pooling: Pooling::First,
        trainable: Trainable::None,
        model_seed: 0,
        lora: None,
    };
    let err = SequenceClassifier::load(&ckpt, &files.config, &opts)
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("bert.encoder.layer.1.attention.self.key.bias"),
        "{err}"
    );
}

#[test]
fn dropout_is_seeded_and_only_in_train_mode() {
    let f = load_fixture("tiny-roberta", Trainable::None);
    let eval1 = util::values(&f.model.forward(&f.inputs, &mut Mode::Eval).unwrap());
    let eval2 = util::values(&f.model.forward(&f.inputs, &mut Mode::Eval).unwrap());
    assert_eq!(eval1, eval2);
    let run = |seed| {
        let mut rng = lpft::rng::Streams::new(seed).get("dropout");
        util::values(
            &f.model
                .forward(&f.inputs, &mut Mode::Train { rng: &mut rng })
                .unwrap(),
        )
    };
    assert_eq!(run(1), run(1), "same seed, same dropout");
    assert_ne!(run(1), run(2), "different seeds, different dropout");
    assert_ne!(run(1), eval1, "dropout changes the output in train mode");
}

#[test]
fn fresh_head_is_seeded_normal_with_zero_bias() {
    let dir = fixtures().join("tiny-bert-noprefix-bin");
    let files = ModelFiles::open(&dir).unwrap();
    let ckpt = files.checkpoint(&Device::Cpu).unwrap();
    let head = |seed| {
        let opts = ModelOptions {
            num_labels: 3,
            pooling: Pooling::First,
            trainable: Trainable::Head,
            model_seed: seed,
            lora: None,
        };
        let (m, r) = SequenceClassifier::load(&ckpt, &files.config, &opts).unwrap();
        assert_eq!(r.vars.len(), 2, "only the head is trainable");
        (util::values(&m.head.weight), util::values(&m.head.bias))
    };
    let (w1, b1) = head(1001);
    let (w1b, _) = head(1001);
    let (w2, _) = head(2002);
    assert_eq!(w1, w1b);
    assert_ne!(w1, w2);
    assert!(b1.iter().all(|&b| b == 0.0));
    // 96 draws of N(0, 0.02²): the sample std lies within 0.02 ± 25% with overwhelming probability.
    let std = (w1.iter().map(|x| x * x).sum::<f32>() / w1.len() as f32).sqrt();
    assert!((0.015..0.025).contains(&std), "head std {std}");
}

/// The real default model against features stored by the generator from transformers.
#[test]
#[ignore = "needs LPFT_MODEL_DIR (the fetched MiniLM); scripts/test.sh sets it"]
fn minilm_features_match_transformers() {
    let dir = std::env::var("LPFT_MODEL_DIR").expect("LPFT_MODEL_DIR");
    check_real_features(Path::new(&dir), "minilm");
}

/// The paper-scale encoder (all-mpnet-base-v2, 12 × 768) against features stored by the
/// generator from transformers' `MPNetModel`.
#[test]
#[ignore = "needs LPFT_MPNET_DIR (`lpft fetch-model mpnet`); .ci/run sets it"]
fn mpnet_features_match_transformers() {
    let dir = std::env::var("LPFT_MPNET_DIR").expect("LPFT_MPNET_DIR");
    check_real_features(Path::new(&dir), "mpnet");
}

/// First-token features of the real model in `dir` on the sentences of the fixture `name`,
/// tokenised by lpft, against transformers' (f32 on both sides).
fn check_real_features(dir: &Path, name: &str) {
    let files = ModelFiles::open(dir).unwrap();
    let ckpt = files.checkpoint(&Device::Cpu).unwrap();
    let opts = ModelOptions {
        num_labels: 3,
        pooling: Pooling::First,
        trainable: Trainable::None,
        model_seed: 0,
        lora: None,
    };
    let (model, report) = SequenceClassifier::load(&ckpt, &files.config, &opts).unwrap();
    assert!(
        report.unexpected.iter().any(|n| n.contains("position_ids")),
        "{:?}",
        report.unexpected
    );
    let fx = fixtures().join(name);
    let expected = util::load_tensors(&fx.join("expected.safetensors"));
    let sentences: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(fx.join("sentences.json")).unwrap()).unwrap();
    let pairs: Vec<(String, Option<String>)> = sentences
        .iter()
        .map(|v| match v {
            serde_json::Value::String(s) => (s.clone(), None),
            v => (
                v["a"].as_str().unwrap().to_string(),
                v["b"].as_str().map(str::to_string),
            ),
        })
        .collect();
    let refs: Vec<(&str, Option<&str>)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_deref()))
        .collect();
    let tok = TextTokenizer::load(
        &files.tokenizer,
        files.config.pad_token_id,
        TokenizeConfig::default(),
    )
    .unwrap();
    let enc = tok.encode(&refs).unwrap();
    let inputs = tok.batch(&enc.iter().collect::<Vec<_>>());
    assert_eq!(
        inputs.input_ids,
        util::ids(&expected["input_ids"]),
        "{name}: token ids"
    );
    assert_eq!(
        inputs.attention_mask,
        util::ids(&expected["attention_mask"]),
        "{name}: attention mask"
    );
    // MPNet has no token types (its fixture stores none).
    if let Some(types) = expected.get("token_type_ids") {
        assert_eq!(
            inputs.token_type_ids,
            util::ids(types),
            "{name}: token types"
        );
    }
    let feats = model.features(&inputs, &mut Mode::Eval).unwrap();
    let (d, i) = util::max_abs_diff(&util::values(&feats), &util::values(&expected["features"]));
    println!("{name}: features differ by at most {d:e}");
    assert!(
        d <= REAL_ABS_TOL,
        "{name}: features differ by {d} at flat index {i}"
    );
}

#[test]
fn first_token_path_equals_the_full_forward() {
    for name in ["tiny-bert", "tiny-roberta", "tiny-mpnet"] {
        let f = load_fixture(name, Trainable::None);
        let full = f.model.encoder.forward(&f.inputs, &mut Mode::Eval).unwrap();
        let first = f
            .model
            .encoder
            .forward_first(&f.inputs, &mut Mode::Eval)
            .unwrap();
        let full_first = full.narrow(1, 0, 1).unwrap().squeeze(1).unwrap();
        let (d, _) = util::max_abs_diff(&util::values(&first), &util::values(&full_first));
        // Same arithmetic on fewer rows: GEMM blocking changes the f32 summation order
        // (measured 1.1e-6 on hidden states of magnitude ~1-10).
        assert!(
            d <= FORWARD_ABS_TOL,
            "{name}: first-token path differs by {d}"
        );
    }
}

/// The whole model in training mode, dropout on: the fused f32 kernels against the same model in
/// f64, where every op is candle's composed one (the fused kernels run only on f32), with the
/// same dropout masks (one seeded stream, drawn in the same order on both sides). Every
/// parameter's gradient agrees, for FT and for LoRA (with B moved off 0 so that A's gradient
/// is not 0 on both sides).
#[test]
fn fused_model_matches_composed_model_with_dropout() {
    use candle_core::DType;
    use lpft::model::lora::LoraConfig;
    use lpft::rng::Streams;

    let dir = fixtures().join("tiny-bert");
    let files = ModelFiles::open(&dir).unwrap();
    let (_, inputs) = util::fixture_inputs(&dir);
    for lora in [false, true] {
        let opts = ModelOptions {
            num_labels: 3,
            pooling: Pooling::First,
            trainable: if lora {
                Trainable::Matching(vec!["lora_".into(), "classifier.".into()])
            } else {
                Trainable::All
            },
            model_seed: 4,
            lora: lora.then(LoraConfig::default),
        };
        let load = |dtype: DType| {
            let ckpt = files
                .checkpoint(&Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            SequenceClassifier::load(&ckpt, &files.config, &opts).unwrap()
        };
        let (m32, r32) = load(DType::F32);
        let (m64, r64) = load(DType::F64);
        if lora {
            move_lora_b_off_zero(&r32, &r64);
        }
        let grads = |model: &SequenceClassifier, dtype: DType| {
            let mut rng = Streams::new(31).get("dropout");
            let logits = model
                .forward(&inputs, &mut Mode::Train { rng: &mut rng })
                .unwrap();
            let w = util::randn(logits.dims(), 7, 1.0).to_dtype(dtype).unwrap();
            (
                logits
                    .mul(&w)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap(),
                logits,
            )
        };
        let (g32, z32) = grads(&m32, DType::F32);
        let (g64, z64) = grads(&m64, DType::F64);
        let case = if lora { "LoRA" } else { "FT" };
        let (d, _) = util::max_abs_diff(&util::values(&z32), &util::values(&z64));
        assert!(d <= FORWARD_ABS_TOL, "{case}: logits differ by {d}");
        assert_eq!(r32.vars.len(), r64.vars.len());
        let mut checked = 0;
        for (name, v) in &r32.vars {
            let a = util::values(g32.get(v.as_tensor()).unwrap());
            let b = util::values(g64.get(r64.vars[name].as_tensor()).unwrap());
            if is_key_bias(name) {
                // Exactly 0 in exact arithmetic (softmax ignores a per-row shift).
                continue;
            }
            let rel = util::rel_err(&a, &b);
            assert!(
                rel <= GRAD_REL_TOL,
                "{case}: gradient of {name}: relative error {rel}"
            );
            assert!(
                b.iter().any(|x| *x != 0.0),
                "{case}: gradient of {name} is 0"
            );
            checked += 1;
        }
        assert!(
            checked > if lora { 8 } else { 30 },
            "{case}: {checked} gradients"
        );
    }
}

/// The parameter list the export, the eNTK catalogue and `inspect` share comes from the names the
/// layers loaded by: module order, every checkpoint tensor the encoder uses once, LoRA factors
/// right after their layer's weight and bias.
#[test]
fn encoder_parameters_follow_module_order() {
    use lpft::model::lora::LoraConfig;
    let dir = fixtures().join("tiny-bert");
    let files = ModelFiles::open(&dir).unwrap();
    let mut opts = ModelOptions::frozen(3, Pooling::First);
    opts.lora = Some(LoraConfig::default());
    let (model, _) = SequenceClassifier::build(&files, &opts, &Device::Cpu).unwrap();
    let names: Vec<String> = model
        .encoder
        .parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let layer = |i: usize| -> Vec<String> {
        let p = format!("encoder.layer.{i}");
        let mut v = Vec::new();
        for (m, lora) in [
            ("attention.self.query", true),
            ("attention.self.key", false),
            ("attention.self.value", true),
            ("attention.output.dense", false),
        ] {
            v.push(format!("{p}.{m}.weight"));
            v.push(format!("{p}.{m}.bias"));
            if lora {
                v.push(format!("{p}.{m}.lora_A.weight"));
                v.push(format!("{p}.{m}.lora_B.weight"));
            }
        }
        for m in [
            "attention.output.LayerNorm",
            "intermediate.dense",
            "output.dense",
            "output.LayerNorm",
        ] {
            v.push(format!("{p}.{m}.weight"));
            v.push(format!("{p}.{m}.bias"));
        }
        v
    };
    let mut want: Vec<String> = [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    want.extend(layer(0));
    want.extend(layer(1));
    assert_eq!(names, want);
    // The listed tensors are the layers' own (same ids, so the eNTK's recorder finds them).
    let q = &model.encoder.layers[1].attention.query.weight;
    let listed = model
        .encoder
        .parameters()
        .into_iter()
        .find(|(n, _)| n == "encoder.layer.1.attention.self.query.weight")
        .unwrap()
        .1;
    assert_eq!(listed.id(), q.id());
}

/// Loss and every parameter's gradient of lpft's own backward (f32, fused kernels, no autograd)
/// against candle's autograd over the same model in f64, where every op is the composed one,
/// with the same labels and the same dropout stream. `tag` names the case.
fn check_own_backward(tag: &str, files: &ModelFiles, inputs: &Inputs, dropout: bool, lora: bool) {
    use candle_core::DType;
    use lpft::methods::train::cross_entropy;
    use lpft::model::backprop::Backprop;
    use lpft::model::lora::LoraConfig;
    use lpft::rng::Streams;

    let opts = ModelOptions {
        num_labels: 3,
        pooling: Pooling::First,
        trainable: if lora {
            Trainable::Matching(vec!["lora_".into(), "classifier.".into()])
        } else {
            Trainable::All
        },
        model_seed: 4,
        lora: lora.then(|| LoraConfig {
            // Every kind of layer the own backward handles: attention and both FFN layers.
            targets: vec![
                "query".into(),
                "value".into(),
                "intermediate.dense".into(),
                "output.dense".into(),
            ],
            ..LoraConfig::default()
        }),
    };
    let ckpt = files.checkpoint(&Device::Cpu).unwrap();
    let (m32, r32) = SequenceClassifier::load(&ckpt, &files.config, &opts).unwrap();
    let ckpt64 = files
        .checkpoint(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let (m64, r64) = SequenceClassifier::load(&ckpt64, &files.config, &opts).unwrap();
    move_lora_b_off_zero(&r32, &r64);
    let labels: Vec<usize> = (0..inputs.batch).map(|i| (i * 7 + 1) % 3).collect();
    let mut rng = Streams::new(31).get("dropout");
    let mut mode = if dropout {
        Mode::Train { rng: &mut rng }
    } else {
        Mode::Eval
    };
    let logits = m64.forward(inputs, &mut mode).unwrap();
    let loss64 = cross_entropy(&logits, &labels).unwrap();
    let want_loss = loss64.to_scalar::<f64>().unwrap();
    let g64 = loss64.backward().unwrap();

    assert!(Backprop::supports(&m32), "{tag}: the own backward applies");
    let vars: Vec<_> = r32.vars.values().collect();
    let mut own = Backprop::new(&m32, &vars).unwrap();
    let mut rng = Streams::new(31).get("dropout");
    let mut mode = if dropout {
        Mode::Train { rng: &mut rng }
    } else {
        Mode::Eval
    };
    // Twice: the second step must not see the first one's word-embedding rows.
    for _ in 0..2 {
        let loss = own
            .loss_and_grads(&m32, inputs, &labels, &mut mode)
            .unwrap();
        if !dropout {
            assert!(
                (loss - want_loss).abs() <= FORWARD_ABS_TOL as f64,
                "{tag}: loss {loss} vs {want_loss}"
            );
        }
    }
    // The second step drew new masks; rerun the first one's on a fresh stream for gradients.
    let mut rng = Streams::new(31).get("dropout");
    let mut mode = if dropout {
        Mode::Train { rng: &mut rng }
    } else {
        Mode::Eval
    };
    let loss = own
        .loss_and_grads(&m32, inputs, &labels, &mut mode)
        .unwrap();
    assert!(
        (loss - want_loss).abs() <= FORWARD_ABS_TOL as f64,
        "{tag}: loss {loss} vs {want_loss}"
    );
    let mut checked = 0;
    for (name, v) in &r32.vars {
        let a = own
            .grad(v)
            .unwrap_or_else(|| panic!("{tag}: no gradient for {name}"));
        let b = util::values(g64.get(r64.vars[name].as_tensor()).unwrap());
        if is_key_bias(name) {
            // Exactly 0 in exact arithmetic (softmax ignores a per-row shift).
            let norm = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(norm <= KEY_BIAS_ABS_TOL, "{tag}: {name} norm {norm}");
            continue;
        }
        assert!(
            b.iter().any(|x| *x != 0.0),
            "{tag}: gradient of {name} is 0"
        );
        let rel = util::rel_err(a, &b);
        assert!(
            rel <= GRAD_REL_TOL,
            "{tag}: gradient of {name}: relative error {rel}"
        );
        checked += 1;
    }
    // LoRA: A and B of 4 layers in each of 2 blocks, and the head's 2.
    let want = if lora { 4 * 2 * 2 + 2 } else { 30 };
    assert!(checked >= want, "{tag}: {checked} gradients");
}

/// The own backward on the BERT and RoBERTa fixtures (RoBERTa's padding-aware positions), with
/// dropout off and on, FT and LoRA.
#[test]
fn own_backward_matches_autograd_on_the_fixtures() {
    for name in ["tiny-bert", "tiny-roberta", "tiny-mpnet"] {
        let dir = fixtures().join(name);
        let files = ModelFiles::open(&dir).unwrap();
        let (_, inputs) = util::fixture_inputs(&dir);
        for (dropout, lora) in [(false, false), (true, false), (false, true), (true, true)] {
            let tag = format!("{name}, dropout {dropout}, LoRA {lora}");
            check_own_backward(&tag, &files, &inputs, dropout, lora);
        }
    }
}

/// The own backward on a random BERT wide and long enough that every kernel splits its rows over
/// several tasks (6 × 40 = 240 rows > 64 per task), with padding, two token types and a repeated
/// token (its word-embedding row gets several rows' gradients).
#[test]
fn own_backward_matches_autograd_over_many_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("tiny-bert");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let (h, ff, layers, vocab, max_pos) = (64usize, 160usize, 2usize, 300usize, 64usize);
    cfg["hidden_size"] = h.into();
    cfg["intermediate_size"] = ff.into();
    cfg["num_hidden_layers"] = layers.into();
    cfg["vocab_size"] = vocab.into();
    cfg["max_position_embeddings"] = max_pos.into();
    std::fs::write(tmp.path().join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(
        src.join("tokenizer.json"),
        tmp.path().join("tokenizer.json"),
    )
    .unwrap();
    let mut tensors = Vec::new();
    let mut seed = 0;
    let mut add = |name: &str, dims: &[usize], std: f32, mean: f32| {
        seed += 1;
        let t = (util::randn(dims, seed, std) + mean as f64).unwrap();
        tensors.push((format!("bert.{name}"), t));
    };
    add("embeddings.word_embeddings.weight", &[vocab, h], 0.5, 0.0);
    add(
        "embeddings.position_embeddings.weight",
        &[max_pos, h],
        0.5,
        0.0,
    );
    add("embeddings.token_type_embeddings.weight", &[2, h], 0.5, 0.0);
    add("embeddings.LayerNorm.weight", &[h], 0.1, 1.0);
    add("embeddings.LayerNorm.bias", &[h], 0.1, 0.0);
    for i in 0..layers {
        let p = format!("encoder.layer.{i}");
        for m in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            add(&format!("{p}.{m}.weight"), &[h, h], 0.15, 0.0);
            add(&format!("{p}.{m}.bias"), &[h], 0.1, 0.0);
        }
        add(
            &format!("{p}.intermediate.dense.weight"),
            &[ff, h],
            0.15,
            0.0,
        );
        add(&format!("{p}.intermediate.dense.bias"), &[ff], 0.1, 0.0);
        add(&format!("{p}.output.dense.weight"), &[h, ff], 0.1, 0.0);
        add(&format!("{p}.output.dense.bias"), &[h], 0.1, 0.0);
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            add(&format!("{p}.{n}.weight"), &[h], 0.1, 1.0);
            add(&format!("{p}.{n}.bias"), &[h], 0.1, 0.0);
        }
    }
    let weights = tmp.path().join("model.safetensors");
    let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
    candle_core::safetensors::save(&map, &weights).unwrap();
    let files = ModelFiles::open(tmp.path()).unwrap();
    let (b, l) = (6, 40);
    let mut inputs = Inputs {
        input_ids: Vec::new(),
        token_type_ids: Vec::new(),
        attention_mask: Vec::new(),
        batch: b,
        seq_len: l,
    };
    for r in 0..b {
        let len = l - 5 * r;
        for j in 0..l {
            let real = j < len;
            inputs.input_ids.push(if !real {
                0
            } else if j % 9 == 4 {
                7
            } else {
                ((r * 31 + j * 17) % (vocab - 1) + 1) as u32
            });
            inputs.token_type_ids.push(u32::from(real && j >= len / 2));
            inputs.attention_mask.push(u32::from(real));
        }
    }
    for (dropout, lora) in [(false, false), (true, false), (true, true)] {
        let tag = format!("random BERT, dropout {dropout}, LoRA {lora}");
        check_own_backward(&tag, &files, &inputs, dropout, lora);
    }
}

/// One logit's gradient through lpft's own backward (`Backprop::logit_grads`, eval mode)
/// against transformers' on the BERT and RoBERTa fixtures: every parameter.
#[test]
fn own_backward_logit_gradients_match_transformers() {
    use lpft::model::backprop::Backprop;
    for name in ["tiny-bert", "tiny-roberta", "tiny-mpnet"] {
        let f = load_fixture(name, Trainable::All);
        let vars: Vec<_> = f.report.vars.values().collect();
        let mut own = Backprop::new(&f.model, &vars).unwrap();
        let c = f.model.head.num_labels();
        let weights: Vec<f32> = (0..f.inputs.batch * c)
            .map(|i| if i % c == 1 { 1.0 } else { 0.0 })
            .collect();
        let logits = own
            .logit_grads(&f.model, &f.inputs, &weights, &mut Mode::Eval)
            .unwrap();
        let (d, _) = util::max_abs_diff(&logits, &util::values(&f.expected["logits"]));
        assert!(d <= FORWARD_ABS_TOL, "{name}: logits differ by {d}");
        let mut checked = 0;
        for (pname, var) in &f.report.vars {
            let full = if pname.starts_with("classifier.") {
                pname.clone()
            } else {
                format!("{}.{pname}", f.prefix)
            };
            let ours = own.grad(var).unwrap();
            let theirs = util::values(&f.expected[&format!("grad.{full}")]);
            if is_key_bias(pname) {
                let norm = ours.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!(norm <= KEY_BIAS_ABS_TOL, "{name}: {full} norm {norm}");
                continue;
            }
            let err = util::rel_err(ours, &theirs);
            assert!(
                err <= GRAD_REL_TOL,
                "{name}: grad of {full}: relative error {err:e}"
            );
            checked += 1;
        }
        assert!(checked > 30, "{name}: {checked} gradients");
    }
}

/// Sets every LoRA B of an f32 model and its f64 twin to the same random values: at B = 0 A's
/// gradient is 0 on both sides and a comparison of it would prove nothing.
fn move_lora_b_off_zero(r32: &lpft::model::LoadReport, r64: &lpft::model::LoadReport) {
    use candle_core::DType;
    let bs = r32.vars.iter().filter(|(n, _)| n.contains("lora_B"));
    for (i, (name, v)) in bs.enumerate() {
        let b = util::randn(v.as_tensor().dims(), 100 + i as u64, 0.5);
        v.set(&b).unwrap();
        r64.vars[name]
            .set(&b.to_dtype(DType::F64).unwrap())
            .unwrap();
    }
}

/// bf16 mixed precision on the own backward (`--precision bf16`): against the same backward in
/// f32, the loss and every parameter's gradient agree to bf16's accuracy, and they do differ
/// (the GEMMs really ran on rounded operands), FT and LoRA, dropout off and on, on the three
/// fixtures. That each GEMM multiplies exactly the rounded operands is the unit test
/// `bf16_gemm_multiplies_the_rounded_operands`.
#[test]
fn bf16_backward_stays_within_bf16_accuracy_of_f32() {
    use lpft::model::backprop::Backprop;
    use lpft::model::lora::LoraConfig;
    use lpft::model::Precision;
    use lpft::rng::Streams;

    /// bf16 keeps 8 significant bits, so every GEMM operand moves by up to 2⁻⁹ relative, and
    /// through two blocks and back the gradients move by percents. PyTorch's
    /// `torch.autocast("cpu", dtype=torch.bfloat16)` on the tiny-bert fixture moves them by up to
    /// 6.3% (median 4.1%; measured with transformers 4.46.3); here the largest was 10% (tiny-mpnet
    /// with LoRA, its B drawn at std 0.5), the median per case 1.5–4.9%.
    const BF16_GRAD_REL_TOL: f64 = 0.15;
    /// The mean cross-entropy moved by at most 1.2% relative (PyTorch's autocast: 0.6%).
    const BF16_LOSS_REL_TOL: f64 = 3e-2;
    /// Below this every gradient would equal f32's to round-off: bf16 would not be engaged.
    const ENGAGED_REL: f64 = 1e-4;

    let mut worst = 0f64;
    for name in ["tiny-bert", "tiny-roberta", "tiny-mpnet"] {
        let dir = fixtures().join(name);
        let files = ModelFiles::open(&dir).unwrap();
        let (_, inputs) = util::fixture_inputs(&dir);
        let ckpt = files.checkpoint(&Device::Cpu).unwrap();
        for (dropout, lora) in [(false, false), (true, false), (false, true), (true, true)] {
            let tag = format!("{name}, dropout {dropout}, LoRA {lora}");
            let opts = ModelOptions {
                num_labels: 3,
                pooling: Pooling::First,
                trainable: if lora {
                    Trainable::Matching(vec!["lora_".into(), "classifier.".into()])
                } else {
                    Trainable::All
                },
                model_seed: 4,
                lora: lora.then(LoraConfig::default),
            };
            let (model, report) = SequenceClassifier::load(&ckpt, &files.config, &opts).unwrap();
            let bs = report.vars.iter().filter(|(n, _)| n.contains("lora_B"));
            for (i, (_, v)) in bs.enumerate() {
                v.set(&util::randn(v.as_tensor().dims(), 100 + i as u64, 0.5))
                    .unwrap();
            }
            let vars: Vec<_> = report.vars.values().collect();
            let labels: Vec<usize> = (0..inputs.batch).map(|i| (i * 7 + 1) % 3).collect();
            let run = |precision| {
                let mut own = Backprop::new(&model, &vars)
                    .unwrap()
                    .with_precision(precision);
                let mut rng = Streams::new(31).get("dropout");
                let mut mode = if dropout {
                    Mode::Train { rng: &mut rng }
                } else {
                    Mode::Eval
                };
                let loss = own
                    .loss_and_grads(&model, &inputs, &labels, &mut mode)
                    .unwrap();
                (loss, own)
            };
            let (l32, g32) = run(Precision::Fp32);
            let (l16, g16) = run(Precision::Bf16);
            let loss_rel = (l32 - l16).abs() / l32.abs();
            assert!(loss_rel <= BF16_LOSS_REL_TOL, "{tag}: loss {l16} vs {l32}");
            let mut engaged = 0f64;
            for (name, v) in &report.vars {
                let (a, b) = (g16.grad(v).unwrap(), g32.grad(v).unwrap());
                if is_key_bias(name) {
                    continue;
                }
                let rel = util::rel_err(a, b);
                assert!(
                    rel <= BF16_GRAD_REL_TOL,
                    "{tag}: gradient of {name}: bf16 vs f32 relative {rel}"
                );
                engaged = engaged.max(rel);
                worst = worst.max(rel);
            }
            assert!(engaged > ENGAGED_REL, "{tag}: bf16 equals f32 ({engaged})");
        }
    }
    eprintln!("bf16 vs f32: largest gradient relative difference {worst:.2e}");
}
