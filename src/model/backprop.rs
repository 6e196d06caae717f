//! The training path's own forward and backward, layer by layer, without candle's autograd.
//!
//! Autograd records a node per op and, in the backward, adds every gradient into a freshly
//! zeroed tensor: a memset and an add per node and per parameter (about a tenth of a MiniLM FT
//! step), and for the word embeddings a zeroed `[vocab, h]` table and a copy per step. Here the
//! forward keeps exactly the activations the backward needs, and the backward runs the fused
//! kernels' backward halves (`fused::{linear, attention, residual}`, LayerNorm, GELU) in
//! reverse, writing each gradient straight into a buffer allocated once per run:
//!
//! - a weight's dW = gᵀx is the GEMM's output (β = 0), so nothing is zeroed first; a tensor that
//!   feeds several layers (the hidden state into q, k, v) gets its gradient accumulated by the
//!   GEMM's β = 1;
//! - the word-embedding gradient touches only the rows of the batch: the rows the previous step
//!   wrote are zeroed, the batch's are added. The buffer stays dense, so AdamW's update is
//!   PyTorch's dense one (every row's moments decay every step).
//!
//! It computes what [`SequenceClassifier::forward`] and [`crate::methods::train::cross_entropy`]
//! compute in `Mode::Train` — the same ops in the same order, dropout masks drawn from the
//! same stream in the same order and shapes — and the gradient of the mean cross-entropy.
//! The composed autograd path stays the reference: `tests/it/parity.rs` ties every parameter's
//! gradient of the two, dropout on and off, FT and LoRA. It covers BERT, RoBERTa and MPNet
//! encoders (MPNet's relative-position bias table gets its gradient from the attention
//! backward's score gradients, summed over the batch and every layer, scattered to buckets)
//! with the paper's first-token head on the CPU in f32, with or without LoRA adapters on any
//! linear layer ([`Backprop::supports`]); mean pooling and other devices use autograd. With
//! only adapters and the head training (LoRA, LP-LoRA) the backward stops at the first block:
//! nothing below it needs a gradient.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;

use candle_core::{CpuStorage, Storage, Tensor, TensorId, Var};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::bert::{check_ids, relative_buckets, Layer, LayerNorm};
use crate::model::config::Activation;
use crate::model::fused::linear::{backward_into, forward as linear_forward, Dx};
use crate::model::fused::lora::low_rank_grad;
use crate::model::fused::matmul::{matmul, threads, Gemm, View};
use crate::model::fused::{attention, gelu_and_grad, layer_norm_backward, layer_norm_forward};
use crate::model::fused::{math, residual};
use crate::model::linear::Linear;
use crate::model::record::{HostLora, Recorded};
use crate::model::{Inputs, Mode, Pooling, Precision, SequenceClassifier};

/// Elements per rayon task in the element-wise passes.
const CHUNK: usize = 1 << 14;

/// A read lock on a CPU f32 tensor's values.
struct Values<'a> {
    guard: Box<dyn Deref<Target = Storage> + 'a>,
    start: usize,
    end: usize,
}

impl Values<'_> {
    fn get(&self) -> &[f32] {
        match &**self.guard {
            Storage::Cpu(CpuStorage::F32(v)) => &v[self.start..self.end],
            _ => unreachable!("checked when the lock was taken"),
        }
    }
}

fn values(t: &Tensor) -> Result<Values<'_>> {
    let (guard, layout) = t.storage_and_layout();
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(unsupported("a non-contiguous parameter"));
    };
    if !matches!(&*guard, Storage::Cpu(CpuStorage::F32(_))) {
        return Err(unsupported("a parameter that is not f32 on the CPU"));
    }
    let guard = Box::new(guard);
    Ok(Values { guard, start, end })
}

fn unsupported(what: &str) -> Error {
    Error::InvalidArgument {
        field: "backward".into(),
        reason: format!("the training path's own backward does not handle {what}"),
    }
}

/// A linear layer's weight and bias values.
struct Lin<'a> {
    w: Values<'a>,
    b: Values<'a>,
    w_id: TensorId,
    b_id: TensorId,
    i: usize,
    o: usize,
    lora: Option<Adapter<'a>>,
    /// Threads and operand precision of its GEMMs.
    gemm: Gemm,
}

/// A LoRA adapter's factors A `[r, in]`, B `[out, r]` and scale s.
struct Adapter<'a> {
    a: Values<'a>,
    b: Values<'a>,
    a_id: TensorId,
    b_id: TensorId,
    r: usize,
    scale: f32,
}

impl Adapter<'_> {
    /// s·x Aᵀ `[rows, r]`.
    fn low(&self, x: &[f32], rows: usize, i: usize, gemm: Gemm) -> Vec<f32> {
        let mut u = vec![0f32; rows * self.r];
        let at = View::rows(self.a.get(), self.r, i).t();
        matmul(&mut u, self.r, false, View::rows(x, rows, i), at, gemm);
        u.iter_mut().for_each(|v| *v *= self.scale);
        u
    }
}

impl<'a> Lin<'a> {
    fn new(l: &'a Linear, precision: Precision) -> Result<Self> {
        let bias = l
            .bias
            .as_ref()
            .ok_or_else(|| unsupported("a linear layer without bias"))?;
        let (i, o) = l.dims();
        let lora = match &l.lora {
            Some(ad) if ad.dropout > 0.0 => return Err(unsupported("LoRA dropout")),
            Some(ad) => Some(Adapter {
                a: values(&ad.a)?,
                b: values(&ad.b)?,
                a_id: ad.a.id(),
                b_id: ad.b.id(),
                r: ad.a.dims()[0],
                scale: ad.scale as f32,
            }),
            None => None,
        };
        Ok(Self {
            w: values(&l.weight)?,
            b: values(bias)?,
            w_id: l.weight.id(),
            b_id: bias.id(),
            i,
            o,
            lora,
            gemm: threads(false).at(precision),
        })
    }

    /// y = x Wᵀ + b (+ s·(x Aᵀ) Bᵀ with an adapter).
    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let dims = (rows, self.i, self.o);
        let mut y = linear_forward(x, self.w.get(), Some(self.b.get()), dims, self.gemm);
        if let Some(ad) = &self.lora {
            let low = ad.low(x, rows, self.i, self.gemm);
            let u = View::rows(&low, rows, ad.r);
            let bt = View::rows(ad.b.get(), self.o, ad.r).t();
            matmul(&mut y, self.o, true, u, bt, self.gemm);
        }
        y
    }

    /// dW and db into their buffers (where trainable), dx as `dx` says; with an adapter also
    /// dA and dB (where trainable) and the adapter's part of dx.
    fn backward(&self, x: &[f32], g: &[f32], rows: usize, dx: Option<Dx>, grads: &mut Grads) {
        if let Some(taps) = grads.taps.as_mut() {
            taps.linear(self, x, g, rows);
        }
        let (mut dw, mut db) = (grads.take(self.w_id), grads.take(self.b_id));
        let (i, o) = (self.i, self.o);
        let (mut dx, add) = match dx {
            Some(Dx::Write(d)) => (Some(d), false),
            Some(Dx::Add(d)) => (Some(d), true),
            None => (None, false),
        };
        let base_dx = dx
            .as_deref_mut()
            .map(|d| if add { Dx::Add(d) } else { Dx::Write(d) });
        let (w, dwm, dbm) = (self.w.get(), dw.as_deref_mut(), db.as_deref_mut());
        backward_into(x, w, g, (rows, i, o), base_dx, dwm, dbm, self.gemm);
        grads.put(self.w_id, dw);
        grads.put(self.b_id, db);
        let Some(ad) = &self.lora else {
            return;
        };
        // With gb = s·g B `[rows, r]`: dx += gb A, dA = gbᵀ x, dB = gᵀ (s·x Aᵀ).
        let r = ad.r;
        let gv = View::rows(g, rows, o);
        let gb = low_rank_grad(g, ad.b.get(), rows, o, r, ad.scale, self.gemm);
        let gbv = View::rows(&gb, rows, r);
        if let Some(d) = dx {
            matmul(d, i, true, gbv, View::rows(ad.a.get(), r, i), self.gemm);
        }
        if let Some(mut da) = grads.take(ad.a_id) {
            matmul(
                &mut da,
                i,
                false,
                gbv.t(),
                View::rows(x, rows, i),
                self.gemm,
            );
            grads.put(ad.a_id, Some(da));
        }
        if let Some(mut dbuf) = grads.take(ad.b_id) {
            let u = ad.low(x, rows, i, self.gemm);
            let uv = View::rows(&u, rows, r);
            matmul(&mut dbuf, r, false, gv.t(), uv, self.gemm);
            grads.put(ad.b_id, Some(dbuf));
        }
    }
}

/// A LayerNorm's γ, β values.
struct Norm<'a> {
    g: Values<'a>,
    b: Values<'a>,
    g_id: TensorId,
    b_id: TensorId,
    eps: f32,
}

impl<'a> Norm<'a> {
    fn new(n: &'a LayerNorm) -> Result<Self> {
        Ok(Self {
            g: values(&n.weight)?,
            b: values(&n.bias)?,
            g_id: n.weight.id(),
            b_id: n.bias.id(),
            eps: n.eps as f32,
        })
    }

    /// dγ and dβ buffers: the parameters' own where trainable, else scratch.
    fn grad_bufs(&self, grads: &mut Grads) -> (Vec<f32>, Vec<f32>) {
        let h = self.g.get().len();
        (
            grads.take(self.g_id).unwrap_or_else(|| vec![0.0; h]),
            grads.take(self.b_id).unwrap_or_else(|| vec![0.0; h]),
        )
    }

    fn put(&self, grads: &mut Grads, (dg, db): (Vec<f32>, Vec<f32>)) {
        grads.put(self.g_id, Some(dg));
        grads.put(self.b_id, Some(db));
    }

    /// The backward of LN(y ⊙ keep + res) from the upstream gradient `up`: writes dz (the
    /// residual's gradient; y's is dz ⊙ keep) and this LayerNorm's dγ, dβ.
    fn residual_backward(
        &self,
        y: &[f32],
        res: &[f32],
        keep: Option<&[f32]>,
        up: &[f32],
        dz: &mut [f32],
        grads: &mut Grads,
    ) {
        let (mut dg, mut db) = self.grad_bufs(grads);
        let (g, eps) = (self.g.get(), self.eps);
        residual::backward(y, res, keep, g, eps, up, dz, &mut dg, &mut db);
        if let Some(taps) = grads.taps.as_mut() {
            taps.layer_norm(self.g_id, &dg, &db);
        }
        self.put(grads, (dg, db));
    }
}

/// Every trainable parameter's gradient buffer, by tensor id, allocated once; and, for the
/// eNTK's passes, what the taps record.
struct Grads {
    bufs: HashMap<TensorId, Vec<f32>>,
    taps: Option<Taps>,
}

impl Grads {
    fn take(&mut self, id: TensorId) -> Option<Vec<f32>> {
        self.bufs.remove(&id)
    }

    /// Puts a buffer taken by [`Grads::take`] back (a frozen LayerNorm's scratch buffers stay
    /// too, for the next step; nothing reads them as gradients).
    fn put(&mut self, id: TensorId, buf: Option<Vec<f32>>) {
        if let Some(buf) = buf {
            self.bufs.insert(id, buf);
        }
    }
}

/// What one Transformer block's backward needs from its forward.
struct Tape {
    /// The block's input `[b·l, h]`.
    x: Vec<f32>,
    /// The query rows `[b·nq, h]` when they are not all of `x` (the last block: first token).
    xq: Option<Vec<f32>>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    keep_p: Option<Vec<f32>>,
    ctx: Vec<f32>,
    o: Vec<f32>,
    keep_a: Option<Vec<f32>>,
    a: Vec<f32>,
    /// gelu′ at the FFN's pre-activation (the backward's only use of it).
    slope: Vec<f32>,
    inter: Vec<f32>,
    f: Vec<f32>,
    keep_f: Option<Vec<f32>>,
    nq: usize,
}

impl Tape {
    fn xq(&self) -> &[f32] {
        self.xq.as_deref().unwrap_or(&self.x)
    }
}

/// One block's parameter values.
struct Block<'a> {
    q: Lin<'a>,
    k: Lin<'a>,
    v: Lin<'a>,
    o: Lin<'a>,
    n1: Norm<'a>,
    i: Lin<'a>,
    f: Lin<'a>,
    n2: Norm<'a>,
    heads: usize,
    scale: f32,
    attn_p: f64,
    hidden_p: f64,
    precision: Precision,
}

impl<'a> Block<'a> {
    fn new(layer: &'a Layer, precision: Precision) -> Result<Self> {
        if layer.act != Activation::Gelu {
            return Err(unsupported("an activation other than GELU"));
        }
        let at = &layer.attention;
        Ok(Self {
            q: Lin::new(&at.query, precision)?,
            k: Lin::new(&at.key, precision)?,
            v: Lin::new(&at.value, precision)?,
            o: Lin::new(&at.output, precision)?,
            n1: Norm::new(&at.layer_norm)?,
            i: Lin::new(&layer.intermediate, precision)?,
            f: Lin::new(&layer.output, precision)?,
            n2: Norm::new(&layer.layer_norm)?,
            heads: at.heads,
            scale: (1.0 / (at.head_dim as f64).sqrt()) as f32,
            attn_p: at.attn_dropout,
            hidden_p: layer.hidden_dropout,
            precision,
        })
    }

    /// The block over `x` `[b, l, h]` for the query rows `xq` (`None`: all of them): its output
    /// `[b·nq, h]` and the tape.
    fn forward(
        &self,
        x: Vec<f32>,
        xq: Option<Vec<f32>>,
        (b, l, nq): (usize, usize, usize),
        (mask, position): (&[f32], Option<&[f32]>),
        mode: &mut Mode,
    ) -> (Vec<f32>, Tape) {
        let h = self.q.o;
        let xq_ref = xq.as_deref().unwrap_or(&x);
        let q = self.q.forward(xq_ref, b * nq);
        let k = self.k.forward(&x, b * l);
        let v = self.v.forward(&x, b * l);
        let keep_p = mode.dropout_values(b * self.heads * nq * l, self.attn_p);
        let dims = [b, nq, l, h];
        let ctx = attention::forward(
            &q,
            &k,
            &v,
            mask,
            position,
            keep_p.as_deref(),
            dims,
            self.heads,
            self.scale,
            self.precision,
        );
        let o = self.o.forward(&ctx, b * nq);
        let keep_a = mode.dropout_values(b * nq * h, self.hidden_p);
        let (g1, b1) = (self.n1.g.get(), self.n1.b.get());
        let a = residual::forward(&o, xq_ref, keep_a.as_deref(), g1, b1, self.n1.eps);
        let pre = self.i.forward(&a, b * nq);
        let (inter, slope) = gelu_with_slope(&pre);
        drop(pre);
        let f = self.f.forward(&inter, b * nq);
        let keep_f = mode.dropout_values(b * nq * h, self.hidden_p);
        let (g2, b2) = (self.n2.g.get(), self.n2.b.get());
        let out = residual::forward(&f, &a, keep_f.as_deref(), g2, b2, self.n2.eps);
        let tape = Tape {
            x,
            xq,
            q,
            k,
            v,
            keep_p,
            ctx,
            o,
            keep_a,
            a,
            slope,
            inter,
            f,
            keep_f,
            nq,
        };
        (out, tape)
    }

    /// From the output's gradient `dout` `[b·nq, h]`: the parameters' gradients into `grads`,
    /// the position bias's (`[heads, nq, l]`) added to `dposition` if given, and, with
    /// `input_grad`, the gradient of the block's input `[b·l, h]` (else nothing: no parameter
    /// below needs it).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        t: &Tape,
        dout: &[f32],
        (b, l): (usize, usize),
        (mask, position): (&[f32], Option<&[f32]>),
        dposition: Option<&mut [f32]>,
        grads: &mut Grads,
        input_grad: bool,
    ) -> Option<Vec<f32>> {
        let (h, ff, nq) = (self.q.o, self.i.o, t.nq);
        let rq = b * nq;
        // out = LN2(f ⊙ keep_f + a)
        let mut da = vec![0f32; rq * h];
        let keep_f = t.keep_f.as_deref();
        self.n2
            .residual_backward(&t.f, &t.a, keep_f, dout, &mut da, grads);
        let df = times(&da, keep_f);
        // f = inter Wfᵀ + bf; inter = gelu(pre), so dpre = dinter ⊙ gelu′(pre)
        let mut dinter = vec![0f32; rq * ff];
        self.f.backward(
            &t.inter,
            df.as_deref().unwrap_or(&da),
            rq,
            Some(Dx::Write(&mut dinter)),
            grads,
        );
        dinter
            .par_chunks_mut(CHUNK)
            .zip(t.slope.par_chunks(CHUNK))
            .for_each(|(d, p)| d.iter_mut().zip(p).for_each(|(d, p)| *d *= p));
        // pre = a Wiᵀ + bi; a feeds both the FFN and the residual.
        self.i
            .backward(&t.a, &dinter, rq, Some(Dx::Add(&mut da)), grads);
        drop(dinter);
        // a = LN1(o ⊙ keep_a + xq)
        let mut dxq = vec![0f32; rq * h];
        let keep_a = t.keep_a.as_deref();
        self.n1
            .residual_backward(&t.o, t.xq(), keep_a, &da, &mut dxq, grads);
        let d_o = times(&dxq, keep_a);
        let mut dctx = vec![0f32; rq * h];
        self.o.backward(
            &t.ctx,
            d_o.as_deref().unwrap_or(&dxq),
            rq,
            Some(Dx::Write(&mut dctx)),
            grads,
        );
        let (mut dq, mut dk, mut dv) = (
            vec![0f32; rq * h],
            vec![0f32; b * l * h],
            vec![0f32; b * l * h],
        );
        attention::backward(
            [&t.q, &t.k, &t.v, &dctx],
            mask,
            position,
            t.keep_p.as_deref(),
            [b, nq, l, h],
            self.heads,
            self.scale,
            [&mut dq, &mut dk, &mut dv],
            dposition,
            self.precision,
        );
        drop(dctx);
        // q = xq Wqᵀ + bq, k and v from x: dxq += dq Wq, dx = dk Wk + dv Wv (+ dxq).
        if !input_grad {
            self.q.backward(t.xq(), &dq, rq, None, grads);
            self.k.backward(&t.x, &dk, b * l, None, grads);
            self.v.backward(&t.x, &dv, b * l, None, grads);
            return None;
        }
        self.q
            .backward(t.xq(), &dq, rq, Some(Dx::Add(&mut dxq)), grads);
        let mut dx = match &t.xq {
            None => std::mem::take(&mut dxq),
            Some(_) => vec![0f32; b * l * h],
        };
        let first = if t.xq.is_some() {
            Dx::Write(&mut dx)
        } else {
            Dx::Add(&mut dx)
        };
        self.k.backward(&t.x, &dk, b * l, Some(first), grads);
        self.v
            .backward(&t.x, &dv, b * l, Some(Dx::Add(&mut dx)), grads);
        if t.xq.is_some() {
            // The query rows are each sequence's first token.
            for (bi, row) in dxq.chunks(h).enumerate() {
                dx[bi * l * h..bi * l * h + h]
                    .iter_mut()
                    .zip(row)
                    .for_each(|(d, g)| *d += g);
            }
        }
        Some(dx)
    }
}

/// gelu(x) and gelu′(x) of every value (one erf each, see [`gelu_and_grad`]).
fn gelu_with_slope(x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut y, mut s) = (vec![0f32; x.len()], vec![0f32; x.len()]);
    y.par_chunks_mut(CHUNK)
        .zip(s.par_chunks_mut(CHUNK))
        .zip(x.par_chunks(CHUNK))
        .for_each(|((y, s), x)| {
            math::simd(
                #[inline(always)]
                || {
                    for ((y, s), x) in y.iter_mut().zip(s.iter_mut()).zip(x) {
                        (*y, *s) = gelu_and_grad(*x);
                    }
                },
            )
        });
    (y, s)
}

/// `x ⊙ keep`, or `None` without a mask (then `x` itself is meant).
fn times(x: &[f32], keep: Option<&[f32]>) -> Option<Vec<f32>> {
    let keep = keep?;
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(keep.par_chunks(CHUNK)))
        .for_each(|(y, (x, k))| {
            y.iter_mut()
                .zip(x.iter().zip(k))
                .for_each(|(y, (x, k))| *y = x * k)
        });
    Some(y)
}

/// The training path's own forward and backward over one model (see the module docs): the
/// gradient buffers, allocated once, and the word-embedding rows the last step wrote.
pub struct Backprop {
    grads: Grads,
    /// Word-embedding rows the last step wrote (sorted, distinct).
    touched: Vec<u32>,
    word_id: TensorId,
    /// Whether any embedding parameter trains (else the backward stops at the first block).
    embeddings_trainable: bool,
    /// The GEMMs' operand precision (fp32 unless [`Backprop::with_precision`]).
    precision: Precision,
}

impl Backprop {
    /// Whether the own backward handles `model`: BERT/RoBERTa/MPNet with GELU, every linear layer
    /// with a bias (LoRA adapters allowed), the first-token head, f32 on the CPU, and at least
    /// one layer. Otherwise training uses autograd.
    pub fn supports(model: &SequenceClassifier) -> bool {
        Self::check(model).is_ok()
    }

    fn check(model: &SequenceClassifier) -> Result<()> {
        if model.pooling != Pooling::First {
            return Err(unsupported("mean pooling"));
        }
        if model.encoder.layers.is_empty() {
            return Err(unsupported("an encoder without layers"));
        }
        let e = &model.encoder.embeddings;
        for t in [&e.word_embeddings, &e.position_embeddings]
            .into_iter()
            .chain(&e.token_type_embeddings)
            .chain(&model.encoder.relative_attention_bias)
        {
            values(t)?;
        }
        Norm::new(&e.layer_norm)?;
        for layer in &model.encoder.layers {
            Block::new(layer, Precision::Fp32)?;
        }
        values(&model.head.weight)?;
        values(&model.head.bias)?;
        Ok(())
    }

    /// Buffers for the gradients of `vars` (the model's trainable parameters).
    pub fn new(model: &SequenceClassifier, vars: &[&Var]) -> Result<Self> {
        Self::check(model)?;
        let bufs: HashMap<TensorId, Vec<f32>> = vars
            .iter()
            .map(|v| (v.as_tensor().id(), vec![0f32; v.elem_count()]))
            .collect();
        let e = &model.encoder.embeddings;
        let embeddings_trainable = [
            &e.word_embeddings,
            &e.position_embeddings,
            &e.layer_norm.weight,
            &e.layer_norm.bias,
        ]
        .into_iter()
        .chain(&e.token_type_embeddings)
        .any(|t| bufs.contains_key(&t.id()));
        Ok(Self {
            grads: Grads { bufs, taps: None },
            touched: Vec::new(),
            word_id: e.word_embeddings.id(),
            embeddings_trainable,
            precision: Precision::Fp32,
        })
    }

    /// The same, with every GEMM of the forward and backward at `precision` (mixed precision:
    /// see [`Precision`]; parameters, gradients, LayerNorm, softmax and the loss stay f32).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// The gradient of `var` from the last [`Backprop::loss_and_grads`].
    pub fn grad(&self, var: &Var) -> Option<&[f32]> {
        self.grads
            .bufs
            .get(&var.as_tensor().id())
            .map(|v| v.as_slice())
    }

    /// ‖g‖₂ over the gradients of `vars` (summed in f64).
    pub fn grad_norm(&self, vars: &[&Var]) -> f64 {
        // Per-chunk partial sums in a fixed order: the same value for any thread count.
        vars.iter()
            .filter_map(|v| self.grad(v))
            .map(|g| {
                let parts: Vec<f64> = g
                    .par_chunks(CHUNK)
                    .map(|c| c.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>())
                    .collect();
                parts.iter().sum::<f64>()
            })
            .sum::<f64>()
            .sqrt()
    }

    /// The forward in `mode` (dropout masks from its stream), the batch's mean cross-entropy
    /// against `labels`, and every trainable parameter's gradient of it (read with
    /// [`Backprop::grad`]). A loss that is not finite is returned without gradients.
    pub fn loss_and_grads(
        &mut self,
        model: &SequenceClassifier,
        inputs: &Inputs,
        labels: &[usize],
        mode: &mut Mode,
    ) -> Result<f64> {
        let (b, c) = (inputs.batch, model.head.num_labels());
        if labels.len() != b {
            return Err(Error::Shape {
                what: "labels",
                expected: format!("{b} labels"),
                found: labels.len().to_string(),
            });
        }
        if let Some(&bad) = labels.iter().find(|&&y| y >= c) {
            return Err(Error::Shape {
                what: "labels",
                expected: format!("labels < {c}"),
                found: bad.to_string(),
            });
        }
        let mut loss = f64::NAN;
        self.run(model, inputs, mode, |logits| {
            let mut dlogits = vec![0f32; b * c];
            let mut sum = 0.0f64;
            for ((z, d), &y) in logits.chunks(c).zip(dlogits.chunks_mut(c)).zip(labels) {
                let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let lse = m + z.iter().map(|&v| (v - m).exp()).sum::<f32>().ln();
                sum += f64::from(lse - z[y]);
                for (j, (d, &v)) in d.iter_mut().zip(z).enumerate() {
                    let p = (v - lse).exp();
                    *d = (p - if j == y { 1.0 } else { 0.0 }) / b as f32;
                }
            }
            loss = sum / b as f64;
            loss.is_finite().then_some(dlogits)
        })?;
        Ok(loss)
    }

    /// The forward in `mode` and every trainable parameter's gradient of Σ weights ⊙ logits,
    /// `weights` `[b, C]` (one logit's gradient: a one-hot `weights`); returns the logits
    /// `[b, C]`. What the eNTK's and `lpft bench`'s per-logit gradients need.
    pub fn logit_grads(
        &mut self,
        model: &SequenceClassifier,
        inputs: &Inputs,
        weights: &[f32],
        mode: &mut Mode,
    ) -> Result<Vec<f32>> {
        let n = inputs.batch * model.head.num_labels();
        if weights.len() != n {
            return Err(Error::Shape {
                what: "logit weights",
                expected: format!("{n} values"),
                found: weights.len().to_string(),
            });
        }
        self.run(model, inputs, mode, |_| Some(weights.to_vec()))
    }

    /// The forward, then `head` turns the logits into their gradient (`None`: stop there), then
    /// the backward. Returns the logits.
    fn run(
        &mut self,
        model: &SequenceClassifier,
        inputs: &Inputs,
        mode: &mut Mode,
        head: impl FnOnce(&[f32]) -> Option<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        let fwd = forward(model, inputs, mode, self.precision)?;
        let Some(dlogits) = head(&fwd.logits) else {
            return Ok(fwd.logits);
        };
        // LoRA: nothing below the first block trains.
        let floor = (!self.embeddings_trainable).then_some(0);
        self.backward(model, inputs, &fwd, &dlogits, floor);
        Ok(fwd.logits)
    }

    /// The backward of `fwd` from the logits' gradient `dlogits` `[b, C]`: every trainable
    /// parameter's gradient into its buffer, and what the taps select. With `floor = Some(k)`
    /// it stops at block k (nothing below it needs a gradient); with `None` it runs down to the
    /// embedding tables.
    fn backward(
        &mut self,
        model: &SequenceClassifier,
        inputs: &Inputs,
        fwd: &Forward,
        dlogits: &[f32],
        floor: Option<usize>,
    ) {
        let (b, l, h, c, heads) = (fwd.b, fwd.l, fwd.h, fwd.c, fwd.heads);
        let emb = &model.encoder.embeddings;
        let table = model.encoder.relative_attention_bias.as_ref();
        let grads = &mut self.grads;
        let (hw_id, hb_id) = (model.head.weight.id(), model.head.bias.id());
        let (mut dvw, mut dvb) = (grads.take(hw_id), grads.take(hb_id));
        let mut dphi = vec![0f32; b * h];
        backward_into(
            &fwd.phi,
            fwd.vw.get(),
            dlogits,
            (b, h, c),
            Some(Dx::Write(&mut dphi)),
            dvw.as_deref_mut(),
            dvb.as_deref_mut(),
            threads(false).at(fwd.precision),
        );
        grads.put(hw_id, dvw);
        grads.put(hb_id, dvb);
        let mut dx = times(&dphi, fwd.keep_h.as_deref()).unwrap_or(dphi);
        // The bias table's gradient, if it trains or the eNTK's taps are on: score gradients
        // of every layer's full rows and of the last layer's first row, then scattered to
        // buckets. (With taps it is formed even when not selected, so that every eNTK pass
        // runs the same attention backward and layer passes agree bit for bit.)
        let mut dtable = table.and_then(|t| {
            let tapped = grads.taps.is_some();
            grads
                .take(t.id())
                .or_else(|| tapped.then(|| vec![0f32; t.elem_count()]))
        });
        let (mut dfull, mut dfirst) = match dtable {
            Some(_) => (vec![0f32; heads * l * l], vec![0f32; heads * l]),
            None => (Vec::new(), Vec::new()),
        };
        let last = fwd.blocks.len() - 1;
        let mut below = true;
        for (i, (block, tape)) in fwd.blocks.iter().zip(&fwd.tapes).enumerate().rev() {
            let input_grad = floor.is_none_or(|f| i > f);
            let bias = (&fwd.mask[..], fwd.position_of(i == last));
            let dpos = match (&dtable, i == last) {
                (None, _) => None,
                (Some(_), true) => Some(&mut dfirst[..]),
                (Some(_), false) => Some(&mut dfull[..]),
            };
            match block.backward(tape, &dx, (b, l), bias, dpos, grads, input_grad) {
                Some(d) => dx = d,
                None => {
                    below = false;
                    break;
                }
            }
        }
        if let (Some(dt), Some(table)) = (dtable.as_mut(), table) {
            dt.fill(0.0);
            for hd in 0..heads {
                let full = &dfull[hd * l * l..(hd + 1) * l * l];
                for (&k, g) in fwd.buckets.iter().zip(full) {
                    dt[k as usize * heads + hd] += g;
                }
                // The first row's buckets are those of row 0 of the full matrix.
                for (&k, g) in fwd.buckets[..l].iter().zip(&dfirst[hd * l..(hd + 1) * l]) {
                    dt[k as usize * heads + hd] += g;
                }
            }
            if let Some(taps) = grads.taps.as_mut() {
                taps.dense(table.id(), dt, |grads| Recorded::RelativeBias {
                    key: table.id(),
                    grads,
                });
            }
            grads.put(table.id(), dtable);
        }
        if !below {
            return;
        }

        // Embeddings: dropout, LayerNorm, then the three tables' rows.
        let de = times(&dx, fwd.keep_e.as_deref()).unwrap_or(dx);
        let mut dx0 = vec![0f32; b * l * h];
        let n0 = &fwd.n0;
        let mut g0 = n0.grad_bufs(grads);
        layer_norm_backward(
            &fwd.x0,
            n0.g.get(),
            &de,
            n0.eps,
            &mut dx0,
            &mut g0.0,
            &mut g0.1,
        );
        if let Some(taps) = grads.taps.as_mut() {
            taps.layer_norm(n0.g_id, &g0.0, &g0.1);
        }
        n0.put(grads, g0);
        if let Some(taps) = grads.taps.as_mut() {
            let key = self.word_id;
            taps.dense(key, &dx0, |grads| Recorded::Embeddings {
                key,
                input_ids: inputs.input_ids.clone(),
                position_ids: fwd.positions.clone(),
                token_type_ids: inputs.token_type_ids.clone(),
                grads,
            });
        }
        if let Some(mut dw) = grads.take(self.word_id) {
            for &r in &self.touched {
                dw[r as usize * h..][..h].fill(0.0);
            }
            self.touched.clear();
            for (r, g) in dx0.chunks(h).enumerate() {
                let id = inputs.input_ids[r];
                self.touched.push(id);
                add_row(&mut dw, id as usize, h, g);
            }
            self.touched.sort_unstable();
            self.touched.dedup();
            grads.put(self.word_id, Some(dw));
        }
        let tables = [
            Some((&emb.position_embeddings, &fwd.positions)),
            emb.token_type_embeddings
                .as_ref()
                .map(|t| (t, &inputs.token_type_ids)),
        ];
        for (t, ids) in tables.into_iter().flatten() {
            if let Some(mut dt) = grads.take(t.id()) {
                dt.fill(0.0);
                for (r, g) in dx0.chunks(h).enumerate() {
                    add_row(&mut dt, ids[r] as usize, h, g);
                }
                grads.put(t.id(), Some(dt));
            }
        }
    }
}

/// What the backward needs from one forward pass: the model's values (read locks) and the
/// activations the forward kept.
struct Forward<'m> {
    b: usize,
    l: usize,
    h: usize,
    c: usize,
    heads: usize,
    n0: Norm<'m>,
    blocks: Vec<Block<'m>>,
    vw: Values<'m>,
    tapes: Vec<Tape>,
    /// The summed embeddings before their LayerNorm `[b·l, h]`.
    x0: Vec<f32>,
    keep_e: Option<Vec<f32>>,
    keep_h: Option<Vec<f32>>,
    /// The head's input (dropout applied) `[b, h]`.
    phi: Vec<f32>,
    /// The additive attention mask `[b·l]`.
    mask: Vec<f32>,
    /// MPNet's relative-position bias `[heads, l, l]` and its first row `[heads, 1, l]`.
    position: Option<(Vec<f32>, Vec<f32>)>,
    buckets: Vec<u32>,
    /// Position ids `[b·l]`.
    positions: Vec<u32>,
    logits: Vec<f32>,
    precision: Precision,
}

impl Forward<'_> {
    /// The position bias of every block (`last`: the last block's first row).
    fn position_of(&self, last: bool) -> Option<&[f32]> {
        self.position
            .as_ref()
            .map(|(full, first)| if last { &first[..] } else { &full[..] })
    }
}

/// The forward in `mode` (dropout masks from its stream) with its GEMMs at `precision`,
/// keeping what the backward needs.
fn forward<'m>(
    model: &'m SequenceClassifier,
    inputs: &Inputs,
    mode: &mut Mode,
    precision: Precision,
) -> Result<Forward<'m>> {
    inputs.check()?;
    let (b, l) = (inputs.batch, inputs.seq_len);
    let enc = &model.encoder;
    let emb = &enc.embeddings;
    let word = values(&emb.word_embeddings)?;
    let pos = values(&emb.position_embeddings)?;
    let types = emb.token_type_embeddings.as_ref().map(values).transpose()?;
    let table_vals = enc
        .relative_attention_bias
        .as_ref()
        .map(values)
        .transpose()?;
    let n0 = Norm::new(&emb.layer_norm)?;
    let blocks = enc
        .layers
        .iter()
        .map(|layer| Block::new(layer, precision))
        .collect::<Result<Vec<_>>>()?;
    let (vw, vb) = (values(&model.head.weight)?, values(&model.head.bias)?);
    let h = n0.g.get().len();
    let c = model.head.num_labels();
    let positions = emb.position_ids(inputs);
    check_ids("input_ids", &inputs.input_ids, word.get().len() / h)?;
    check_ids(
        "position ids (sequence too long)",
        &positions,
        pos.get().len() / h,
    )?;
    if let Some(types) = &types {
        let n = types.get().len() / h;
        check_ids("token_type_ids", &inputs.token_type_ids, n)?;
    }

    // Embeddings: (word + position) + token type, LayerNorm, dropout.
    let mut x0 = vec![0f32; b * l * h];
    for (r, row) in x0.chunks_mut(h).enumerate() {
        let (w, p) = (inputs.input_ids[r] as usize, positions[r] as usize);
        let (w, p) = (&word.get()[w * h..][..h], &pos.get()[p * h..][..h]);
        match &types {
            Some(types) => {
                let t = inputs.token_type_ids[r] as usize;
                let t = &types.get()[t * h..][..h];
                for (((o, w), p), t) in row.iter_mut().zip(w).zip(p).zip(t) {
                    *o = (w + p) + t;
                }
            }
            None => row
                .iter_mut()
                .zip(w)
                .zip(p)
                .for_each(|((o, w), p)| *o = w + p),
        }
    }
    let e = layer_norm_forward(&x0, n0.g.get(), n0.b.get(), n0.eps);
    let keep_e = mode.dropout_values(b * l * h, emb.dropout);
    let mut x = times(&e, keep_e.as_deref()).unwrap_or(e);
    let mask: Vec<f32> = inputs
        .attention_mask
        .iter()
        .map(|&m| if m == 0 { f32::MIN } else { 0.0 })
        .collect();

    // MPNet's relative-position bias [heads, l, l] (every layer's), and its first row
    // [heads, 1, l] (the last layer's).
    let heads = blocks[0].heads;
    let buckets = relative_buckets(l);
    let position = table_vals.as_ref().map(|t| {
        let t = t.get();
        let mut full = vec![0f32; heads * l * l];
        for (hd, rows) in full.chunks_mut(l * l).enumerate() {
            for (v, &k) in rows.iter_mut().zip(&buckets) {
                *v = t[k as usize * heads + hd];
            }
        }
        let first: Vec<f32> = full.chunks(l * l).flat_map(|r| r[..l].to_vec()).collect();
        (full, first)
    });
    let mut fwd = Forward {
        b,
        l,
        h,
        c,
        heads,
        n0,
        blocks: Vec::new(),
        vw,
        tapes: Vec::with_capacity(blocks.len()),
        x0,
        keep_e,
        keep_h: None,
        phi: Vec::new(),
        mask,
        position,
        buckets,
        positions,
        logits: Vec::new(),
        precision,
    };

    // Blocks; the last one for the first token only (as `Encoder::forward_first`).
    let last = blocks.len() - 1;
    for (i, block) in blocks.iter().enumerate() {
        let (xq, nq) = if i == last {
            let first: Vec<f32> = x.chunks(l * h).flat_map(|s| s[..h].to_vec()).collect();
            (Some(first), 1)
        } else {
            (None, l)
        };
        let bias = (&fwd.mask[..], fwd.position_of(i == last));
        let (out, tape) = block.forward(x, xq, (b, l, nq), bias, mode);
        fwd.tapes.push(tape);
        x = out;
    }
    fwd.blocks = blocks;

    // Head: logits = V · dropout(φ) + b.
    fwd.keep_h = mode.dropout_values(b * h, model.head.dropout);
    fwd.phi = times(&x, fwd.keep_h.as_deref()).unwrap_or(x);
    let head = threads(false).at(precision);
    fwd.logits = linear_forward(&fwd.phi, fwd.vw.get(), Some(vb.get()), (b, h, c), head);
    Ok(fwd)
}

/// The eNTK's per-example passes on the own backward (docs/method.md §13): one forward of
/// `inputs` in evaluation mode, then one backward per logit c of s_c = v_c·φ, recording the
/// sites keyed by `keys` (a linear layer's weight, a LayerNorm's γ, the word-embedding table,
/// MPNet's bias table) as [`Recorded`] sites: what [`Recorder`](crate::model::Recorder) and
/// C autograd passes give, without building an autograd graph. No parameter gradient is
/// formed; the backward stops at the lowest block a selected site needs.
///
/// # Errors
/// [`Error::InvalidArgument`] when [`Backprop::supports`] is false for `model`; shape errors
/// for bad inputs.
pub(crate) fn record_logit_grads(
    model: &SequenceClassifier,
    inputs: &Inputs,
    keys: &HashSet<TensorId>,
) -> Result<Vec<Recorded>> {
    let mut bp = Backprop::new(model, &[])?;
    let enc = &model.encoder;
    let emb = &enc.embeddings;
    let floor =
        if keys.contains(&emb.word_embeddings.id()) || keys.contains(&emb.layer_norm.weight.id()) {
            None
        } else if enc
            .relative_attention_bias
            .as_ref()
            .is_some_and(|t| keys.contains(&t.id()))
        {
            Some(0)
        } else {
            // The lowest block with a selected site (none: the head alone, stop at the top).
            let lowest = enc.layers.iter().position(|layer| {
                let at = &layer.attention;
                [
                    &at.query.weight,
                    &at.key.weight,
                    &at.value.weight,
                    &at.output.weight,
                    &at.layer_norm.weight,
                    &layer.intermediate.weight,
                    &layer.output.weight,
                    &layer.layer_norm.weight,
                ]
                .iter()
                .any(|t| keys.contains(&t.id()))
            });
            Some(lowest.unwrap_or(enc.layers.len() - 1))
        };
    let fwd = forward(model, inputs, &mut Mode::Eval, Precision::Fp32)?;
    let c = fwd.c;
    bp.grads.taps = Some(Taps {
        keys: keys.clone(),
        order: Vec::new(),
        sites: HashMap::new(),
    });
    for logit in 0..c {
        let mut dlogits = vec![0f32; fwd.b * c];
        for row in dlogits.chunks_mut(c) {
            row[logit] = 1.0;
        }
        bp.backward(model, inputs, &fwd, &dlogits, floor);
    }
    let mut taps = bp.grads.taps.take().expect("set above");
    // Forward order (the backward taps in reverse).
    Ok(taps
        .order
        .iter()
        .rev()
        .filter_map(|k| taps.sites.remove(k))
        .collect())
}

/// What [`record_logit_grads`] collects on each backward pass: the selected sites' inputs
/// (once) and output gradients (one per pass, i.e. per logit).
struct Taps {
    keys: HashSet<TensorId>,
    /// Keys in the order the backward first reached them.
    order: Vec<TensorId>,
    sites: HashMap<TensorId, Recorded>,
}

impl Taps {
    fn wants(&self, key: TensorId) -> bool {
        self.keys.contains(&key)
    }

    /// Appends this pass's gradient `g` of the site `key`, creating the site with `make` on
    /// the first pass.
    fn dense(&mut self, key: TensorId, g: &[f32], make: impl FnOnce(Vec<Vec<f32>>) -> Recorded) {
        if !self.wants(key) {
            return;
        }
        let site = self.sites.entry(key).or_insert_with(|| {
            self.order.push(key);
            make(Vec::new())
        });
        match site {
            Recorded::Embeddings { grads, .. }
            | Recorded::LayerNorm { grads, .. }
            | Recorded::RelativeBias { grads, .. }
            | Recorded::Linear { grads, .. } => grads.push(g.to_vec()),
        }
    }

    /// A linear layer's input `x` `[rows, i]` and output gradient `g`.
    fn linear(&mut self, lin: &Lin, x: &[f32], g: &[f32], rows: usize) {
        let key = lin.w_id;
        self.dense(key, g, |grads| Recorded::Linear {
            key,
            x: x.to_vec(),
            rows,
            d_in: lin.i,
            grads,
            lora: lin.lora.as_ref().map(|ad| HostLora {
                a: ad.a.get().to_vec(),
                b: ad.b.get().to_vec(),
                r: ad.r,
                scale: f64::from(ad.scale),
            }),
        });
    }

    /// A LayerNorm's dγ and dβ.
    fn layer_norm(&mut self, key: TensorId, dg: &[f32], db: &[f32]) {
        if self.wants(key) {
            let both = [dg, db].concat();
            self.dense(key, &both, |grads| Recorded::LayerNorm { key, grads });
        }
    }
}

fn add_row(table: &mut [f32], row: usize, h: usize, g: &[f32]) {
    table[row * h..][..h]
        .iter_mut()
        .zip(g)
        .for_each(|(d, g)| *d += g);
}
