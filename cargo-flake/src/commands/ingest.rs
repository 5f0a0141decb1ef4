//! `cargo flake ingest`.

use crate::commands::print_json;
use std::fmt::Write;

use flake_core::ingest::{self, Format, IngestOptions};

use super::{Error, open_history, print_stderr, redact, show_path, show_store, workspace};
use crate::EXIT_OK;
use crate::cli::{ColorChoice, FormatChoice, IngestArgs, MessageFormat};
use crate::style::{Styles, paint};

/// `--format` to a flake-core format; `None` detects.
pub fn format(choice: FormatChoice) -> Option<Format> {
    Some(match choice {
        FormatChoice::Auto => return None,
        FormatChoice::Junit => Format::Junit,
        FormatChoice::PytestJson => Format::PytestJson,
        FormatChoice::Jest => Format::Jest,
        FormatChoice::Rspec => Format::Rspec,
        FormatChoice::GoTest => Format::GoTest,
        FormatChoice::Libtest => Format::Libtest,
        FormatChoice::CiPayload => Format::CiPayload,
    })
}

pub fn run(args: IngestArgs, color: ColorChoice) -> Result<u8, Error> {
    let (cwd, ws) = workspace()?;
    let mut store = open_history(&ws, &args.db)?;
    let db = show_store(&store);
    let opts = IngestOptions {
        files: args.files,
        format: format(args.format),
        commit: args.revision.commit,
        branch: args.revision.branch,
        run_id: args.revision.run_id,
        cwd,
    };
    let outcome = ingest::ingest(&mut store, &opts)?;
    if args.message_format == MessageFormat::Json {
        let value = flake_core::output::IngestJson::new(&outcome, &store.describe());
        print_json(&value)?;
        return Ok(EXIT_OK);
    }
    let s = Styles::stderr(color);
    let mut out = String::new();
    for f in &outcome.files {
        match f.format {
            Some(format) if !f.duplicate => {
                let _ = writeln!(
                    out,
                    "{:>10} {} ({format}, {} tests)",
                    paint(s.pass, "read"),
                    show_path(&f.path),
                    f.tests
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{:>10} {} {}",
                    paint(s.dim, "skipped"),
                    show_path(&f.path),
                    paint(
                        s.dim,
                        format!("(already recorded in run {})", outcome.write.run_id)
                    )
                );
            }
        }
        for w in &f.warnings {
            let _ = writeln!(out, "  {} {w}", paint(s.flaky, "warning:"));
        }
    }
    for w in &outcome.warnings {
        let _ = writeln!(out, "{} {w}", paint(s.flaky, "warning:"));
    }
    let run_id = if redact() {
        "[run-id]".to_owned()
    } else {
        outcome.write.run_id.clone()
    };
    if outcome.write.duplicate_source {
        let _ = writeln!(
            out,
            "nothing new: every report was already recorded in run {} ({})",
            outcome.write.run_id, db
        );
    } else {
        let rev = match (&outcome.meta.commit, &outcome.meta.branch) {
            (Some(c), Some(b)) => format!(", commit {} on {b}", &c[..c.len().min(12)]),
            (Some(c), None) => format!(", commit {}", &c[..c.len().min(12)]),
            (None, Some(b)) => format!(", branch {b}"),
            (None, None) => String::new(),
        };
        let merged = if outcome.write.merged_into_existing {
            " (merged into the existing run)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{:>10} {} results in {} (run {run_id}{rev}){merged}",
            paint(s.pass, "recorded"),
            outcome.write.results,
            db
        );
    }
    print_stderr(&out);
    Ok(EXIT_OK)
}
