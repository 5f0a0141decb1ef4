//! The HTML report: one self-contained file that opens offline.
//!
//! No network requests of any kind: CSS is inline, charts are inline SVG, and
//! a little vanilla JavaScript adds sorting, filtering and opening a test's
//! details from a link. Without JavaScript the report is complete: the table
//! is already sorted worst first and details are `<details>` elements, the
//! worst few open.
//!
//! Size is kept in check for suites of thousands of tests: a healthy test is
//! one table row whose sparkline is a single SVG path; only tests with flaky
//! or failed evidence get a details section, and failure outputs in it are
//! clipped.

use std::collections::HashMap;
use std::fmt::Write;

use super::model::{Breakdown, Detail, Model, Point, SUITE_TARGET, TestEntry};
use super::rates::Rate;
use crate::cluster::Cluster;
use crate::model::{AttemptStatus, Outcome};

/// Details of this many worst tests are open when the page loads.
const OPEN_DETAILS: usize = 3;
/// Failure output kept per cluster sample in the report.
const SAMPLE_OUTPUT_BYTES: usize = 2048;
/// Suite-wide clusters listed.
const SUITE_CLUSTERS: usize = 15;
/// Rows per breakdown table.
const BREAKDOWN_ROWS: usize = 8;
/// Quarantine threshold the badges use for "high".
const HIGH_RATE: f64 = 0.05;

/// Renders the model as a complete HTML document.
pub fn render(model: &Model) -> String {
    let mut out = String::with_capacity(64 * 1024 + model.tests.len() * 400);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<title>cargo flake report</title>\n<style>");
    out.push_str(CSS);
    out.push_str(HEAT_CSS);
    out.push_str("</style>\n</head>\n<body>\n");
    header(&mut out, model);
    summary(&mut out, model);
    table(&mut out, model);
    details(&mut out, model);
    heatmaps(&mut out, model);
    suite_clusters(&mut out, model);
    quarantine(&mut out, model);
    let _ = writeln!(
        out,
        "<footer>Flake rate: runs with flaky evidence (a flaky result, or a failure contradicted by a pass of the same commit) \
         divided by the runs counted in the test's window of its last {} runs; runs where at least 80% of tests failed are \
         left out as infrastructure failures. Interval: Wilson score 95%. Rates from fewer than {} runs are marked \
         “few runs” and do not drive quarantine.</footer>",
        model.window, model.min_runs
    );
    out.push_str("<script>");
    out.push_str(JS);
    out.push_str("</script>\n</body>\n</html>\n");
    out
}

fn header(out: &mut String, m: &Model) {
    out.push_str("<header><h1>Flaky tests</h1><p class=\"meta\">");
    match m.span {
        Some((a, b)) => {
            let _ = write!(
                out,
                "{} run{} recorded from {} to {}",
                group(m.runs),
                if m.runs == 1 { "" } else { "s" },
                date(a),
                date(b)
            );
        }
        None => out.push_str("No runs recorded yet"),
    }
    let _ = writeln!(
        out,
        " · window: last {} runs per test · generated {}</p></header>",
        m.window,
        datetime(m.generated_at)
    );
}

fn summary(out: &mut String, m: &Model) {
    let s = &m.suite;
    out.push_str("<section class=\"cards\">\n");
    card(
        out,
        "",
        "Tests",
        &group(s.tests),
        &format!("{} with hard failures", group(s.failing_tests)),
    );
    card(
        out,
        if s.flaky_tests > 0 { "warn" } else { "good" },
        "Flaky tests",
        &group(s.flaky_tests),
        &format!("{} of tests", percent(s.flaky_share)),
    );
    match s.suite_flake_rate {
        Some(rate) => card(
            out,
            if rate <= SUITE_TARGET { "good" } else { "bad" },
            "Suite flake rate",
            &percent(rate),
            &format!(
                "{} of the last {} runs disturbed by a flaky test · target ≤ {}",
                group(s.disturbed_runs),
                group(s.suite_runs),
                percent(SUITE_TARGET)
            ),
        ),
        None => card(out, "", "Suite flake rate", "–", "no runs yet"),
    }
    let age = match s.oldest_quarantine_days {
        Some(d) => format!("oldest entry {d} day{}", if d == 1 { "" } else { "s" }),
        None if s.quarantined == 0 => "nothing quarantined".to_owned(),
        None => "ages unknown".to_owned(),
    };
    card(
        out,
        if s.quarantined > 0 { "warn" } else { "" },
        "Quarantined",
        &group(s.quarantined),
        &age,
    );
    out.push_str("</section>\n");
}

fn card(out: &mut String, class: &str, title: &str, value: &str, sub: &str) {
    let _ = writeln!(
        out,
        "<div class=\"card {class}\"><div class=\"k\">{}</div><div class=\"v\">{}</div><div class=\"s\">{}</div></div>",
        esc(title),
        esc(value),
        esc(sub)
    );
}

fn table(out: &mut String, m: &Model) {
    out.push_str("<section><h2>Tests</h2>\n");
    out.push_str(
        "<div id=\"controls\" class=\"controls\" hidden><input id=\"q\" type=\"search\" placeholder=\"Filter tests by id…\" aria-label=\"Filter tests by id\"> \
         <label><input id=\"only\" type=\"checkbox\"> only tests with flaky or failed runs</label> <span id=\"shown\"></span></div>\n",
    );
    out.push_str(
        "<table id=\"tests\"><thead><tr>\
         <th data-sort>Test</th>\
         <th data-sort data-num aria-sort=\"descending\" title=\"Runs with flaky evidence / runs counted\">Flake rate</th>\
         <th data-sort data-num title=\"Wilson score 95% interval; the bar spans it on a square-root scale of 0–100%\">95% interval</th>\
         <th data-sort data-num>Runs</th><th data-sort data-num>Flaky</th><th data-sort data-num>Failed</th>\
         <th title=\"Oldest left, newest right: green passed, amber flaky, red failed, grey skipped\">Recent runs</th>\
         <th data-sort>Status</th></tr></thead>\n<tbody>\n",
    );
    let mut detail_no = 0;
    for t in &m.tests {
        let evidence = t.rate.flaky > 0 || t.rate.failed > 0;
        let _ = write!(
            out,
            "<tr{}><td class=\"id\">",
            if evidence { " data-e=\"1\"" } else { "" }
        );
        if t.detail.is_some() {
            let _ = write!(out, "<a href=\"#t{detail_no}\">{}</a>", esc(&t.id));
            detail_no += 1;
        } else {
            out.push_str(&esc(&t.id));
        }
        out.push_str("</td>");
        rate_cells(out, &t.rate);
        out.push_str("<td>");
        sparkline(out, &t.recent);
        out.push_str("</td><td>");
        if t.quarantined {
            out.push_str("<span class=\"tag q\">quarantined</span>");
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody></table>\n");
    if m.tests.is_empty() {
        out.push_str("<p class=\"empty\">No test results in the history yet: run <code>cargo flake test</code> or <code>cargo flake ingest</code>.</p>\n");
    }
    out.push_str("</section>\n");
}

fn rate_cells(out: &mut String, r: &Rate) {
    let class = badge_class(r);
    let label = if r.runs == 0 {
        "–".to_owned()
    } else {
        percent(r.flake_rate)
    };
    let few = if r.insufficient && r.runs > 0 {
        " <span class=\"few\" title=\"fewer runs than the minimum: not used for quarantine\">few runs</span>"
    } else {
        ""
    };
    let _ = write!(
        out,
        "<td data-v=\"{}\"><span class=\"badge {class}\">{label}</span>{few}</td>",
        r.flake_rate
    );
    let lo = r.wilson_low.sqrt() * 100.0;
    let hi = r.wilson_high.sqrt() * 100.0;
    let _ = write!(
        out,
        "<td data-v=\"{}\" data-lo=\"{}\" data-hi=\"{}\"><span class=\"ci\"><i style=\"left:{lo:.1}%;width:{:.1}%\"></i></span> {}–{}</td>",
        r.wilson_high,
        r.wilson_low,
        r.wilson_high,
        (hi - lo).max(1.0),
        percent(r.wilson_low),
        percent(r.wilson_high)
    );
    let _ = write!(
        out,
        "<td data-v=\"{0}\">{0}</td><td data-v=\"{1}\">{1}</td><td data-v=\"{2}\">{2}</td>",
        r.runs, r.flaky, r.failed
    );
}

fn badge_class(r: &Rate) -> &'static str {
    if r.runs == 0 || r.insufficient {
        "b-na"
    } else if r.flake_rate >= HIGH_RATE {
        "b-hi"
    } else if r.flake_rate > 0.0 {
        "b-mid"
    } else if r.failed > 0 {
        // Not flaky, but not healthy either: hard failures are not green.
        "b-fail"
    } else {
        "b-ok"
    }
}

/// One SVG: consecutive passes merge into one green band, flaky and failed
/// runs are tall ticks, skips a grey band. Two units per run.
fn sparkline(out: &mut String, recent: &[Outcome]) {
    let w = recent.len().max(1) * 2;
    let _ = write!(
        out,
        "<svg class=\"sp\" viewBox=\"0 0 {w} 12\" width=\"{w}\" height=\"12\" role=\"img\" aria-label=\"{}\">",
        spark_label(recent)
    );
    let mut bands = [String::new(), String::new()]; // passed, skipped
    let mut ticks = [String::new(), String::new()]; // flaky, failed
    let mut i = 0;
    while i < recent.len() {
        let o = recent[i];
        let mut j = i + 1;
        while j < recent.len() && recent[j] == o {
            j += 1;
        }
        match o {
            Outcome::Passed | Outcome::Skipped => {
                let b = &mut bands[usize::from(o == Outcome::Skipped)];
                let _ = write!(b, "M{} 4h{}v4h-{}z", i * 2, (j - i) * 2, (j - i) * 2);
            }
            Outcome::Flaky | Outcome::Failed => {
                let t = &mut ticks[usize::from(o == Outcome::Failed)];
                for k in i..j {
                    let _ = write!(t, "M{}.8 0v12", k * 2);
                }
            }
        }
        i = j;
    }
    for (class, d) in [("sp-p", &bands[0]), ("sp-s", &bands[1])] {
        if !d.is_empty() {
            let _ = write!(out, "<path class=\"{class}\" d=\"{d}\"/>");
        }
    }
    for (class, d) in [("sp-f", &ticks[0]), ("sp-x", &ticks[1])] {
        if !d.is_empty() {
            let _ = write!(out, "<path class=\"{class}\" d=\"{d}\"/>");
        }
    }
    out.push_str("</svg>");
}

fn spark_label(recent: &[Outcome]) -> String {
    let n = |o| recent.iter().filter(|x| **x == o).count();
    format!(
        "last {} runs: {} passed, {} flaky, {} failed, {} skipped",
        recent.len(),
        n(Outcome::Passed),
        n(Outcome::Flaky),
        n(Outcome::Failed),
        n(Outcome::Skipped)
    )
}

fn details(out: &mut String, m: &Model) {
    let with: Vec<(&TestEntry, &Detail)> = m
        .tests
        .iter()
        .filter_map(|t| t.detail.as_ref().map(|d| (t, d)))
        .collect();
    if with.is_empty() {
        return;
    }
    out.push_str("<section><h2>Tests with flaky or failed runs</h2>\n");
    for (n, (t, d)) in with.into_iter().enumerate() {
        let _ = write!(
            out,
            "<details id=\"t{n}\"{}><summary><span class=\"badge {}\">{}</span> <span class=\"id\">{}</span>{}</summary>\n<div class=\"det\">",
            if n < OPEN_DETAILS { " open" } else { "" },
            badge_class(&t.rate),
            if t.rate.runs == 0 {
                "–".to_owned()
            } else {
                percent(t.rate.flake_rate)
            },
            esc(&t.id),
            if t.quarantined {
                " <span class=\"tag q\">quarantined</span>"
            } else {
                ""
            }
        );
        let r = &t.rate;
        let _ = writeln!(
            out,
            "<p class=\"facts\">{} flaky and {} failed of {} runs counted · flake rate {} (95% interval {}–{}){}</p>",
            r.flaky,
            r.failed,
            r.runs,
            percent(r.flake_rate),
            percent(r.wilson_low),
            percent(r.wilson_high),
            if r.insufficient {
                " · too few runs to act on"
            } else {
                ""
            }
        );
        if let Some(w) = &t.why {
            why_list(out, w);
        }
        out.push_str("<div class=\"row\"><div><h4>Duration of every attempt</h4>");
        scatter(out, &d.points, t.recent.len());
        out.push_str("</div><div class=\"grow\"><h4>Failure causes</h4>");
        cluster_list(out, &d.clusters, false);
        out.push_str("</div></div>\n<div class=\"row\">");
        breakdown(out, "Branch", &d.by_branch);
        breakdown(out, "OS · target", &d.by_platform);
        breakdown(out, "Host", &d.by_host);
        out.push_str("</div>\n");
        if !d.recent_failures.is_empty() {
            out.push_str("<h4>Recent flaky and failed runs</h4><table class=\"small\"><thead><tr><th>When</th><th>Commit</th><th>Branch</th><th>Outcome</th><th>Attempts</th><th>Cause</th></tr></thead><tbody>\n");
            for f in &d.recent_failures {
                let outcome = match (f.outcome, f.flaky_evidence) {
                    (Outcome::Failed, true) => "failed · passed on same commit".to_owned(),
                    (o, _) => o.as_str().to_owned(),
                };
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"o-{}\">{}{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    datetime(f.started_at),
                    esc(&short_sha(f.commit.as_deref())),
                    esc(f.branch.as_deref().unwrap_or("")),
                    f.outcome.as_str(),
                    esc(&outcome),
                    if f.excluded {
                        " (storm, not counted)"
                    } else {
                        ""
                    },
                    f.attempts,
                    f.cluster.map(|c| c.to_string()).unwrap_or_default()
                );
            }
            out.push_str("</tbody></table>\n");
        }
        out.push_str("</div></details>\n");
    }
    out.push_str("</section>\n");
}

/// `cargo flake why`'s hypotheses over the window, strength in words.
fn why_list(out: &mut String, w: &crate::why::Why) {
    let shown: Vec<_> = w.supported().take(3).collect();
    out.push_str("<h4>Why</h4>");
    if shown.is_empty() {
        out.push_str("<p class=\"muted\">No cause stands out beyond chance in this window.</p>");
    }
    out.push_str("<ul class=\"why\">");
    for h in shown {
        let _ = write!(
            out,
            "<li><strong>{}</strong> ({}): {} <span class=\"muted\">Try: {}</span></li>",
            esc(h.cause.name()),
            esc(h.strength.name()),
            esc(&h.summary),
            esc(&h.try_next)
        );
    }
    let _ = write!(
        out,
        "</ul><p class=\"muted\">Over the whole history: <code>cargo flake why {}</code></p>",
        esc(&w.id)
    );
}

/// Durations of every attempt against run position: passes green, failures
/// red, timeouts purple, crashes black. A log scale when durations span more
/// than 20x, so a 60 s timeout and 20 ms passes both stay readable.
fn scatter(out: &mut String, points: &[Point], runs: usize) {
    const W: f64 = 360.0;
    const H: f64 = 150.0;
    const L: f64 = 44.0;
    const B: f64 = 18.0;
    if points.is_empty() {
        out.push_str("<p class=\"muted\">No durations recorded.</p>");
        return;
    }
    let min = points
        .iter()
        .map(|p| p.duration_ms)
        .min()
        .unwrap_or(0)
        .max(1) as f64;
    let max = points
        .iter()
        .map(|p| p.duration_ms)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let log = max / min > 20.0;
    let (lo, hi) = if log {
        (min.log10(), max.log10().max(min.log10() + 0.01))
    } else {
        (0.0, max * 1.05)
    };
    let y = |d: f64| {
        let v = if log { d.max(1.0).log10() } else { d };
        let t = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
        4.0 + (1.0 - t) * (H - B - 8.0)
    };
    let span = runs.max(2) - 1;
    let x = |i: usize| L + 6.0 + (i as f64 / span as f64) * (W - L - 12.0);
    let _ = write!(
        out,
        "<svg class=\"sc\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"attempt durations\">\
         <line class=\"ax\" x1=\"{L}\" y1=\"{0}\" x2=\"{W}\" y2=\"{0}\"/><line class=\"ax\" x1=\"{L}\" y1=\"0\" x2=\"{L}\" y2=\"{0}\"/>\
         <text x=\"{1}\" y=\"{2:.1}\" class=\"tl\">{3}</text><text x=\"{1}\" y=\"{4:.1}\" class=\"tl\">{5}</text>\
         <text x=\"{L}\" y=\"{H}\" class=\"tx\">oldest run</text><text x=\"{W}\" y=\"{H}\" class=\"tx end\">newest</text>",
        H - B,
        L - 4.0,
        y(max) + 4.0,
        duration(max as i64),
        y(min) + 4.0,
        if log {
            duration(min as i64)
        } else {
            "0".to_owned()
        }
    );
    // One path per status keeps thousands of points cheap.
    for (status, class) in [
        (AttemptStatus::Pass, "pt-p"),
        (AttemptStatus::Fail, "pt-x"),
        (AttemptStatus::Leak, "pt-x"),
        (AttemptStatus::Timeout, "pt-t"),
        (AttemptStatus::Crash, "pt-c"),
    ] {
        let mut d = String::new();
        for p in points.iter().filter(|p| p.status == status) {
            let _ = write!(d, "M{:.1} {:.1}h0", x(p.x), y(p.duration_ms as f64));
        }
        if !d.is_empty() {
            let _ = write!(out, "<path class=\"{class}\" d=\"{d}\"/>");
        }
    }
    out.push_str("</svg><div class=\"legend\"><span class=\"l-p\">pass</span> <span class=\"l-x\">fail</span> <span class=\"l-t\">timeout</span> <span class=\"l-c\">crash</span>");
    if log {
        out.push_str(" · log scale");
    }
    out.push_str("</div>");
}

fn cluster_list(out: &mut String, clusters: &[Cluster], with_tests: bool) {
    if clusters.is_empty() {
        out.push_str("<p class=\"muted\">No failure text recorded.</p>");
        return;
    }
    let total: usize = clusters.iter().map(|c| c.count).sum();
    out.push_str("<ol class=\"clusters\">");
    for c in clusters {
        let _ = write!(
            out,
            "<li><div><code class=\"fp\">{}</code> <b>{}×</b> <span class=\"muted\">({} of failures) {}</span></div><div class=\"msg\">{}</div>",
            c.fingerprint,
            c.count,
            percent(c.count as f64 / total.max(1) as f64),
            c.kind,
            esc(if c.sample.message.is_empty() {
                "(no message)"
            } else {
                &c.sample.message
            })
        );
        if let Some(loc) = &c.sample.location {
            let _ = write!(
                out,
                "<div class=\"muted\">at <code>{}</code></div>",
                esc(loc)
            );
        }
        if with_tests {
            let shown: Vec<String> = c.tests.iter().take(3).map(|t| esc(t)).collect();
            let _ = write!(
                out,
                "<div class=\"muted\">{} test{}: {}{}</div>",
                c.tests.len(),
                if c.tests.len() == 1 { "" } else { "s" },
                shown.join(", "),
                if c.tests.len() > 3 {
                    format!(" and {} more", c.tests.len() - 3)
                } else {
                    String::new()
                }
            );
        }
        let output = c.sample.output.trim();
        if !output.is_empty() && output != c.sample.message.trim() {
            let _ = write!(
                out,
                "<details class=\"out\"><summary>output</summary><pre>{}</pre></details>",
                esc(&clip_bytes(
                    output,
                    SAMPLE_OUTPUT_BYTES,
                    "clipped in the report"
                ))
            );
        }
        out.push_str("</li>");
    }
    out.push_str("</ol>");
}

fn breakdown(out: &mut String, title: &str, rows: &[Breakdown]) {
    let _ = write!(
        out,
        "<div><h4>{}</h4><table class=\"small\"><thead><tr><th>{}</th><th>Runs</th><th>Flaky</th><th>Failed</th></tr></thead><tbody>",
        esc(title),
        esc(title)
    );
    for b in rows.iter().take(BREAKDOWN_ROWS) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td{}>{}</td><td{}>{}</td></tr>",
            esc(&b.key),
            b.runs,
            if b.flaky > 0 {
                " class=\"o-flaky\""
            } else {
                ""
            },
            b.flaky,
            if b.failed > 0 {
                " class=\"o-failed\""
            } else {
                ""
            },
            b.failed
        );
    }
    if rows.len() > BREAKDOWN_ROWS {
        let _ = write!(
            out,
            "<tr><td colspan=\"4\" class=\"muted\">and {} more</td></tr>",
            rows.len() - BREAKDOWN_ROWS
        );
    }
    out.push_str("</tbody></table></div>");
}

/// Tests a heatmap has rows for (the worst first), and the days it shows.
const HEAT_ROWS: usize = 25;
const HEAT_DAYS: usize = 31;

/// Heatmaps of the failure share (flaky or failed runs of all runs counted)
/// of the tests with failures: by day, by host, by OS and target, by hour
/// of day. Readable without colour: each cell shows its percentage, and
/// its title the counts.
pub fn heatmaps(out: &mut String, m: &Model) {
    let rows: Vec<(&str, &Detail)> = m
        .tests
        .iter()
        .filter_map(|t| t.detail.as_ref().map(|d| (t.id.as_str(), d)))
        .take(HEAT_ROWS)
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "<section><h2>Where and when tests fail</h2><p class=\"muted\">Share of each test's counted runs \
         that failed an attempt (flaky or failed), in percent; an empty cell had no runs. Times are UTC.</p>\n",
    );
    let columns = |pick: fn(&Detail) -> &[Breakdown], sort_by_key: bool| {
        let mut keys: Vec<String> = rows
            .iter()
            .flat_map(|(_, d)| pick(d).iter().map(|b| b.key.clone()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !sort_by_key {
            keys.truncate(40);
        }
        keys
    };
    let mut days = columns(|d| &d.by_day, true);
    if days.len() > HEAT_DAYS {
        days.drain(..days.len() - HEAT_DAYS);
    }
    heat_table(out, "By day", &days, &rows, |d| &d.by_day);
    heat_table(
        out,
        "By host",
        &columns(|d| &d.by_host, false),
        &rows,
        |d| &d.by_host,
    );
    heat_table(
        out,
        "By OS and target",
        &columns(|d| &d.by_platform, false),
        &rows,
        |d| &d.by_platform,
    );
    let hours: Vec<String> = (0..24).map(|h| format!("{h:02}")).collect();
    heat_table(out, "By hour of day", &hours, &rows, |d| &d.by_hour);
    out.push_str("</section>\n");
}

fn heat_table(
    out: &mut String,
    title: &str,
    columns: &[String],
    rows: &[(&str, &Detail)],
    pick: fn(&Detail) -> &[Breakdown],
) {
    // One column says nothing a heatmap could show.
    if columns.len() < 2 {
        return;
    }
    let _ = write!(
        out,
        "<h3>{}</h3><div class=\"heat-wrap\"><table class=\"heat\"><thead><tr><th>test</th>",
        esc(title)
    );
    for c in columns {
        let _ = write!(out, "<th>{}</th>", esc(c));
    }
    out.push_str("</tr></thead><tbody>");
    for (id, d) in rows {
        let by: HashMap<&str, &Breakdown> = pick(d).iter().map(|b| (b.key.as_str(), b)).collect();
        let _ = write!(out, "<tr><th class=\"id\">{}</th>", esc(id));
        for c in columns {
            match by.get(c.as_str()).filter(|b| b.runs > 0) {
                Some(b) => {
                    let failing = b.flaky + b.failed;
                    let share = failing as f64 / b.runs as f64;
                    // Lightness falls with the share; zero stays neutral.
                    let style = if failing == 0 {
                        "background:#f1f3f5".to_owned()
                    } else {
                        format!("background:hsl(4,75%,{:.0}%)", 92.0 - 45.0 * share)
                    };
                    let _ = write!(
                        out,
                        "<td style=\"{style}\" title=\"{}: {failing} of {} runs failed\">{:.0}</td>",
                        esc(&format!("{id} · {c}")),
                        b.runs,
                        share * 100.0
                    );
                }
                None => out.push_str("<td></td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>\n");
}

fn suite_clusters(out: &mut String, m: &Model) {
    if m.clusters.is_empty() {
        return;
    }
    out.push_str("<section><h2>Failure causes across tests</h2><p class=\"muted\">Failures grouped by normalised message and location: one entry is one root cause.</p>\n");
    let shown = &m.clusters[..m.clusters.len().min(SUITE_CLUSTERS)];
    cluster_list(out, shown, true);
    if m.clusters.len() > SUITE_CLUSTERS {
        let _ = write!(
            out,
            "<p class=\"muted\">and {} smaller causes.</p>",
            m.clusters.len() - SUITE_CLUSTERS
        );
    }
    out.push_str("</section>\n");
}

fn quarantine(out: &mut String, m: &Model) {
    out.push_str("<section><h2>Quarantine</h2>\n");
    if m.quarantine.is_empty() {
        out.push_str("<p class=\"muted\">The quarantine file lists no tests.</p></section>\n");
        return;
    }
    out.push_str("<table class=\"small\"><thead><tr><th>Test</th><th>Added</th><th>Age</th><th>Source</th><th>Reason</th><th>Owner</th><th>Issue</th></tr></thead><tbody>\n");
    for q in &m.quarantine {
        let e = &q.entry;
        let _ = writeln!(
            out,
            "<tr><td class=\"id\">{}{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.id),
            if e.pinned {
                " <span class=\"tag\">pinned</span>"
            } else {
                ""
            },
            if q.in_history {
                ""
            } else {
                " <span class=\"tag muted\">no history</span>"
            },
            esc(e.added.as_deref().unwrap_or("?")),
            q.age_days.map(|d| format!("{d} d")).unwrap_or_default(),
            e.source.as_str(),
            esc(e.reason.as_deref().unwrap_or("")),
            esc(e.owner.as_deref().unwrap_or("")),
            // Shown as text, never as a link: the report makes no requests and has no external links.
            esc(e.issue.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</tbody></table></section>\n");
}

/// A rate as a percentage: more decimals for small values.
pub fn percent(v: f64) -> String {
    let p = v * 100.0;
    if p == 0.0 {
        "0%".to_owned()
    } else if p < 0.1 {
        format!("{p:.2}%")
    } else if p < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// `1234567` → `1,234,567`.
fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn duration(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{:.1} min", ms as f64 / 60_000.0)
    }
}

fn short_sha(sha: Option<&str>) -> String {
    sha.map(|s| s.chars().take(10).collect())
        .unwrap_or_default()
}

/// `YYYY-MM-DD` (UTC) of Unix ms; empty when out of range.
pub fn date(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM UTC` of Unix ms; empty when out of range.
pub fn datetime(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// `s` cut to at most `max` bytes on a character boundary, with `note`
/// after the cut (shared with the dashboard).
pub fn clip_bytes(s: &str, max: usize, note: &str) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[… {note}]", &s[..end])
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than whitespace are not valid in HTML text.
            c if c.is_control() && !matches!(c, '\n' | '\t' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Heatmap tables; shared with the dashboard, which has its own styles.
pub const HEAT_CSS: &str = ".heat-wrap{overflow-x:auto}table.heat{width:auto;border-collapse:collapse;font-size:11px}\
table.heat th,table.heat td{padding:2px 4px;border:1px solid #fff;text-align:center;min-width:24px}\
table.heat th.id{text-align:left;white-space:nowrap;max-width:360px;overflow:hidden;text-overflow:ellipsis}\
table.heat thead th{font-weight:500;color:#667085;writing-mode:vertical-rl;transform:rotate(180deg);height:72px}\
table.heat thead th:first-child{writing-mode:horizontal-tb;transform:none;height:auto}";

const CSS: &str = r#"
:root{--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#fff;--soft:#f6f7f9;--pass:#2e9e5b;--flaky:#e09b1a;--fail:#d6453d;--timeout:#7a4fd1;--crash:#222;}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1280px;padding:20px 28px 40px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:24px;margin:0 0 2px}h2{font-size:18px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}h4{margin:10px 0 6px;font-size:13px;color:var(--muted);text-transform:uppercase;letter-spacing:.03em}
.meta,.muted{color:var(--muted)}.muted{font-size:12px}
code,.id,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:12px;margin:16px 0}
.card{border:1px solid var(--line);border-left:5px solid var(--line);border-radius:8px;padding:10px 14px;background:var(--soft)}
.card.good{border-left-color:var(--pass)}.card.warn{border-left-color:var(--flaky)}.card.bad{border-left-color:var(--fail)}
.card .k{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}.card .v{font-size:28px;font-weight:650}.card .s{font-size:12px;color:var(--muted)}
.controls{margin:6px 0 10px;display:flex;gap:14px;align-items:center;flex-wrap:wrap}.controls input[type=search]{padding:5px 8px;width:320px;border:1px solid #c9ced6;border-radius:6px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:middle}
th{font-size:12px;color:var(--muted);font-weight:600;white-space:nowrap;background:var(--bg);position:sticky;top:0}
th[data-sort]{cursor:pointer}th[aria-sort=descending]::after{content:" ▾"}th[aria-sort=ascending]::after{content:" ▴"}
#tests td:nth-child(n+2){white-space:nowrap}#tests td.id{word-break:break-all}#tests tr:hover td{background:var(--soft)}
td.id a{color:inherit}
.badge{display:inline-block;min-width:52px;text-align:center;padding:1px 6px;border-radius:10px;font-weight:600;font-size:12px}
.b-hi{background:#fde2e0;color:#a32019}.b-mid{background:#fdf0d5;color:#8a5a00}.b-ok{background:#e3f4ea;color:#1d6b3c}.b-na{background:#eceef2;color:var(--muted)}.b-fail{background:#fff;color:#a32019;box-shadow:inset 0 0 0 1px #e8a29d}
.few{font-size:11px;color:var(--muted)}
.ci{display:inline-block;position:relative;width:60px;height:8px;background:#eceef2;border-radius:4px;vertical-align:middle}.ci i{position:absolute;top:0;bottom:0;background:#8b95a7;border-radius:4px}
.tag{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;background:#eceef2}.tag.q{background:#e7e1fb;color:#4b2aa8}
.sp{vertical-align:middle}.sp-p{fill:var(--pass)}.sp-s{fill:#c4c9d2}.sp-f{stroke:var(--flaky);stroke-width:1.6}.sp-x{stroke:var(--fail);stroke-width:1.6}
details{border:1px solid var(--line);border-radius:8px;margin:8px 0;background:var(--bg)}details>summary{cursor:pointer;padding:8px 12px;background:var(--soft);border-radius:8px}
details[open]>summary{border-bottom:1px solid var(--line);border-radius:8px 8px 0 0}.det{padding:4px 14px 12px}.facts{margin:8px 0}
details.out{border:0;margin:4px 0}details.out>summary{background:none;padding:0;font-size:12px;color:var(--muted)}
pre{background:var(--soft);padding:8px;border-radius:6px;overflow:auto;max-height:260px;white-space:pre-wrap;word-break:break-word}
.row{display:flex;gap:24px;flex-wrap:wrap}.row>div{min-width:220px}.row>.grow{flex:1}
table.small{width:auto;min-width:220px}table.small td,table.small th{font-size:12px;padding:3px 8px}
.sc .ax{stroke:#c4c9d2}.sc .tl{font-size:10px;text-anchor:end;fill:var(--muted)}.sc .tx{font-size:10px;fill:var(--muted)}.sc .end{text-anchor:end}
.sc path{stroke-linecap:round;stroke-width:6;opacity:.85}.pt-p{stroke:var(--pass)}.pt-x{stroke:var(--fail)}.pt-t{stroke:var(--timeout)}.pt-c{stroke:var(--crash)}
.legend{font-size:11px;color:var(--muted)}.legend span::before{content:"●";margin-right:2px}.l-p::before{color:var(--pass)}.l-x::before{color:var(--fail)}.l-t::before{color:var(--timeout)}.l-c::before{color:var(--crash)}
ol.clusters{padding-left:20px;margin:4px 0}ol.clusters li{margin-bottom:8px}.msg{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;white-space:pre-wrap;word-break:break-word}
.fp{color:var(--muted)}.o-flaky{color:#8a5a00;font-weight:600}.o-failed{color:#a32019;font-weight:600}
footer{margin-top:32px;font-size:12px;color:var(--muted);border-top:1px solid var(--line);padding-top:10px}
.empty{padding:12px;background:var(--soft);border-radius:8px}
@media (prefers-color-scheme:dark){:root{--fg:#e6e8ec;--muted:#9aa3b2;--line:#2c313a;--bg:#15181d;--soft:#1d2128}.tag,.b-na,.ci{background:#2c313a}}
"#;

const JS: &str = r#"
(function(){
var t=document.getElementById('tests');if(!t)return;
var tb=t.tBodies[0],rows=Array.prototype.slice.call(tb.rows),q=document.getElementById('q'),only=document.getElementById('only'),shown=document.getElementById('shown');
document.getElementById('controls').hidden=false;
function key(r,i,num){var c=r.cells[i];var v=c.getAttribute('data-v');if(num)return parseFloat(v===null?c.textContent:v)||0;return c.textContent.toLowerCase();}
t.tHead.addEventListener('click',function(e){var th=e.target.closest('th');if(!th||!th.hasAttribute('data-sort'))return;
var i=th.cellIndex,num=th.hasAttribute('data-num'),desc=th.getAttribute('aria-sort')!=='descending';
if(!num&&!th.hasAttribute('aria-sort'))desc=false;
Array.prototype.forEach.call(t.tHead.rows[0].cells,function(c){c.removeAttribute('aria-sort');});
th.setAttribute('aria-sort',desc?'descending':'ascending');
var k=rows.map(function(r,n){return[key(r,i,num),n,r];});
k.sort(function(a,b){var x=a[0]<b[0]?-1:a[0]>b[0]?1:0;return (desc?-x:x)||a[1]-b[1];});
var f=document.createDocumentFragment();k.forEach(function(x){f.appendChild(x[2]);});tb.appendChild(f);});
function filter(){var s=q.value.toLowerCase(),o=only.checked,n=0;rows.forEach(function(r){var ok=(!o||r.hasAttribute('data-e'))&&(!s||r.cells[0].textContent.toLowerCase().indexOf(s)>=0);r.hidden=!ok;if(ok)n++;});shown.textContent=n+' of '+rows.length+' tests';}
q.addEventListener('input',filter);only.addEventListener('change',filter);filter();
function openHash(){var id=decodeURIComponent(location.hash.slice(1));var el=id&&document.getElementById(id);if(el&&el.tagName==='DETAILS'){el.open=true;el.scrollIntoView();}}
window.addEventListener('hashchange',openHash);openHash();
})();
"#;
