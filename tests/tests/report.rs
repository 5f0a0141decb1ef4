//! `cargo flake report --html` and `cargo flake show` over a history with
//! known numbers: Rust and foreign-language ids, flaky tests, a same-commit
//! flip, a hard failure and a quarantined test.

use std::path::Path;

use flake_core::meta::RunMeta;
use flake_core::model::{Attempt, AttemptStatus, Failure, TestResult};
use flake_core::store::Store;
use flake_tests::Flake;

const RUST_FLAKY: &str = "app::it net::reconnects";
const PY_FLAKY: &str = "tests/test_api.py::test_refund[eur-<&>\"x\"]";
const HARD: &str = "app tests::always_broken";
const FLIP: &str = "__tests__/cart.test.js::cart > adds";

fn fail(text: &str, ms: u64) -> Attempt {
    Attempt::failed(
        AttemptStatus::Fail,
        Some(ms),
        Failure::from_output(None, text),
    )
}

/// 12 runs of 5 tests: RUST_FLAKY flaky in runs 2, 5 and 9 (two causes, ports
/// and thread ids varying), PY_FLAKY flaky in run 7, HARD failing in every run,
/// FLIP failing in run 4 and passing in run 3 of the same commit.
fn history(db: &Path) {
    let mut store = Store::open(db).unwrap();
    for r in 0..12 {
        let meta = RunMeta {
            run_id: format!("run-{r:02}"),
            commit: Some(format!("{:03}{}", r / 2 + 1, "f".repeat(37))),
            branch: Some(if r % 3 == 0 { "feature/x" } else { "main" }.into()),
            started_at: 1_780_000_000_000 + r * 60_000,
            finished_at: 1_780_000_000_000 + r * 60_000 + 5_000,
            host: Some(format!("runner-{}", r % 2)),
            os: Some("linux".into()),
            target: Some("x86_64-unknown-linux-gnu".into()),
            source_format: "nextest".into(),
            ..RunMeta::default()
        };
        let rust = match r {
            2 | 5 => vec![
                fail(
                    &format!(
                        "thread 'net::reconnects' ({}) panicked at tests/net.rs:41:9:\nconnection refused: 127.0.0.1:{}",
                        100 + r,
                        40_000 + r
                    ),
                    20,
                ),
                Attempt::pass(Some(9)),
            ],
            9 => vec![
                Attempt::failed(
                    AttemptStatus::Timeout,
                    Some(30_000),
                    Failure::from_output(Some("test timeout"), ""),
                ),
                Attempt::pass(Some(11)),
            ],
            _ => vec![Attempt::pass(Some(8 + r as u64))],
        };
        let py = if r == 7 {
            vec![
                fail(
                    "AssertionError: 10 != 12\n\ntests/test_api.py:20: AssertionError",
                    40,
                ),
                Attempt::pass(Some(30)),
            ]
        } else {
            vec![Attempt::pass(Some(31))]
        };
        let flip = match r {
            4 => vec![fail("Error: expect(received).toBe(expected)", 5); 3],
            _ => vec![Attempt::pass(Some(4))],
        };
        let results = vec![
            TestResult::new(RUST_FLAKY, rust),
            TestResult::new(PY_FLAKY, py),
            TestResult::new(
                HARD,
                vec![
                    fail(
                        "thread 't' panicked at src/lib.rs:3:5:\nexpected 4, got 5",
                        2
                    );
                    3
                ],
            ),
            TestResult::new(FLIP, flip),
            TestResult::new("app tests::fine", vec![Attempt::pass(Some(1))]),
        ];
        store.record_run(&meta, &results, None).unwrap();
    }
}

fn quarantine(dir: &Path) -> std::path::PathBuf {
    let q = dir.join("flake-quarantine.toml");
    std::fs::write(
        &q,
        format!(
            "version = 1\n\n[[test]]\nid = \"{RUST_FLAKY}\"\nadded = \"2026-01-02\"\nreason = \"flake rate 25% over 12 runs\"\nsource = \"auto\"\nissue = \"https://example.com/issues/7\"\n"
        ),
    )
    .unwrap();
    q
}

/// Undoes the HTML escaping of our renderer.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// `attr="value"` values of every occurrence of `attr` in `html`.
fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

/// Rows of the tests table: (id, [data-v of each numeric cell]).
fn table_rows(html: &str) -> Vec<(String, Vec<f64>)> {
    let body = html.split("<table id=\"tests\">").nth(1).unwrap();
    let body = &body[..body.find("</table>").unwrap()];
    let body = body.split("<tbody>").nth(1).unwrap();
    body.split("<tr")
        .skip(1)
        .map(|row| {
            let id_cell = row.split("<td class=\"id\">").nth(1).unwrap();
            let id_cell = &id_cell[..id_cell.find("</td>").unwrap()];
            // Strip a link around the id.
            let text = match id_cell.find('>') {
                Some(i) if id_cell.starts_with("<a ") => &id_cell[i + 1..id_cell.len() - 4],
                _ => id_cell,
            };
            let values = attr_values(row, "data-v")
                .into_iter()
                .map(|v| v.parse::<f64>().unwrap())
                .collect();
            (unescape(text), values)
        })
        .collect()
}

#[test]
fn html_report_has_every_test_right_numbers_and_no_external_urls() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    history(&db);
    let q = quarantine(dir.path());
    let out_path = dir.path().join("out/report.html");
    let out = Flake::new(
        dir.path(),
        &[
            "report",
            "--html",
            out_path.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--quarantine",
            q.to_str().unwrap(),
        ],
    )
    .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("5 tests, 3 flaky, 12 runs"),
        "{}",
        out.stderr
    );
    let html = std::fs::read_to_string(&out_path).unwrap();

    // Every test, worst first; numbers as the rate rules give them:
    // (flake rate, wilson high, runs, flaky, failed).
    let rows = table_rows(&html);
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [RUST_FLAKY, FLIP, PY_FLAKY, HARD, "app tests::fine"]);
    let wilson_high = |k: f64, n: f64| {
        let z = 1.959_963_984_540_054_f64;
        let p = k / n;
        (p + z * z / (2.0 * n) + z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt())
            / (1.0 + z * z / n)
    };
    let expect = [
        (3.0 / 12.0, wilson_high(3.0, 12.0), 12.0, 3.0, 0.0),
        (1.0 / 12.0, wilson_high(1.0, 12.0), 12.0, 1.0, 0.0),
        (1.0 / 12.0, wilson_high(1.0, 12.0), 12.0, 1.0, 0.0),
        (0.0, wilson_high(0.0, 12.0), 12.0, 0.0, 12.0),
        (0.0, wilson_high(0.0, 12.0), 12.0, 0.0, 0.0),
    ];
    for ((id, got), want) in rows.iter().zip(expect) {
        let want = [want.0, want.1, want.2, want.3, want.4];
        assert_eq!(got.len(), 5, "{id}: {got:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{id}: got {got:?}, want {want:?}");
        }
    }
    // The same numbers as `cargo flake stats --format json`, to the last bit.
    let stats = Flake::new(
        dir.path(),
        &[
            "stats",
            "--format",
            "json",
            "--db",
            db.to_str().unwrap(),
            "--quarantine",
            q.to_str().unwrap(),
        ],
    )
    .run();
    assert_eq!(stats.code, 0, "{}", stats.stderr);
    let stats = stats.json();
    let stats = stats.as_array().unwrap();
    assert_eq!(stats.len(), rows.len());
    let lows: Vec<f64> = attr_values(&html, "data-lo")
        .into_iter()
        .map(|v| v.parse().unwrap())
        .collect();
    for ((id, got), low) in rows.iter().zip(&lows) {
        let s = stats
            .iter()
            .find(|s| s["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not in stats"));
        let num = |k: &str| s[k].as_f64().unwrap();
        assert_eq!(got[0], num("flake_rate"), "{id}");
        assert_eq!(got[1], num("wilson_high"), "{id}");
        assert_eq!(*low, num("wilson_low"), "{id}");
        assert_eq!(
            (got[2], got[3], got[4]),
            (num("runs"), num("flaky"), num("failed")),
            "{id}"
        );
        assert_eq!(
            s["quarantined"].as_bool().unwrap(),
            id == RUST_FLAKY,
            "{id}"
        );
    }

    // The summary: 3 of 5 tests flaky; 5 of 12 runs disturbed; 1 quarantined.
    assert!(
        html.contains("<div class=\"v\">3</div><div class=\"s\">60% of tests</div>"),
        "flaky share card"
    );
    assert!(html.contains("5 of the last 12 runs disturbed by a flaky test"));
    assert!(html.contains("<div class=\"k\">Quarantined</div><div class=\"v\">1</div>"));

    // Details: one cluster for the two refused connections (other ports and
    // thread ids), one for the timeout; the flip is called out.
    let rust = html.split("<details id=\"t0\"").nth(1).unwrap();
    let rust = &rust[..rust.find("</details>\n").unwrap()];
    assert!(
        rust.contains("<b>2×</b>"),
        "two refused connections, one cause"
    );
    assert!(rust.contains("<b>1×</b>") && rust.contains("timeout"));
    assert!(
        rust.contains("feature/x") && rust.contains("runner-1"),
        "breakdowns"
    );
    assert!(
        rust.contains("class=\"pt-t\""),
        "the timeout is on the scatter plot"
    );
    assert!(html.contains("failed · passed on same commit"));

    // Markup in ids is escaped, never raw.
    assert!(!html.contains("<&>"));
    assert!(html.contains("test_refund[eur-&lt;&amp;&gt;&quot;x&quot;]"));

    // Self-contained: every src/href is an in-page anchor; nothing is fetched.
    let links: Vec<&str> = attr_values(&html, "href")
        .into_iter()
        .chain(attr_values(&html, "src"))
        .collect();
    assert!(!links.is_empty());
    for l in &links {
        assert!(l.starts_with('#'), "external reference {l}");
    }
    for forbidden in ["<link", "@import", "url(", "<iframe", "<img"] {
        assert!(!html.contains(forbidden), "{forbidden}");
    }
    // The quarantine table shows the entry and its link only as text.
    assert!(html.contains("https://example.com/issues/7</td>"));
}

#[test]
fn show_tells_one_tests_story() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    history(&db);
    let q = quarantine(dir.path());
    let out = Flake::new(
        dir.path(),
        &[
            "show",
            RUST_FLAKY,
            "--runs",
            "6",
            "--db",
            db.to_str().unwrap(),
            "--quarantine",
            q.to_str().unwrap(),
            "--color",
            "never",
        ],
    )
    .env("__CARGO_FLAKE_REDACT", "1")
    .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let expected = "\
app::it net::reconnects
  flake rate 25% (95% interval 8.9%–53%) · 3 flaky, 0 failed, 9 passed of 12 runs
  quarantined since [date] (auto): flake rate 25% over 12 runs

Recent runs (newest first)
  WHEN              COMMIT      BRANCH                OUTCOME   ATTEMPTS  CAUSE
  [time]            006fffffff  main                  passed           1
  [time]            006fffffff  main                  passed           1
  [time]            005fffffff  feature/x             flaky            2  c5328e95
  [time]            005fffffff  main                  passed           1
  [time]            004fffffff  main                  passed           1
  [time]            004fffffff  feature/x             passed           1

Failure causes
  df26a18b    2×  fail     connection refused: 127.0.0.1:40005  at tests/net.rs:41:9
  c5328e95    1×  timeout  test timeout

By branch
  main                            8 runs, 2 flaky, 0 failed
  feature/x                       4 runs, 1 flaky, 0 failed

  Why
    timing (weak): failing attempts ran 20 ms (median) against 12 ms for passing ones (3 failing, 12 passing attempts); 1 of the failures were timeouts
    failure kind (weak): 2 of 4 failures read as a refused or reset connection (e.g. \"connection refused: N.N.N.N:N\")
    the evidence: cargo flake why 'app::it net::reconnects'
";
    assert_eq!(out.stdout, expected);

    let json = Flake::new(
        dir.path(),
        &[
            "show",
            HARD,
            "--db",
            db.to_str().unwrap(),
            "--quarantine",
            q.to_str().unwrap(),
            "--format",
            "json",
        ],
    )
    .run();
    assert_eq!(json.code, 0, "{}", json.stderr);
    let v = json.json();
    assert_eq!(v["rate"]["failed"], 12);
    assert_eq!(v["rate"]["flaky"], 0);
    assert_eq!(v["detail"]["clusters"].as_array().unwrap().len(), 1);
    assert_eq!(v["detail"]["clusters"][0]["count"], 36);

    let missing = Flake::new(dir.path(), &["show", "nope", "--db", db.to_str().unwrap()]).run();
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("the history has no test `nope`"),
        "{}",
        missing.stderr
    );
    let no_db = Flake::new(
        dir.path(),
        &["report", "--html", "x.html", "--db", "absent.db"],
    )
    .run();
    assert_eq!(no_db.code, 2);
    assert!(
        !dir.path().join("absent.db").exists(),
        "reading commands never create a database"
    );
}
