//! The `railbox` command: runs commands on remote machines through sandboxed transports.

fn main() -> std::process::ExitCode {
    railbox::cli::main()
}
