//! Developer tasks: `cargo xtask <task>`.

mod render_report;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("render-report" | "bench-report") => render_report::main(&args),
        _ => {
            eprintln!("usage: cargo xtask <render-report|bench-report> [options]");
            2
        }
    };
    std::process::exit(code);
}
