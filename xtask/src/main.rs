//! Developer tasks: `cargo xtask <task>`.

mod bench_history;

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace");
    match args.first().map(String::as_str) {
        Some("bench-history") => {
            let result = bench_history::Options::parse(&args[1..], root)
                .map_err(Into::into)
                .and_then(|o| bench_history::run(&o, root));
            match result {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        _ => {
            eprintln!(
                "usage: cargo xtask bench-history [--tests N] [--runs N] [--iterations N] [--dir PATH] [--reuse]"
            );
            ExitCode::from(2)
        }
    }
}
