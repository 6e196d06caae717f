//! Calibration: the per-run metrics (docs/method.md §5) and temperature scaling (§9).
//!
//! Everything here takes plain host arrays (logits row-major `[n, C]`, labels in `0..C`), never
//! models, so `calibrate` and `report` can work from saved logits.
//!
//! - [`metrics`]: accuracy, macro-F1, MCC, NLL, Brier, 15-bin ECE/MCE, confidence and logit
//!   norms ([`metrics::compute`]), and reliability bins ([`metrics::reliability`]).
//! - [`temperature`]: fit a temperature on validation logits
//!   ([`TemperatureParams::fit`] → [`Temperature`]) and apply it to test logits.
//!
//! Deviations from the paper and the reference code are marked in each module's docs:
//! a confidence of exactly 0 goes into the first reliability bin, temperature scaling
//! defaults to the exact minimiser rather than the paper's Adam (kept as [`TsMethod::Adam`]),
//! and `T` is bounded to `[t_min, t_max]`.

pub mod metrics;
pub mod temperature;

pub use metrics::{compute, Metrics, ReliabilityBin, ECE_BINS};
pub use temperature::{Temperature, TemperatureParams, TsMethod};
