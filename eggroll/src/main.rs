//! The `eggroll` binary.

fn main() -> std::process::ExitCode {
    eggroll::main()
}
