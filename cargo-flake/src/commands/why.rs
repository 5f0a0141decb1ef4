//! `cargo flake why <id>`: the causes a test's history points at.

use crate::commands::print_json;
use std::fmt::Write;
use std::io::Write as _;
use std::time::Duration;

use flake_core::why::{self, Strength, Why, WhyOptions};

use super::{Error, Usage, print_stdout, workspace};
use crate::EXIT_OK;
use crate::cli::{ColorChoice, ListFormat, WhyArgs};
use crate::style::{Styles, paint};

/// How long an `--explain-with` command may take.
const EXPLAINER_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(args: WhyArgs, color: ColorChoice) -> Result<u8, Error> {
    let (_, ws) = workspace()?;
    let store = super::open_existing_history(&ws, &args.db)?;
    let opts = WhyOptions {
        runs: usize::try_from(args.runs).unwrap_or(usize::MAX),
        repo: Some(ws.root.clone()),
    };
    let Some(found) = why::explain(&store, &args.id, &opts)? else {
        return Err(Usage(format!(
            "the history has no test `{}`; ids are printed by `cargo flake test` and `cargo flake stats`",
            args.id
        ))
        .into());
    };
    let evidence = serde_json::to_value(&found)?;
    let answer = match &args.explain_with {
        Some(cmd) => Some(explain_with(cmd, &evidence)?),
        None => None,
    };
    match args.format {
        ListFormat::Json => {
            let mut value = evidence;
            if let (Some(cmd), Some(answer)) = (&args.explain_with, &answer) {
                value["explainer"] = serde_json::json!({ "command": cmd, "answer": answer });
            }
            print_json(&value)?;
        }
        ListFormat::Human => {
            let mut text = render(&found, &Styles::stdout(color));
            if let (Some(cmd), Some(answer)) = (&args.explain_with, &answer) {
                let _ = writeln!(
                    text,
                    "\nAnswer of `{cmd}` (its words, not cargo flake's; weigh them against the numbers above):"
                );
                for line in answer.lines() {
                    let _ = writeln!(text, "  {line}");
                }
            }
            print_stdout(&text)?;
        }
    }
    Ok(EXIT_OK)
}

/// Runs `cmd` through the shell with the evidence on stdin; its stdout.
fn explain_with(cmd: &str, evidence: &serde_json::Value) -> Result<String, Error> {
    let mut child = std::process::Command::new("sh")
        .args(["-c", cmd])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| Usage(format!("--explain-with `{cmd}` could not start: {e}")))?;
    let input = serde_json::to_vec_pretty(evidence)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is fine: a broken pipe here
        // is not an error.
        let _ = stdin.write_all(&input);
    }
    let started = std::time::Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if started.elapsed() > EXPLAINER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Usage(format!(
                "--explain-with `{cmd}` gave no answer within {} s",
                EXPLAINER_TIMEOUT.as_secs()
            ))
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(Usage(format!(
            "--explain-with `{cmd}` failed ({}); its evidence is the JSON of `cargo flake why --format json`",
            output.status
        ))
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned())
}

/// The human rendering.
pub fn render(w: &Why, s: &Styles) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", paint(s.id, &w.id));
    let failing = w.flaky + w.failed;
    let _ = writeln!(
        out,
        "  {} · failed an attempt in {failing} of {} runs ({} flaky, {} failed every attempt){}",
        w.verdict,
        w.runs,
        w.flaky,
        w.failed,
        if w.comparisons > 0 {
            format!(" · {} comparisons", w.comparisons)
        } else {
            String::new()
        }
    );
    let shown: Vec<_> = w.supported().collect();
    if failing > 0 && shown.is_empty() {
        let _ = writeln!(
            out,
            "\n  No cause stands out beyond chance: as far as the history tells, it fails at random."
        );
    }
    for (i, h) in shown.iter().enumerate() {
        let style = match h.strength {
            Strength::Strong => s.fail,
            Strength::Moderate => s.flaky,
            _ => s.dim,
        };
        let p = h
            .p_value
            .map(|p| format!(" (p = {})", p_text(p)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\n  {}. {} {}{p}",
            i + 1,
            h.cause.name(),
            paint(style, h.strength.name())
        );
        let _ = writeln!(out, "     {}", h.summary);
        let _ = writeln!(out, "     try: {}", h.try_next);
        if let Some(commits) = h.evidence.get("commits").and_then(|c| c.as_array())
            && !commits.is_empty()
        {
            for c in commits.iter().filter_map(|c| c.as_str()) {
                let _ = writeln!(out, "       {c}");
            }
        }
    }
    if !w.ruled_out.is_empty() {
        let names: Vec<&str> = w.ruled_out.iter().map(|c| c.name()).collect();
        let _ = writeln!(
            out,
            "\n  {}",
            paint(
                s.dim,
                format!("Nothing beyond chance in: {}.", names.join(", "))
            )
        );
    }
    for step in &w.next_steps {
        let _ = writeln!(out, "  {}", paint(s.dim, format!("Next: {step}.")));
    }
    out
}

/// The hypotheses in a few lines, for `show`.
pub fn brief(w: &Why, s: &Styles) -> String {
    let mut out = String::new();
    if w.flaky + w.failed == 0 {
        return out;
    }
    let _ = writeln!(out, "\n  {}", paint(s.bold, "Why"));
    let shown: Vec<_> = w.supported().take(3).collect();
    if shown.is_empty() {
        let _ = writeln!(out, "    no cause stands out beyond chance");
    }
    for h in shown {
        let _ = writeln!(
            out,
            "    {} ({}): {}",
            h.cause.name(),
            h.strength.name(),
            h.summary
        );
    }
    let _ = writeln!(
        out,
        "    {}",
        paint(
            s.dim,
            format!("the evidence: cargo flake why {}", why::shell_quote(&w.id))
        )
    );
    out
}

fn p_text(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.0e}")
    } else {
        format!("{p:.4}")
    }
}
