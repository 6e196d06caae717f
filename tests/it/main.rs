//! The one integration-test binary.

mod bad_input;
mod cli;
mod examples;
mod export;
mod fuzz;
#[cfg(feature = "cuda")]
mod gpu;
#[path = "../support/http_server.rs"]
mod http_server;
mod methods;
mod ntk;
mod parity;
mod provision;
mod reliability;
mod util;
