//! The `lpft` binary: parse, dispatch, print the error chain, set the exit code.

mod cli;

use clap::Parser;

/// Keeps freed tensor buffers in the process. candle allocates and frees buffers of several MB
/// on every op; by default glibc serves those with mmap and unmaps them on free, so every op
/// page-faults fresh (huge) pages: measured at a third of an FT step's time, all in the kernel
/// zeroing pages. Serving them from the heap and never trimming it removes that.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any other thread exists.
    unsafe {
        // 32 MiB is glibc's ceiling for the mmap threshold on 64-bit targets.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

fn main() {
    tune_allocator();
    let args = cli::Cli::parse();
    match cli::init(&args.global).and_then(|()| cli::run(args.command)) {
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
