//! The `shoal` binary: the command line lives in `cli/`.

mod cli;

use anyhow::{Context, Result};
use clap::Parser;

/// mimalloc: the coordinator allocates and frees many small records per
/// task (offers, results, ledger entries); measured faster than the system
/// allocator on the replica cycle (`cargo bench -p shoal-core --bench
/// coordinator` uses it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    runtime.block_on(cli::run(cli))
}
