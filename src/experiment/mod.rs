//! Experiment grids: a TOML file ([`config::ExperimentConfig`]) expands into cells (task ×
//! method × seed, variants, norm-sweep factors), and [`grid::run_grid`] trains each unfinished
//! cell and runs the requested analyses on it — the pipeline behind `lpft reproduce`.
//!
//! The grid runs the stages ([`crate::stages`]) over its cells; `report` only reads run
//! directories, so the grid sits between them.

pub mod config;
pub mod grid;

pub use config::{Cell, ExperimentConfig};
pub use grid::{run_grid, GridObserver, GridOutcome};
