//! `eggroll` with the suite's functions linked in: the egg-pair program of the test clusters,
//! built the way a user builds an egg binary for their own algorithm crate.

// Linking the kit registers its functions; nothing here names them.
use eggroll_tests as _;

fn main() -> std::process::ExitCode {
    eggroll::main()
}
