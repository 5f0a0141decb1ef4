//! `cargo flake quarantine list|add|remove|sync`.

use crate::commands::print_json;
use std::fmt::Write;

use flake_core::config::Config;
use flake_core::config::suggest;
use flake_core::output::QuarantineEntryJson;
use flake_core::quarantine::policy::{self, interval, percent};
use flake_core::quarantine::{self, Entry, EntrySource, Finding, KeepReason, QuarantineFile};
use flake_core::workspace::Workspace;

use super::{Error, Usage, diff, print_stderr, print_stdout, show_path, workspace};
use crate::cli::{ColorChoice, ListFormat, QuarantineCommand, SyncArgs};
use crate::style::{Styles, paint};
use crate::{EXIT_GATE_FAILED, EXIT_OK};

pub fn run(cmd: QuarantineCommand, color: ColorChoice) -> Result<u8, Error> {
    let (_, ws) = workspace()?;
    match cmd {
        QuarantineCommand::Sync(args) => sync(args, &ws, color),
        QuarantineCommand::List { format, quarantine } => {
            let file = QuarantineFile::load(&ws.quarantine_path(quarantine.path.as_deref()))?;
            match format {
                ListFormat::Json => {
                    let entries: Vec<QuarantineEntryJson<'_>> =
                        file.entries().iter().map(Into::into).collect();
                    print_json(&entries)?;
                }
                ListFormat::Human => print_stdout(&list_human(&file, &Styles::stdout(color)))?,
            }
            Ok(EXIT_OK)
        }
        QuarantineCommand::Add {
            id,
            reason,
            pin,
            owner,
            issue,
            expires,
            quarantine,
            db,
        } => {
            let styles = Styles::stderr(color);
            let path = ws.quarantine_path(quarantine.path.as_deref());
            let mut file = QuarantineFile::load(&path)?;
            if let Some(e) = &expires
                && policy::parse_date(e).is_none()
            {
                return Err(Usage(format!(
                    "`--expires {e}` is not a date; expected YYYY-MM-DD"
                ))
                .into());
            }
            let id = id.trim().to_owned();
            if id.is_empty() {
                return Err(Usage("the test id is empty".into()).into());
            }
            // A typo would quarantine nothing: warn when the history never saw the id.
            if let Ok(store) = super::open_existing_history(&ws, &db)
                && store.history(&id, 1).map(|h| h.is_empty()).unwrap_or(false)
            {
                print_stderr(&format!(
                    "{} `{id}` has no recorded runs in {}; check the id (cargo flake prints ids as `<binary-id> <test name>`)\n",
                    paint(styles.flaky, "warning:"),
                    super::show_store(&store)
                ));
            }
            let today = policy::today().to_string();
            let added = file.add(Entry {
                id: id.clone(),
                added: Some(today),
                reason,
                source: EntrySource::Manual,
                pinned: pin,
                owner,
                issue,
                expires,
            });
            if !added {
                print_stderr(&format!(
                    "`{id}` is already quarantined in {}; nothing changed\n",
                    show_path(&path)
                ));
                return Ok(EXIT_OK);
            }
            file.save()?;
            print_stderr(&format!(
                "{} `{id}` in {}: its failures no longer fail the gate\n",
                paint(styles.pass, "quarantined"),
                show_path(&path)
            ));
            Ok(EXIT_OK)
        }
        QuarantineCommand::Remove { id, quarantine } => {
            let styles = Styles::stderr(color);
            let path = ws.quarantine_path(quarantine.path.as_deref());
            let mut file = QuarantineFile::load(&path)?;
            if file.remove(&id).is_none() {
                let hint = suggest(&id, file.entries().iter().map(|e| e.id.as_str()))
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                return Err(Usage(format!(
                    "`{id}` is not quarantined in {}{hint}",
                    show_path(&path)
                ))
                .into());
            }
            file.save()?;
            print_stderr(&format!(
                "{} `{id}` from {}\n",
                paint(styles.pass, "released"),
                show_path(&path)
            ));
            Ok(EXIT_OK)
        }
    }
}

/// `quarantine sync --server URL`: the service decides, the file is edited here.
fn sync_from_server(
    args: &SyncArgs,
    server: &str,
    ws: &Workspace,
    color: ColorChoice,
) -> Result<u8, Error> {
    let styles = Styles::stderr(color);
    let path = ws.quarantine_path(args.quarantine.path.as_deref());
    let file = QuarantineFile::load(&path)?;
    let (_, project) = super::history_location(ws, &args.db)?;
    let token = crate::upload::token_from_env()?;
    let client = crate::upload::Client::new(server, token, std::time::Duration::from_secs(60))?;
    let current = file.original().unwrap_or("");
    let answer = client.proposal(&project, current.as_bytes()).map_err(|e| {
        super::Usage(format!(
            "the server {} could not propose a quarantine file: {e}",
            client.server()
        ))
    })?;
    let changed = answer["changed"].as_bool().unwrap_or(false);
    let proposed = answer["file"].as_str().unwrap_or(current);
    let diff = answer["diff"].as_str().unwrap_or("");
    let shown = show_path(&path);
    if !changed {
        print_stderr(&format!(
            "{shown} is up to date (decided by {})\n",
            client.server()
        ));
        return Ok(EXIT_OK);
    }
    print_stdout(diff)?;
    if args.check {
        print_stderr(&format!(
            "{} {shown} is out of date: run `cargo flake quarantine sync --server {}` and commit it\n",
            paint(styles.fail, "error:"),
            client.server()
        ));
        return Ok(EXIT_GATE_FAILED);
    }
    if args.dry_run {
        print_stderr(&format!("dry run: {shown} not written\n"));
        return Ok(EXIT_OK);
    }
    file.save_text(proposed)?;
    print_stderr(&format!(
        "{} {shown} (decided by {})\n",
        paint(styles.pass, "wrote"),
        client.server()
    ));
    Ok(EXIT_OK)
}

fn sync(args: SyncArgs, ws: &Workspace, color: ColorChoice) -> Result<u8, Error> {
    // Only an explicit flag: CARGO_FLAKE_SERVER, set for uploads in CI, must
    // not turn a local `sync --check` into a question to the server.
    if let Some(server) = args.server.clone() {
        return sync_from_server(&args, &server, ws, color);
    }
    let styles = Styles::stderr(color);
    let (config, _) = Config::load(ws)?;
    let path = ws.quarantine_path(args.quarantine.path.as_deref());
    // Load (and so validate) the file first: a broken file is an error naming
    // its line whatever else is wrong.
    let file = QuarantineFile::load(&path)?;
    let store = super::open_existing_history(ws, &args.db)?;
    let today = policy::today();
    let plan = quarantine::plan(&store, file, &config, today)?;
    let out_styles = Styles::stdout(color);
    let mut lines = String::new();
    for f in plan.changes() {
        let _ = writeln!(lines, "{}", change_line(f, &out_styles));
    }
    let (mut added, mut released, mut pinned, mut kept) = (0, 0, 0, 0);
    for f in &plan.findings {
        match f {
            Finding::Add(_) => added += 1,
            Finding::Release { .. } => released += 1,
            Finding::Keep {
                reason: KeepReason::Pinned,
                ..
            } => pinned += 1,
            Finding::Keep { .. } => kept += 1,
        }
    }
    let kept_note = match (kept, pinned) {
        (0, 0) => String::new(),
        (k, 0) => format!("; {k} kept"),
        (k, p) => format!("; {} kept ({p} pinned)", k + p),
    };
    let summary = format!("{added} added, {released} released{kept_note}");
    let shown = show_path(&path);
    if args.check {
        if plan.changed() {
            lines.push_str(&diff::unified(
                plan.before(),
                &plan.after(),
                &format!("{shown} (committed)"),
                &format!("{shown} (synced)"),
            ));
            print_stdout(&lines)?;
            print_stderr(&format!(
                "{} {shown} is out of date ({summary}): run `cargo flake quarantine sync` and commit it\n",
                paint(styles.fail, "error:")
            ));
            return Ok(EXIT_GATE_FAILED);
        }
        print_stderr(&format!("{shown} is up to date{kept_note}\n"));
        return Ok(EXIT_OK);
    }
    print_stdout(&lines)?;
    if !plan.changed() {
        print_stderr(&format!("{shown} is up to date{kept_note}\n"));
    } else if args.dry_run {
        print_stderr(&format!("dry run: {shown} not written ({summary})\n"));
    } else {
        plan.write()?;
        print_stderr(&format!(
            "{} {shown} ({summary})\n",
            paint(styles.pass, "wrote")
        ));
    }
    Ok(EXIT_OK)
}

/// `+ api::login  12.0% flaky (6/50 runs, 95% CI 5.6–23.8%)` and the like.
fn change_line(f: &Finding, s: &Styles) -> String {
    match f {
        Finding::Add(a) => format!(
            "{} {}  {} flaky ({}/{} runs, 95% CI {})",
            paint(s.flaky, "+"),
            paint(s.id, &a.id),
            percent(a.rate),
            a.flaky,
            a.runs,
            interval(a.wilson_low, a.wilson_high)
        ),
        Finding::Release { id, reason } => {
            let why = reason.to_string();
            format!("{} {}  {why}", paint(s.pass, "-"), paint(s.id, id))
        }
        Finding::Keep { id, .. } => format!("  {id}"),
    }
}

fn list_human(file: &QuarantineFile, s: &Styles) -> String {
    let mut out = String::new();
    if file.entries().is_empty() {
        let _ = writeln!(out, "no quarantined tests ({})", show_path(file.path()));
        return out;
    }
    let _ = writeln!(
        out,
        "{} quarantined test(s) in {}:",
        file.entries().len(),
        show_path(file.path())
    );
    for e in file.entries() {
        let mut flags = vec![e.source.as_str().to_owned()];
        if e.pinned {
            flags.push("pinned".into());
        }
        if let Some(x) = &e.expires {
            flags.push(format!("expires {x}"));
        }
        if let Some(o) = &e.owner {
            flags.push(format!("owner {o}"));
        }
        let _ = writeln!(
            out,
            "  {}  {} [{}]",
            paint(s.id, &e.id),
            paint(s.dim, e.added.as_deref().unwrap_or("?")),
            flags.join(", ")
        );
        if let Some(r) = &e.reason {
            let _ = writeln!(out, "      {r}");
        }
        if let Some(i) = &e.issue {
            let _ = writeln!(out, "      {i}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_ids_only() {
        let ids = ["fixture tests::flaky_once", "fixture tests::hard_failure"];
        assert_eq!(
            suggest("fixture tests::flaky_onse", ids.into_iter()),
            Some("fixture tests::flaky_once")
        );
        assert_eq!(suggest("something else entirely", ids.into_iter()), None);
    }
}
