//! The one integration-test binary.

mod cli;
mod parity;
mod util;
