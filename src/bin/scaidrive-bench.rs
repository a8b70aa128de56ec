//! `scaidrive-bench`: the load generators (built with the cargo feature
//! `bench`); see BENCHMARKS.md for what each flag measures.

use std::process::ExitCode;

use clap::Parser;

/// Measure ScaiDrive: command throughput against a raw INSERT baseline, and
/// (by flag) drive, sync, quota, HTTP, rebuild, feed, links and downloads.
#[derive(Debug, Parser)]
#[command(name = "scaidrive-bench", version)]
struct Cli {
    #[command(flatten)]
    args: scaidrive::bench::BenchArgs,
}

fn main() -> ExitCode {
    scaidrive::bench::main(Cli::parse().args)
}
