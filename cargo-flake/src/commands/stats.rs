//! `cargo flake stats`: flake rates per test, as a terminal table, JSON or Markdown.

use std::fmt::Write;

use flake_core::config::Config;
use flake_core::output::StatsEntryJson;
use flake_core::quarantine::QuarantineFile;
use flake_core::quarantine::policy::{date_of, interval, percent, start_of_day};
use flake_core::stats::{self, SortKey, Stats, StatsOptions, TestStats};

use super::{Error, Usage, clip, print_stdout, workspace};
use crate::EXIT_OK;
use crate::cli::{ColorChoice, SortChoice, StatsArgs, StatsFormat};
use crate::style::{Styles, paint};

pub fn run(args: StatsArgs, color: ColorChoice) -> Result<u8, Error> {
    let (_, ws) = workspace()?;
    let (config, _) = Config::load(&ws)?;
    let mut opts = StatsOptions::from_config(&config);
    if let Some(w) = args.window {
        opts.window = w as usize;
    }
    if let Some(m) = args.min_runs {
        opts.min_runs = m as usize;
    }
    if !args.branch.is_empty() {
        opts.branches = args.branch.clone();
    }
    opts.since_ms = args.since.as_deref().map(parse_since).transpose()?;
    opts.variant = args.variant.clone();
    let store = super::open_existing_history(&ws, &args.db)?;
    let mut stats = stats::compute(&store, &opts)?;
    let quarantine = QuarantineFile::load(&ws.quarantine_path(args.quarantine.path.as_deref()))?;
    stats.mark_quarantined(&quarantine);
    let key = match args.sort {
        SortChoice::Rate => SortKey::Rate,
        SortChoice::Count => SortKey::Count,
        SortChoice::Name => SortKey::Name,
    };
    stats.sort(key, opts.min_runs);
    let text = match args.format {
        StatsFormat::Json => {
            let entries = stats
                .tests
                .iter()
                .map(|t| {
                    let clusters = flake_core::cluster::of_window(&store, &stats, t)?;
                    Ok(StatsEntryJson::new(t, opts.min_runs).with_clusters(&clusters))
                })
                .collect::<Result<Vec<_>, flake_core::store::StoreError>>()?;
            let mut s = serde_json::to_string_pretty(&entries)?;
            s.push('\n');
            s
        }
        StatsFormat::Human => human(&stats, &opts, &config, args.all, &Styles::stdout(color)),
        StatsFormat::Markdown => markdown(&stats, &opts, &config, args.all),
    };
    print_stdout(&text)?;
    Ok(EXIT_OK)
}

/// `2026-11-01`, an RFC 3339 time, or `14d` (days ago).
pub(super) fn parse_since(s: &str) -> Result<i64, Error> {
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return Ok(start_of_day(d));
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    if let Some(days) = s.strip_suffix('d').and_then(|n| n.parse::<i64>().ok())
        && let Some(since) = days
            .checked_mul(86_400_000)
            .and_then(|ms| flake_core::meta::now_ms().checked_sub(ms))
    {
        return Ok(since);
    }
    Err(Usage(format!(
        "`--since {s}` is not a date; expected YYYY-MM-DD, an RFC 3339 time, or a number of days like `14d`"
    ))
    .into())
}

/// Tests worth a line: flaky or failing runs, or quarantined (unless `all`).
fn shown(stats: &Stats, all: bool) -> impl Iterator<Item = &TestStats> {
    stats
        .tests
        .iter()
        .filter(move |t| all || t.flaky > 0 || t.failed > 0 || t.quarantined)
}

fn scope(opts: &StatsOptions) -> String {
    let mut parts = vec![if opts.branches.is_empty() {
        "all branches".to_owned()
    } else {
        format!("branch {}", opts.branches.join(", "))
    }];
    if let Some(s) = opts.since_ms {
        parts.push(format!("since {}", date_of(s)));
    }
    if let Some(v) = &opts.variant {
        parts.push(v.clone());
    }
    parts.join(", ")
}

fn last_flaky(t: &TestStats) -> String {
    t.last_flaky.as_ref().map_or_else(String::new, |r| {
        let mut s = date_of(r.started_at).to_string();
        if let Some(c) = &r.commit {
            let _ = write!(s, " {}", &c[..c.len().min(7)]);
        }
        if let Some(b) = &r.branch {
            let _ = write!(s, " {b}");
        }
        s
    })
}

fn suite_line(stats: &Stats, config: &Config) -> String {
    let s = &stats.suite;
    let verdict = if s.rate() <= config.suite_target {
        "met"
    } else {
        "missed"
    };
    format!(
        "suite: {} of {} recent runs ({}) had a flaky test; target {} {verdict}",
        s.runs_with_flaky,
        s.runs,
        percent(s.rate()),
        percent(config.suite_target)
    )
}

/// How many runs the storm guard left out, and what it calls a storm.
fn storm_line(stats: &Stats, opts: &StatsOptions) -> Option<String> {
    let n = stats.suite.storm_runs;
    let guard = opts.storm?;
    (n > 0).then(|| {
        let share = format!("{:.1}", guard.threshold * 100.0);
        format!(
            "{n} run(s) left out as infrastructure storms (at least {}% of at least {} tests failed).",
            share.trim_end_matches(".0"),
            guard.min_tests
        )
    })
}

fn human(stats: &Stats, opts: &StatsOptions, config: &Config, all: bool, s: &Styles) -> String {
    let mut out = String::new();
    let storms = match stats.suite.storm_runs {
        0 => String::new(),
        n => format!("; {n} storm run(s) excluded"),
    };
    let _ = writeln!(
        out,
        "{} over the last {} runs per test ({}{storms})",
        paint(s.bold, "flake rates"),
        opts.window,
        scope(opts)
    );
    if stats.tests.is_empty() {
        let _ = writeln!(out, "no recorded runs match");
        return out;
    }
    let rows: Vec<&TestStats> = shown(stats, all).collect();
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "\n{:>7}  {:<12} {:>5} {:>6} {:>5}  {:<26} TEST",
            "RATE", "95% CI", "FLAKY", "FAILED", "RUNS", "LAST FLAKY"
        );
    }
    for t in &rows {
        let (lo, hi) = t.wilson();
        let (rate, ci) = if t.insufficient(opts.min_runs) {
            ("-".to_owned(), "too few runs".to_owned())
        } else {
            (percent(t.flake_rate()), interval(lo, hi))
        };
        let style = if t.flaky > 0 {
            s.flaky
        } else if t.failed > 0 {
            s.fail
        } else {
            s.dim
        };
        let mark = if t.quarantined {
            paint(s.dim, "  [quarantined]")
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:>7}  {:<12} {:>5} {:>6} {:>5}  {:<26} {}{mark}",
            paint(style, format!("{rate:>7}")),
            ci,
            t.flaky,
            t.failed,
            t.runs,
            clip(&last_flaky(t), 26),
            paint(s.id, &t.id)
        );
    }
    let never_ran = stats.tests.iter().filter(|t| t.never_ran()).count();
    let hidden = stats
        .tests
        .iter()
        .filter(|t| t.runs > 0 && !(all || t.flaky > 0 || t.failed > 0 || t.quarantined))
        .count();
    let insufficient = stats
        .tests
        .iter()
        // A test that never ran is told apart above, not counted again here.
        .filter(|t| !t.never_ran() && t.insufficient(opts.min_runs))
        .count();
    out.push('\n');
    if hidden > 0 {
        let _ = writeln!(
            out,
            "{hidden} test(s) with only clean passes not shown (--all lists them)"
        );
    }
    if never_ran > 0 {
        let _ = writeln!(
            out,
            "{never_ran} test(s) never ran: skipped in every counted run{}",
            if all { "" } else { " (--all lists them)" }
        );
    }
    if insufficient > 0 {
        let _ = writeln!(
            out,
            "{insufficient} test(s) with fewer than {} runs: insufficient history, no rate",
            opts.min_runs
        );
    }
    if let Some(line) = storm_line(stats, opts) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "{}", suite_line(stats, config));
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('`', "'")
}

fn markdown(stats: &Stats, opts: &StatsOptions, config: &Config, all: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Flaky tests\n\nLast {} runs per test ({}).\n",
        opts.window,
        scope(opts)
    );
    let rows: Vec<&TestStats> = shown(stats, all).collect();
    if rows.is_empty() {
        let _ = writeln!(out, "No flaky or failing tests.\n");
    } else {
        let _ = writeln!(
            out,
            "| Test | Flake rate | 95% CI | Flaky | Failed | Runs | Last flaky | Quarantined |\n|---|---:|---|---:|---:|---:|---|---|"
        );
        for t in rows {
            let (lo, hi) = t.wilson();
            let (rate, ci) = if t.insufficient(opts.min_runs) {
                ("insufficient history".to_owned(), String::new())
            } else {
                (percent(t.flake_rate()), interval(lo, hi))
            };
            let _ = writeln!(
                out,
                "| `{}` | {rate} | {ci} | {} | {} | {} | {} | {} |",
                md_escape(&t.id),
                t.flaky,
                t.failed,
                t.runs,
                md_escape(&last_flaky(t)),
                if t.quarantined { "yes" } else { "" }
            );
        }
        out.push('\n');
    }
    let never_ran = stats.tests.iter().filter(|t| t.never_ran()).count();
    if never_ran > 0 {
        let _ = writeln!(
            out,
            "{never_ran} test(s) never ran: skipped in every counted run.\n"
        );
    }
    if let Some(line) = storm_line(stats, opts) {
        let _ = writeln!(out, "{line}\n");
    }
    let _ = writeln!(
        out,
        "**{}**",
        suite_line(stats, config).replacen("suite", "Suite", 1)
    );
    out
}
