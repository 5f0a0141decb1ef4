//! `cargo xtask render-report` and `cargo xtask bench-report`.
//!
//! - `render-report [--db PATH | --demo] [--html PATH] [--png PATH] [--width PX] [--height PX]`:
//!   writes the HTML report (of a history, or of a generated demo history
//!   with a few flaky tests) and renders it with headless Chromium (Debian's
//!   `chromium`) to a PNG, for a human to look at.
//! - `bench-report [--tests N] [--runs N]`: generates a synthetic history
//!   (default 5,000 tests x 1,000 runs), then times building and rendering the
//!   report and reports its size against the targets (<= 2 s, < 5 MB).
//!   The baseline in the same command is reading every test's window alone,
//!   the floor any report has to pay.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use flake_core::meta::RunMeta;
use flake_core::model::{Attempt, AttemptStatus, Failure, TestResult};
use flake_core::quarantine::{Entry, EntrySource, QuarantineFile};
use flake_core::report::{Model, Options, html};
use flake_core::store::Store;

/// Entry point; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    let result = match args.first().map(String::as_str) {
        Some("render-report") => render(&args[1..]),
        Some("bench-report") => bench(&args[1..]),
        _ => Err("unknown task".into()),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn render(args: &[String]) -> Result<(), Error> {
    let out_dir = workspace_root().join("target/report");
    std::fs::create_dir_all(&out_dir)?;
    let html_path = flag(args, "--html")
        .map(PathBuf::from)
        .unwrap_or_else(|| out_dir.join("report.html"));
    let png = flag(args, "--png")
        .map(PathBuf::from)
        .unwrap_or_else(|| out_dir.join("report.png"));
    let width = flag(args, "--width").unwrap_or("1400");
    let height = flag(args, "--height").unwrap_or("2400");
    let (store, quarantine) = match flag(args, "--db") {
        Some(db) => (
            Store::open(Path::new(db))?,
            QuarantineFile::load(&workspace_root().join("flake-quarantine.toml"))?,
        ),
        None => {
            let db = out_dir.join("demo.db");
            let _ = std::fs::remove_file(&db);
            let mut store = Store::open(&db)?;
            synthesize(&mut store, 60, 120, 6)?;
            let q = demo_quarantine(&out_dir)?;
            (store, q)
        }
    };
    let model = Model::build(&store, &quarantine, &Options::default())?;
    std::fs::write(&html_path, html::render(&model))?;
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .ok_or("headless Chromium not found: `apt-get install -y chromium`")?;
    let status = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html_path.canonicalize()?.display()))
        .status()?;
    if !status.success() {
        return Err(format!("{chromium} failed: {status}").into());
    }
    println!("{}\n{}", html_path.display(), png.display());
    Ok(())
}

fn demo_quarantine(dir: &Path) -> Result<QuarantineFile, Error> {
    let path = dir.join("demo-quarantine.toml");
    let _ = std::fs::remove_file(&path);
    let mut q = QuarantineFile::load(&path)?;
    q.add(Entry {
        id: "payments::it checkout::retries_on_timeout".into(),
        added: Some("2026-10-02".into()),
        reason: Some("flake rate 14% over 50 runs (window 50)".into()),
        source: EntrySource::Auto,
        ..Entry::default()
    });
    q.add(Entry {
        id: "tests/test_api.py::TestLogin::test_session[<eu>&\"x\"]".into(),
        added: Some("2026-11-15".into()),
        reason: Some("shared fixture races; tracked in #412".into()),
        pinned: true,
        owner: Some("@web-team".into()),
        issue: Some("https://example.com/issues/412".into()),
        ..Entry::default()
    });
    q.save()?;
    Ok(q)
}

/// A deterministic pseudo-random sequence (no dependency needed for a generator).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

/// Fills `store` with `runs` runs of `tests` tests; `flaky` of them flaky at
/// rates from 2% to 30%, one that hard-fails on a feature branch, and a mix of
/// Rust, Python, Jest and Go ids.
fn synthesize(store: &mut Store, tests: usize, runs: usize, flaky: usize) -> Result<(), Error> {
    let mut rng = Lcg(42);
    let ids: Vec<String> = (0..tests)
        .map(|i| match i % 4 {
            0 => format!("payments::it checkout::case_{i:05}"),
            1 => format!("tests/test_api.py::TestLogin::test_{i:05}"),
            2 => format!("__tests__/ui.test.js::cart > item {i:05}"),
            _ => format!("example.com/svc/store::TestQuery_{i:05}"),
        })
        .chain([
            "payments::it checkout::retries_on_timeout".to_owned(),
            "tests/test_api.py::TestLogin::test_session[<eu>&\"x\"]".to_owned(),
        ])
        .collect();
    let flaky_rate = |i: usize| -> Option<f64> {
        let n = ids.len();
        if i >= n - 2 {
            Some(if i == n - 2 { 0.14 } else { 0.06 })
        } else if i < flaky {
            Some(0.02 + 0.28 * i as f64 / flaky.max(1) as f64)
        } else {
            None
        }
    };
    let base = 1_790_000_000_000_i64;
    let branches = [
        "main",
        "main",
        "main",
        "feature/cache",
        "renovate/tokio-1.x",
    ];
    let platforms = [
        ("linux", "x86_64-unknown-linux-gnu"),
        ("linux", "x86_64-unknown-linux-gnu"),
        ("macos", "aarch64-apple-darwin"),
        ("windows", "x86_64-pc-windows-msvc"),
    ];
    for r in 0..runs {
        let branch = branches[(rng.next() % branches.len() as u64) as usize];
        let (os, target) = platforms[(rng.next() % platforms.len() as u64) as usize];
        let meta = RunMeta {
            run_id: format!("run-{r:05}"),
            // Every third run re-tests the previous commit of its branch, so same-commit flips occur.
            commit: Some(fake_sha((r - r % 3) as u64, branch)),
            branch: Some(branch.into()),
            started_at: base + r as i64 * 3_600_000,
            finished_at: base + r as i64 * 3_600_000 + 600_000,
            host: Some(format!("ci-runner-{}", rng.next() % 4 + 1)),
            os: Some(os.into()),
            target: Some(target.into()),
            source_format: "nextest".into(),
            ..RunMeta::default()
        };
        let mut writer = store.begin_run(&meta)?;
        for (i, id) in ids.iter().enumerate() {
            let d = 5 + rng.next() % 40;
            let attempts = match flaky_rate(i) {
                Some(p) if rng.chance(p) => {
                    let port = 30_000 + rng.next() % 30_000;
                    let (status, text, dur) = if i % 2 == 0 {
                        (
                            AttemptStatus::Fail,
                            format!(
                                "thread 'main' ({}) panicked at tests/checkout.rs:88:9:\nconnection refused: 127.0.0.1:{port}",
                                rng.next() % 90_000
                            ),
                            d,
                        )
                    } else if rng.chance(0.5) {
                        (AttemptStatus::Timeout, "test timeout".to_owned(), 30_000)
                    } else {
                        (
                            AttemptStatus::Fail,
                            format!(
                                "AssertionError: expected 3 items, got {}\n\ntests/test_api.py:{}: AssertionError",
                                rng.next() % 3,
                                40 + i % 7
                            ),
                            d + 12,
                        )
                    };
                    let failure = Failure::from_output(None, &text);
                    if rng.chance(0.15) {
                        // Failed every retry, passed in another run of the same commit.
                        vec![
                            Attempt::failed(status, Some(dur), failure.clone()),
                            Attempt::failed(status, Some(dur), failure.clone()),
                            Attempt::failed(status, Some(dur), failure),
                        ]
                    } else {
                        vec![
                            Attempt::failed(status, Some(dur), failure),
                            Attempt::pass(Some(d)),
                        ]
                    }
                }
                _ if i == flaky && branch == "feature/cache" => vec![
                    Attempt::failed(
                        AttemptStatus::Fail,
                        Some(d),
                        Failure::from_output(
                            None,
                            "thread 'x' panicked at src/cache.rs:12:5:\nassertion `left == right` failed"
                        ),
                    );
                    3
                ],
                _ => vec![Attempt::pass(Some(d))],
            };
            writer.add(&TestResult::new(id.clone(), attempts))?;
        }
        writer.commit()?;
    }
    Ok(())
}

/// A SHA-looking hex string, stable for one (number, branch).
fn fake_sha(n: u64, branch: &str) -> String {
    let mut h = n ^ 0xcbf2_9ce4_8422_2325;
    for b in branch.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let a = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let b = a.rotate_left(29).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    format!("{a:016x}{b:016x}{:08x}", (a ^ b) as u32)
}

fn bench(args: &[String]) -> Result<(), Error> {
    let tests: usize = flag(args, "--tests").unwrap_or("5000").parse()?;
    let runs: usize = flag(args, "--runs").unwrap_or("1000").parse()?;
    let dir = workspace_root().join("target/report");
    std::fs::create_dir_all(&dir)?;
    let db = dir.join(format!("bench-{tests}x{runs}.db"));
    if !db.exists() {
        eprintln!(
            "generating {tests} tests x {runs} runs into {} ...",
            db.display()
        );
        let t = Instant::now();
        let tmp = db.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut store = Store::open(&tmp)?;
        // 1% of tests flaky, as in a large real suite.
        synthesize(&mut store, tests.saturating_sub(2), runs, tests / 100)?;
        drop(store);
        std::fs::rename(&tmp, &db)?;
        let _ = std::fs::remove_file(tmp.with_extension("tmp-wal"));
        let _ = std::fs::remove_file(tmp.with_extension("tmp-shm"));
        eprintln!("  generated in {:.1} s", t.elapsed().as_secs_f64());
    }
    let store = Store::open(&db)?;
    let quarantine = QuarantineFile::load(&dir.join("none.toml"))?;
    let opts = Options::default();

    // Baseline: read every test's window and nothing else. The first pass
    // warms the page cache for both measurements.
    let mut rows = 0;
    let mut baseline = 0.0;
    for _ in 0..2 {
        let t = Instant::now();
        rows = 0;
        for test in store.tests()? {
            rows += store.window(test.key, opts.stats.window)?.len();
        }
        baseline = t.elapsed().as_secs_f64();
    }

    let t = Instant::now();
    let model = Model::build(&store, &quarantine, &opts)?;
    let built = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let text = html::render(&model);
    let rendered = t.elapsed().as_secs_f64();
    std::fs::write(dir.join("bench-report.html"), &text)?;
    let total = built + rendered;
    let mb = text.len() as f64 / 1_000_000.0;
    println!("report over {tests} tests x {runs} runs ({rows} window rows read)");
    println!("  baseline (window reads only): {baseline:.3} s");
    println!(
        "  model {built:.3} s + render {rendered:.3} s = {total:.3} s ({:.2}x baseline; target <= 2 s: {})",
        total / baseline.max(1e-9),
        if total <= 2.0 { "ok" } else { "MISSED" }
    );
    println!(
        "  size {mb:.2} MB, {} tests with details (target < 5 MB: {})",
        model.tests.iter().filter(|t| t.detail.is_some()).count(),
        if mb < 5.0 { "ok" } else { "MISSED" }
    );
    Ok(())
}
