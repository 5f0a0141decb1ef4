//! `cargo flake db`: migrate, check and copy history databases.

use std::fmt::Write;

use flake_core::store::copy::{CopyProgress, copy_project};
use flake_core::store::{Location, Store};

use super::{Error, history_location, print_stderr, print_stdout, workspace};
use crate::cli::{ColorChoice, CopyArgs, DbCommand, ListFormat};
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
                    let mut s = serde_json::to_string_pretty(&check)?;
                    s.push('\n');
                    print_stdout(&s)?;
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
