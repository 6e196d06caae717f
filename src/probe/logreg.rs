//! Multinomial L2 logistic regression with an unpenalised intercept, fitted by L-BFGS: the linear
//! probe of docs/method.md §2.1 (scikit-learn `LogisticRegression(solver="lbfgs")`), in f64 on the host.
//!
//! The minimiser is scikit-learn's: `C·Σ_i CE(W x_i + b, y_i) + ½‖W‖_F²`. Where the solver stops
//! depends on how that objective is scaled and on scipy's L-BFGS-B stopping rules, and both changed
//! between scikit-learn releases, so [`SklearnCompat`] picks the release to reproduce:
//!
//! - [`SklearnCompat::V1_0`] (REF, the default): scikit-learn 1.0.1, which the reference code
//!   pins (`tom4649/lp-ft_ntk:pyproject.toml`), with `multi_class="multinomial"`. L-BFGS minimises
//!   `Σ CE + ‖W‖²/(2C)` (the objective / C; `_multinomial_loss_grad`, `alpha = 1/C`) with scipy's
//!   defaults `ftol = 2.22e-9`, `maxls = 20`. Two classes: the symmetric 2-row softmax
//!   `[−w; w]`, reported as its class-1 row (`multi_w0[1][np.newaxis, :]`), so
//!   `P = softmax([−d, d])` with `d = w·x + c`.
//! - [`SklearnCompat::V1_9`]: scikit-learn 1.9.1 (current). L-BFGS minimises
//!   `mean CE + ‖W‖²/(2Cn)` (the objective / (C n); `LinearModelLoss.loss_gradient` divides by
//!   the sample-weight sum, `l2_reg_strength = 1 / (C * sw_sum)`) with `ftol = 64·eps`,
//!   `maxls = 50`. `multi_class` is gone: two classes are a sigmoid (`HalfBinomialLoss`) fit,
//!   `P(class 1) = σ(d)`.
//!
//! `tol` bounds the max-abs gradient of the *scaled* objective, so with 1.9.1 the same `tol` stops
//! `n` times earlier in terms of the unscaled gradient. That visibly changes large-C solutions,
//! e.g. the CV choice on the CB-shaped fixture: C = 2.78 with 1.0.1, 0.36 with 1.9.1.
//!
//! Deviation: scikit-learn calls scipy's L-BFGS-B; lpft has its own L-BFGS (the private `lbfgs`
//! module) that follows L-BFGS-B's unconstrained path step for step: first step `1/‖g‖₂`, then
//! unit steps; Moré–Thuente line search with L-BFGS-B's constants (1e-3, 0.9, 0.1) and `maxls`;
//! H₀ = (s·y / y·y) I; updates skipped unless `s·y > eps·(−g·s)`; memory reset and steepest
//! descent after a failed line search; and scipy's stopping order (iteration budget, evaluation
//! budget 15000, then max |g_i| ≤ tol, then `f_k − f_{k+1} ≤ ftol·max(|f_k|, |f_{k+1}|, 1)`).
//! On the fixtures' plain fits this reproduces scikit-learn's coefficients to ≤ 1e-10 (relative)
//! and its iteration counts exactly.
//! `argmin`'s `LBFGS` was not used: its documented stopping tests are the L2 gradient norm and an
//! absolute change of the cost, which cannot express scipy's, and it would not follow L-BFGS-B's
//! initial step, update skipping or restart, all of which move the stopping point at loose
//! tolerances.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::linalg::dot;
use crate::optim::lbfgs;

/// The scikit-learn release whose objective scaling, stopping rules and two-class model are
/// reproduced (see the module docs for the differences).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SklearnCompat {
    /// REF: scikit-learn 1.0.1 with `multi_class="multinomial"`, the version the reference code
    /// pins. Two classes: the symmetric 2-row softmax, reported as its class-1 row.
    #[default]
    #[serde(rename = "sklearn-1.0")]
    V1_0,
    /// scikit-learn 1.9.1 (the current release in 2026). Two classes: a binomial
    /// (sigmoid) fit.
    #[serde(rename = "sklearn-1.9")]
    V1_9,
}

impl SklearnCompat {
    /// scipy's `ftol` (relative reduction of f that stops L-BFGS-B).
    fn ftol(self) -> f64 {
        match self {
            // scipy's default, 1e7 (factr) * machine epsilon.
            SklearnCompat::V1_0 => 2.220_446_049_250_313e-9,
            SklearnCompat::V1_9 => 64.0 * f64::EPSILON,
        }
    }

    /// Most function evaluations in one line search.
    fn max_ls(self) -> usize {
        match self {
            SklearnCompat::V1_0 => 20,
            SklearnCompat::V1_9 => 50,
        }
    }
}

mod defaults {
    pub fn tol() -> f64 {
        1e-4
    }
    pub fn max_iter() -> usize {
        5000
    }
}

/// Hyper-parameters of one L2 logistic-regression fit (scikit-learn `LogisticRegression` with
/// `solver="lbfgs"`, `fit_intercept=True`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRegParams {
    /// Inverse regularisation strength C > 0 of `C·Σ CE + ½‖W‖²`.
    pub c: f64,
    /// Stopping tolerance on the max-abs gradient of the *scaled* objective (scipy's `pgtol`,
    /// scikit-learn's `tol`); the scaling depends on `compat`. Default 1e-4 (the reference's).
    #[serde(default = "defaults::tol")]
    pub tol: f64,
    /// Most L-BFGS iterations (scikit-learn `max_iter`). Default 5000 (the reference's). Hitting it
    /// is not an error: the fit reports `converged = false`, like scikit-learn's warning.
    #[serde(default = "defaults::max_iter")]
    pub max_iter: usize,
    /// The scikit-learn release to reproduce. Default [`SklearnCompat::V1_0`] (REF).
    #[serde(default)]
    pub compat: SklearnCompat,
}

/// A fitted logistic regression in scikit-learn's layout.
///
/// For `n_classes ≥ 3`, `coef` is `[n_classes, n_features]` and `intercept` `[n_classes]`. For two
/// classes they hold one row, like scikit-learn's `coef_` `(1, d)` / `intercept_` `(1,)`: with
/// [`SklearnCompat::V1_0`] the class-1 row `w` of the symmetric solution `[−w; w]` (so
/// `P(class 1) = softmax([−d, d])₁ = σ(2d)`, `d = w·x + c`); with [`SklearnCompat::V1_9`] the
/// binomial weights (`P(class 1) = σ(d)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogReg {
    /// Weights, `[rows, n_features]` row-major; `rows` = `n_classes`, or 1 for two classes.
    pub coef: Vec<f64>,
    /// Intercepts, `[rows]`.
    pub intercept: Vec<f64>,
    /// Number of classes C ≥ 2.
    pub n_classes: usize,
    /// Feature dimension d.
    pub n_features: usize,
    /// L-BFGS iterations run (scikit-learn's `n_iter_`, at most `max_iter`).
    pub n_iter: usize,
    /// Whether a stopping test passed before `max_iter` (or the evaluation budget) ran out and the
    /// line search did not break down; `false` is where scikit-learn warns `ConvergenceWarning`.
    pub converged: bool,
    /// The release whose conventions `coef`/`intercept` follow.
    pub compat: SklearnCompat,
}

/// The shapes and labels of one fitting problem, checked once.
pub(crate) struct Problem<'a> {
    pub x: &'a [f64],
    pub n: usize,
    pub d: usize,
    pub y: &'a [usize],
    pub k: usize,
}

impl<'a> Problem<'a> {
    /// Checks shapes, labels and finiteness. `all_classes` additionally requires an example of
    /// every class (a top-level fit); CV folds may lack a class, as in scikit-learn, which passes
    /// the classes of the whole data set to each fold.
    pub fn new(
        x: &'a [f64],
        n: usize,
        d: usize,
        y: &'a [usize],
        k: usize,
        all_classes: bool,
    ) -> Result<Self> {
        if n == 0 || d == 0 {
            return Err(Error::InvalidArgument {
                field: "features".into(),
                reason: format!("need at least one example and one feature, got [{n}, {d}]"),
            });
        }
        if x.len() != n * d {
            return Err(shape_err("features", n * d, x.len()));
        }
        if y.len() != n {
            return Err(shape_err("labels", n, y.len()));
        }
        if k < 2 {
            return Err(Error::InvalidArgument {
                field: "n_classes".into(),
                reason: format!("need at least 2 classes, got {k}"),
            });
        }
        if let Some((index, &label)) = y.iter().enumerate().find(|(_, &l)| l >= k) {
            return Err(Error::LabelOutOfRange {
                index,
                label,
                n_classes: k,
            });
        }
        if let Some(pos) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteFeature {
                index: pos / d,
                feature: pos % d,
                value: x[pos],
            });
        }
        if all_classes {
            let counts = class_counts(y, k);
            if let Some(class) = counts.iter().position(|&c| c == 0) {
                return Err(Error::EmptyClass {
                    class,
                    n_classes: k,
                });
            }
        }
        Ok(Problem { x, n, d, y, k })
    }
}

/// Examples per class, `[k]`.
pub(crate) fn class_counts(y: &[usize], k: usize) -> Vec<usize> {
    let mut counts = vec![0; k];
    for &l in y {
        counts[l] += 1;
    }
    counts
}

fn shape_err(what: &'static str, expected: usize, found: usize) -> Error {
    Error::Shape {
        what,
        expected: format!("{expected} values"),
        found: format!("{found}"),
    }
}

/// How the parameter vector maps onto the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `rows` softmax rows, parameters `[rows, d + 1]` row-major (intercept last).
    Softmax { rows: usize },
    /// One sigmoid row, parameters `[d + 1]`.
    Binomial,
}

fn form(compat: SklearnCompat, k: usize) -> Form {
    match (compat, k) {
        (SklearnCompat::V1_9, 2) => Form::Binomial,
        _ => Form::Softmax { rows: k },
    }
}

/// The scaled objective scikit-learn hands to L-BFGS-B: `Σ CE / div + (l2/2)‖W‖²`.
struct Objective<'p, 'a> {
    prob: &'p Problem<'a>,
    form: Form,
    /// Divisor of the summed cross-entropy: 1 (1.0.1) or n (1.9.1, the sample-weight sum).
    div: f64,
    /// L2 strength (1/C, or 1/(C n)).
    l2: f64,
    /// Scratch: one row of logits.
    z: Vec<f64>,
}

impl<'p, 'a> Objective<'p, 'a> {
    fn new(prob: &'p Problem<'a>, params: &LogRegParams) -> Self {
        let f = form(params.compat, prob.k);
        let (div, l2) = match params.compat {
            SklearnCompat::V1_0 => (1.0, 1.0 / params.c),
            SklearnCompat::V1_9 => {
                let n = prob.n as f64;
                (n, 1.0 / (params.c * n))
            }
        };
        let rows = match f {
            Form::Softmax { rows } => rows,
            Form::Binomial => 1,
        };
        Objective {
            prob,
            form: f,
            div,
            l2,
            z: vec![0.0; rows],
        }
    }

    fn n_params(&self) -> usize {
        let dof = self.prob.d + 1;
        match self.form {
            Form::Softmax { rows } => rows * dof,
            Form::Binomial => dof,
        }
    }

    /// Value at `w`; writes the gradient into `grad`.
    fn eval(&mut self, w: &[f64], grad: &mut [f64]) -> f64 {
        let Problem { x, n, d, y, .. } = *self.prob;
        let dof = d + 1;
        grad.fill(0.0);
        let mut loss = 0.0;
        match self.form {
            Form::Softmax { rows } => {
                for i in 0..n {
                    let xi = &x[i * d..(i + 1) * d];
                    for c in 0..rows {
                        let wc = &w[c * dof..(c + 1) * dof];
                        self.z[c] = dot(&wc[..d], xi) + wc[d];
                    }
                    let yi = y[i];
                    let zy = self.z[yi];
                    // Stable log-sum-exp: subtract this row's own maximum.
                    let m = self.z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let mut s = 0.0;
                    for zc in self.z.iter_mut() {
                        *zc = (*zc - m).exp();
                        s += *zc;
                    }
                    loss += m + s.ln() - zy;
                    for c in 0..rows {
                        let mut r = self.z[c] / s;
                        if c == yi {
                            r -= 1.0;
                        }
                        r /= self.div;
                        let gc = &mut grad[c * dof..(c + 1) * dof];
                        axpy(&mut gc[..d], r, xi);
                        gc[d] += r;
                    }
                }
                loss /= self.div;
                for c in 0..rows {
                    let wc = &w[c * dof..c * dof + d];
                    loss += 0.5 * self.l2 * dot(wc, wc);
                    axpy(&mut grad[c * dof..c * dof + d], self.l2, wc);
                }
            }
            Form::Binomial => {
                for i in 0..n {
                    let xi = &x[i * d..(i + 1) * d];
                    let raw = dot(&w[..d], xi) + w[d];
                    let t = if y[i] == 1 { 1.0 } else { 0.0 };
                    loss += softplus(raw) - t * raw;
                    let r = (sigmoid(raw) - t) / self.div;
                    axpy(&mut grad[..d], r, xi);
                    grad[d] += r;
                }
                loss /= self.div;
                let wv = &w[..d];
                loss += 0.5 * self.l2 * dot(wv, wv);
                axpy(&mut grad[..d], self.l2, wv);
            }
        }
        loss
    }
}

fn axpy(y: &mut [f64], alpha: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `ln(1 + e^t)` without overflow.
fn softplus(t: f64) -> f64 {
    t.max(0.0) + (-t.abs()).exp().ln_1p()
}

fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

impl LogRegParams {
    #[cfg(test)]
    /// Parameters with the reference's defaults (`tol` 1e-4, `max_iter` 5000, REF compat) and `c`.
    pub fn new(c: f64) -> Self {
        LogRegParams {
            c,
            tol: defaults::tol(),
            max_iter: defaults::max_iter(),
            compat: SklearnCompat::default(),
        }
    }

    /// Checks `c > 0` (finite) and `tol ≥ 0` (finite).
    pub fn validate(&self) -> Result<()> {
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(Error::InvalidArgument {
                field: "c".into(),
                reason: format!("must be finite and > 0, got {}", self.c),
            });
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(Error::InvalidArgument {
                field: "tol".into(),
                reason: format!("must be finite and >= 0, got {}", self.tol),
            });
        }
        Ok(())
    }

    /// Fits from zero weights (scikit-learn `LogisticRegression(C=c).fit(x, y)`).
    ///
    /// `x` is `[n, d]` row-major, `y[i] < n_classes`, and every class needs an example.
    ///
    /// # Errors
    /// [`Error::Shape`] for mismatched lengths, [`Error::LabelOutOfRange`],
    /// [`Error::EmptyClass`], [`Error::NonFiniteFeature`], [`Error::InvalidArgument`] for bad
    /// parameters or `n_classes < 2`.
    pub fn fit(
        &self,
        x: &[f64],
        n: usize,
        d: usize,
        y: &[usize],
        n_classes: usize,
    ) -> Result<LogReg> {
        self.fit_warm(x, n, d, y, n_classes, None)
    }

    /// Fits starting from `init` (the `coef=` warm start of scikit-learn's
    /// `_logistic_regression_path`), or from zero when `None`. `init` must have the same classes,
    /// features and `compat`; for two classes under [`SklearnCompat::V1_0`] its row `w, c` starts
    /// the symmetric fit at `[−w; w]`, `[−c; c]`, as scikit-learn 1.0.1 does.
    ///
    /// # Errors
    /// As [`LogRegParams::fit`], plus [`Error::Shape`] when `init` does not match.
    pub fn fit_warm(
        &self,
        x: &[f64],
        n: usize,
        d: usize,
        y: &[usize],
        n_classes: usize,
        init: Option<&LogReg>,
    ) -> Result<LogReg> {
        self.fit_observed(x, n, d, y, n_classes, init, &mut |_| {})
    }

    /// [`LogRegParams::fit_warm`] that also hands `on_iter` the model after every L-BFGS iteration
    /// (its `n_iter` is the iteration count, `converged` is `false`). The iterate after `t`
    /// iterations is exactly what a fit with `max_iter = t` returns, so one call traces e.g.
    /// ‖W‖ against the iteration budget (the LP norm-vs-iterations study, docs/method.md §8).
    ///
    /// # Errors
    /// As [`LogRegParams::fit_warm`].
    #[allow(clippy::too_many_arguments)]
    pub fn fit_observed(
        &self,
        x: &[f64],
        n: usize,
        d: usize,
        y: &[usize],
        n_classes: usize,
        init: Option<&LogReg>,
        on_iter: &mut dyn FnMut(&LogReg),
    ) -> Result<LogReg> {
        self.validate()?;
        let prob = Problem::new(x, n, d, y, n_classes, true)?;
        let w0 = match init {
            Some(m) => Some(self.params_from(m, d, n_classes)?),
            None => None,
        };
        Ok(self.fit_problem(&prob, w0, on_iter).0)
    }

    /// The solver's parameter vector for a model in scikit-learn's layout.
    fn params_from(&self, m: &LogReg, d: usize, k: usize) -> Result<Vec<f64>> {
        let rows = if k == 2 { 1 } else { k };
        if m.n_classes != k
            || m.n_features != d
            || m.compat != self.compat
            || m.coef.len() != rows * d
            || m.intercept.len() != rows
        {
            return Err(Error::Shape {
                what: "initial model",
                expected: format!("{k} classes, {d} features, {:?}", self.compat),
                found: format!(
                    "{} classes, {} features, {:?}, coef {} values",
                    m.n_classes,
                    m.n_features,
                    m.compat,
                    m.coef.len()
                ),
            });
        }
        let dof = d + 1;
        Ok(match form(self.compat, k) {
            Form::Binomial => {
                let mut w = m.coef.clone();
                w.push(m.intercept[0]);
                w
            }
            Form::Softmax { rows: 2 } => {
                // REF (1.0.1): `w0[0, :] = -coef; w0[1, :] = coef`, intercept included.
                let mut w = vec![0.0; 2 * dof];
                for j in 0..d {
                    w[j] = -m.coef[j];
                    w[dof + j] = m.coef[j];
                }
                w[d] = -m.intercept[0];
                w[dof + d] = m.intercept[0];
                w
            }
            Form::Softmax { rows } => {
                let mut w = vec![0.0; rows * dof];
                for c in 0..rows {
                    w[c * dof..c * dof + d].copy_from_slice(&m.coef[c * d..(c + 1) * d]);
                    w[c * dof + d] = m.intercept[c];
                }
                w
            }
        })
    }

    /// Fits a checked problem from `w0` (solver layout) or zero; returns the model and the solver's
    /// final vector (for two classes under 1.0.1 both symmetric rows, which a warm start along a C
    /// path carries over as scikit-learn does). Used by CV folds, which may lack a class.
    pub(crate) fn fit_problem(
        &self,
        prob: &Problem<'_>,
        w0: Option<Vec<f64>>,
        on_iter: &mut dyn FnMut(&LogReg),
    ) -> (LogReg, Vec<f64>) {
        let mut obj = Objective::new(prob, self);
        let np = obj.n_params();
        let w0 = w0.unwrap_or_else(|| vec![0.0; np]);
        let (k, d, compat) = (prob.k, prob.d, self.compat);
        let cfg = lbfgs::Config {
            m: 10,
            pgtol: self.tol,
            ftol: compat.ftol(),
            max_iter: self.max_iter,
            // scipy's default `maxfun`; scikit-learn does not change it.
            max_fun: 15_000,
            max_ls: compat.max_ls(),
        };
        let out = lbfgs::minimize(
            &mut |w: &[f64], g: &mut [f64]| obj.eval(w, g),
            w0,
            &cfg,
            &mut |iter: usize, w: &[f64]| on_iter(&to_model(w, k, d, compat, iter, false)),
        );
        let model = to_model(
            &out.x,
            k,
            d,
            compat,
            out.n_iter.min(self.max_iter),
            out.converged,
        );
        (model, out.x)
    }

    /// The solver layout of a model, for warm starts inside the crate.
    pub(crate) fn solver_params(&self, m: &LogReg) -> Result<Vec<f64>> {
        self.params_from(m, m.n_features, m.n_classes)
    }
}

/// Builds a model in scikit-learn's layout from the solver's parameter vector.
fn to_model(
    w: &[f64],
    k: usize,
    d: usize,
    compat: SklearnCompat,
    n_iter: usize,
    converged: bool,
) -> LogReg {
    let dof = d + 1;
    let (coef, intercept) = match form(compat, k) {
        Form::Binomial => (w[..d].to_vec(), vec![w[d]]),
        // REF (1.0.1): `multi_w0[1][np.newaxis, :]`, the class-1 row of the symmetric solution.
        Form::Softmax { rows: 2 } => (w[dof..dof + d].to_vec(), vec![w[dof + d]]),
        Form::Softmax { rows } => {
            let mut coef = Vec::with_capacity(rows * d);
            let mut intercept = Vec::with_capacity(rows);
            for c in 0..rows {
                coef.extend_from_slice(&w[c * dof..c * dof + d]);
                intercept.push(w[c * dof + d]);
            }
            (coef, intercept)
        }
    };
    LogReg {
        coef,
        intercept,
        n_classes: k,
        n_features: d,
        n_iter,
        converged,
        compat,
    }
}

impl LogReg {
    /// Rows of `coef`: `n_classes`, or 1 for a two-class model.
    pub fn rows(&self) -> usize {
        if self.n_classes == 2 {
            1
        } else {
            self.n_classes
        }
    }

    /// Checks the model's own shapes (its fields are public) and that `x` is `[n, n_features]`.
    fn check_x(&self, x: &[f64], n: usize) -> Result<()> {
        let rows = self.rows();
        if self.n_classes < 2
            || self.coef.len() != rows * self.n_features
            || self.intercept.len() != rows
        {
            return Err(Error::Shape {
                what: "logistic-regression model",
                expected: format!("coef [{rows}, {}], intercept [{rows}]", self.n_features),
                found: format!(
                    "{} classes, coef {} values, intercept {} values",
                    self.n_classes,
                    self.coef.len(),
                    self.intercept.len()
                ),
            });
        }
        if x.len() != n * self.n_features {
            return Err(shape_err("features", n * self.n_features, x.len()));
        }
        Ok(())
    }

    /// Per-class logits `[n, n_classes]` whose row-wise softmax is [`LogReg::predict_proba`]:
    /// `x Wᵀ + b` for `n_classes ≥ 3`; for two classes with `d = w·x + c`, `[−d, d]`
    /// ([`SklearnCompat::V1_0`], scikit-learn's `np.c_[-decision, decision]`) or `[0, d]`
    /// ([`SklearnCompat::V1_9`], the sigmoid). `x` is `[n, n_features]` row-major.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x.len() != n * n_features` or the model's fields are inconsistent.
    pub fn decision(&self, x: &[f64], n: usize) -> Result<Vec<f64>> {
        self.check_x(x, n)?;
        let (k, d, rows) = (self.n_classes, self.n_features, self.rows());
        let mut out = vec![0.0; n * k];
        for i in 0..n {
            let xi = &x[i * d..(i + 1) * d];
            let o = &mut out[i * k..(i + 1) * k];
            if rows == 1 {
                let dv = dot(&self.coef, xi) + self.intercept[0];
                match self.compat {
                    SklearnCompat::V1_0 => {
                        o[0] = -dv;
                        o[1] = dv;
                    }
                    SklearnCompat::V1_9 => {
                        o[0] = 0.0;
                        o[1] = dv;
                    }
                }
            } else {
                for (c, oc) in o.iter_mut().enumerate() {
                    *oc = dot(&self.coef[c * d..(c + 1) * d], xi) + self.intercept[c];
                }
            }
        }
        Ok(out)
    }

    /// Class probabilities `[n, n_classes]` (scikit-learn's `predict_proba`), rows summing to 1.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x.len() != n * n_features`.
    pub fn predict_proba(&self, x: &[f64], n: usize) -> Result<Vec<f64>> {
        let mut p = self.decision(x, n)?;
        for row in p.chunks_exact_mut(self.n_classes) {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut s = 0.0;
            for v in row.iter_mut() {
                *v = (*v - m).exp();
                s += *v;
            }
            for v in row.iter_mut() {
                *v /= s;
            }
        }
        Ok(p)
    }

    /// Predicted classes `[n]` (scikit-learn's `predict`): the first arg-max of the logits; for two
    /// classes, class 1 iff `d > 0`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x.len() != n * n_features`.
    pub fn predict(&self, x: &[f64], n: usize) -> Result<Vec<usize>> {
        let z = self.decision(x, n)?;
        Ok(z.chunks_exact(self.n_classes)
            .map(|row| {
                if self.n_classes == 2 {
                    usize::from(row[1] > row[0])
                } else {
                    let mut best = 0;
                    for (c, &v) in row.iter().enumerate() {
                        if v > row[best] {
                            best = c;
                        }
                    }
                    best
                }
            })
            .collect())
    }

    /// Fraction of correct predictions in `[0, 1]` (scikit-learn's `score`).
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` or `y` do not have `n` examples.
    pub fn accuracy(&self, x: &[f64], n: usize, y: &[usize]) -> Result<f64> {
        if y.len() != n {
            return Err(shape_err("labels", n, y.len()));
        }
        let pred = self.predict(x, n)?;
        let hits = pred.iter().zip(y).filter(|(p, t)| p == t).count();
        Ok(hits as f64 / n as f64)
    }

    /// The head lpft installs (docs/method.md §2.1 step 3): `(V [C, d], b [C])`.
    ///
    /// For `n_classes ≥ 3` this is `(coef, intercept)`. For two classes it is REF's halving of the
    /// single row `w, c`: `V = [−w/2; w/2]`, `b = [−c/2; c/2]`, whose logit gap is `d = w·x + c`.
    /// Under [`SklearnCompat::V1_0`] that is half the gap `2d` of scikit-learn's own symmetric
    /// solution (the head equals it at temperature 2, ‖V‖_F = ‖w‖/√2); under
    /// [`SklearnCompat::V1_9`] it reproduces the binomial probabilities exactly. Expects a model
    /// as fitted (see [`LogReg::decision`] for the shape check).
    pub fn head(&self) -> (Vec<f64>, Vec<f64>) {
        if self.n_classes != 2 {
            return (self.coef.clone(), self.intercept.clone());
        }
        let mut v: Vec<f64> = self.coef.iter().map(|w| -w / 2.0).collect();
        v.extend(self.coef.iter().map(|w| w / 2.0));
        let c = self.intercept.first().copied().unwrap_or(0.0);
        (v, vec![-c / 2.0, c / 2.0])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use safetensors::{Dtype, SafeTensors};
    use std::path::PathBuf;

    /// Relative coefficient error allowed against scikit-learn (‖ours − sk‖ / ‖sk‖) for plain fits
    /// and for cross-validated refits at C below `cv`'s `LARGE_C`. Both sides run the same
    /// algorithm in f64; BLAS and our loops sum in different orders, which shows in the last bits:
    /// measured ≤ 4.4e-11 (coefficients) and ≤ 2.1e-12 (intercepts) over every fixture fit.
    pub const COEF_RTOL: f64 = 1e-9;
    /// Identities that hold exactly in real arithmetic (halving, probabilities summing to 1, the
    /// objective's scale), checked up to the rounding of sums of a few hundred f64 terms.
    const ROUND_RTOL: f64 = 1e-12;

    pub fn fixture_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/logreg")
    }

    /// All tensors of one fixture file, as f64 (floats) or i64 (ints), with shapes.
    pub struct Fixture {
        pub f: std::collections::BTreeMap<String, (Vec<usize>, Vec<f64>)>,
        pub i: std::collections::BTreeMap<String, Vec<i64>>,
    }

    pub fn load(file: &str) -> Fixture {
        let bytes =
            std::fs::read(fixture_dir().join(file)).expect("fixture file (run gen_logreg.py)");
        let st = SafeTensors::deserialize(&bytes).expect("valid safetensors");
        let mut f = std::collections::BTreeMap::new();
        let mut i = std::collections::BTreeMap::new();
        for (name, view) in st.tensors() {
            let data = view.data();
            match view.dtype() {
                Dtype::F64 => {
                    let v = data
                        .chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                        .collect();
                    f.insert(name, (view.shape().to_vec(), v));
                }
                Dtype::F32 => {
                    let v = data
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64)
                        .collect();
                    f.insert(name, (view.shape().to_vec(), v));
                }
                Dtype::I64 => {
                    let v = data
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                        .collect();
                    i.insert(name, v);
                }
                other => panic!("unexpected dtype {other:?} for {name}"),
            }
        }
        Fixture { f, i }
    }

    /// One problem: features `[n, d]`, labels, classes.
    pub struct Data {
        pub x: Vec<f64>,
        pub n: usize,
        pub d: usize,
        pub y: Vec<usize>,
        pub k: usize,
        pub folds: Vec<usize>,
    }

    pub fn problem(fx: &Fixture, name: &str) -> Data {
        let (shape, x) = fx.f[&format!("{name}.x")].clone();
        let y: Vec<usize> = fx.i[&format!("{name}.y")]
            .iter()
            .map(|&v| v as usize)
            .collect();
        let folds = fx.i[&format!("{name}.folds")]
            .iter()
            .map(|&v| v as usize)
            .collect();
        let k = y.iter().max().expect("labels") + 1;
        Data {
            x,
            n: shape[0],
            d: shape[1],
            y,
            k,
            folds,
        }
    }

    pub fn rel_err(ours: &[f64], theirs: &[f64]) -> f64 {
        assert_eq!(ours.len(), theirs.len(), "length mismatch");
        let num: f64 = ours.iter().zip(theirs).map(|(a, b)| (a - b).powi(2)).sum();
        let den: f64 = theirs.iter().map(|b| b * b).sum();
        (num / den).sqrt()
    }

    pub const PROBLEMS: [&str; 3] = ["binary", "cb", "separable"];

    /// scikit-learn's objective `C·Σ CE + ½‖W‖²` of a model given in scikit-learn's layout.
    pub fn sk_objective(params: &LogRegParams, p: &Data, coef: &[f64], intercept: &[f64]) -> f64 {
        let m = LogReg {
            coef: coef.to_vec(),
            intercept: intercept.to_vec(),
            n_classes: p.k,
            n_features: p.d,
            n_iter: 0,
            converged: true,
            compat: params.compat,
        };
        let w = params.solver_params(&m).expect("shapes");
        let prob = Problem::new(&p.x, p.n, p.d, &p.y, p.k, true).expect("valid");
        let mut obj = Objective::new(&prob, params);
        let mut g = vec![0.0; w.len()];
        let scale = params.c * obj.div;
        obj.eval(&w, &mut g) * scale
    }

    pub fn versions() -> [(SklearnCompat, &'static str); 2] {
        [
            (SklearnCompat::V1_0, "sklearn-1.0.safetensors"),
            (SklearnCompat::V1_9, "sklearn-1.9.safetensors"),
        ]
    }

    fn random_problem(n: usize, d: usize, k: usize, seed: u64) -> (Vec<f64>, Vec<usize>) {
        // A small xorshift generator: the test only needs varied, reproducible numbers.
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let x = (0..n * d).map(|_| 2.0 * next() - 1.0).collect();
        let y = (0..n).map(|i| (i + (next() * 2.0) as usize) % k).collect();
        (x, y)
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // Central differences on a smooth objective: error ~ h² f''' ≈ 1e-10 at h = 1e-5, far
        // below the gradient entries (~1e-2).
        const H: f64 = 1e-5;
        const FD_ATOL: f64 = 1e-7;
        for (k, compat) in [
            (3, SklearnCompat::V1_0),
            (3, SklearnCompat::V1_9),
            (2, SklearnCompat::V1_0),
            (2, SklearnCompat::V1_9),
        ] {
            let (n, d) = (13, 5);
            let (x, y) = random_problem(n, d, k, 7 + k as u64);
            let prob = Problem::new(&x, n, d, &y, k, true).expect("valid");
            let params = LogRegParams {
                compat,
                ..LogRegParams::new(0.7)
            };
            let mut obj = Objective::new(&prob, &params);
            let np = obj.n_params();
            let w: Vec<f64> = (0..np)
                .map(|j| ((j * 37 % 11) as f64 - 5.0) * 0.1)
                .collect();
            let mut g = vec![0.0; np];
            obj.eval(&w, &mut g);
            let mut scratch = vec![0.0; np];
            for j in 0..np {
                let (mut wp, mut wm) = (w.clone(), w.clone());
                wp[j] += H;
                wm[j] -= H;
                let fd = (obj.eval(&wp, &mut scratch) - obj.eval(&wm, &mut scratch)) / (2.0 * H);
                assert!(
                    (fd - g[j]).abs() < FD_ATOL,
                    "{compat:?} k={k} param {j}: analytic {} vs finite difference {fd}",
                    g[j]
                );
            }
        }
    }

    #[test]
    fn objective_is_sklearns_up_to_scale() {
        // C·ΣCE + ½‖W‖² equals C·f (1.0.1) and C·n·f (1.9.1) for three classes.
        let (n, d, k, c) = (11, 4, 3, 2.5);
        let (x, y) = random_problem(n, d, k, 3);
        let prob = Problem::new(&x, n, d, &y, k, true).expect("valid");
        let w: Vec<f64> = (0..k * (d + 1)).map(|j| (j as f64 * 0.37).sin()).collect();
        let model = to_model(&w, k, d, SklearnCompat::V1_0, 0, true);
        let p = model.predict_proba(&x, n).expect("shape");
        let ce: f64 = (0..n).map(|i| -p[i * k + y[i]].ln()).sum();
        let wn: f64 = model.coef.iter().map(|v| v * v).sum();
        let sk = c * ce + 0.5 * wn;
        let mut g = vec![0.0; w.len()];
        for (compat, scale) in [
            (SklearnCompat::V1_0, c),
            (SklearnCompat::V1_9, c * n as f64),
        ] {
            let params = LogRegParams {
                compat,
                ..LogRegParams::new(c)
            };
            let f = Objective::new(&prob, &params).eval(&w, &mut g);
            assert!(
                (f * scale - sk).abs() < ROUND_RTOL * sk,
                "{compat:?}: {} vs {sk}",
                f * scale
            );
        }
    }

    #[test]
    fn plain_fits_match_sklearn() {
        let pf = load("problems.safetensors");
        for (compat, file) in versions() {
            let sk = load(file);
            for name in PROBLEMS {
                let p = problem(&pf, name);
                for (tag, c, max_iter) in [
                    ("c100", 100.0, 5000),
                    ("c0.01", 1e-2, 5000),
                    ("c100_it5", 100.0, 5),
                ] {
                    let params = LogRegParams {
                        c,
                        tol: 1e-4,
                        max_iter,
                        compat,
                    };
                    let m = params.fit(&p.x, p.n, p.d, &p.y, p.k).expect("fit");
                    let key = format!("{name}.fit.{tag}");
                    let coef = &sk.f[&format!("{key}.coef")].1;
                    let icpt = &sk.f[&format!("{key}.intercept")].1;
                    let ec = rel_err(&m.coef, coef);
                    let ei = rel_err(&m.intercept, icpt);
                    let sk_iter = sk.i[&format!("{key}.n_iter")][0] as usize;
                    eprintln!(
                        "{file} {key}: coef rel {ec:.2e}, intercept rel {ei:.2e}, \
                         n_iter {} vs {sk_iter}",
                        m.n_iter
                    );
                    assert!(ec < COEF_RTOL, "{file} {key}: coef rel err {ec:e}");
                    assert!(ei < COEF_RTOL, "{file} {key}: intercept rel err {ei:e}");
                    assert_eq!(m.converged, max_iter == 5000, "{file} {key}: converged");
                    assert_eq!(m.n_iter, sk_iter, "{file} {key}: n_iter");
                }
            }
        }
    }

    #[test]
    fn non_convergence_is_reported_not_an_error() {
        let pf = load("problems.safetensors");
        let p = problem(&pf, "cb");
        for compat in [SklearnCompat::V1_0, SklearnCompat::V1_9] {
            for max_iter in [1, 3] {
                let params = LogRegParams {
                    c: 1e4,
                    tol: 1e-4,
                    max_iter,
                    compat,
                };
                let m = params.fit(&p.x, p.n, p.d, &p.y, p.k).expect("fit");
                assert!(!m.converged, "{compat:?} max_iter {max_iter}");
                assert_eq!(m.n_iter, max_iter);
            }
        }
    }

    #[test]
    fn observer_sees_the_iterates_of_shorter_budgets() {
        let pf = load("problems.safetensors");
        let p = problem(&pf, "separable");
        let params = LogRegParams::new(1e3);
        let mut trace = Vec::new();
        let full = params
            .fit_observed(&p.x, p.n, p.d, &p.y, p.k, None, &mut |m| {
                trace.push(m.clone())
            })
            .expect("fit");
        assert_eq!(trace.len(), full.n_iter);
        for t in [1, 4, 9] {
            let short = LogRegParams {
                max_iter: t,
                ..params.clone()
            }
            .fit(&p.x, p.n, p.d, &p.y, p.k)
            .expect("fit");
            assert_eq!(short.coef, trace[t - 1].coef, "iterate {t}");
        }
    }

    #[test]
    fn binary_head_halves_the_symmetric_logit_gap() {
        let pf = load("problems.safetensors");
        let p = problem(&pf, "binary");
        let m = LogRegParams::new(1.0)
            .fit(&p.x, p.n, p.d, &p.y, p.k)
            .expect("fit");
        let sym = m.decision(&p.x, p.n).expect("shape");
        let (v, b) = m.head();
        assert_eq!((v.len(), b.len()), (2 * p.d, 2));
        for i in 0..p.n {
            let xi = &p.x[i * p.d..(i + 1) * p.d];
            let z0 = dot(&v[..p.d], xi) + b[0];
            let z1 = dot(&v[p.d..], xi) + b[1];
            let gap_sym = sym[2 * i + 1] - sym[2 * i];
            assert!((2.0 * (z1 - z0) - gap_sym).abs() < ROUND_RTOL * (1.0 + gap_sym.abs()));
            assert_eq!(z1 > z0, gap_sym > 0.0, "argmax of example {i}");
        }
        let norm_w: f64 = m.coef.iter().map(|w| w * w).sum::<f64>().sqrt();
        let norm_v: f64 = v.iter().map(|w| w * w).sum::<f64>().sqrt();
        assert!((norm_v - norm_w / 2f64.sqrt()).abs() < ROUND_RTOL * norm_w);
        // Three classes: the head is the fit itself.
        let q = problem(&pf, "separable");
        let m3 = LogRegParams::new(1.0)
            .fit(&q.x, q.n, q.d, &q.y, q.k)
            .expect("fit");
        assert_eq!(m3.head(), (m3.coef.clone(), m3.intercept.clone()));
    }

    #[test]
    fn predictions_and_probabilities_are_consistent() {
        let pf = load("problems.safetensors");
        for name in PROBLEMS {
            let p = problem(&pf, name);
            for compat in [SklearnCompat::V1_0, SklearnCompat::V1_9] {
                let m = LogRegParams {
                    compat,
                    ..LogRegParams::new(1.0)
                }
                .fit(&p.x, p.n, p.d, &p.y, p.k)
                .expect("fit");
                let pr = m.predict_proba(&p.x, p.n).expect("shape");
                let pred = m.predict(&p.x, p.n).expect("shape");
                for i in 0..p.n {
                    let row = &pr[i * p.k..(i + 1) * p.k];
                    assert!((row.iter().sum::<f64>() - 1.0).abs() < ROUND_RTOL);
                    let best = (0..p.k).fold(0, |b, c| if row[c] > row[b] { c } else { b });
                    assert_eq!(pred[i], best);
                }
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = [0.0, 1.0, 2.0, 3.0];
        let p = LogRegParams::new(1.0);
        assert!(matches!(
            p.fit(&x, 2, 2, &[0, 2], 2),
            Err(Error::LabelOutOfRange { index: 1, .. })
        ));
        assert!(matches!(
            p.fit(&x, 2, 2, &[0, 0], 2),
            Err(Error::EmptyClass { class: 1, .. })
        ));
        assert!(matches!(
            p.fit(&x, 3, 2, &[0, 1, 0], 2),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            p.fit(&[0.0, f64::NAN, 2.0, 3.0], 2, 2, &[0, 1], 2),
            Err(Error::NonFiniteFeature {
                index: 0,
                feature: 1,
                ..
            })
        ));
        assert!(matches!(
            LogRegParams::new(0.0).fit(&x, 2, 2, &[0, 1], 2),
            Err(Error::InvalidArgument { .. })
        ));
        let m = p.fit(&x, 2, 2, &[0, 1], 2).expect("fit");
        assert!(matches!(m.decision(&x, 3), Err(Error::Shape { .. })));
    }
}
