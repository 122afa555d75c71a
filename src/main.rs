//! The `fbpixel` command: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

// Mapping allocates a few small buffers per event; mimalloc serves those faster than the
// system allocator (measured in benches/mapping.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mimalloc.h` (the Rust binding exports no name for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const PURGE_DELAY_MS: std::ffi::c_long = 2;

fn main() -> ExitCode {
    // Give freed memory back to the OS at once instead of after 10 ms: under load the default
    // let peak RSS of the delivery benchmark reach 94-106 MB; purging at once kept it near 60 MB
    // (scripts/delivery-load.sh, README "Performance").
    // SAFETY: sets a process-wide allocator option; mimalloc allows it at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    let cli = fbpixel::cli::Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
