//! `cargo flake upload`: reports to a team server, as one run.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use flake_core::{ci, git, meta};

use super::{Error, Usage, print_stderr, show_path, workspace};
use crate::cli::{ColorChoice, UploadArgs};
use crate::style::{Styles, paint};
use crate::upload::{ATTEMPTS, Answer, Client, RunParams, Sent};
use crate::{EXIT_GATE_FAILED, EXIT_OK};

pub fn run(args: UploadArgs, color: ColorChoice) -> Result<u8, Error> {
    let (cwd, ws) = workspace()?;
    let server = args.server.as_deref().ok_or_else(|| {
        Usage("no server to upload to: give --server URL or set CARGO_FLAKE_SERVER".into())
    })?;
    let token = crate::upload::token_from_env()?;
    let client = Client::new(
        server,
        token,
        Duration::from_secs(args.upload.upload_timeout),
    )?;
    let project = ws.project(args.project.as_deref());
    // Every file must be readable before anything is sent: a typo must not
    // leave half a run on the server.
    let mut digests = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let digest = flake_core::ingest::digest_file(path).map_err(|e| match e {
            flake_core::ingest::IngestError::Read { source, .. } => {
                Usage(format!("cannot read `{}`: {source}", show_path(path)))
            }
            other => Usage(other.to_string()),
        })?;
        digests.push(digest);
    }
    let params = run_params(&args, &cwd, &digests);
    let s = Styles::stderr(color);
    let mut out = String::new();
    let run_id = params.run_id.as_deref().unwrap_or_default();
    let _ = writeln!(
        out,
        "uploading {} report{} to {} (project {project}, run {run_id}{})",
        args.files.len(),
        if args.files.len() == 1 { "" } else { "s" },
        client.server(),
        revision(&params)
    );
    print_stderr(&std::mem::take(&mut out));

    let mut rejected = 0;
    let mut unavailable: Option<(String, u32)> = None;
    // Why the remaining files are not sent, once that is clear.
    let mut stop: Option<String> = None;
    for path in &args.files {
        let shown = show_path(path);
        if let Some(why) = &stop {
            let _ = writeln!(
                out,
                "{:>10} {shown} {}",
                paint(s.dim, "not sent"),
                paint(s.dim, format!("({why})"))
            );
            continue;
        }
        let body = std::fs::read(path).map_err(|e| Usage(format!("cannot read `{shown}`: {e}")))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| shown.clone());
        let sent = client.send(&project, &name, &params, &body);
        let _ = writeln!(out, "{}", file_line(&shown, &sent, &s));
        match sent.answer {
            Answer::Recorded(_) => {}
            Answer::Rejected { status, .. } => {
                rejected += 1;
                // The same token goes with every file: no use sending the rest.
                if matches!(status, 401 | 403) {
                    stop = Some("the token was refused".to_owned());
                }
            }
            Answer::Unavailable { last } => {
                stop = Some(format!("the server is unavailable: {last}"));
                unavailable = Some((last, sent.attempts));
            }
        }
        print_stderr(&std::mem::take(&mut out));
    }
    if rejected > 0 {
        let _ = writeln!(
            out,
            "{} the server rejected {rejected} file{}; retrying will not help until the token or report is fixed",
            paint(s.fail, "error:"),
            if rejected == 1 { "" } else { "s" }
        );
        print_stderr(&out);
        return Ok(EXIT_GATE_FAILED);
    }
    if let Some((last, attempts)) = unavailable {
        let (label, style, code, tail) = if args.upload.upload_required {
            (
                "error:",
                s.fail,
                EXIT_GATE_FAILED,
                "--upload-required makes this an error",
            )
        } else {
            (
                "warning:",
                s.flaky,
                EXIT_OK,
                "exiting 0 (pass --upload-required to fail instead)",
            )
        };
        let _ = writeln!(
            out,
            "{} the upload failed after {attempts} attempt{} ({last}); nothing more was sent; {tail}",
            paint(style, label),
            if attempts == 1 { "" } else { "s" },
        );
        print_stderr(&out);
        return Ok(code);
    }
    Ok(EXIT_OK)
}

/// One file's line: what the server said.
fn file_line(shown: &str, sent: &Sent, s: &Styles) -> String {
    match &sent.answer {
        Answer::Recorded(r) if r.duplicate => format!(
            "{:>10} {shown}: {}",
            paint(s.dim, "skipped"),
            paint(s.dim, format!("already recorded in run {} (200)", r.run_id))
        ),
        Answer::Recorded(r) => format!(
            "{:>10} {shown}: {} in run {} (201)",
            paint(s.pass, "recorded"),
            r.counts.describe(),
            r.run_id
        ),
        Answer::Rejected {
            status,
            code,
            message,
        } => {
            let status = match (status, code) {
                (0, _) => String::new(),
                (st, Some(c)) => format!("{st} {c}: "),
                (st, None) => format!("{st}: "),
            };
            format!(
                "{:>10} {shown}: {status}{message} (not retried)",
                paint(s.fail, "rejected")
            )
        }
        Answer::Unavailable { last } => format!(
            "{:>10} {shown}: {last} (after {} of {ATTEMPTS} attempts)",
            paint(s.fail, "failed"),
            sent.attempts
        ),
    }
}

/// `, commit abc123 on main`.
fn revision(p: &RunParams) -> String {
    match (&p.commit, &p.branch) {
        (Some(c), Some(b)) => format!(", commit {} on {b}", short(c)),
        (Some(c), None) => format!(", commit {}", short(c)),
        (None, Some(b)) => format!(", branch {b}"),
        (None, None) => String::new(),
    }
}

fn short(c: &str) -> String {
    c.chars().take(12).collect()
}

/// The run's identity, resolved on this side the way `ingest` resolves it.
fn run_params(args: &UploadArgs, cwd: &Path, digests: &[String]) -> RunParams {
    let r = &args.revision;
    let ci = ci::detect_from_env();
    let git = git::read_with(cwd, false).ok();
    let rev = git::resolve(
        r.commit.as_deref(),
        r.branch.as_deref(),
        git.as_ref(),
        ci.as_ref(),
    );
    let host = meta::host_name();
    let run_id = r
        .run_id
        .clone()
        .or_else(|| {
            ci.as_ref()
                .and_then(|c| flake_core::ingest::ci_run_key(c, host.as_deref()))
        })
        .unwrap_or_else(|| {
            let digests = digests.iter().map(String::as_str);
            flake_core::ingest::content_run_key(
                "upload-",
                digests,
                rev.commit.as_deref(),
                rev.branch.as_deref(),
            )
        });
    RunParams {
        run_id: Some(run_id),
        commit: rev.commit,
        branch: rev.branch,
        host,
        os: Some(meta::host_os().to_owned()),
        variant: None,
        ci_provider: ci.as_ref().map(|c| c.provider.clone()),
        ci_job: ci.as_ref().and_then(|c| c.job.clone()),
        ci_url: ci.as_ref().and_then(|c| c.run.clone()),
        format: super::ingest::format(args.format).map(|f| f.name().to_owned()),
    }
}
