//! `eggroll` with the shared test suite's functions linked in: the egg-pair program of the
//! test clusters, built the way a user builds an egg binary for their own algorithm crate.

#[path = "../../tests/suite/functions.rs"]
mod functions;

fn main() -> std::process::ExitCode {
    eggroll::main()
}
