//! The one integration-test binary.

mod cli;
mod methods;
mod ntk;
mod parity;
mod util;
