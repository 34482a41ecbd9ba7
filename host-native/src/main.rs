//! The `shoal` binary: the command line is `shoal_native::cli`.

/// mimalloc: the coordinator allocates and frees many small records per
/// task (offers, results, ledger entries); measured faster than the system
/// allocator on the replica cycle (`cargo bench -p shoal-core --bench
/// coordinator` uses it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shoal_native::cli::main()
}
