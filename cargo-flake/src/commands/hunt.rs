//! `cargo flake hunt --runs N -- <runner args>`, and `--isolate ID`.

use std::fmt::Write;

use flake_core::gate::GateOptions;
use flake_core::hunt::{self, Mode};
use flake_core::quarantine::QuarantineFile;
use flake_core::report::{Model, html::percent};
use flake_core::run;
use flake_core::runner::RunOptions;
use flake_core::store::{Location, Store};

mod isolate;

use super::report::{options, write_html};
use super::test::choose_runner;
use super::{
    Error, history_location, print_stderr, print_stdout, show_path, show_store, workspace,
};
use crate::cli::{ColorChoice, HuntArgs};
use crate::style::{Styles, paint};
use crate::{EXIT_GATE_FAILED, EXIT_OK};

pub fn run(args: HuntArgs, color: ColorChoice) -> Result<u8, Error> {
    let (cwd, ws) = workspace()?;
    let cargo: std::path::PathBuf = std::env::var_os(flake_core::env_vars::CARGO)
        .map(Into::into)
        .unwrap_or_else(|| "cargo".into());
    let styles = Styles::stderr(color);
    let runner = choose_runner(args.runner, &cargo, &styles);
    if let Some(id) = args.isolate.clone() {
        return isolate::run(args, id, cwd, cargo, runner, color);
    }
    let (db, project) = history_location(&ws, &args.db)?;
    let no_flags = crate::cli::WindowArgs {
        window: None,
        min_runs: None,
    };
    let quarantine_path = ws.quarantine_path(args.quarantine.path.as_deref());
    let html = args.html.clone().unwrap_or_else(|| match &db {
        Location::Sqlite(path) => path.with_file_name("hunt-report.html"),
        Location::Postgres(_) => ws.root.join(".flake").join("hunt-report.html"),
    });
    let opts = hunt::Options {
        test: run::Options {
            runner,
            run: RunOptions {
                cargo,
                cwd,
                retries: args.retries,
                runner_args: args.runner_args,
                quiet_stdout: false,
                capture_output: false,
            },
            db: db.clone(),
            project: project.clone(),
            quarantine: quarantine_path.clone(),
            commit: args.revision.commit,
            branch: args.revision.branch,
            run_id: args.revision.run_id,
            gate: GateOptions::default(),
            interrupted: None,
        },
        iterations: args.runs.unwrap_or(1),
    };
    let mut progress = |_| {};
    let found = hunt::hunt(&opts, &mut progress)?;
    let out_styles = Styles::stdout(color);
    print_stdout(&render(&found, &out_styles))?;
    for w in &found.warnings {
        print_stderr(&format!("{} {w}\n", paint(styles.flaky, "warning:")));
    }
    let store = Store::connect_existing(&db)?.with_project(project)?;
    let quarantine = QuarantineFile::load(&quarantine_path)?;
    let model = Model::build(&store, &quarantine, &options(&ws, &no_flags)?)?;
    write_html(&html, &model)?;
    print_stderr(&format!(
        "  recorded {} run{} in {}; report: {}\n",
        found.run_ids.len(),
        if found.run_ids.len() == 1 { "" } else { "s" },
        show_store(&store),
        show_path(&html)
    ));
    if let Some(p) = &found.problem {
        print_stderr(&format!("{} {p}\n", paint(styles.fail, "error:")));
        return Ok(EXIT_GATE_FAILED);
    }
    Ok(EXIT_OK)
}

/// Per-test rates over the hunt, worst first.
pub fn render(found: &hunt::Hunt, s: &Styles) -> String {
    let mut out = String::new();
    let iterations = found.rates.iter().map(|(_, r)| r.runs).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "{} {} iteration{} ({})",
        paint(s.bold, "cargo flake hunt:"),
        iterations,
        if iterations == 1 { "" } else { "s" },
        match found.mode {
            Mode::Stress => "nextest stress mode",
            Mode::Repeat => "repeated runs",
        }
    );
    let _ = writeln!(
        out,
        "  {:>9}  {:>15}  {:>5}  {:>6}  {:>4}  TEST",
        "RATE", "95% INTERVAL", "FLAKY", "FAILED", "RUNS"
    );
    for (id, r) in &found.rates {
        let style = if r.flaky > 0 {
            s.flaky
        } else if r.failed > 0 {
            s.fail
        } else {
            s.pass
        };
        let _ = writeln!(
            out,
            "  {}  {:>15}  {:>5}  {:>6}  {:>4}  {}",
            paint(style, format!("{:>9}", percent(r.flake_rate))),
            format!("{}–{}", percent(r.wilson_low), percent(r.wilson_high)),
            r.flaky,
            r.failed,
            r.runs,
            paint(s.id, id)
        );
    }
    out
}
