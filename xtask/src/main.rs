//! Project automation: `cargo xtask test | conformance | interop`.
//!
//! * `test` — everything CI runs: formatting, clippy with `-D warnings`, rustdoc, the unit and
//!   integration tests of the workspace, the conformance suite on the embedded server, and the
//!   interop matrix (installing its peers from the package registries).
//! * `conformance` — the WebTransport conformance suite (see `conformance/`).
#![forbid(unsafe_code)]

mod bench;
mod conformance;
mod interop;

use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "wt project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything CI checks: fmt, clippy -D warnings, rustdoc, tests, conformance, interop.
    Test,
    /// Run the WebTransport conformance suite (embedded echo server by default).
    Conformance(conformance::Args),
    /// Run our client and server against independent WebTransport implementations.
    Interop(interop::Args),
    /// Benchmarks against raw quinn, raw h2 and wtransport (re-runs itself in release mode).
    Bench(bench::Args),
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn step(name: &str, cmd: &mut Command) -> Result<(), String> {
    println!("== {name}");
    let status = cmd
        .status()
        .map_err(|e| format!("{name}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} failed ({status})"))
    }
}

fn run_tests() -> Result<(), String> {
    step(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--check"]),
    )?;
    step(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "cargo doc (missing docs, broken links)",
        cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    step("cargo test", cargo().args(["test", "--workspace"]))?;
    step(
        "cargo xtask conformance",
        cargo().args(["run", "--quiet", "-p", "xtask", "--", "conformance"]),
    )?;
    step(
        "cargo xtask interop",
        cargo().args(["run", "--quiet", "-p", "xtask", "--", "interop"]),
    )?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Test => match run_tests() {
            Ok(()) => {
                println!("== all checks passed");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Conformance(args) => conformance::main(args),
        Cmd::Interop(args) => interop::main(args),
        Cmd::Bench(args) => bench::main(args),
    }
}
