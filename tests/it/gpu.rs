//! CPU against CUDA, for `scripts/gpu-check.sh` on a machine with a GPU: the same checkpoint
//! loaded on both devices gives the same logits and every parameter's gradient of the mean
//! cross-entropy (the CPU on its fused kernels and own backward, CUDA on candle's composed ops
//! and autograd), and the composed AdamW step moves the parameters the same way. Compiled only
//! with `--features cuda` (CI type-checks it) and ignored unless asked for: `cargo test
//! --release --features cuda --test it gpu:: -- --ignored`. `LPFT_GPU_MODEL_DIR` adds a real
//! model (MiniLM) to the tiny fixtures.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var};
use lpft::methods::train::cross_entropy;
use lpft::model::backprop::Backprop;
use lpft::model::{Inputs, Mode, ModelFiles, ModelOptions, Pooling, SequenceClassifier, Trainable};
use lpft::optim::{AdamW, AdamWConfig};

use crate::util::{self, fixtures};

/// Logits: f32 on both devices with different kernels (cuBLAS against the `gemm` crate, fused
/// against composed attention); on the CPU the two engines agree to a few 1e-6, so 1e-4
/// absolute leaves room for cuBLAS's TF32-free f32 paths and reduction orders.
const LOGITS_ABS_TOL: f32 = 1e-4;
/// Gradients, relative Frobenius error per parameter (the same round-off through the backward).
const GRAD_REL_TOL: f64 = 1e-3;
/// The first AdamW update, relative per parameter: ≈ lr·g/|g|, so elements whose gradient is
/// round-off-sized may flip sign; a wrong formula or device path is off by O(1).
const ADAMW_REL_TOL: f64 = 5e-2;

fn models() -> Vec<(String, ModelFiles, Inputs)> {
    let mut out = Vec::new();
    for name in ["tiny-bert", "tiny-roberta", "tiny-mpnet"] {
        let dir = fixtures().join(name);
        let (_, inputs) = util::fixture_inputs(&dir);
        out.push((name.to_string(), ModelFiles::open(&dir).unwrap(), inputs));
    }
    match std::env::var_os("LPFT_GPU_MODEL_DIR") {
        Some(dir) => {
            let files = ModelFiles::open(std::path::Path::new(&dir)).unwrap();
            // The tiny fixtures' batch, re-tokenised is not needed: ids below every vocabulary.
            let (_, inputs) = util::fixture_inputs(&fixtures().join("tiny-bert"));
            out.push(("real model".into(), files, inputs));
        }
        None => eprintln!("skipped: the real model (set LPFT_GPU_MODEL_DIR to a MiniLM directory)"),
    }
    out
}

fn load(files: &ModelFiles, device: &Device) -> (SequenceClassifier, BTreeMap<String, Var>) {
    let opts = ModelOptions {
        num_labels: 3,
        pooling: Pooling::First,
        trainable: Trainable::All,
        model_seed: 5,
        lora: None,
    };
    let ckpt = files.checkpoint(device).unwrap();
    let (model, report) = SequenceClassifier::load(&ckpt, &files.config, &opts).unwrap();
    (model, report.vars)
}

fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_device(&Device::Cpu)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh"]
fn cuda_logits_gradients_and_adamw_match_the_cpu() {
    let gpu = Device::new_cuda(0).expect("a CUDA device");
    for (name, files, inputs) in models() {
        let labels: Vec<usize> = (0..inputs.batch).map(|i| (i * 5 + 2) % 3).collect();
        let (cpu_model, cpu_vars) = load(&files, &Device::Cpu);
        let (gpu_model, gpu_vars) = load(&files, &gpu);
        let want = host(&cpu_model.forward(&inputs, &mut Mode::Eval).unwrap());
        let got = host(&gpu_model.forward(&inputs, &mut Mode::Eval).unwrap());
        let (diff, at) = util::max_abs_diff(&got, &want);
        println!("{name}: logits max |Δ| {diff:.2e}");
        assert!(
            diff <= LOGITS_ABS_TOL,
            "{name}: logits differ by {diff} at {at}"
        );

        // CPU: the own backward; CUDA: autograd over the composed forward.
        let vars: Vec<&Var> = cpu_vars.values().collect();
        let mut own = Backprop::new(&cpu_model, &vars).unwrap();
        own.loss_and_grads(&cpu_model, &inputs, &labels, &mut Mode::Eval)
            .unwrap();
        let logits = gpu_model.forward(&inputs, &mut Mode::Eval).unwrap();
        let grads = cross_entropy(&logits, &labels).unwrap().backward().unwrap();
        let mut worst = 0f64;
        for (param, var) in &gpu_vars {
            let g = host(
                grads
                    .get(var.as_tensor())
                    .expect("every parameter has a gradient"),
            );
            let w = own.grad(&cpu_vars[param]).expect("own gradient");
            let e = util::rel_err(&g, w);
            worst = worst.max(e);
            assert!(e <= GRAD_REL_TOL, "{name}: {param}: relative error {e:e}");
        }
        println!("{name}: every gradient within {worst:.2e} relative");

        // One AdamW step each (in place on the CPU, composed on the GPU): the first step is
        // about lr·sign(g), so compare the updates Δθ per parameter, relative. Attention key
        // biases are left out: their true gradient is 0 and its round-off has no sign to agree on.
        let before: BTreeMap<String, Vec<f32>> = cpu_vars
            .iter()
            .map(|(k, v)| (k.clone(), host(v.as_tensor())))
            .collect();
        let mut cpu_opt = AdamW::new(&cpu_vars, AdamWConfig::default());
        let mut gpu_opt = AdamW::new(&gpu_vars, AdamWConfig::default());
        cpu_opt.step_with(|v| own.grad(v), 1e-3, 1.0).unwrap();
        gpu_opt.step(&grads, 1e-3, 1.0).unwrap();
        for (param, var) in &gpu_vars {
            if param.contains("key.bias") || param.contains("attn.k.bias") {
                continue;
            }
            let delta = |v: &Var| -> Vec<f32> {
                host(v.as_tensor())
                    .iter()
                    .zip(&before[param])
                    .map(|(a, b)| a - b)
                    .collect()
            };
            let e = util::rel_err(&delta(var), &delta(&cpu_vars[param]));
            assert!(
                e <= ADAMW_REL_TOL,
                "{name}: {param}: AdamW update differs by {e:e}"
            );
        }
    }
}
