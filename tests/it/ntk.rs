//! Invariants of the empirical NTK on the tiny random BERT, RoBERTa and MPNet fixtures (C = 3):
//! layer-wise F == full-Jacobian reference F (all encoder parameters, LoRA with B ≠ 0, single
//! groups), P + F == the NTK with the head, the head's part == P, F ∝ κ² for a head scaled by κ,
//! LoRA's A block vanishing at initialisation, the first-token path == the full forward, and
//! the paper code's way (full Jacobian of φ, then V0) == layer-wise F.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var};
use lpft::model::lora::LoraConfig;
use lpft::model::{Inputs, Mode, ModelFiles, ModelOptions, Pooling, SequenceClassifier, Trainable};
use lpft::ntk::kernel::{pretrain_kernel, Kernel};
use lpft::ntk::layerwise::split_batch;
use lpft::ntk::reference::{jacobian_kernel, reference_kernel};
use lpft::ntk::{Contraction, ContractionPrecision, EntkConfig, ForwardPath, ParamGroup, ParamSet};

use crate::util::{self, fixtures};

/// Layer-wise vs reference F, relative Frobenius error. Both sides use the same f32 forward;
/// the per-example factors differ only in f32 summation order (candle's weight-gradient GEMM
/// vs ours in f64), which leaves relative differences of a few 1e-8 on these kernels.
const REL_TOL: f64 = 1e-6;
/// The same for MPNet, where the two sides run different attention arithmetic: layer-wise F's
/// per-example passes run the own backward over the fused attention (relative-position bias
/// added inside the kernel), while an autograd reference whose bias table is a `Var` composes
/// attention with the bias (`Encoder::score_bias`). Their f32 round-off differs: measured
/// 1.6e-6 (full Jacobian), 1.7e-6 (LoRA, B ≠ 0), 2.4e-6 (P + F against the full NTK) and
/// 2.5e-6 (LoRA at init).
const MPNET_REL_TOL: f64 = 5e-6;

/// Layer-wise F with the f32 contraction ([`ContractionPrecision::F32`]) vs the reference: the
/// gradient slices and their Gram sums are rounded to f32 on top of the differences above;
/// measured up to 1.05e-6 (RoBERTa LoRA, B ≠ 0) and 2.8e-6 (MPNet).
const F32_REL_TOL: f64 = 3e-6;

/// [`REL_TOL`], or [`MPNET_REL_TOL`] for the MPNet fixture.
fn rel_tol(name: &str) -> f64 {
    if name == "tiny-mpnet" {
        MPNET_REL_TOL
    } else {
        REL_TOL
    }
}

/// The paper code's way (full Jacobian of φ, then V0) vs layer-wise F, relative Frobenius
/// error. Unlike the reference above, the two sides run different f32 backward passes (h
/// per-dimension ones summed with V0's weights, against C passes of v_c·φ), so their round-off
/// is independent: 3–5e-7 on these fixtures. Kept at the reference's bound.
const JACOBIAN_REL_TOL: f64 = 1e-6;

const FIXTURES: [&str; 3] = ["tiny-bert", "tiny-roberta", "tiny-mpnet"];

struct Fixture {
    model: SequenceClassifier,
    vars: BTreeMap<String, Var>,
    examples: Vec<Inputs>,
}

fn load(name: &str, trainable: Trainable, lora: Option<LoraConfig>) -> Fixture {
    load_pooled(name, trainable, lora, Pooling::First)
}

fn load_pooled(
    name: &str,
    trainable: Trainable,
    lora: Option<LoraConfig>,
    pooling: Pooling,
) -> Fixture {
    let dir = fixtures().join(name);
    let files = ModelFiles::open(&dir).expect("fixture model dir");
    let ckpt = files.checkpoint(&Device::Cpu).expect("checkpoint");
    let opts = ModelOptions {
        num_labels: 3,
        pooling,
        trainable,
        model_seed: 7,
        lora,
    };
    let (model, report) = SequenceClassifier::load(&ckpt, &files.config, &opts).expect("model");
    let (_, inputs) = util::fixture_inputs(&dir);
    Fixture {
        model,
        vars: report.vars,
        examples: split_batch(&inputs).expect("valid batch"),
    }
}

/// ‖a − b‖_F / ‖b‖_F.
fn rel(a: &Kernel, b: &Kernel) -> f64 {
    assert_eq!(a.shape(), b.shape(), "kernel shapes");
    let diff = Kernel::from_parts(
        a.data().iter().zip(b.data()).map(|(x, y)| x - y).collect(),
        a.shape(),
    )
    .unwrap();
    diff.frobenius_norm() / b.frobenius_norm()
}

fn fast(
    cfg: &EntkConfig,
    model: &SequenceClassifier,
    x1: &[Inputs],
    x2: Option<&[Inputs]>,
) -> lpft::ntk::EntkResult {
    lpft::ntk::compute(cfg, model, x1, x2, &mut |_| {}).expect("layer-wise eNTK")
}

fn assert_close(what: &str, got: &Kernel, want: &Kernel, tol: f64) -> f64 {
    let e = rel(got, want);
    println!("{what}: relative error {e:.3e}");
    assert!(
        want.frobenius_norm() > 0.0,
        "{what}: the reference is zero, so the test proves nothing"
    );
    assert!(
        e <= tol,
        "{what}: relative error {e:e}\n  got  {:?}\n  want {:?}",
        &got.data()[..9.min(got.data().len())],
        &want.data()[..9.min(want.data().len())]
    );
    e
}

/// Compares layer-wise F (frozen model, the CLI's path) with the reference (Var model) for
/// `params`, symmetric on examples 0..3 and asymmetric examples 2..4 × 0..3, under each
/// contraction.
fn check_against_reference(
    name: &str,
    set: ParamSet,
    lora: Option<LoraConfig>,
    trainable: Trainable,
) {
    let mut reference = load(name, trainable, lora.clone());
    let mut frozen = load(name, Trainable::None, lora.clone());
    if lora.is_some() {
        randomize_lora_b(&mut reference, &mut frozen);
    }
    let (x1, x2) = (&frozen.examples[..3], &frozen.examples[2..]);
    let want_sym =
        reference_kernel(&reference.model, &reference.vars, &set, false, x1, None).unwrap();
    let want_asym =
        reference_kernel(&reference.model, &reference.vars, &set, false, x2, Some(x1)).unwrap();
    for (contraction, precision) in [
        (Contraction::Auto, ContractionPrecision::F64),
        (Contraction::Materialize, ContractionPrecision::F64),
        (Contraction::Materialize, ContractionPrecision::F32),
        (Contraction::TokenPairs, ContractionPrecision::F64),
    ] {
        let cfg = EntkConfig {
            contraction,
            precision,
            ..EntkConfig::new(set.clone())
        };
        let tol = match precision {
            ContractionPrecision::F64 => rel_tol(name),
            ContractionPrecision::F32 => rel_tol(name).max(F32_REL_TOL),
        };
        let sym = fast(&cfg, &frozen.model, x1, None);
        assert_close(
            &format!("{name} {set:?} {contraction:?} {precision:?} train×train"),
            &sym.kernel,
            &want_sym,
            tol,
        );
        let asym = fast(&cfg, &frozen.model, x2, Some(x1));
        assert_close(
            &format!("{name} {set:?} {contraction:?} {precision:?} x2×x1"),
            &asym.kernel,
            &want_asym,
            tol,
        );
        // The groups add up to F.
        let sum = sym
            .groups
            .values()
            .fold(None::<Kernel>, |acc, k| {
                Some(match acc {
                    None => k.clone(),
                    Some(a) => a.add(k).unwrap(),
                })
            })
            .unwrap();
        assert!(rel(&sum, &sym.kernel) < 1e-12, "{name}: groups sum to F");
    }
}

/// Sets every LoRA B to the same random values in both models (B = 0 would make A's block
/// vanish and the test prove nothing about it).
fn randomize_lora_b(reference: &mut Fixture, frozen: &mut Fixture) {
    let mut rng = lpft::rng::Streams::new(99).get("test_lora_b");
    for layer in frozen.model.encoder.layers.iter_mut() {
        for lin in [&mut layer.attention.query, &mut layer.attention.value] {
            let adapter = lin.lora.as_mut().expect("query/value adapted");
            let dims = adapter.b.dims().to_vec();
            let v = lpft::rng::normal_vec(&mut rng, dims[0] * dims[1], 0.0, 0.5);
            adapter.b = Tensor::from_vec(v, (dims[0], dims[1]), &Device::Cpu).unwrap();
        }
    }
    for (i, layer) in frozen.model.encoder.layers.iter().enumerate() {
        for (m, lin) in [
            ("query", &layer.attention.query),
            ("value", &layer.attention.value),
        ] {
            let name = match frozen.model.encoder.relative_attention_bias {
                // MPNet spells them attention.attn.{q,v}.
                Some(_) => format!("encoder.layer.{i}.attention.attn.{}.lora_B.weight", &m[..1]),
                None => format!("encoder.layer.{i}.attention.self.{m}.lora_B.weight"),
            };
            let var = reference.vars.get(&name).expect("B is a Var");
            var.set(&lin.lora.as_ref().unwrap().b).unwrap();
        }
    }
}

#[test]
fn layerwise_ft_kernel_matches_reference() {
    for name in FIXTURES {
        check_against_reference(name, ParamSet::Ft, None, Trainable::All);
    }
}

/// F the paper code's way (docs/method.md §7.2: the full Jacobian of φ, one backward pass per feature
/// dimension, contracted with V0, then inner products) equals the layer-wise F, symmetric and
/// asymmetric, and really takes h backward passes per example.
#[test]
fn jacobian_of_features_matches_layerwise() {
    for name in FIXTURES {
        let with_vars = load(name, Trainable::All, None);
        let frozen = load(name, Trainable::None, None);
        let (x1, x2) = (&frozen.examples[..3], &frozen.examples[2..]);
        let cfg = EntkConfig::new(ParamSet::Ft);
        let mut reported = Vec::new();
        let sym = jacobian_kernel(
            &with_vars.model,
            &with_vars.vars,
            &ParamSet::Ft,
            x1,
            None,
            &mut |done, total| reported.push((done, total)),
        )
        .unwrap();
        assert_eq!(reported, vec![(1, 3), (2, 3), (3, 3)], "{name}: progress");
        let h = frozen.model.head.weight.dims2().unwrap().1;
        assert_eq!(
            sym.backward_passes_per_example, h,
            "{name}: one pass per φ dimension"
        );
        let fast_sym = fast(&cfg, &frozen.model, x1, None);
        assert_eq!(sym.parameters, fast_sym.parameters, "{name}: the same θ");
        assert_close(
            &format!("{name} full Jacobian train×train"),
            &sym.kernel,
            &fast_sym.kernel,
            JACOBIAN_REL_TOL.max(rel_tol(name)),
        );
        let asym = jacobian_kernel(
            &with_vars.model,
            &with_vars.vars,
            &ParamSet::Ft,
            x2,
            Some(x1),
            &mut |_, _| {},
        )
        .unwrap();
        assert_close(
            &format!("{name} full Jacobian x2×x1"),
            &asym.kernel,
            &fast(&cfg, &frozen.model, x2, Some(x1)).kernel,
            JACOBIAN_REL_TOL.max(rel_tol(name)),
        );
    }
}

#[test]
fn layerwise_lora_kernel_with_nonzero_b_matches_reference() {
    for name in FIXTURES {
        check_against_reference(
            name,
            ParamSet::Lora,
            Some(LoraConfig::default()),
            Trainable::Matching(vec!["lora_".into()]),
        );
    }
}

#[test]
fn layerwise_single_groups_match_reference() {
    for name in FIXTURES {
        for pats in [
            vec!["word_embeddings"],
            vec!["LayerNorm"],
            vec!["position_embeddings", "token_type_embeddings"],
            vec![".bias"],
        ] {
            let set = ParamSet::Matching(pats.iter().map(|s| s.to_string()).collect());
            check_against_reference(name, set, None, Trainable::All);
        }
    }
}

/// Proposition 4.1: the NTK of the logits w.r.t. encoder and head is P + F, and the head's own
/// part is exactly P.
#[test]
fn pretrain_plus_finetune_kernel_is_the_full_ntk() {
    // P from features of an f32 forward vs the reference's f32 head gradients (= the same
    // features): agreement to f32 round-off of the features.
    const P_TOL: f64 = 1e-6;
    for name in FIXTURES {
        let reference = load(name, Trainable::All, None);
        let frozen = load(name, Trainable::None, None);
        let xs = &frozen.examples;
        let n = xs.len();
        let h = frozen.model.encoder.config().hidden_size;
        let mut phi = Vec::with_capacity(n * h);
        for x in xs {
            let f = frozen.model.features(x, &mut Mode::Eval).unwrap();
            phi.extend(
                f.to_dtype(candle_core::DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap(),
            );
        }
        let p = pretrain_kernel(&phi, n, None, n, h, 3).unwrap();
        let head_only = ParamSet::Matching(vec!["classifier.".into()]);
        let head = reference_kernel(
            &reference.model,
            &reference.vars,
            &head_only,
            true,
            xs,
            None,
        )
        .unwrap();
        assert_close(&format!("{name} head part vs P"), &p, &head, P_TOL);
        let full = reference_kernel(
            &reference.model,
            &reference.vars,
            &ParamSet::Ft,
            true,
            xs,
            None,
        )
        .unwrap();
        let f = fast(&EntkConfig::new(ParamSet::Ft), &frozen.model, xs, None);
        assert_close(
            &format!("{name} P + F vs full NTK"),
            &p.add(&f.kernel).unwrap(),
            &full,
            rel_tol(name),
        );
    }
}

/// F = V0 Θ^φ V0ᵀ: scaling the head by κ scales F by κ².
#[test]
fn finetune_kernel_scales_with_head_norm_squared() {
    // κ = 3: the f32 backward of 3·v_c rounds differently from 3 × (backward of v_c); measured
    // 2e-7 relative on these kernels.
    const SCALE_TOL: f64 = 1e-5;
    // κ = 2 scales every f32 value of the backward by an exact power of two, so F scales
    // exactly; only the f64 contraction's own round-off remains.
    const EXACT_TOL: f64 = 1e-14;
    for name in FIXTURES {
        let mut fx = load(name, Trainable::None, None);
        let xs = fx.examples.clone();
        let cfg = EntkConfig::new(ParamSet::Ft);
        let f1 = fast(&cfg, &fx.model, &xs, None);
        let v0 = fx.model.head.weight.clone();
        for (kappa, tol) in [(3.0, SCALE_TOL), (2.0, EXACT_TOL)] {
            fx.model.head.weight = (&v0 * kappa).unwrap();
            let fk = fast(&cfg, &fx.model, &xs, None);
            assert_close(
                &format!("{name} F(κV0) vs κ²F(V0), κ = {kappa}"),
                &fk.kernel,
                &f1.kernel.scale(kappa * kappa),
                tol,
            );
        }
    }
}

/// LoRA at initialisation (B = 0): ∂s/∂A = s·(G B)ᵀX = 0, so A's block is exactly 0, while B's
/// block is not and matches the reference.
#[test]
fn lora_at_init_only_b_contributes() {
    for name in FIXTURES {
        let reference = load(
            name,
            Trainable::Matching(vec!["lora_".into()]),
            Some(LoraConfig::default()),
        );
        let frozen = load(name, Trainable::None, Some(LoraConfig::default()));
        let xs = &frozen.examples;
        let a_only = ParamSet::Matching(vec!["lora_A".into()]);
        let fa = fast(&EntkConfig::new(a_only), &frozen.model, xs, None);
        assert!(
            fa.kernel.data().iter().all(|&v| v == 0.0),
            "{name}: A block must vanish at init"
        );
        let b_only = ParamSet::Matching(vec!["lora_B".into()]);
        let fb = fast(&EntkConfig::new(b_only.clone()), &frozen.model, xs, None);
        let want =
            reference_kernel(&reference.model, &reference.vars, &b_only, false, xs, None).unwrap();
        assert_close(
            &format!("{name} LoRA B at init"),
            &fb.kernel,
            &want,
            rel_tol(name),
        );
        let all = fast(&EntkConfig::new(ParamSet::Lora), &frozen.model, xs, None);
        assert!(rel(&all.kernel, &fb.kernel) < 1e-12, "{name}: F^LoRA = F_B");
        assert_eq!(
            all.groups.keys().copied().collect::<Vec<_>>(),
            vec![ParamGroup::LoraA, ParamGroup::LoraB]
        );
    }
}

/// The first-token path (last layer on one row) and the full forward give the same F; so does
/// a memory budget that forces one pass per layer.
#[test]
fn first_token_path_and_layer_passes_give_the_same_kernel() {
    // The two forwards use GEMMs of different shapes, so φ and every factor differ in f32
    // summation order (measured 2.4e-7 relative on these kernels); layer passes redo the same
    // arithmetic and agree exactly.
    const PATH_TOL: f64 = 1e-5;
    for name in FIXTURES {
        let fx = load(name, Trainable::None, None);
        let (x1, x2) = (&fx.examples[..3], &fx.examples[1..]);
        let first = EntkConfig::new(ParamSet::Ft);
        let full = EntkConfig {
            path: ForwardPath::Full,
            ..first.clone()
        };
        let passes = EntkConfig {
            max_stored_bytes: 1,
            ..first.clone()
        };
        let a = fast(&first, &fx.model, x1, Some(x2));
        let b = fast(&full, &fx.model, x1, Some(x2));
        let c = fast(&passes, &fx.model, x1, Some(x2));
        assert_eq!(a.passes, 1);
        assert_eq!(c.passes, 3, "embeddings + 2 layers, one pass each");
        assert_close(
            &format!("{name} full vs first-token"),
            &b.kernel,
            &a.kernel,
            PATH_TOL,
        );
        assert_eq!(c.kernel, a.kernel, "{name}: 3 passes vs 1");
    }
}

/// The per-example passes on the own backward (the default where it applies) and on candle's
/// autograd over recorded probes give the same F, for FT (every encoder parameter, MPNet's bias
/// table included) and LoRA with B ≠ 0, in one pass and in per-layer passes (which stop the
/// backward early); mean pooling stays on autograd.
#[test]
fn own_backward_and_autograd_give_the_same_kernel() {
    // Both sides run the same f32 forward values; the backward's arithmetic differs (fused
    // kernels' halves against candle's composed ops), measured up to 7.7e-7 relative (BERT,
    // RoBERTa: REL_TOL) and 2.7e-6 (MPNet, whose composed attention adds the bias outside the
    // kernel: MPNET_REL_TOL).
    for name in FIXTURES {
        for (set, lora) in [
            (ParamSet::Ft, None),
            (ParamSet::Lora, Some(LoraConfig::default())),
        ] {
            let mut fx = load(name, Trainable::None, lora.clone());
            if lora.is_some() {
                // (The Var model only receives the same B; it is not used here.)
                let mut with_vars = load(name, Trainable::All, lora.clone());
                randomize_lora_b(&mut with_vars, &mut fx);
            }
            let (x1, x2) = (&fx.examples[..3], &fx.examples[1..]);
            for max_stored_bytes in [usize::MAX, 1] {
                let own = EntkConfig {
                    max_stored_bytes,
                    ..EntkConfig::new(set.clone())
                };
                let autograd = EntkConfig {
                    autograd: true,
                    ..own.clone()
                };
                let what = format!("{name} {set:?} budget {max_stored_bytes}");
                let a = fast(&own, &fx.model, x1, None);
                let b = fast(&autograd, &fx.model, x1, None);
                assert!(a.own_backward && !b.own_backward, "{what}: engines");
                assert_eq!(a.passes, b.passes);
                assert_close(&format!("{what} sym"), &a.kernel, &b.kernel, rel_tol(name));
                for (g, k) in &b.groups {
                    assert_close(&format!("{what} {g:?}"), &a.groups[g], k, rel_tol(name));
                }
                let a = fast(&own, &fx.model, x2, Some(x1));
                let b = fast(&autograd, &fx.model, x2, Some(x1));
                assert_close(
                    &format!("{what} x2×x1"),
                    &a.kernel,
                    &b.kernel,
                    rel_tol(name),
                );
            }
        }
    }
    let mean = load_pooled("tiny-bert", Trainable::None, None, Pooling::Mean);
    let f = fast(
        &EntkConfig::new(ParamSet::Ft),
        &mean.model,
        &mean.examples,
        None,
    );
    assert!(!f.own_backward, "mean pooling runs on autograd");
}

#[test]
fn batches_and_unknown_sets_are_rejected() {
    let fx = load("tiny-bert", Trainable::None, None);
    let two = Inputs {
        input_ids: [
            fx.examples[0].input_ids.clone(),
            fx.examples[0].input_ids.clone(),
        ]
        .concat(),
        token_type_ids: [
            fx.examples[0].token_type_ids.clone(),
            fx.examples[0].token_type_ids.clone(),
        ]
        .concat(),
        attention_mask: [
            fx.examples[0].attention_mask.clone(),
            fx.examples[0].attention_mask.clone(),
        ]
        .concat(),
        batch: 2,
        seq_len: fx.examples[0].seq_len,
    };
    let cfg = EntkConfig::new(ParamSet::Ft);
    assert!(lpft::ntk::compute(&cfg, &fx.model, &[two], None, &mut |_| {}).is_err());
    let none = EntkConfig::new(ParamSet::Lora);
    let err = lpft::ntk::compute(&none, &fx.model, &fx.examples, None, &mut |_| {})
        .expect_err("no LoRA factors in this model")
        .to_string();
    assert!(err.contains("params"), "{err}");
}

/// `lpft ntk` end to end on tiny runs: files, layout, symmetry, and the head V0 each method
/// starts its gradient stage from.
#[test]
fn ntk_command_writes_kernels_of_the_start_of_the_gradient_stage() {
    let dir = util::temp_dir("ntk_cli");
    let data = dir.path().join("data");
    util::synthetic_cb(&data, 40, 12);
    let runs = dir.path().join("runs");
    let model = fixtures().join("tiny-bert").display().to_string();
    let run = util::lpft_ok;
    for method in ["ft", "lp-lora"] {
        run(&[
            "train",
            "--task",
            "cb",
            "--method",
            method,
            "--model",
            &model,
            "--data-dir",
            &data.display().to_string(),
            "--out",
            &runs.display().to_string(),
            "--epochs",
            "1",
            "--seed",
            "5",
        ]);
        let run_dir = runs.join(format!("cb/{method}/seed-5"));
        let out = run(&[
            "ntk",
            "--run",
            &run_dir.display().to_string(),
            "--max-examples",
            "6",
        ]);
        assert!(
            out.contains("Pre-train E") && out.contains("FT E") && out.contains("NTK (P + F)"),
            "{out}"
        );
        let kernels = run_dir.join("kernels");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(kernels.join("ntk.json")).unwrap())
                .unwrap();
        let metrics: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run_dir.join("metrics.json")).unwrap())
                .unwrap();
        // V0: the random head for FT, the installed LP head for LP-LoRA.
        let v0 = summary["head_norm"].as_f64().unwrap();
        let want = match method {
            "ft" => metrics["initial_classifier_norm"].as_f64().unwrap(),
            _ => metrics["lp"]["head_norm"].as_f64().unwrap(),
        };
        assert!(
            (v0 - want).abs() <= 1e-6 * want,
            "{method}: ‖V0‖ {v0} vs {want}"
        );
        let params = if method == "ft" { "ft" } else { "lora" };
        assert_eq!(summary["params"], params, "{method}");
        let f = util::load_tensors(&kernels.join("F_train_train.safetensors"));
        let k = &f["kernel"];
        assert_eq!(k.dims(), &[6, 3, 6, 3]);
        assert_eq!(k.dtype(), candle_core::DType::F64);
        let flat: Vec<f64> = k.flatten_all().unwrap().to_vec1().unwrap();
        // F is a Gram matrix of gradients (symmetric by construction here, so that proves
        // nothing): its diagonal is ≥ 0 and every entry obeys Cauchy–Schwarz,
        // F[r,s]² ≤ F[r,r]·F[s,s], which a wrong contraction breaks.
        for r in 0..18 {
            assert!(flat[r * 18 + r] >= 0.0, "{method}: F diagonal {r}");
            for s in 0..18 {
                let bound = flat[r * 18 + r] * flat[s * 18 + s];
                assert!(
                    flat[r * 18 + s].powi(2) <= bound * (1.0 + GRAM_RTOL) + f64::MIN_POSITIVE,
                    "{method}: F[{r},{s}]² exceeds F[{r},{r}]·F[{s},{s}]"
                );
            }
        }
        let p = util::load_tensors(&kernels.join("P_test_train.safetensors"));
        assert_eq!(p["kernel"].dims(), &[6, 3, 6, 3]);
        assert_eq!(p["labels1"].dims(), &[6]);
        let groups = util::load_tensors(&kernels.join("F_groups_train_train.safetensors"));
        let expected: &[&str] = if method == "ft" {
            &["query", "word-embeddings", "layer-norm", "bias"]
        } else {
            &["lora-a", "lora-b"]
        };
        for g in expected {
            assert!(
                groups.contains_key(*g),
                "{method}: group {g} in {:?}",
                groups.keys()
            );
        }
    }
}

/// Recording changes no value: `Mode::Record` with every site selected gives `Eval`'s logits,
/// and records one site per linear layer, LayerNorm and the embeddings.
#[test]
fn record_mode_gives_eval_values_and_one_site_per_layer() {
    // A recorded forward runs the frozen-weight GEMM (its inputs are tracked) where `Eval` runs
    // candle's matmul: same products, possibly another summation order.
    const RECORD_ABS_TOL: f32 = 1e-5;
    for name in FIXTURES {
        let fx = load(name, Trainable::None, None);
        let keys: Vec<_> = fx
            .model
            .encoder
            .parameters()
            .iter()
            .map(|(_, t)| t.id())
            .collect();
        for x in &fx.examples {
            let eval = fx.model.forward(x, &mut Mode::Eval).unwrap();
            let rec = lpft::model::Recorder::new(keys.iter().copied());
            let recorded = fx.model.forward(x, &mut Mode::Record(&rec)).unwrap();
            let (d, _) = util::max_abs_diff(&util::values(&recorded), &util::values(&eval));
            assert!(d <= RECORD_ABS_TOL, "{name}: recorded logits differ by {d}");
            // Embeddings + their LayerNorm, then per layer Q, K, V, O, LN, FFN in, FFN out, LN;
            // MPNet's relative bias table.
            let table = usize::from(fx.model.encoder.relative_attention_bias.is_some());
            assert_eq!(rec.take_sites().len(), 2 + 8 * 2 + table, "{name}");
        }
    }
}

/// Mean pooling (φ = mean of the token states, full forward) is covered too.
#[test]
fn layerwise_kernel_with_mean_pooling_matches_reference() {
    for name in FIXTURES {
        let reference = load_pooled(name, Trainable::All, None, Pooling::Mean);
        let frozen = load_pooled(name, Trainable::None, None, Pooling::Mean);
        let xs = &frozen.examples;
        let want = reference_kernel(
            &reference.model,
            &reference.vars,
            &ParamSet::Ft,
            false,
            xs,
            None,
        )
        .unwrap();
        let got = fast(&EntkConfig::new(ParamSet::Ft), &frozen.model, xs, None);
        assert_close(&format!("{name} mean pooling"), &got.kernel, &want, REL_TOL);
    }
}

/// Rounding slack for Cauchy–Schwarz on F: entries are f64 sums of f32 products, relative error
/// well under 1e-6; a wrong contraction breaks the bound by far more.
const GRAM_RTOL: f64 = 1e-6;
