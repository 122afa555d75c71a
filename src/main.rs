//! The `fbpixel` command: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

// Mapping allocates a few small buffers per event; mimalloc serves those faster than the
// system allocator (measured in benches/mapping.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mimalloc.h` (the Rust binding exports no name for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // How long freed memory stays with the allocator before going back to the OS:
    // FBPIXEL_ALLOC_PURGE_DELAY_MS (mimalloc's default, 10 ms, unless set). The README's
    // "Performance" section gives throughput and peak RSS for several values.
    if let Some(ms) = std::env::var("FBPIXEL_ALLOC_PURGE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<std::ffi::c_long>().ok())
    {
        // SAFETY: sets a process-wide allocator option; mimalloc allows it at any time.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms) };
    }
    let cli = fbpixel::cli::Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
