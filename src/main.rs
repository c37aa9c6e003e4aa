//! The autoscaler server and its commands: `autoscaler --help`.

fn main() -> std::process::ExitCode {
    autoscaler::cli::main()
}
