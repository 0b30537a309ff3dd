//! `decal`, the command users type: runs `decal metrics` itself and hands every other command to
//! `decal-full`, the complete command line, which sits beside it.
//!
//! Why two binaries: `decal-full` links libtorch, and loading libtorch (≈ 0.4 s on a 2-core machine: the
//! dynamic loader maps ~500 MB of libraries and runs their operator registrations) happens before `main`,
//! for every command. `decal metrics` needs no tensors (`decal-metrics`, `decal-io`, `decal-report` are
//! torch-free), and it is the command users run in loops and on huge files: 10 M rows take about a second,
//! so the start-up was a third of it. This binary references no libtorch symbol, so the linker (`--as-needed`)
//! leaves libtorch out of it; `tests/front_cli.rs` checks with the dynamic loader's own trace that running
//! `decal metrics` never loads it.
//!
//! Every other argument list is passed unchanged to `decal-full` with `exec` (same process id, argv[0],
//! environment, exit status; one `execve`, ~1 ms), so `decal --help`, `decal --version` and every other
//! command behave exactly as `decal-full`'s. `decal-full metrics` is the same command as `decal metrics`.

mod commands {
    pub mod metrics;
}
mod errors;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// decal — make neural-network classifiers honest about their confidence.
#[derive(Parser, Debug)]
#[command(name = "decal", version, about, long_about = None, propagate_version = true)]
struct Front {
    #[command(subcommand)]
    command: FrontCommand,
}

#[derive(Subcommand, Debug)]
enum FrontCommand {
    /// Compute calibration / proper-score / OOD metrics from saved logits or probabilities.
    Metrics(commands::metrics::Args),
}

/// The complete command line's file name, beside this binary.
const FULL: &str = "decal-full";

fn main() -> ExitCode {
    errors::restore_default_sigpipe();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "metrics") {
        let FrontCommand::Metrics(a) = Front::parse().command;
        return match commands::metrics::run(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {}", errors::error_line(&err));
                ExitCode::FAILURE
            }
        };
    }
    let err = exec_full(&args);
    eprintln!("error: {err}");
    ExitCode::FAILURE
}

/// Replaces this process with `decal-full` and the same arguments; returns only on failure.
fn exec_full(args: &[std::ffi::OsString]) -> String {
    let full = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(FULL),
        Err(e) => {
            return format!("cannot locate the decal executable to find {FULL} beside it: {e}")
        }
    };
    if !full.is_file() {
        return format!(
            "{}: not found; decal runs every command but `metrics` through {FULL}, which is built with it \
             (`scripts/cargo build --release -p decal-cli` builds both; copy or install them together)",
            full.display()
        );
    }
    let mut cmd = std::process::Command::new(&full);
    cmd.args(args.iter().skip(1));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if let Some(arg0) = args.first() {
            cmd.arg0(arg0);
        }
        let e = cmd.exec();
        format!("{}: {e}", full.display())
    }
    #[cfg(not(unix))]
    {
        match cmd.status() {
            Ok(status) => std::process::exit(status.code().unwrap_or(1)),
            Err(e) => format!("{}: {e}", full.display()),
        }
    }
}
