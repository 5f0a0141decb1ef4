//! One function per subcommand: turn flags into flake-core options, call the
//! library, render the result, return the exit code.

mod db;
pub(crate) mod diff;
mod export;
mod gate;
mod hunt;
mod ingest;
mod quarantine;
mod report;
mod show;
mod stats;
mod test;
mod token;
mod upload;
mod webhook;
mod why;

use std::io::Write;
use std::path::{Path, PathBuf};

use flake_core::workspace::Workspace;

use crate::cli::{Command, Flake};

/// Errors of the binary: any library error, printed with its causes.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A usage error with a message of our own.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Runs the parsed command.
pub fn dispatch(flake: Flake) -> Result<u8, Error> {
    let color = flake.color;
    match flake.command {
        Command::Test(args) => test::run(args, color),
        Command::Ingest(args) => ingest::run(args, color),
        Command::Gate(args) => gate::run(args, color),
        Command::Stats(args) => stats::run(args, color),
        Command::Quarantine(cmd) => quarantine::run(cmd, color),
        Command::Show(args) => show::run(args, color),
        Command::Why(args) => why::run(args, color),
        Command::Report(args) => report::run(args),
        Command::Hunt(args) => hunt::run(args, color),
        Command::Db(cmd) => db::run(cmd, color),
        Command::Token(cmd) => token::run(cmd, color),
        Command::Webhook(cmd) => webhook::run(cmd),
        Command::Serve(args) => serve(args),
        Command::Upload(args) => upload::run(args, color),
        Command::Export(args) => export::run(args),
    }
}

/// The project in the current directory.
pub fn workspace() -> Result<(PathBuf, Workspace), Error> {
    let cwd = std::env::current_dir()
        .map_err(|e| Usage(format!("cannot read the current directory: {e}")))?;
    let ws = Workspace::discover(&cwd);
    Ok((cwd, ws))
}

/// The history and project named by `--db`, `--database-url` and `--project`.
pub fn history_location(
    ws: &Workspace,
    args: &crate::cli::DbArg,
) -> Result<(flake_core::store::Location, String), Error> {
    let location = ws.location(args.database_url.as_deref(), args.db.as_deref())?;
    Ok((location, ws.project(args.project.as_deref())))
}

/// Opens the history for a command that writes to it (creating an SQLite file).
pub fn open_history(
    ws: &Workspace,
    args: &crate::cli::DbArg,
) -> Result<flake_core::store::Store, Error> {
    let (location, project) = history_location(ws, args)?;
    Ok(flake_core::store::Store::connect(&location)?.with_project(project)?)
}

/// Opens the history for a command that only reads it: nothing is created.
pub fn open_existing_history(
    ws: &Workspace,
    args: &crate::cli::DbArg,
) -> Result<flake_core::store::Store, Error> {
    let (location, project) = history_location(ws, args)?;
    Ok(flake_core::store::Store::connect_existing(&location)?.with_project(project)?)
}

/// The history for display: a file relative to the current directory, or
/// the URL with its password masked.
pub fn show_store(store: &flake_core::store::Store) -> String {
    store
        .path()
        .map(show_path)
        .unwrap_or_else(|| store.describe())
}

/// Writes `value` to stdout as pretty JSON and a newline.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    print_stdout(&text)
}

/// Writes to stdout; a closed pipe (`| head`) ends the program quietly.
pub fn print_stdout(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(e.into()),
    }
}

/// Writes to stderr, ignoring failures (nothing better to do with them).
pub fn print_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A path for display: relative to the current directory when under it.
pub fn show_path(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    cwd.and_then(|c| path.strip_prefix(&c).ok().map(|p| p.display().to_string()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| path.display().to_string())
}

/// Whether snapshot-friendly redaction is on.
pub fn redact() -> bool {
    std::env::var_os(flake_core::env_vars::CARGO_FLAKE_REDACT).is_some_and(|v| v == "1")
}

/// Shortens `s` to `max` characters with an ellipsis, so lines fit a terminal.
pub fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// `--public-url`, checked: an absolute http(s) URL, kept without a trailing slash.
fn public_url(url: Option<&str>) -> Result<Option<String>, Error> {
    let Some(url) = url else { return Ok(None) };
    let trimmed = url.trim().trim_end_matches('/');
    let host = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match host {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => {
            Ok(Some(trimmed.to_owned()))
        }
        _ => Err(Box::new(Usage(format!(
            "--public-url `{url}` is not an http(s) URL such as https://flake.example.com"
        )))),
    }
}

/// `cargo flake serve`.
fn serve(args: crate::cli::ServeArgs) -> Result<u8, Error> {
    let (_, ws) = workspace()?;
    let (location, _) = history_location(&ws, &args.db)?;
    let limits = flake_core::retention::Retention {
        keep_days: args.keep_days,
        keep_runs: args.keep_runs.map(|n| n as usize),
        max_size: None,
    };
    let prune = match (args.prune_every, limits.is_empty()) {
        (Some(every), false) => Some(crate::serve::Schedule { every, limits }),
        (Some(_), true) => {
            return Err(Box::new(Usage(
                "--prune-every needs a limit: --keep-days or --keep-runs".into(),
            )));
        }
        (None, false) => {
            return Err(Box::new(Usage(
                "--keep-days and --keep-runs set scheduled prunes: add --prune-every".into(),
            )));
        }
        (None, true) => None,
    };
    let settings = crate::serve::Settings {
        location,
        listen: args.listen,
        max_body: usize::try_from(args.max_body).unwrap_or(usize::MAX),
        prune,
        events: flake_core::store::events::EventConfig {
            quiet_days: args.resolved_after_days,
            clean_runs: args.resolved_after_runs,
            public_url: public_url(args.public_url.as_deref())?,
        },
        delivery: crate::serve::webhooks::DeliverySettings {
            allow_private: args.allow_private_webhook_targets,
            workers: args.webhook_workers as usize,
        },
    };
    crate::serve::run(settings).map_err(|e| -> Error { e.to_string().into() })?;
    Ok(crate::EXIT_OK)
}
