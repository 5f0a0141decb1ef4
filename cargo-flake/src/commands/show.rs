//! `cargo flake show <id>`: one test's story in the terminal.

use crate::commands::print_json;
use std::fmt::Write;

use flake_core::quarantine::QuarantineFile;
use flake_core::report::{Story, html::percent};

use super::report::options;
use super::{Error, Usage, clip, print_stdout, redact, workspace};
use crate::EXIT_OK;
use crate::cli::{ColorChoice, ListFormat, ShowArgs};
use crate::style::{Styles, paint};

pub fn run(args: ShowArgs, color: ColorChoice) -> Result<u8, Error> {
    let (_, ws) = workspace()?;
    let store = super::open_existing_history(&ws, &args.db)?;
    let quarantine = QuarantineFile::load(&ws.quarantine_path(args.quarantine.path.as_deref()))?;
    let opts = options(&ws, &args.window)?;
    // Why it flakes, in brief: `cargo flake why` has the evidence.
    let why_opts = flake_core::why::WhyOptions {
        repo: Some(ws.root.clone()),
        ..Default::default()
    };
    let Some((story, why)) =
        Story::build_with_why(&store, &quarantine, &args.id, &opts, args.runs, &why_opts)?
    else {
        return Err(Usage(format!(
            "the history has no test `{}`; ids are printed by `cargo flake test` and `cargo flake stats`",
            args.id
        ))
        .into());
    };
    match args.format {
        ListFormat::Json => {
            let mut value = serde_json::to_value(&story)?;
            value["why"] = serde_json::to_value(&why)?;
            print_json(&value)?;
        }
        ListFormat::Human => {
            let styles = Styles::stdout(color);
            let mut text = render(&story, &styles, opts.stats.min_runs);
            text.push_str(&super::why::brief(&why, &styles));
            print_stdout(&text)?
        }
    }
    Ok(EXIT_OK)
}

/// The human rendering (snapshot-tested with redaction on).
pub fn render(story: &Story, s: &Styles, min_runs: usize) -> String {
    let mut out = String::new();
    let r = &story.rate;
    let _ = writeln!(out, "{}", paint(s.id, &story.id));
    let rate = if r.runs == 0 {
        "no counted runs".to_owned()
    } else {
        format!(
            "flake rate {} (95% interval {}–{})",
            percent(r.flake_rate),
            percent(r.wilson_low),
            percent(r.wilson_high)
        )
    };
    let style = if r.flaky > 0 {
        s.flaky
    } else if r.failed > 0 {
        s.fail
    } else {
        s.pass
    };
    let _ = writeln!(
        out,
        "  {} · {} flaky, {} failed, {} passed of {} runs{}",
        paint(style, rate),
        r.flaky,
        r.failed,
        r.passed,
        r.runs,
        if r.insufficient {
            format!(" · insufficient history (< {min_runs} runs): not used for quarantine")
        } else {
            String::new()
        }
    );
    match &story.quarantine {
        Some(q) => {
            let e = &q.entry;
            let since = match (&e.added, q.age_days) {
                (Some(a), Some(d)) if !redact() => {
                    format!(" since {a} ({d} day{})", if d == 1 { "" } else { "s" })
                }
                (Some(_), _) => " since [date]".to_owned(),
                _ => String::new(),
            };
            let mut extra = vec![e.source.as_str().to_owned()];
            if e.pinned {
                extra.push("pinned".into());
            }
            let _ = writeln!(
                out,
                "  {}{since} ({}): {}",
                paint(s.flaky, "quarantined"),
                extra.join(", "),
                e.reason.as_deref().unwrap_or("no reason given")
            );
        }
        None => {
            let _ = writeln!(out, "  not quarantined");
        }
    }
    let _ = writeln!(out, "\n{}", paint(s.bold, "Recent runs (newest first)"));
    if story.timeline.is_empty() {
        let _ = writeln!(out, "  none");
    } else {
        let _ = writeln!(
            out,
            "  {:<16}  {:<10}  {:<20}  {:<8}  {:>8}  CAUSE",
            "WHEN", "COMMIT", "BRANCH", "OUTCOME", "ATTEMPTS"
        );
    }
    for t in &story.timeline {
        let when = if redact() {
            "[time]".to_owned()
        } else {
            jiff::Timestamp::from_millisecond(t.started_at)
                .map(|ts| ts.strftime("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default()
        };
        let commit: String = t
            .commit
            .as_deref()
            .unwrap_or("-")
            .chars()
            .take(10)
            .collect();
        let (label, style) = match t.outcome {
            flake_core::model::Outcome::Passed => ("passed", s.pass),
            flake_core::model::Outcome::Flaky => ("flaky", s.flaky),
            flake_core::model::Outcome::Failed => ("failed", s.fail),
            flake_core::model::Outcome::Skipped => ("skipped", s.skip),
        };
        let mut note = t.cluster.map(|c| c.to_string()).unwrap_or_default();
        if t.outcome == flake_core::model::Outcome::Failed && t.flaky_evidence {
            note.push_str(" (passed on the same commit: flaky)");
        }
        if t.excluded && t.outcome != flake_core::model::Outcome::Skipped {
            note.push_str(" (infrastructure storm: not counted)");
        }
        let line = format!(
            "  {:<16}  {:<10}  {:<20}  {}  {:>8}  {}",
            when,
            commit,
            clip(t.branch.as_deref().unwrap_or("-"), 20),
            paint(style, format!("{label:<8}")),
            t.attempts,
            note.trim()
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let clusters = &story.detail.clusters;
    let _ = writeln!(out, "\n{}", paint(s.bold, "Failure causes"));
    if clusters.is_empty() {
        let _ = writeln!(out, "  none recorded in the window");
    }
    for c in clusters {
        let loc = c
            .sample
            .location
            .as_deref()
            .map(|l| format!("  at {l}"))
            .unwrap_or_default();
        let msg = if c.sample.message.is_empty() {
            "(no message)"
        } else {
            &c.sample.message
        };
        let _ = writeln!(
            out,
            "  {}  {:>3}×  {:<7}  {}{}",
            paint(s.dim, c.fingerprint),
            c.count,
            c.kind,
            clip(msg, 90),
            paint(s.dim, loc)
        );
    }
    let b = &story.detail.by_branch;
    if b.len() > 1 {
        let _ = writeln!(out, "\n{}", paint(s.bold, "By branch"));
        for row in b.iter().take(8) {
            let _ = writeln!(
                out,
                "  {:<30}  {} runs, {} flaky, {} failed",
                clip(&row.key, 30),
                row.runs,
                row.flaky,
                row.failed
            );
        }
    }
    out
}
