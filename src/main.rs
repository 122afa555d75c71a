//! The `fbpixel` command: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

// Mapping allocates a few small buffers per event; mimalloc serves those faster than the
// system allocator (measured in benches/mapping.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = fbpixel::cli::Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
