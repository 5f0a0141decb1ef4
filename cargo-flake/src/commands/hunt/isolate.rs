//! `cargo flake hunt --isolate ID`: the test alone, with the others, and
//! which of the others trigger its failure.

use crate::commands::print_json;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Instant;

use flake_core::isolate::{self, Isolation, Purpose, Tally, Threads, Trial, Verdict};
use flake_core::output::IsolateJson;
use flake_core::runner::{RunOptions, RunnerKind};

use super::super::{Error, print_stderr, print_stdout};
use crate::cli::{ColorChoice, HuntArgs, ListFormat};
use crate::style::{Styles, paint};
use crate::{EXIT_GATE_FAILED, EXIT_OK};

/// Runs per line-up when `--runs` is not given: enough that "0/20 failed"
/// says something about a test that fails one time in five.
const DEFAULT_RUNS: u32 = 20;

/// Names of a set shown before "and N more".
const NAMES_SHOWN: usize = 3;

pub fn run(
    args: HuntArgs,
    id: String,
    cwd: PathBuf,
    cargo: PathBuf,
    runner: RunnerKind,
    color: ColorChoice,
) -> Result<u8, Error> {
    let runs = args.runs.unwrap_or(DEFAULT_RUNS);
    let opts = isolate::Options {
        runner,
        run: RunOptions {
            cargo,
            cwd,
            retries: None,
            runner_args: args.runner_args,
            quiet_stdout: true,
            capture_output: true,
        },
        id,
        runs,
    };
    let err = Styles::stderr(color);
    let mut started = Instant::now();
    let mut progress = |trial: &Trial, done: bool| {
        if !done {
            started = Instant::now();
            if trial.purpose == Purpose::Alone {
                // The first run builds the tests, which can take a while in silence.
                print_stderr(&format!(
                    "{} building, then running the test alone {runs} times\n",
                    paint(err.bold, "isolate:")
                ));
            }
            return;
        }
        print_stderr(&format!(
            "{} {}: {}/{} failed ({:.1} s)\n",
            paint(err.bold, "isolate:"),
            line_up(trial),
            trial.tally.failed,
            trial.tally.runs,
            started.elapsed().as_secs_f64()
        ));
    };
    let found = isolate::isolate(&opts, &mut progress)?;
    match args.format.unwrap_or(ListFormat::Human) {
        ListFormat::Json => {
            print_json(&IsolateJson::new(&found))?;
        }
        ListFormat::Human => print_stdout(&render(&found, &Styles::stdout(color)))?,
    }
    for w in &found.warnings {
        print_stderr(&format!("{} {w}\n", paint(err.flaky, "warning:")));
    }
    if let Some(p) = &found.problem {
        if let Some(log) = &found.log {
            print_stderr(log);
        }
        print_stderr(&format!("{} {p}\n", paint(err.fail, "error:")));
        return Ok(EXIT_GATE_FAILED);
    }
    Ok(EXIT_OK)
}

/// What ran with the test, for progress lines.
fn line_up(trial: &Trial) -> String {
    let threads = match trial.threads {
        Threads::Default => "",
        Threads::One => ", --test-threads 1",
    };
    match trial.purpose {
        Purpose::Alone => "alone".into(),
        Purpose::Together => "with the others".into(),
        Purpose::OneThread => "with the others, --test-threads 1".into(),
        Purpose::Bisect => format!("with {}{threads}", names(&trial.others)),
        Purpose::WithSuspects => format!("with {} only{threads}", names(&trial.others)),
        Purpose::WithoutSuspects => format!(
            "with the {} others but the suspects{threads}",
            trial.others.len()
        ),
    }
}

/// `a`, `a, b`, or `a, b, c and 4 more`.
fn names(set: &[String]) -> String {
    let shown: Vec<String> = set
        .iter()
        .take(NAMES_SHOWN)
        .map(|n| format!("`{n}`"))
        .collect();
    let mut out = shown.join(", ");
    if set.len() > NAMES_SHOWN {
        let _ = write!(out, " and {} more", set.len() - NAMES_SHOWN);
    }
    out
}

fn tally(t: Tally) -> String {
    format!("{}/{}", t.failed, t.runs)
}

/// The table of line-ups, the bisection, and the verdict.
pub fn render(found: &Isolation, s: &Styles) -> String {
    let mut out = String::new();
    let n = found.runs;
    let _ = writeln!(
        out,
        "{} isolating {}",
        paint(s.bold, "cargo flake:"),
        paint(s.id, &found.id)
    );
    let _ = writeln!(
        out,
        "  {}; {n} runs per line-up, retries off, nothing recorded",
        match found.runner {
            RunnerKind::Nextest => "nextest: each test in its own process",
            RunnerKind::CargoTest => "cargo-test: the tests of a binary share one process",
        }
    );
    let row = |out: &mut String, label: &str, t: Tally| {
        let style = if t.failed > 0 { s.fail } else { s.pass };
        let _ = writeln!(
            out,
            "  {label:<40} {} failed",
            paint(style, format!("{:>7}", tally(t)))
        );
    };
    row(&mut out, "alone", found.alone);
    let others = found.others.len();
    if let Some(t) = found.together {
        row(
            &mut out,
            &format!(
                "with the {others} other{}",
                if others == 1 { "" } else { "s" }
            ),
            t,
        );
    }
    if let Some(t) = found.one_thread {
        row(&mut out, "with the others, --test-threads 1", t);
    }
    if let Some(b) = &found.bisection {
        let _ = writeln!(
            out,
            "  bisecting the {others} others{} (a set is clean after {n} runs without a failure; its first failure ends its runs):",
            match b.threads {
                Threads::Default => "",
                Threads::One => " with --test-threads 1",
            }
        );
        for step in &b.steps {
            let result = if step.tally.failed > 0 {
                paint(
                    s.fail,
                    format!("triggers (failed at run {})", step.tally.runs),
                )
            } else if step.tally.runs >= n {
                paint(s.pass, format!("clean ({})", tally(step.tally)))
            } else {
                paint(s.flaky, format!("inconclusive ({})", tally(step.tally)))
            };
            let _ = writeln!(
                out,
                "    with {} of {}: {}  {result}",
                step.others.len(),
                others,
                names(&step.others)
            );
        }
        row(
            &mut out,
            &format!("with {} only", names(&b.suspects)),
            b.with,
        );
        if b.suspects.len() < others {
            row(&mut out, "with all the others but those", b.without);
        }
    }
    let _ = writeln!(out, "{} {}", paint(s.bold, "verdict:"), verdict_text(found));
    if let Some(f) = &found.failure {
        let _ = writeln!(out, "  failure: {f}");
    }
    if let Some(hint) = hint(found) {
        let _ = writeln!(out, "  next: {hint}");
    }
    out
}

/// One sentence with the numbers behind it.
fn verdict_text(found: &Isolation) -> String {
    let n = |t: Tally| tally(t);
    let with_others = |found: &Isolation| {
        let mut parts = Vec::new();
        if let Some(t) = found.together {
            parts.push(format!("fails with the others ({})", n(t)));
        }
        if let Some(t) = found.one_thread {
            parts.push(format!("with --test-threads 1 ({})", n(t)));
        }
        parts.join(", ")
    };
    match found.verdict {
        Verdict::Incomplete => {
            "incomplete: a run went wrong (see the error), so nothing can be concluded yet".into()
        }
        Verdict::NoOthers => format!(
            "the only test of its binary: no other test runs with it; alone it failed {}",
            n(found.alone)
        ),
        Verdict::FailsAlone => {
            let mut text = format!(
                "fails alone too ({} failed): not (only) an order effect; no bisection",
                n(found.alone)
            );
            if found.together.is_some() {
                let _ = write!(
                    text,
                    "; {}",
                    with_others(found).replacen("fails with", "with", 1)
                );
            }
            text
        }
        Verdict::NoFailure => format!(
            "no failure: alone ({}), with the others ({}), with --test-threads 1 ({}); if it flakes elsewhere, the cause is not the other tests of its binary at this concurrency, or is rarer than {} runs show",
            n(found.alone),
            found.together.map(n).unwrap_or_else(|| "not run".into()),
            found.one_thread.map(n).unwrap_or_else(|| "not run".into()),
            found.runs
        ),
        Verdict::OrderDependent => {
            let mut text = format!(
                "passes alone ({} failed), {}",
                n(found.alone),
                with_others(found)
            );
            if let Some(b) = &found.bisection {
                let who: Vec<String> = b.suspects.iter().map(|t| format!("`{t}`")).collect();
                let (it, them) = if b.suspects.len() == 1 {
                    ("it", "it")
                } else {
                    ("them", "them")
                };
                let _ = write!(
                    text,
                    "; {} {} (failed {} with {it} alone, {} without {them})",
                    if b.complete {
                        "triggered by:"
                    } else {
                        "triggered by a combination of (neither half of this set did it alone):"
                    },
                    who.join(", "),
                    n(b.with),
                    n(b.without)
                );
            }
            text
        }
    }
}

/// What to look at next, from where it failed.
fn hint(found: &Isolation) -> Option<&'static str> {
    if found.verdict != Verdict::OrderDependent {
        return None;
    }
    let concurrent = found.together.is_some_and(|t| t.failed > 0);
    let sequential = found.one_thread.is_some_and(|t| t.failed > 0);
    Some(match (concurrent, sequential, found.runner) {
        (true, false, RunnerKind::Nextest) => {
            "it fails only while the trigger runs at the same time: look for a file, port, directory or database both use, and give each test its own"
        }
        (true, false, RunnerKind::CargoTest) => {
            "it fails only while the trigger runs at the same time: look for state both use (a static, an environment variable, the working directory, a file, a port) and give each test its own"
        }
        (_, true, RunnerKind::Nextest) => {
            "it fails even when the tests run one after another: a test that runs before it leaves state behind (a file, a database row); clean up after it"
        }
        (_, true, RunnerKind::CargoTest) => {
            "it fails even when the tests run one after another: a test that runs before it leaves state behind (a static, an environment variable, a file); reset it"
        }
        _ => return None,
    })
}
