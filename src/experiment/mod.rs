//! Experiment grids: a TOML file ([`config::ExperimentConfig`]) expands into cells (task ×
//! method × seed, variants, norm-sweep factors), and [`grid::run_grid`] trains each unfinished
//! cell and runs the requested analyses on it — the pipeline behind `lpft reproduce`.
//!
//! Deviation from STYLE's layout (which has no such module): the grid is neither a method nor a
//! report, and `report` only reads run directories, so it gets its own module between them.

pub mod config;
pub mod grid;

pub use config::{Cell, ExperimentConfig};
pub use grid::{run_grid, GridObserver, GridOutcome};
