//! The `shoal` command for the end-to-end tests: `shoal_native::cli`, as
//! the `shoal` binary runs it, with the same allocator.

/// The allocator of the `shoal` binary (see `host-native/src/main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shoal_native::cli::main()
}
