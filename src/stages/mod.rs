//! The stages of a run directory: the only code that opens run directories. Each reads what it
//! needs through [`crate::rundir`], runs the library on it, and writes its result back.
//!
//! - [`train`]: one (task, method, seed) cell, resumable (`lpft train`);
//! - [`load`]: a finished run's model rebuilt, and evaluated on any labelled examples;
//! - [`calibrate`]: temperature scaling (`calibration.json`);
//! - [`analyze`]: feature statistics against the pre-trained encoder (`analysis.json`);
//! - [`lp_path`]: the LP norm path (`lp-path.json`);
//! - [`ntk`], [`kernels`]: the eNTK at the start of the gradient stage, its statistics
//!   (`kernels/`), and LoRA's F against FT's (`kernels/alignment.json`);
//! - [`ood`]: out-of-distribution evaluation (`ood/`).

pub mod analyze;
pub mod calibrate;
pub mod kernels;
pub mod load;
pub mod lp_path;
pub mod ntk;
pub mod ood;
pub mod train;
