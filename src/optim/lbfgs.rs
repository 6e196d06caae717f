//! L-BFGS for smooth unconstrained problems, following the unconstrained path of scipy's
//! L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995; Morales & Nocedal 2011) closely enough to stop where
//! it stops. Written for lpft from the published algorithms; the linear probe
//! ([`crate::probe::logreg`]) runs on it.

use crate::linalg::dot_in_order as dot;
use std::collections::VecDeque;

/// L-BFGS-B's line-search constants (`lnsrlb`): sufficient decrease, curvature, interval width.
const LS_FTOL: f64 = 1e-3;
const LS_GTOL: f64 = 0.9;
const LS_XTOL: f64 = 0.1;
/// L-BFGS-B's largest step when there are no bounds.
const STEP_MAX: f64 = 1e10;

pub(crate) struct Config {
    /// Stored correction pairs.
    pub m: usize,
    /// Stop when max |g_i| ≤ pgtol.
    pub pgtol: f64,
    /// Stop when (f_k − f_{k+1}) ≤ ftol · max(|f_k|, |f_{k+1}|, 1).
    pub ftol: f64,
    pub max_iter: usize,
    /// Stop (not converged) once more than this many evaluations were made.
    pub max_fun: usize,
    /// Most evaluations per line search.
    pub max_ls: usize,
}

pub struct Output {
    pub x: Vec<f64>,
    pub n_iter: usize,
    pub converged: bool,
}

struct Pair {
    s: Vec<f64>,
    y: Vec<f64>,
    /// s·y (L-BFGS-B's `dr`).
    sy: f64,
}

fn inf_norm(g: &[f64]) -> f64 {
    g.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// d = −H g by the two-loop recursion, H₀ = (s·y / y·y) I of the newest pair (L-BFGS-B's
/// 1/θ); equal in exact arithmetic to L-BFGS-B's compact-form subspace step without bounds.
fn direction(g: &[f64], mem: &VecDeque<Pair>, theta: f64, d: &mut [f64]) {
    d.copy_from_slice(g);
    let mut alpha = Vec::with_capacity(mem.len());
    for p in mem.iter().rev() {
        let a = dot(&p.s, d) / p.sy;
        for (di, yi) in d.iter_mut().zip(&p.y) {
            *di -= a * yi;
        }
        alpha.push(a);
    }
    for di in d.iter_mut() {
        *di /= theta;
    }
    for (p, a) in mem.iter().zip(alpha.iter().rev()) {
        let b = dot(&p.y, d) / p.sy;
        for (di, si) in d.iter_mut().zip(&p.s) {
            *di += (a - b) * si;
        }
    }
    for di in d.iter_mut() {
        *di = -*di;
    }
}

/// Minimises `fun` (value, gradient written into its second argument) from `x0`. `on_iter`
/// sees the iteration count and iterate after every completed iteration.
pub(crate) fn minimize(
    fun: &mut dyn FnMut(&[f64], &mut [f64]) -> f64,
    x0: Vec<f64>,
    cfg: &Config,
    on_iter: &mut dyn FnMut(usize, &[f64]),
) -> Output {
    let n = x0.len();
    let mut x = x0;
    let mut g = vec![0.0; n];
    let mut f = fun(&x, &mut g);
    let mut nfev = 1usize;
    let done = |x: Vec<f64>, n_iter: usize, converged: bool| Output {
        x,
        n_iter,
        converged,
    };
    if inf_norm(&g) <= cfg.pgtol {
        return done(x, 0, true);
    }
    let mut mem: VecDeque<Pair> = VecDeque::with_capacity(cfg.m);
    let mut theta = 1.0;
    let mut iter = 0usize;
    let mut d = vec![0.0; n];
    let (mut x_old, mut g_old) = (vec![0.0; n], vec![0.0; n]);
    loop {
        if mem.is_empty() {
            // L-BFGS-B's generalised Cauchy point with B = θI, θ = 1: steepest descent.
            for (di, gi) in d.iter_mut().zip(&g) {
                *di = -gi / theta;
            }
        } else {
            direction(&g, &mem, theta, &mut d);
        }
        let gd_old = dot(&g, &d);
        x_old.copy_from_slice(&x);
        g_old.copy_from_slice(&g);
        let f_old = f;
        let mut stp = 0.0;
        let mut ok = false;
        let mut gd = gd_old;
        if gd_old < 0.0 {
            stp = if iter == 0 {
                (1.0 / dot(&d, &d).sqrt()).min(STEP_MAX)
            } else {
                1.0
            };
            let mut ls = Dcsrch::start(f, gd_old, stp);
            let mut evals = 0;
            loop {
                if evals >= cfg.max_ls {
                    break;
                }
                for ((xi, x0i), di) in x.iter_mut().zip(&x_old).zip(&d) {
                    *xi = x0i + stp * di;
                }
                f = fun(&x, &mut g);
                nfev += 1;
                evals += 1;
                gd = dot(&g, &d);
                if ls.step(f, gd, &mut stp) {
                    ok = true;
                    break;
                }
            }
        }
        if !ok {
            // Restore the last iterate; restart from steepest descent once, else give up
            // (scipy's ABNORMAL_TERMINATION_IN_LNSRCH; scikit-learn only warns).
            x.copy_from_slice(&x_old);
            g.copy_from_slice(&g_old);
            f = f_old;
            if mem.is_empty() {
                return done(x, iter, false);
            }
            mem.clear();
            theta = 1.0;
            continue;
        }
        iter += 1;
        on_iter(iter, &x);
        // scipy's driver checks its budgets on NEW_X, before L-BFGS-B's own stopping tests.
        if iter >= cfg.max_iter || nfev > cfg.max_fun {
            return done(x, iter, false);
        }
        if inf_norm(&g) <= cfg.pgtol {
            return done(x, iter, true);
        }
        if f_old - f <= cfg.ftol * f_old.abs().max(f.abs()).max(1.0) {
            return done(x, iter, true);
        }
        // Correction pair; skipped when the curvature s·y is not safely positive.
        let (dr, ddum) = if stp == 1.0 {
            (gd - gd_old, -gd_old)
        } else {
            ((gd - gd_old) * stp, -gd_old * stp)
        };
        if dr <= f64::EPSILON * ddum {
            continue;
        }
        let s: Vec<f64> = d.iter().map(|di| stp * di).collect();
        let y: Vec<f64> = g.iter().zip(&g_old).map(|(a, b)| a - b).collect();
        theta = dot(&y, &y) / dr;
        if mem.len() == cfg.m {
            mem.pop_front();
        }
        mem.push_back(Pair { s, y, sy: dr });
    }
}

/// Moré–Thuente line search (MINPACK-2 `dcsrch` semantics) on φ(stp) = f(x + stp·d):
/// finds a step satisfying the strong Wolfe conditions with L-BFGS-B's constants.
struct Dcsrch {
    brackt: bool,
    stage1: bool,
    ginit: f64,
    gtest: f64,
    finit: f64,
    stx: f64,
    fx: f64,
    gx: f64,
    sty: f64,
    fy: f64,
    gy: f64,
    stmin: f64,
    stmax: f64,
    width: f64,
    width1: f64,
}

const XTRAPL: f64 = 1.1;
const XTRAPU: f64 = 4.0;
const STP_MIN: f64 = 0.0;

impl Dcsrch {
    fn start(f: f64, g: f64, stp: f64) -> Self {
        let width = STEP_MAX - STP_MIN;
        Dcsrch {
            brackt: false,
            stage1: true,
            ginit: g,
            gtest: LS_FTOL * g,
            finit: f,
            stx: 0.0,
            fx: f,
            gx: g,
            sty: 0.0,
            fy: f,
            gy: g,
            stmin: 0.0,
            stmax: stp + XTRAPU * stp,
            width,
            width1: 2.0 * width,
        }
    }

    /// Takes φ(stp), φ'(stp); returns `true` when `stp` is accepted (converged, or a warning
    /// that L-BFGS-B also accepts), else sets the next trial `stp`.
    fn step(&mut self, f: f64, g: f64, stp: &mut f64) -> bool {
        let ftest = self.finit + *stp * self.gtest;
        if self.stage1 && f <= ftest && g >= 0.0 {
            self.stage1 = false;
        }
        let warn = (self.brackt
            && (*stp <= self.stmin
                || *stp >= self.stmax
                || self.stmax - self.stmin <= LS_XTOL * self.stmax))
            || (*stp == STEP_MAX && f <= ftest && g <= self.gtest)
            || (*stp == STP_MIN && (f > ftest || g >= self.gtest));
        let conv = f <= ftest && g.abs() <= LS_GTOL * (-self.ginit);
        if warn || conv {
            return true;
        }
        if self.stage1 && f <= self.fx && f > ftest {
            // Modified function ψ(stp) = φ(stp) − φ(0) − gtest·stp while in stage 1.
            let gt = self.gtest;
            let mut fxm = self.fx - self.stx * gt;
            let mut fym = self.fy - self.sty * gt;
            let mut gxm = self.gx - gt;
            let mut gym = self.gy - gt;
            let fm = f - *stp * gt;
            let gm = g - gt;
            self.dcstep(&mut fxm, &mut gxm, &mut fym, &mut gym, stp, fm, gm);
            self.fx = fxm + self.stx * gt;
            self.fy = fym + self.sty * gt;
            self.gx = gxm + gt;
            self.gy = gym + gt;
        } else {
            let (mut fx, mut gx, mut fy, mut gy) = (self.fx, self.gx, self.fy, self.gy);
            self.dcstep(&mut fx, &mut gx, &mut fy, &mut gy, stp, f, g);
            self.fx = fx;
            self.gx = gx;
            self.fy = fy;
            self.gy = gy;
        }
        if self.brackt {
            if (self.sty - self.stx).abs() >= 0.66 * self.width1 {
                *stp = self.stx + 0.5 * (self.sty - self.stx);
            }
            self.width1 = self.width;
            self.width = (self.sty - self.stx).abs();
            self.stmin = self.stx.min(self.sty);
            self.stmax = self.stx.max(self.sty);
        } else {
            self.stmin = *stp + XTRAPL * (*stp - self.stx);
            self.stmax = *stp + XTRAPU * (*stp - self.stx);
        }
        *stp = stp.clamp(STP_MIN, STEP_MAX);
        if self.brackt
            && (*stp <= self.stmin
                || *stp >= self.stmax
                || self.stmax - self.stmin <= LS_XTOL * self.stmax)
        {
            *stp = self.stx;
        }
        false
    }

    /// One safeguarded step (MINPACK-2 `dcstep`): updates the interval of uncertainty
    /// `[stx, sty]` with the trial (stp, fp, dp) and sets the next trial in `stp`.
    #[allow(clippy::too_many_arguments)]
    fn dcstep(
        &mut self,
        fx: &mut f64,
        dx: &mut f64,
        fy: &mut f64,
        dy: &mut f64,
        stp: &mut f64,
        fp: f64,
        dp: f64,
    ) {
        let (stx, sty, st) = (self.stx, self.sty, *stp);
        let (stpmin, stpmax) = (self.stmin, self.stmax);
        let sgnd = dp * (*dx / dx.abs());
        let stpf;
        if fp > *fx {
            // Higher value: the minimum is bracketed; cubic or cubic/quadratic mean.
            let theta = 3.0 * (*fx - fp) / (st - stx) + *dx + dp;
            let s = theta.abs().max(dx.abs()).max(dp.abs());
            let mut gamma = s * ((theta / s).powi(2) - (*dx / s) * (dp / s)).sqrt();
            if st < stx {
                gamma = -gamma;
            }
            let p = (gamma - *dx) + theta;
            let q = ((gamma - *dx) + gamma) + dp;
            let r = p / q;
            let stpc = stx + r * (st - stx);
            let stpq = stx + ((*dx / ((*fx - fp) / (st - stx) + *dx)) / 2.0) * (st - stx);
            stpf = if (stpc - stx).abs() < (stpq - stx).abs() {
                stpc
            } else {
                stpc + (stpq - stpc) / 2.0
            };
            self.brackt = true;
        } else if sgnd < 0.0 {
            // Derivatives of opposite sign: bracketed; cubic or secant step.
            let theta = 3.0 * (*fx - fp) / (st - stx) + *dx + dp;
            let s = theta.abs().max(dx.abs()).max(dp.abs());
            let mut gamma = s * ((theta / s).powi(2) - (*dx / s) * (dp / s)).sqrt();
            if st > stx {
                gamma = -gamma;
            }
            let p = (gamma - dp) + theta;
            let q = ((gamma - dp) + gamma) + *dx;
            let r = p / q;
            let stpc = st + r * (stx - st);
            let stpq = st + (dp / (dp - *dx)) * (stx - st);
            stpf = if (stpc - st).abs() > (stpq - st).abs() {
                stpc
            } else {
                stpq
            };
            self.brackt = true;
        } else if dp.abs() < dx.abs() {
            // Same sign, derivative magnitude decreases.
            let theta = 3.0 * (*fx - fp) / (st - stx) + *dx + dp;
            let s = theta.abs().max(dx.abs()).max(dp.abs());
            let mut gamma = s * ((theta / s).powi(2) - (*dx / s) * (dp / s)).max(0.0).sqrt();
            if st > stx {
                gamma = -gamma;
            }
            let p = (gamma - dp) + theta;
            let q = (gamma + (*dx - dp)) + gamma;
            let r = p / q;
            let stpc = if r < 0.0 && gamma != 0.0 {
                st + r * (stx - st)
            } else if st > stx {
                stpmax
            } else {
                stpmin
            };
            let stpq = st + (dp / (dp - *dx)) * (stx - st);
            if self.brackt {
                let mut t = if (stpc - st).abs() < (stpq - st).abs() {
                    stpc
                } else {
                    stpq
                };
                t = if st > stx {
                    t.min(st + 0.66 * (sty - st))
                } else {
                    t.max(st + 0.66 * (sty - st))
                };
                stpf = t;
            } else {
                let t = if (stpc - st).abs() > (stpq - st).abs() {
                    stpc
                } else {
                    stpq
                };
                stpf = t.min(stpmax).max(stpmin);
            }
        } else {
            // Same sign, derivative magnitude does not decrease.
            stpf = if self.brackt {
                let theta = 3.0 * (fp - *fy) / (sty - st) + *dy + dp;
                let s = theta.abs().max(dy.abs()).max(dp.abs());
                let mut gamma = s * ((theta / s).powi(2) - (*dy / s) * (dp / s)).sqrt();
                if st > sty {
                    gamma = -gamma;
                }
                let p = (gamma - dp) + theta;
                let q = ((gamma - dp) + gamma) + *dy;
                let r = p / q;
                st + r * (sty - st)
            } else if st > stx {
                stpmax
            } else {
                stpmin
            };
        }
        if fp > *fx {
            self.sty = st;
            *fy = fp;
            *dy = dp;
        } else {
            if sgnd < 0.0 {
                self.sty = stx;
                *fy = *fx;
                *dy = *dx;
            }
            self.stx = st;
            *fx = fp;
            *dx = dp;
        }
        *stp = stpf;
    }
}
