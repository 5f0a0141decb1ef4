//! `cargo flake db`: migrate, check and copy history databases.

use crate::commands::print_json;
use std::fmt::Write;

use flake_core::config::Config;
use flake_core::quarantine::QuarantineFile;
use flake_core::retention::{self, Retention};
use flake_core::store::copy::{CopyProgress, copy_project};
use flake_core::store::{Location, Store};
use flake_core::workspace::Workspace;

use super::{
    Error, Usage, history_location, open_existing_history, print_stderr, print_stdout, show_store,
    workspace,
};
use crate::cli::{ColorChoice, CopyArgs, DbCommand, ListFormat, PruneArgs};
use crate::style::{Styles, paint};
use crate::{EXIT_GATE_FAILED, EXIT_OK};

/// Runs a `db` subcommand.
pub fn run(cmd: DbCommand, color: ColorChoice) -> Result<u8, Error> {
    let (_, ws) = workspace()?;
    match cmd {
        DbCommand::Migrate { db } => {
            let (location, _) = history_location(&ws, &db)?;
            // Opening migrates, under the backend's lock.
            let store = Store::connect(&location)?;
            let check = store.check()?;
            print_stderr(&format!(
                "{} is at schema version {}\n",
                store.describe(),
                check.schema_version
            ));
            Ok(EXIT_OK)
        }
        DbCommand::Check { db, format } => {
            let (location, _) = history_location(&ws, &db)?;
            let store = Store::connect_existing(&location)?;
            let check = store.check()?;
            match format {
                ListFormat::Json => {
                    print_json(&check)?;
                }
                ListFormat::Human => {
                    let styles = Styles::stdout(color);
                    let mut out = String::new();
                    let _ = writeln!(
                        out,
                        "{} ({}), schema version {} (this build writes {})",
                        store.describe(),
                        check.backend,
                        check.schema_version,
                        check.supported_version
                    );
                    let _ = writeln!(
                        out,
                        "  {} projects, {} runs, {} tests, {} results, {} attempts, {} failure texts",
                        check.projects,
                        check.runs,
                        check.tests,
                        check.results,
                        check.attempts,
                        check.failures
                    );
                    if check.problems.is_empty() {
                        let _ = writeln!(out, "  {}", paint(styles.pass, "no problems found"));
                    }
                    for p in &check.problems {
                        let _ = writeln!(out, "  {} {p}", paint(styles.fail, "problem:"));
                    }
                    print_stdout(&out)?;
                }
            }
            Ok(if check.problems.is_empty() {
                EXIT_OK
            } else {
                EXIT_GATE_FAILED
            })
        }
        DbCommand::Copy(args) => copy(args, &ws, color),
        DbCommand::Prune(args) => prune(args, &ws, color),
    }
}

fn prune(args: PruneArgs, ws: &Workspace, color: ColorChoice) -> Result<u8, Error> {
    let (config, _) = Config::load(ws)?;
    let flags = Retention {
        keep_days: args.keep_days,
        keep_runs: args.keep_runs.map(|n| n as usize),
        max_size: args.max_size,
    };
    let limits = flags.or(&config.retention);
    if limits.is_empty() {
        return Err(Box::new(Usage(
            "nothing to prune by: give --keep-days, --keep-runs or --max-size, or set them under [workspace.metadata.flake.retention]".into(),)
        ));
    }
    let quarantine = QuarantineFile::load(&ws.quarantine_path(args.quarantine.path.as_deref()))?;
    let mut store = open_existing_history(ws, &args.db)?;
    let now = flake_core::meta::now_ms();
    let planned = retention::plan(&store, &config, Some(quarantine.entries()), &limits, now)?;
    let summary = store.prune(&planned.plan, args.dry_run)?;
    match args.format {
        ListFormat::Json => {
            print_json(&serde_json::json!({
                "project": store.project(),
                "dry_run": args.dry_run,
                "old_runs": planned.old_runs,
                "protected_tests": planned.protected_tests,
                "removed": summary,
            }))?;
        }
        ListFormat::Human => {
            let styles = Styles::stdout(color);
            let verb = if args.dry_run {
                "would remove"
            } else {
                "removed"
            };
            let mut out = String::new();
            let _ = writeln!(
                out,
                "{} ({}): {} of {} runs are old enough for the limits",
                show_store(&store),
                store.project(),
                planned.old_runs,
                summary.runs_before
            );
            let _ = writeln!(
                out,
                "  {} {} runs, {} of {} results, {} attempts, {} failure texts, {} tests",
                paint(styles.bold, verb),
                summary.runs,
                summary.results,
                summary.results_before,
                summary.attempts,
                summary.failures,
                summary.tests
            );
            if planned.protected_tests > 0 {
                let _ = writeln!(
                    out,
                    "  kept older results of {} tests whose window reaches back that far",
                    planned.protected_tests
                );
            }
            let size = if args.dry_run { "about " } else { "" };
            let _ = writeln!(
                out,
                "  size: {} -> {size}{}",
                human_bytes(summary.bytes_before),
                human_bytes(summary.bytes_after)
            );
            print_stdout(&out)?;
        }
    }
    Ok(EXIT_OK)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn copy(
    args: CopyArgs,
    ws: &flake_core::workspace::Workspace,
    color: ColorChoice,
) -> Result<u8, Error> {
    let styles = Styles::stderr(color);
    let from_location = Location::parse(&args.from)?;
    let to_location = Location::parse(&args.to)?;
    if same_database(&from_location, &to_location) {
        return Err(super::Usage(format!(
            "`--from` and `--to` name the same database ({from_location}); nothing was copied"
        ))
        .into());
    }
    let mut from = Store::connect_existing(&from_location)?;
    let mut to = Store::connect(&to_location)?;
    let projects = match &args.project {
        Some(p) => vec![p.clone()],
        None => from.projects()?,
    };
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} runs")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for project in projects {
        // Rows recorded before projects existed get a name in the destination.
        let target = match (&args.as_project, project.is_empty()) {
            (Some(name), _) => name.clone(),
            (None, true) => ws.project(None),
            (None, false) => project.clone(),
        };
        from.select_project(project.clone());
        to.select_project(target.clone());
        bar.set_message(target.clone());
        bar.set_position(0);
        let mut progress = |p: CopyProgress<'_>| {
            bar.set_length(p.total);
            bar.set_position(p.done);
        };
        let summary = copy_project(&from, &mut to, &mut progress)?;
        bar.suspend(|| {
            print_stderr(&format!(
                "{} {} run{} of `{target}` ({} results) into {}{}\n",
                paint(styles.pass, "copied"),
                summary.copied,
                if summary.copied == 1 { "" } else { "s" },
                summary.results,
                to.describe(),
                if summary.skipped > 0 {
                    format!("; {} already there", summary.skipped)
                } else {
                    String::new()
                }
            ))
        });
    }
    bar.finish_and_clear();
    Ok(EXIT_OK)
}

/// Whether two locations are one database (a file by its canonical path,
/// a server by its URL).
fn same_database(a: &Location, b: &Location) -> bool {
    match (a, b) {
        (Location::Sqlite(x), Location::Sqlite(y)) => {
            let canon = |p: &std::path::Path| p.canonicalize().unwrap_or_else(|_| p.to_owned());
            canon(x) == canon(y)
        }
        (Location::Postgres(x), Location::Postgres(y)) => x == y,
        _ => false,
    }
}
