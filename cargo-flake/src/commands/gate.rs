//! `cargo flake gate`: the pre-merge gate over reports of any language.

use crate::commands::print_json;
use std::fmt::Write;

use flake_core::gate::{self, GateOptions, Verdict};
use flake_core::ingest;
use flake_core::quarantine::QuarantineFile;

use super::{Error, print_stderr, workspace};
use crate::cli::{ColorChoice, GateArgs, MessageFormat};
use crate::style::{Styles, paint};
use crate::{EXIT_GATE_FAILED, EXIT_OK};

pub fn run(args: GateArgs, color: ColorChoice) -> Result<u8, Error> {
    let (_, ws) = workspace()?;
    let quarantine = QuarantineFile::load(&ws.quarantine_path(args.quarantine.path.as_deref()))?;
    let outcomes = ingest::collect(&args.files, super::ingest::format(args.format))?;
    let report = gate::evaluate(
        outcomes.iter().map(|(id, o)| (id.as_str(), *o)),
        &|id| quarantine.contains(id),
        None,
        GateOptions {
            fail_on_flaky: args.fail_on_flaky,
        },
    );
    let code = match report.verdict {
        Verdict::Pass => EXIT_OK,
        Verdict::Fail => EXIT_GATE_FAILED,
    };
    if args.message_format == MessageFormat::Json {
        let value = flake_core::output::GateJson::new(&report, outcomes.len());
        print_json(&value)?;
        return Ok(code);
    }
    let s = Styles::stderr(color);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} tests in {} report(s)",
        outcomes.len(),
        args.files.len()
    );
    for id in &report.flaky {
        let _ = writeln!(out, "  {:>8}  {}", paint(s.flaky, "FLAKY"), paint(s.id, id));
    }
    for id in &report.ignored {
        let _ = writeln!(
            out,
            "  {:>8}  {}  {}",
            paint(s.fail, "FAILED"),
            paint(s.id, id),
            paint(s.flaky, "(quarantined: failure ignored)")
        );
    }
    for id in &report.failed {
        let _ = writeln!(out, "  {:>8}  {}", paint(s.fail, "FAILED"), paint(s.id, id));
    }
    let verdict = match report.verdict {
        Verdict::Pass => paint(s.pass, "PASS"),
        Verdict::Fail => paint(s.fail, "FAIL"),
    };
    let why = match (&report.problem, report.failed.len()) {
        (Some(p), _) => format!(" ({p})"),
        (None, 0) => String::new(),
        (None, n) => format!(" ({n} failed)"),
    };
    let _ = writeln!(out, "gate: {verdict}{why}");
    print_stderr(&out);
    Ok(code)
}
