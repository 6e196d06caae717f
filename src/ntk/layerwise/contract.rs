//! Contraction of per-example blocks into kernel entries: materialised weight gradients or token
//! pairs for dense layers, sparse sums for embeddings, Gram matrices in f64.

use super::*;

/// A kernel to fill: rows from set `.0`, columns from set `.1` (`None`: `.0` itself, symmetric).
pub(super) type Job = (usize, Option<usize>);

/// Bytes of a materialised weight-gradient slice kept at once per set: 128 MiB.
pub(super) const MATERIALIZE_BYTES: usize = 128 << 20;

/// Columns per block of the blocked Gram product: 4096 measured fastest for 192 rows on 2
/// AVX-512 cores (a 192 × 590k Gram in 0.27 s symmetric, 0.39 s full).
pub(super) const GRAM_BLOCK: usize = 4096;
/// Parameters whose products an f32 contraction sums in f32 before adding in f64.
pub const GRAM_F32_SPAN: usize = GRAM_BLOCK * GRAM_BLOCKS_PER_TASK;
/// Column blocks per parallel task: small enough that a materialised slice (≥ 20k columns)
/// still splits into several tasks. The task sums are added in task order, so the result does
/// not depend on the thread count or on scheduling.
pub(super) const GRAM_BLOCKS_PER_TASK: usize = 2;

/// Adds one parameter's kernel `K[(i,c), (j,c′)]` for every job into `outs[job]`
/// (`[n1·C, n2·C]`); the blocks of set s are `sets[s]`, one per example. Per-set work (gathering,
/// materialising gradient slices) is done once for all jobs. In a symmetric job only pairs
/// j ≥ i (and the upper triangle of Gram products) are filled.
pub(super) fn contract_block(
    sets: &[Vec<&Block>],
    jobs: &[Job],
    c: usize,
    contraction: Contraction,
    precision: ContractionPrecision,
    outs: &mut [&mut [f64]],
    scratch: &mut Scratch,
) -> Result<()> {
    let used: Vec<usize> = {
        let mut u: Vec<usize> = jobs
            .iter()
            .flat_map(|&(a, b)| [Some(a), b])
            .flatten()
            .collect();
        u.sort_unstable();
        u.dedup();
        u
    };
    let first = match used.first().and_then(|&s| sets[s].first()) {
        Some(b) => *b,
        None => return Ok(()),
    };
    match first {
        Block::Dense { dim, .. } => {
            let mut gathered: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
            for &s in &used {
                let mut m = Vec::with_capacity(sets[s].len() * c * dim);
                for blk in &sets[s] {
                    match blk {
                        Block::Dense { rows, .. } => m.extend_from_slice(rows),
                        _ => return Err(inconsistent()),
                    }
                }
                gathered.insert(s, m);
            }
            for (out, &(s1, s2)) in outs.iter_mut().zip(jobs) {
                let b = s2.map(|s| gathered[&s].as_slice());
                gram(out, &gathered[&s1], b, sets[s1].len() * c, *dim);
            }
        }
        Block::Sparse { .. } => {
            for (out, &(s1, s2)) in outs.iter_mut().zip(jobs) {
                let a = sparse_refs(&sets[s1])?;
                let b = s2.map(|s| sparse_refs(&sets[s])).transpose()?;
                contract_sparse(&a, b.as_deref(), c, out);
            }
        }
        Block::Outer { dx, dg, .. } => {
            let (dx, dg) = (*dx, *dg);
            let mut refs: BTreeMap<usize, Vec<OuterRef>> = BTreeMap::new();
            for &s in &used {
                let r = outer_refs(&sets[s])?;
                if r.iter().any(|o| o.dx != dx || o.dg != dg) {
                    return Err(inconsistent());
                }
                refs.insert(s, r);
            }
            let rows = |s: usize| -> f64 { refs[&s].iter().map(|o| o.rows as f64).sum() };
            let strategy = match contraction {
                Contraction::Auto => {
                    // Multiply-adds of each way (symmetric jobs count half their pairs in both).
                    let (cf, dxf, dgf) = (c as f64, dx as f64, dg as f64);
                    let form: f64 = used.iter().map(|&s| rows(s) * cf * dxf * dgf).sum();
                    let (mut gram_cost, mut pair_cost) = (0.0, 0.0);
                    for &(s1, s2) in jobs {
                        let n1 = refs[&s1].len() as f64;
                        let n2 = s2.map_or(n1, |s| refs[&s].len() as f64);
                        let (r1, r2) = (rows(s1), s2.map_or(rows(s1), rows));
                        let half = if s2.is_none() { 0.5 } else { 1.0 };
                        gram_cost += half * n1 * n2 * cf * cf * dxf * dgf;
                        pair_cost += half * r1 * r2 * (dxf + cf * cf * dgf);
                    }
                    if pair_cost < form + gram_cost {
                        Contraction::TokenPairs
                    } else {
                        Contraction::Materialize
                    }
                }
                s => s,
            };
            match strategy {
                Contraction::TokenPairs => contract_pairs(&refs, jobs, c, outs),
                _ => match precision {
                    ContractionPrecision::F32 => {
                        contract_materialized(&refs, jobs, c, outs, &mut scratch.slices32);
                    }
                    ContractionPrecision::F64 => {
                        contract_materialized(&refs, jobs, c, outs, &mut scratch.slices);
                    }
                },
            }
        }
    }
    Ok(())
}

pub(super) fn outer_refs<'a>(blocks: &[&'a Block]) -> Result<Vec<OuterRef<'a>>> {
    blocks
        .iter()
        .map(|blk| match blk {
            Block::Outer {
                x,
                g,
                rows,
                dx,
                dg,
                scale,
            } => Ok(OuterRef {
                x,
                g,
                rows: *rows,
                dx: *dx,
                dg: *dg,
                scale: *scale,
            }),
            _ => Err(inconsistent()),
        })
        .collect()
}

/// Borrowed [`Block::Sparse`]: ids, values `[k, C, h]`, h.
pub(super) type SparseRef<'a> = (&'a [u32], &'a [f64], usize);

pub(super) fn sparse_refs<'a>(blocks: &[&'a Block]) -> Result<Vec<SparseRef<'a>>> {
    blocks
        .iter()
        .map(|blk| match blk {
            Block::Sparse { ids, vals, h } => Ok((ids.as_slice(), vals.as_slice(), *h)),
            _ => Err(inconsistent()),
        })
        .collect()
}

pub(super) fn inconsistent() -> Error {
    Error::Shape {
        what: "eNTK parameter block",
        expected: "the same kind and shape of factors for every example".into(),
        found: "a different one".into(),
    }
}

/// Element types of a materialised gradient slice: f64 (the default, every product in f64) or
/// f32 ([`ContractionPrecision::F32`]: products in f32, summed over at most
/// [`GRAM_F32_SPAN`] parameters in f32, then in f64).
pub(crate) trait GramElem: faer::traits::RealField + Copy + Send + Sync + 'static {
    fn from_f32(v: f32) -> Self;
    fn from_f64(v: f64) -> Self;
    fn into_f64(self) -> f64;
}

impl GramElem for f64 {
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    fn into_f64(self) -> f64 {
        self
    }
}

impl GramElem for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    #[allow(clippy::cast_possible_truncation)] // the f32 contraction's own rounding
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn into_f64(self) -> f64 {
        f64::from(self)
    }
}

/// `out += A Bᵀ` with A `[ra, k]`, B `[rb, k]` row-major; B = None means B = A, and then only the
/// upper triangle of `out` (square) is updated. Blocked over k: each task sums
/// [`GRAM_BLOCKS_PER_TASK`] column blocks sequentially in `T` and the task sums are added in
/// order in f64 (deterministic).
pub(crate) fn gram<T: GramElem>(out: &mut [f64], a: &[T], b: Option<&[T]>, ra: usize, k: usize) {
    if ra == 0 || k == 0 {
        return;
    }
    let rb = b.map_or(ra, |b| b.len() / k);
    let blocks: Vec<usize> = (0..k.div_ceil(GRAM_BLOCK)).collect();
    let partial: Vec<Vec<T>> = blocks
        .par_chunks(GRAM_BLOCKS_PER_TASK)
        .map(|task| {
            let mut acc = vec![T::from_f64(0.0); ra * rb];
            for &blk in task {
                let k0 = blk * GRAM_BLOCK;
                let w = GRAM_BLOCK.min(k - k0);
                let am = MatRef::from_row_major_slice_with_stride(&a[k0..], ra, w, k);
                let om = MatMut::from_row_major_slice_mut(&mut acc, ra, rb);
                match b {
                    Some(b) => {
                        let bm = MatRef::from_row_major_slice_with_stride(&b[k0..], rb, w, k);
                        matmul(
                            om,
                            Accum::Add,
                            am,
                            bm.transpose(),
                            T::from_f64(1.0),
                            Par::Seq,
                        );
                    }
                    None => triangular::matmul(
                        om,
                        BlockStructure::TriangularUpper,
                        Accum::Add,
                        am,
                        BlockStructure::Rectangular,
                        am.transpose(),
                        BlockStructure::Rectangular,
                        T::from_f64(1.0),
                        Par::Seq,
                    ),
                }
            }
            acc
        })
        .collect();
    for p in &partial {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v.into_f64();
        }
    }
}

/// Embedding blocks: `Σ_{common ids} ⟨row_c(x), row_{c′}(x′)⟩` by a merge of the sorted ids.
pub(super) fn contract_sparse(a: &[SparseRef], b: Option<&[SparseRef]>, c: usize, out: &mut [f64]) {
    let sym = b.is_none();
    let sb = b.unwrap_or(a);
    let nb = sb.len();
    out.par_chunks_mut(c * nb * c)
        .enumerate()
        .for_each(|(i, dst)| {
            let (ids_i, vals_i, h) = a[i];
            let start = if sym { i } else { 0 };
            for (j, &(ids_j, vals_j, _)) in sb.iter().enumerate().skip(start) {
                let (mut p, mut q) = (0, 0);
                while p < ids_i.len() && q < ids_j.len() {
                    match ids_i[p].cmp(&ids_j[q]) {
                        std::cmp::Ordering::Less => p += 1,
                        std::cmp::Ordering::Greater => q += 1,
                        std::cmp::Ordering::Equal => {
                            for ca in 0..c {
                                let ra = &vals_i[(p * c + ca) * h..(p * c + ca + 1) * h];
                                for cb in 0..c {
                                    let rb = &vals_j[(q * c + cb) * h..(q * c + cb + 1) * h];
                                    dst[ca * nb * c + j * c + cb] +=
                                        crate::ntk::kernel::dot(ra, rb);
                                }
                            }
                            p += 1;
                            q += 1;
                        }
                    }
                }
            }
        });
}

/// A borrowed [`Block::Outer`].
#[derive(Clone, Copy)]
pub(super) struct OuterRef<'a> {
    pub(super) x: &'a [f32],
    pub(super) g: &'a [f32],
    pub(super) rows: usize,
    pub(super) dx: usize,
    pub(super) dg: usize,
    pub(super) scale: f64,
}

/// Buffers reused across parameter blocks: a materialised slice is up to
/// [`MATERIALIZE_BYTES`] per set, and fresh buffers that size would each be mapped and
/// page-faulted anew.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) slices: BTreeMap<usize, Vec<f64>>,
    pub(super) slices32: BTreeMap<usize, Vec<f32>>,
}

/// Forms the gradient rows `scale·g_c[:, o0..o0+w]ᵀ x` (`[w, dx]` each, row-major) of every
/// (example, logit) into `out`: `[n·C, w·dx]`.
pub(super) fn materialize<T: GramElem>(
    o: &[OuterRef],
    c: usize,
    o0: usize,
    w: usize,
    out: &mut Vec<T>,
) {
    let dx = o[0].dx;
    // Every value is overwritten below; resizing within capacity does not allocate.
    out.resize(o.len() * c * w * dx, T::from_f64(0.0));
    out.par_chunks_mut(c * w * dx)
        .zip(o.par_iter())
        .for_each(|(dst, e)| {
            let x: Vec<T> = e.x.iter().map(|&v| T::from_f32(v)).collect();
            let xm = MatRef::from_row_major_slice(&x, e.rows, dx);
            // All C logits in one product: [rows, C·w] with column block c = g_c[:, o0..o0+w],
            // so that (·)ᵀx is [C·w, dx] = the C destination rows back to back.
            let mut gall = vec![T::from_f64(0.0); e.rows * c * w];
            for (t, dst_t) in gall.chunks_exact_mut(c * w).enumerate() {
                for (cc, d) in dst_t.chunks_exact_mut(w).enumerate() {
                    let row = (cc * e.rows + t) * e.dg + o0;
                    for (a, &v) in d.iter_mut().zip(&e.g[row..row + w]) {
                        *a = T::from_f32(v);
                    }
                }
            }
            let gm = MatRef::from_row_major_slice(&gall, e.rows, c * w);
            let om = MatMut::from_row_major_slice_mut(dst, c * w, dx);
            matmul(
                om,
                Accum::Replace,
                gm.transpose(),
                xm,
                T::from_f64(e.scale),
                Par::Seq,
            );
        });
}

/// Weight blocks through materialised per-example gradients, a slice of output rows at a time;
/// each set's slice is formed once for all jobs, in `T` (see [`GramElem`]).
pub(super) fn contract_materialized<T: GramElem>(
    refs: &BTreeMap<usize, Vec<OuterRef>>,
    jobs: &[Job],
    c: usize,
    outs: &mut [&mut [f64]],
    slices: &mut BTreeMap<usize, Vec<T>>,
) {
    let first = refs.values().next().expect("at least one set")[0];
    let (dx, dg) = (first.dx, first.dg);
    let n_max = refs.values().map(Vec::len).max().unwrap_or(1);
    let elems = MATERIALIZE_BYTES / std::mem::size_of::<T>();
    let w = (elems / (n_max * c * dx).max(1)).clamp(1, dg);
    let mut o0 = 0;
    while o0 < dg {
        let width = w.min(dg - o0);
        for (&s, o) in refs {
            materialize(o, c, o0, width, slices.entry(s).or_default());
        }
        for (out, &(s1, s2)) in outs.iter_mut().zip(jobs) {
            let b = s2.map(|s| slices[&s].as_slice());
            gram(out, &slices[&s1], b, refs[&s1].len() * c, width * dx);
        }
        o0 += width;
    }
}

/// Weight blocks over token pairs: `scale·scale′·Σ_{t,s} (G_c G′_{c′}ᵀ)_{ts}(X X′ᵀ)_{ts}`.
pub(super) fn contract_pairs(
    refs: &BTreeMap<usize, Vec<OuterRef>>,
    jobs: &[Job],
    c: usize,
    outs: &mut [&mut [f64]],
) {
    // Widened (f64) x and g of every example, once per set.
    type Widened = Vec<(Vec<f64>, Vec<f64>)>;
    let wide: BTreeMap<usize, Widened> = refs
        .iter()
        .map(|(&s, o)| {
            let w = o
                .par_iter()
                .map(|e| {
                    (
                        e.x.iter().map(|&v| f64::from(v)).collect(),
                        e.g.iter().map(|&v| f64::from(v)).collect(),
                    )
                })
                .collect();
            (s, w)
        })
        .collect();
    for (out, &(s1, s2)) in outs.iter_mut().zip(jobs) {
        let (a, wa) = (&refs[&s1], &wide[&s1]);
        let sb = s2.unwrap_or(s1);
        let (b, wb) = (&refs[&sb], &wide[&sb]);
        let sym = s2.is_none();
        let nb = b.len();
        let (dx, dg) = (a[0].dx, a[0].dg);
        out.par_chunks_mut(c * nb * c)
            .enumerate()
            .for_each(|(i, dst)| {
                let (ei, (xi, gi)) = (&a[i], &wa[i]);
                let xim = MatRef::from_row_major_slice(xi, ei.rows, dx);
                let gim = MatRef::from_row_major_slice(gi, c * ei.rows, dg);
                let start = if sym { i } else { 0 };
                for j in start..nb {
                    let (ej, (xj, gj)) = (&b[j], &wb[j]);
                    let xjm = MatRef::from_row_major_slice(xj, ej.rows, dx);
                    let gjm = MatRef::from_row_major_slice(gj, c * ej.rows, dg);
                    let mut s = vec![0f64; ei.rows * ej.rows];
                    matmul(
                        MatMut::from_row_major_slice_mut(&mut s, ei.rows, ej.rows),
                        Accum::Replace,
                        xim,
                        xjm.transpose(),
                        1.0,
                        Par::Seq,
                    );
                    let mut gg = vec![0f64; c * ei.rows * c * ej.rows];
                    matmul(
                        MatMut::from_row_major_slice_mut(&mut gg, c * ei.rows, c * ej.rows),
                        Accum::Replace,
                        gim,
                        gjm.transpose(),
                        1.0,
                        Par::Seq,
                    );
                    let cols = c * ej.rows;
                    for ca in 0..c {
                        for cb in 0..c {
                            let mut acc = 0.0;
                            for t in 0..ei.rows {
                                let grow =
                                    &gg[(ca * ei.rows + t) * cols + cb * ej.rows..][..ej.rows];
                                let srow = &s[t * ej.rows..(t + 1) * ej.rows];
                                acc += crate::ntk::kernel::dot(grow, srow);
                            }
                            dst[ca * nb * c + j * c + cb] += ei.scale * ej.scale * acc;
                        }
                    }
                }
            });
    }
}

/// Copies the upper triangle of a square row-major matrix onto its lower triangle.
pub(crate) fn mirror_upper(m: &mut [f64], n: usize) {
    for r in 1..n {
        for s in 0..r {
            m[r * n + s] = m[s * n + r];
        }
    }
}
