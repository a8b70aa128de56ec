//! `scaidrive`: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = scaidrive::cli::Cli::parse();
    scaidrive::cli::run(cli)
}
