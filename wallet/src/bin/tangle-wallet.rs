//! `tangle-wallet`: the device wallet's command line. See [`wallet::cli`] for the commands,
//! output formats and exit codes.

fn main() -> std::process::ExitCode {
    wallet::cli::main()
}
