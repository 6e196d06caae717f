//! The one integration-test binary.

mod cli;
#[path = "../support/http_server.rs"]
mod http_server;
mod methods;
mod ntk;
mod parity;
mod provision;
mod util;
