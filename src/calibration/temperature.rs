//! Temperature scaling (docs/method.md §9; PAPER App. A.3.3): one scalar `T > 0` fitted on validation
//! logits by minimising NLL, then applied to test logits as `z / T`.
//!
//! Two fitting methods:
//! - [`TsMethod::Lbfgs`] (default) finds the exact minimiser. NLL is convex in `β = 1/T`
//!   (a log-sum-exp of functions linear in `β`), so a safeguarded Newton iteration on
//!   `β` over a bracket `[1/t_max, 1/t_min]` converges to the global minimum, to `tol` (1e-10)
//!   in `log T`. The name follows the usual PyTorch recipe (Guo et al. 2017, L-BFGS on `T`),
//!   which reaches the same minimum; a 1-D problem needs no quasi-Newton machinery.
//! - [`TsMethod::Adam`] is the paper's procedure: Adam (lr 1e-3, β₁ 0.9, β₂ 0.999, ε 1e-8)
//!   on `T` from `T₀ = 1`, full batch, at most 1e5 steps, early stopping on the same
//!   validation NLL with patience 10. INFERRED (docs/method.md §9): `T` itself (not `log T`) is the
//!   parameter, the monitored NLL is the fitting NLL, the best `T` seen is returned, and `T`
//!   is projected onto `[t_min, t_max]` after each step so that it stays positive.
//!
//! Guarantees of [`TemperatureParams::fit`]: `T > 0`; the fitted NLL (measured exactly as
//! [`metrics::compute`](super::metrics::compute) measures it) is never above the NLL at
//! `T = 1`: if the optimiser's `T` would be worse, `T = 1` is returned. The argmax of every
//! row is unchanged, since dividing by `T > 0` preserves order (up to two logits less than an
//! ulp apart rounding to the same value).

use serde::{Deserialize, Serialize};

use super::metrics::{check_inputs, mean_nll};
use crate::error::{Error, Result};

/// Safety cap on the bracketed Newton search. Newton converges quadratically near the
/// minimum (7 steps in the tests) and bisection steps halve the bracket; if the cap ever bound,
/// the iterate would still lie in the bracket and the NLL check after fitting still applies.
const NEWTON_MAX_ITERS: usize = 200;
/// Adam's first-moment decay: PyTorch's default (docs/method.md §9 says only "Adam, lr 1e-3").
const ADAM_BETA1: f64 = 0.9;
/// Adam's second-moment decay: PyTorch's default.
const ADAM_BETA2: f64 = 0.999;
/// Adam's denominator offset: PyTorch's default.
const ADAM_EPS: f64 = 1e-8;

/// How [`TemperatureParams::fit`] minimises the validation NLL over `T`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TsMethod {
    /// The exact minimiser (safeguarded Newton on the convex β = 1/T; the default).
    #[default]
    Lbfgs,
    /// The paper's: Adam on T from 1 (lr 1e-3), early stopping with patience 10.
    Adam,
}

/// Hyper-parameters of temperature scaling (docs/method.md §9). Fit with [`TemperatureParams::fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemperatureParams {
    /// Optimiser; [`TsMethod::Lbfgs`] by default.
    #[serde(default)]
    pub method: TsMethod,
    /// Adam learning rate on `T`. PAPER: 1e-3. Adam only.
    #[serde(default = "defaults::lr")]
    pub lr: f64,
    /// Adam early stopping: stop after this many consecutive steps without a strictly lower
    /// NLL. PAPER: 10. Adam only.
    #[serde(default = "defaults::patience")]
    pub patience: usize,
    /// Adam step budget. PAPER: 1e5. Adam only.
    #[serde(default = "defaults::max_steps")]
    pub max_steps: usize,
    /// Smallest allowed `T`. INFERRED: 0.01. When every validation example is already right,
    /// NLL keeps falling as `T → 0`, so the search needs a floor; must be in (0, 1].
    #[serde(default = "defaults::t_min")]
    pub t_min: f64,
    /// Largest allowed `T`. INFERRED: 100 (NLL can keep falling as `T → ∞` when most examples
    /// are wrong); must be at least 1 and finite.
    #[serde(default = "defaults::t_max")]
    pub t_max: f64,
    /// Convergence tolerance of [`TsMethod::Lbfgs`] on `log T`. Default 1e-10.
    #[serde(default = "defaults::tol")]
    pub tol: f64,
}

mod defaults {
    pub fn lr() -> f64 {
        1e-3
    }
    pub fn patience() -> usize {
        10
    }
    pub fn max_steps() -> usize {
        100_000
    }
    pub fn t_min() -> f64 {
        0.01
    }
    pub fn t_max() -> f64 {
        100.0
    }
    pub fn tol() -> f64 {
        1e-10
    }
}

impl Default for TemperatureParams {
    fn default() -> Self {
        Self {
            method: TsMethod::default(),
            lr: defaults::lr(),
            patience: defaults::patience(),
            max_steps: defaults::max_steps(),
            t_min: defaults::t_min(),
            t_max: defaults::t_max(),
            tol: defaults::tol(),
        }
    }
}

/// A fitted temperature and the fitting (validation) NLL before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    /// The temperature `T > 0`; logits are divided by it.
    pub t: f64,
    /// Mean NLL (nats) of the fitting logits at `T = 1`.
    pub nll_before: f64,
    /// Mean NLL (nats) of the fitting logits at `T`; never above `nll_before`.
    pub nll_after: f64,
    /// Optimiser iterations: Newton steps for [`TsMethod::Lbfgs`] (0 when the minimum is at
    /// `t_min` or `t_max`), Adam steps for [`TsMethod::Adam`].
    pub iterations: usize,
}

impl TemperatureParams {
    /// The paper's settings: Adam, lr 1e-3, patience 10, at most 1e5 steps (docs/method.md §9).
    pub fn paper() -> Self {
        Self {
            method: TsMethod::Adam,
            ..Self::default()
        }
    }

    /// The defaults of `method`: the exact minimiser, or the paper's Adam.
    pub fn for_method(method: TsMethod) -> Self {
        match method {
            TsMethod::Lbfgs => Self::default(),
            TsMethod::Adam => Self::paper(),
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field: `lr` not positive and finite, `patience`
    /// or `max_steps` zero, `t_min` outside (0, 1], `t_max` below 1 or not finite, `tol` not
    /// positive and finite.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| {
            Err(Error::InvalidArgument {
                field: format!("temperature.{field}"),
                reason,
            })
        };
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(
                "lr",
                format!("must be positive and finite, got {}", self.lr),
            );
        }
        if self.patience == 0 {
            return bad("patience", "must be at least 1".into());
        }
        if self.max_steps == 0 {
            return bad("max_steps", "must be at least 1".into());
        }
        if !(self.t_min > 0.0 && self.t_min <= 1.0) {
            return bad("t_min", format!("must be in (0, 1], got {}", self.t_min));
        }
        if !(self.t_max.is_finite() && self.t_max >= 1.0) {
            return bad(
                "t_max",
                format!("must be finite and >= 1, got {}", self.t_max),
            );
        }
        if !(self.tol.is_finite() && self.tol > 0.0) {
            return bad(
                "tol",
                format!("must be positive and finite, got {}", self.tol),
            );
        }
        Ok(())
    }

    /// Fits `T` on (validation) logits by minimising their mean NLL.
    ///
    /// Shapes: `logits` row-major `[n, C]`, `labels` of length `n` in `0..n_classes`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] from [`TemperatureParams::validate`]; [`Error::NoExamples`],
    /// [`Error::LogitsShape`], [`Error::LabelOutOfRange`] and [`Error::NonFiniteLogit`] as in
    /// [`metrics::compute`](super::metrics::compute).
    pub fn fit(&self, logits: &[f64], labels: &[usize], n_classes: usize) -> Result<Temperature> {
        self.validate()?;
        check_inputs(logits, labels, n_classes)?;
        let problem = Problem {
            logits,
            labels,
            n_classes,
        };
        let (t, iterations) = match self.method {
            TsMethod::Lbfgs => self.newton(&problem),
            TsMethod::Adam => self.adam(&problem),
        };
        Ok(accept_or_fall_back(&problem, t, iterations))
    }

    /// Safeguarded Newton on `β = 1/T`, bracketed in `u = log β`. Returns `(T, iterations)`.
    fn newton(&self, pb: &Problem) -> (f64, usize) {
        let (mut lo, mut hi) = ((1.0 / self.t_max).ln(), (1.0 / self.t_min).ln());
        // The derivative in β is increasing (convexity): its sign at the ends decides whether
        // the minimum is at a bound. Strict tests keep T = 1 when the NLL is flat (g ≡ 0).
        if pb.grad_beta(lo.exp()).0 > 0.0 {
            return (self.t_max, 0);
        }
        if pb.grad_beta(hi.exp()).0 < 0.0 {
            return (self.t_min, 0);
        }
        let mut u = 0.0_f64; // T = 1
        let mut iterations = 0;
        while iterations < NEWTON_MAX_ITERS {
            iterations += 1;
            let beta = u.exp();
            let (g, h) = pb.grad_beta(beta);
            if g == 0.0 {
                break;
            }
            if g > 0.0 {
                hi = u;
            } else {
                lo = u;
            }
            let newton = beta - g / h;
            let next = if h > 0.0 && newton > 0.0 && newton.ln() > lo && newton.ln() < hi {
                newton.ln()
            } else {
                0.5 * (lo + hi)
            };
            let step = (next - u).abs();
            u = next;
            if step < self.tol || hi - lo < self.tol {
                break;
            }
        }
        (1.0 / u.exp(), iterations)
    }

    /// The paper's Adam on `T`, projected onto `[t_min, t_max]`. Returns `(best T, steps)`.
    fn adam(&self, pb: &Problem) -> (f64, usize) {
        let mut t = 1.0_f64;
        let (mut m, mut v) = (0.0, 0.0);
        let (mut best_t, mut best_nll) = (t, f64::INFINITY);
        let mut since_best = 0;
        let mut steps = 0;
        while steps < self.max_steps {
            steps += 1;
            let beta = 1.0 / t;
            let (nll, g_beta) = pb.nll_and_grad_beta(beta);
            // Early stopping as in a training loop: the loss at the current T is compared
            // with the best so far before the step is taken.
            if nll < best_nll {
                best_nll = nll;
                best_t = t;
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= self.patience {
                    break;
                }
            }
            // dNLL/dT = dNLL/dβ · dβ/dT = -g_β / T².
            let grad = -g_beta * beta * beta;
            m = ADAM_BETA1 * m + (1.0 - ADAM_BETA1) * grad;
            v = ADAM_BETA2 * v + (1.0 - ADAM_BETA2) * grad * grad;
            let m_hat = m / (1.0 - ADAM_BETA1.powf(steps as f64));
            let v_hat = v / (1.0 - ADAM_BETA2.powf(steps as f64));
            t = (t - self.lr * m_hat / (v_hat.sqrt() + ADAM_EPS)).clamp(self.t_min, self.t_max);
        }
        (best_t, steps)
    }
}

impl Temperature {
    /// Scales logits by the temperature: returns `z / T`, same shape as `logits` (any `[n, C]`).
    pub fn apply(&self, logits: &[f64]) -> Vec<f64> {
        logits.iter().map(|&z| z / self.t).collect()
    }
}

/// Validated fitting data.
struct Problem<'a> {
    logits: &'a [f64],
    labels: &'a [usize],
    n_classes: usize,
}

impl Problem<'_> {
    /// `(NLL, dNLL/dβ)` at inverse temperature `β`, where NLL(β) = mean_i [lse(β z_i) − β z_iy].
    fn nll_and_grad_beta(&self, beta: f64) -> (f64, f64) {
        let (nll, g, _) = self.eval(beta);
        (nll, g)
    }

    /// `(dNLL/dβ, d²NLL/dβ²)` at `β`: the means of `E_p[z] − z_y` and `Var_p[z]`, p = softmax(β z).
    fn grad_beta(&self, beta: f64) -> (f64, f64) {
        let (_, g, h) = self.eval(beta);
        (g, h)
    }

    fn eval(&self, beta: f64) -> (f64, f64, f64) {
        let c = self.n_classes;
        let (mut nll, mut g, mut h) = (0.0, 0.0, 0.0);
        for (row, &y) in self.logits.chunks_exact(c).zip(self.labels) {
            let zy = row.get(y).copied().unwrap_or(f64::NAN);
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &z| a.max(beta * z));
            // Moments of d_k = z_k - z_y rather than z_k: the label's own term is exactly 0,
            // so a tiny derivative (nearly separable data, small T) does not cancel to 0.
            let (mut sum, mut first) = (0.0, 0.0);
            for &z in row {
                let w = (beta * z - m).exp();
                sum += w;
                first += w * (z - zy);
            }
            let mean = first / sum;
            let var: f64 = row
                .iter()
                .map(|&z| {
                    let dev = z - zy - mean;
                    (beta * z - m).exp() * dev * dev
                })
                .sum::<f64>()
                / sum;
            nll += sum.ln() + m - beta * zy;
            g += mean;
            h += var;
        }
        let n = self.labels.len() as f64;
        (nll / n, g / n, h / n)
    }
}

/// Keeps the optimiser's `t` only if it is a positive finite temperature whose NLL, measured
/// as `metrics::compute` measures it on `z / t`, is not above the NLL at `T = 1`; otherwise
/// returns `T = 1`.
fn accept_or_fall_back(pb: &Problem, t: f64, iterations: usize) -> Temperature {
    let nll_before = mean_nll(pb.logits, pb.labels, pb.n_classes);
    let candidate = Temperature {
        t,
        nll_before,
        nll_after: f64::NAN,
        iterations,
    };
    let nll_after = if t.is_finite() && t > 0.0 {
        mean_nll(&candidate.apply(pb.logits), pb.labels, pb.n_classes)
    } else {
        f64::NAN
    };
    // A NaN NLL (e.g. z / t overflowing) is rejected too.
    if nll_after.is_nan() || nll_after > nll_before {
        return Temperature {
            t: 1.0,
            nll_after: nll_before,
            ..candidate
        };
    }
    Temperature {
        nll_after,
        ..candidate
    }
}

#[cfg(test)]
mod tests {
    use super::super::metrics::{argmax, compute, softmax_rows};
    use super::*;

    /// Fitted T on logits = 3 × calibrated logits, 6000 examples, 3 classes: the sampling
    /// error of the MLE is a few percent, so 10% is loose but not vacuous.
    const T_RECOVERY_REL_TOL: f64 = 0.10;
    /// Adam (lr 1e-3, patience 10) stops within a few lr-sized steps of the optimum.
    const ADAM_VS_EXACT_TOL: f64 = 0.02;

    /// xorshift64* — enough randomness for seeded property tests, no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn new(seed: u64) -> Self {
            Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in [0, 1).
        fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Standard normal (Box–Muller).
        fn normal(&mut self) -> f64 {
            let u1 = 1.0 - self.uniform();
            let u2 = self.uniform();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
        fn below(&mut self, k: usize) -> usize {
            (self.uniform() * k as f64) as usize % k
        }
    }

    /// Logits `scale · N(0, σ²)` with labels drawn from softmax of the unscaled logits, so
    /// the unscaled logits are calibrated and the ideal temperature is `scale`.
    fn calibrated(rng: &mut XorShift, n: usize, c: usize, sigma: f64, scale: f64) -> Data {
        let base: Vec<f64> = (0..n * c).map(|_| sigma * rng.normal()).collect();
        let probs = softmax_rows(&base, c);
        let labels = probs
            .chunks_exact(c)
            .map(|p| {
                let u = rng.uniform();
                let mut acc = 0.0;
                p.iter()
                    .position(|&pk| {
                        acc += pk;
                        u < acc
                    })
                    .unwrap_or(c - 1)
            })
            .collect();
        Data {
            logits: base.iter().map(|z| scale * z).collect(),
            labels,
            c,
        }
    }

    struct Data {
        logits: Vec<f64>,
        labels: Vec<usize>,
        c: usize,
    }

    fn argmaxes(z: &[f64], c: usize) -> Vec<usize> {
        z.chunks_exact(c).map(argmax).collect()
    }

    #[test]
    fn recovers_t_near_3_on_overconfident_logits() {
        let mut rng = XorShift::new(7);
        let d = calibrated(&mut rng, 6000, 3, 1.5, 3.0);
        let fit = TemperatureParams::default()
            .fit(&d.logits, &d.labels, d.c)
            .unwrap();
        assert!(
            (fit.t / 3.0 - 1.0).abs() < T_RECOVERY_REL_TOL,
            "T = {}",
            fit.t
        );
        assert!(fit.nll_after < fit.nll_before);
        // The derivative vanishes at the fitted T (it is a minimum, not a stopped search).
        let pb = Problem {
            logits: &d.logits,
            labels: &d.labels,
            n_classes: d.c,
        };
        assert!(pb.grad_beta(1.0 / fit.t).0.abs() < 1e-9);

        let adam = TemperatureParams::paper()
            .fit(&d.logits, &d.labels, d.c)
            .unwrap();
        assert!(
            (adam.t - fit.t).abs() < ADAM_VS_EXACT_TOL * fit.t,
            "Adam {} vs exact {}",
            adam.t,
            fit.t
        );
        assert!(adam.nll_after >= fit.nll_after - 1e-12);
        assert!(adam.iterations > 1000 && adam.iterations < 100_000);
    }

    #[test]
    fn underconfident_logits_give_t_below_1() {
        let mut rng = XorShift::new(11);
        let d = calibrated(&mut rng, 4000, 2, 2.0, 0.5);
        let fit = TemperatureParams::default()
            .fit(&d.logits, &d.labels, d.c)
            .unwrap();
        assert!(
            (fit.t / 0.5 - 1.0).abs() < T_RECOVERY_REL_TOL,
            "T = {}",
            fit.t
        );
    }

    #[test]
    fn never_changes_argmax_nor_raises_nll() {
        for seed in 1..=8u64 {
            let mut rng = XorShift::new(seed);
            let c = 2 + rng.below(4);
            let n = 20 + rng.below(200);
            let scale = 0.2 + 6.0 * rng.uniform();
            // Labels partly unrelated to the logits, so T can go either way.
            let sigma = 1.0 + rng.uniform();
            let mut d = calibrated(&mut rng, n, c, sigma, scale);
            for y in d.labels.iter_mut() {
                if rng.uniform() < 0.3 {
                    *y = rng.below(c);
                }
            }
            for params in [TemperatureParams::default(), TemperatureParams::paper()] {
                let fit = params.fit(&d.logits, &d.labels, c).unwrap();
                assert!(
                    fit.t > 0.0 && fit.t.is_finite(),
                    "seed {seed}: T = {}",
                    fit.t
                );
                assert!(
                    fit.nll_after <= fit.nll_before,
                    "seed {seed} {:?}: {} > {}",
                    params.method,
                    fit.nll_after,
                    fit.nll_before
                );
                let scaled = fit.apply(&d.logits);
                assert_eq!(argmaxes(&scaled, c), argmaxes(&d.logits, c), "seed {seed}");
                // nll_after is what `compute` reports on the scaled logits, bit for bit.
                let m = compute(&scaled, &d.labels, c).unwrap();
                assert_eq!(m.nll, fit.nll_after);
                assert_eq!(
                    compute(&d.logits, &d.labels, c).unwrap().nll,
                    fit.nll_before
                );
            }
        }
    }

    #[test]
    fn falls_back_to_t_1_when_the_candidate_is_worse() {
        let mut rng = XorShift::new(3);
        let d = calibrated(&mut rng, 500, 3, 1.5, 1.0);
        let pb = Problem {
            logits: &d.logits,
            labels: &d.labels,
            n_classes: d.c,
        };
        // Calibrated logits: T = 50 is far worse than T = 1, so it must be rejected.
        for bad in [50.0, 0.02, f64::NAN, 0.0, -2.0, f64::INFINITY] {
            let got = accept_or_fall_back(&pb, bad, 17);
            assert_eq!(got.t, 1.0, "candidate {bad}");
            assert_eq!(got.nll_after, got.nll_before);
            assert_eq!(got.iterations, 17);
        }
        // A better candidate is kept.
        let best = TemperatureParams::default()
            .fit(&d.logits, &d.labels, d.c)
            .unwrap();
        let kept = accept_or_fall_back(&pb, best.t, 1);
        assert_eq!(kept.t, best.t);
        assert!(kept.nll_after <= kept.nll_before);
    }

    #[test]
    fn separable_data_hits_the_t_min_floor() {
        // Every example right: NLL falls monotonically as T → 0, so the bound is the answer.
        let z = [2.0, -1.0, -0.5, 1.5, 3.0, 0.0];
        let labels = [0, 1, 0];
        let fit = TemperatureParams::default().fit(&z, &labels, 2).unwrap();
        assert_eq!(fit.t, defaults::t_min());
        assert!(fit.nll_after < fit.nll_before);
        // Every example wrong: NLL falls as T → ∞.
        let fit = TemperatureParams::default().fit(&z, &[1, 0, 1], 2).unwrap();
        assert_eq!(fit.t, defaults::t_max());
        // Adam is held above t_min too.
        let adam = TemperatureParams::paper().fit(&z, &labels, 2).unwrap();
        assert!(adam.t >= defaults::t_min() && adam.t < 1.0);
    }

    #[test]
    fn single_class_and_constant_logits_keep_t_1() {
        let fit = TemperatureParams::default()
            .fit(&[0.3, -2.0], &[0, 0], 1)
            .unwrap();
        assert_eq!((fit.t, fit.nll_after), (1.0, 0.0));
        let fit = TemperatureParams::default()
            .fit(&[0.0; 9], &[0, 1, 2], 3)
            .unwrap();
        assert_eq!(fit.t, 1.0);
    }

    #[test]
    fn apply_divides_by_t() {
        let t = Temperature {
            t: 2.0,
            nll_before: 0.0,
            nll_after: 0.0,
            iterations: 0,
        };
        assert_eq!(t.apply(&[4.0, -1.0, 0.0]), [2.0, -0.5, 0.0]);
    }

    #[test]
    fn invalid_params_and_inputs_are_rejected() {
        let field_of = |p: TemperatureParams| match p.fit(&[0.0, 1.0], &[1], 2) {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        };
        let d = TemperatureParams::default;
        assert_eq!(
            field_of(TemperatureParams { lr: 0.0, ..d() }),
            "temperature.lr"
        );
        assert_eq!(
            field_of(TemperatureParams { patience: 0, ..d() }),
            "temperature.patience"
        );
        assert_eq!(
            field_of(TemperatureParams {
                max_steps: 0,
                ..d()
            }),
            "temperature.max_steps"
        );
        assert_eq!(
            field_of(TemperatureParams { t_min: 2.0, ..d() }),
            "temperature.t_min"
        );
        assert_eq!(
            field_of(TemperatureParams {
                t_max: f64::INFINITY,
                ..d()
            }),
            "temperature.t_max"
        );
        assert_eq!(
            field_of(TemperatureParams {
                tol: f64::NAN,
                ..d()
            }),
            "temperature.tol"
        );
        assert!(matches!(d().fit(&[], &[], 2), Err(Error::NoExamples)));
        assert!(matches!(
            d().fit(&[0.0, f64::NAN], &[0], 2),
            Err(Error::NonFiniteLogit {
                index: 0,
                class: 1,
                ..
            })
        ));
        assert!(matches!(
            d().fit(&[0.0; 3], &[0], 2),
            Err(Error::LogitsShape { .. })
        ));
    }

    #[test]
    fn params_serde_defaults_and_strictness() {
        let p: TemperatureParams = serde_json::from_str(r#"{"method": "adam"}"#).unwrap();
        assert_eq!(p, TemperatureParams::paper());
        let p: TemperatureParams = serde_json::from_str("{}").unwrap();
        assert_eq!(p, TemperatureParams::default());
        assert_eq!(p.method, TsMethod::Lbfgs);
        assert!(serde_json::from_str::<TemperatureParams>(r#"{"lr_typo": 1}"#).is_err());
    }
}
