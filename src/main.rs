//! The `lpft` binary: parse, dispatch, print the error chain, set the exit code.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    cli::init(&args.global);
    match cli::run(args.command) {
        Ok(()) => {}
        Err(err) => {
            // A closed pipe (`lpft ... | head`) is not a failure.
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<std::io::Error>())
                .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                std::process::exit(0);
            }
            eprintln!("error: {err:#}");
            std::process::exit(2);
        }
    }
}
