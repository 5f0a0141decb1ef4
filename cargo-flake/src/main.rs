//! `cargo flake`: parse, dispatch, map errors to exit codes. Everything else
//! lives in flake-core.

mod cli;
mod commands;
mod serve;
mod style;
mod upload;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The gate passed / the command did its job.
pub const EXIT_OK: u8 = 0;
/// The gate failed: a non-quarantined test failed, or the run produced no results.
pub const EXIT_GATE_FAILED: u8 = 1;
/// Usage or tool error: bad flags, unreadable or invalid input, database error.
pub const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    // `cargo flake x` runs `cargo-flake flake x`; `cargo-flake x` run directly lacks the `flake`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_none_or(|a| a != "flake") {
        args.insert(1, "flake".into());
    }
    let cli::Cargo::Flake(flake) = match cli::Cargo::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match commands::dispatch(flake) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report_error(&*e);
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Prints `error: ...` with its chain of causes.
fn report_error(e: &(dyn std::error::Error + 'static)) {
    use std::io::Write;
    let styles = style::Styles::stderr(cli::ColorChoice::Auto);
    let mut out = std::io::stderr().lock();
    let _ = writeln!(out, "{} {e}", style::paint(styles.fail, "error:"));
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = writeln!(out, "  caused by: {c}");
        cause = c.source();
    }
}
