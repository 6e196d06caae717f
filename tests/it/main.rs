//! The one integration-test binary.

mod cli;
mod methods;
mod parity;
mod util;
