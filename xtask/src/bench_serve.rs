//! `cargo xtask bench-serve`: the team service, `cargo flake serve` (the
//! release binary, as its own process on a loopback port) against
//! PostgreSQL on the same machine, under load from bounded clients in this
//! process, each figure next to a baseline measured in the same command:
//!
//! 1. uploads: `--clients` (16) threads POST a 1,000-case JUnit report (a
//!    new run id each time, 10 flaky cases) for `--seconds` (30): uploads/s,
//!    latency p50/p99/max, errors, the server's peak RSS; the baseline is
//!    one client's upload latency, measured first;
//! 2. the floor: as many runs of the same result and attempt rows written
//!    by PostgreSQL's own binary `COPY` (one connection, a transaction per
//!    run) into plain tables with the same columns and keys;
//! 3. `GET flaky-tests?page_size=100` over a history of `--tests` (5,000) x
//!    `--runs` (1,000) written by `bench-pg`'s writer, from `--clients`
//!    threads, `--requests` (320) in all or `--seconds`, whichever ends
//!    first; baselines: one client's latency, and `cargo flake stats
//!    --format json` on the same database;
//! 4. a `--big` (200,000)-case upload with flaky tests: from the start of
//!    the POST to its 201, and until `flaky-tests` lists one of them; the
//!    baseline is `cargo flake ingest` of the same file into a fresh
//!    database.
//!
//! Every request has a timeout and every loop a bound. The server's log
//! (one line per request, with its time inside the server) is kept in
//! memory and its per-request times are reported beside the client's.
//! Every database is a scratch one ([`TestDatabase`]), dropped at the end.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flake_core::store::postgres::testing::TestDatabase;
use flake_core::store::{Location, Store};
use flake_core::tokens::{self, Role};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use crate::bench::{build_release, median, time};

/// Settings of `bench-serve`.
#[derive(Debug, Clone)]
pub struct Options {
    seconds: u64,
    clients: usize,
    tests: usize,
    runs: usize,
    requests: usize,
    big: usize,
}

impl Options {
    /// Parses `--seconds N --clients N --tests N --runs N --requests N --big N`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            seconds: 30,
            clients: 16,
            tests: 5_000,
            runs: 1_000,
            requests: 320,
            big: 200_000,
        };
        for (a, v) in crate::bench::flags(args, &[])? {
            match a {
                "--seconds" => o.seconds = v as u64,
                "--clients" => o.clients = v,
                "--tests" => o.tests = v,
                "--runs" => o.runs = v,
                "--requests" => o.requests = v,
                "--big" => o.big = v,
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        Ok(o)
    }
}

const PROJECT: &str = "github.com/bench/serve";
const BIG_PROJECT: &str = "github.com/bench/big";
const HISTORY_PROJECT: &str = "bench";
/// Test cases per upload of the load.
pub(crate) const CASES: usize = 1_000;
/// Client timeouts: no request of a bounded client waits longer.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
const BIG_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) use flake_core::webhooks::percent_encode as encode;

pub(crate) fn scratch() -> Result<TestDatabase, String> {
    TestDatabase::create().ok_or_else(|| {
        "set CARGO_FLAKE_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test)".into()
    })
}

/// What a case of a generated report does.
#[derive(Clone, Copy, PartialEq)]
enum Case {
    Pass,
    Flaky,
    Fail,
    Skip,
}

/// Case `i`: 1% flaky (a `<flakyFailure>`, then a pass), 2% failing with a
/// traceback, 1% skipped, the rest passing.
fn case(i: usize) -> Case {
    match (i % 100, i % 50) {
        (7, _) => Case::Flaky,
        (11, _) => Case::Skip,
        (_, 3) => Case::Fail,
        _ => Case::Pass,
    }
}

/// A JUnit report of `n` cases, 1,000 per `<testsuite>`, shaped by [`case`].
pub(crate) fn junit(n: usize) -> Vec<u8> {
    let mut xml = String::with_capacity(n * 120);
    xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"bench\">\n");
    for s in 0..n.div_ceil(1_000) {
        let count = 1_000.min(n - s * 1_000);
        xml.push_str(&format!(
            "<testsuite name=\"suite{s}\" tests=\"{count}\" time=\"1.0\">\n"
        ));
        for t in 0..count {
            let i = s * 1_000 + t;
            xml.push_str(&format!(
                "  <testcase classname=\"pkg.module{s}.Class{}\" name=\"test_case_{t:04}\" time=\"0.{:03}\"",
                t % 37,
                i % 997
            ));
            xml.push_str(match case(i) {
                Case::Pass => "/>\n",
                Case::Flaky => {
                    ">\n    <flakyFailure message=\"connection reset\" type=\"IOError\">Traceback (most recent call last):\n  File \"net.py\", line 40, in fetch\nConnectionResetError: connection reset by peer</flakyFailure>\n  </testcase>\n"
                }
                Case::Fail => {
                    ">\n    <failure message=\"assertion failed: left == right\" type=\"AssertionError\">Traceback (most recent call last):\n  File \"x.py\", line 12, in test\n    assert a == b\nAssertionError: 1 != 2</failure>\n  </testcase>\n"
                }
                Case::Skip => ">\n    <skipped message=\"not today\"/>\n  </testcase>\n",
            });
        }
        xml.push_str("</testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml.into_bytes()
}

/// Per-request times the server logged (route kind, status, milliseconds).
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) uploads: Vec<(u16, f64)>,
    flaky: Vec<(u16, f64)>,
    tail: VecDeque<String>,
}

/// A `cargo flake serve` process; killed when dropped.
pub(crate) struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<Log>>,
}

impl Server {
    pub(crate) fn start(flake: &Path, url: &str) -> Result<Server, String> {
        Server::start_with(flake, url, &[])
    }

    /// [`Server::start`] with more flags.
    pub(crate) fn start_with(flake: &Path, url: &str, extra: &[&str]) -> Result<Server, String> {
        let mut child = Command::new(flake)
            .args(["flake", "serve", "--database-url", url])
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", flake.display()))?;
        let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
        let mut line = String::new();
        let _ = stderr.read_line(&mut line);
        let Some(addr) = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the server did not start: {line:?}"));
        };
        let log = Arc::new(Mutex::new(Log::default()));
        let sink = log.clone();
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut log = sink.lock().expect("log");
                let parts: Vec<&str> = line.split_whitespace().collect();
                if let [_, path, status, ms, ..] = parts[..]
                    && let (Ok(status), Some(Ok(ms))) = (
                        status.parse::<u16>(),
                        ms.strip_suffix("ms").map(str::parse::<f64>),
                    )
                {
                    let path = path.split('?').next().unwrap_or(path);
                    if path.ends_with("/runs") {
                        log.uploads.push((status, ms));
                    } else if path.ends_with("/flaky-tests") {
                        log.flaky.push((status, ms));
                    }
                }
                if log.tail.len() == 20 {
                    log.tail.pop_front();
                }
                log.tail.push_back(line);
            }
        });
        Ok(Server {
            child,
            base: format!("http://{addr}"),
            log,
        })
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`).
    pub(crate) fn status_kib(&self, field: &str) -> Option<u64> {
        proc_status_kib(self.child.id(), field)
    }

    /// The server's own times of the requests since the last call.
    pub(crate) fn take_log(&self) -> Log {
        let mut log = self.log.lock().expect("log");
        Log {
            uploads: std::mem::take(&mut log.uploads),
            flaky: std::mem::take(&mut log.flaky),
            tail: log.tail.clone(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Samples a process's `VmRSS` every 100 ms until stopped; the peak, KiB.
pub(crate) struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(proc_status_kib(pid, "VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        RssSampler { stop, thread }
    }

    pub(crate) fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout(timeout)
        .build()
}

/// Sends `req` (with `body` for a POST) and reads the whole answer: its
/// status and body, or why there is none.
fn send(req: ureq::Request, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), String> {
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = response.status();
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(512 << 20)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok((status, bytes))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// POSTs a report as run `run_id`; Ok when the answer is 201.
pub(crate) fn upload(
    agent: &ureq::Agent,
    server: &Server,
    project: &str,
    token: &str,
    run_id: &str,
    commit: &str,
    body: &[u8],
) -> Result<(), String> {
    let url = server.url(&format!(
        "/api/v1/projects/{}/runs?run_id={run_id}&commit={commit}&branch=main&name=junit.xml",
        encode(project)
    ));
    let req = agent.post(&url).set("Authorization", &bearer(token));
    match send(req, Some(body))? {
        (201, _) => Ok(()),
        (status, body) => Err(format!(
            "upload {run_id}: {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )),
    }
}

/// GETs the first page of `project`'s flaky tests; the number of items.
fn flaky_tests(
    agent: &ureq::Agent,
    server: &Server,
    project: &str,
    token: &str,
    page_size: usize,
) -> Result<usize, String> {
    let url = server.url(&format!(
        "/api/v1/projects/{}/flaky-tests?page_size={page_size}",
        encode(project)
    ));
    let (status, body) = send(agent.get(&url).set("Authorization", &bearer(token)), None)?;
    if status != 200 {
        return Err(format!(
            "flaky-tests: {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    json["items"]
        .as_array()
        .map(Vec::len)
        .ok_or_else(|| format!("flaky-tests: no items in {json}"))
}

/// The result of a load: every request's latency, and what failed.
pub(crate) struct Load {
    pub(crate) ok: usize,
    pub(crate) errors: usize,
    pub(crate) first_error: Option<String>,
    pub(crate) latencies_ms: Vec<f64>,
    pub(crate) wall: f64,
}

/// `clients` threads each calling `request(n, agent)` with a fresh `n`
/// until `seconds` have passed or `max_total` requests were issued.
pub(crate) fn load(
    clients: usize,
    seconds: u64,
    max_total: usize,
    request: impl Fn(usize, &ureq::Agent) -> Result<(), String> + Send + Sync + 'static,
) -> Load {
    let request = Arc::new(request);
    let issued = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (request, issued) = (request.clone(), issued.clone());
            std::thread::spawn(move || {
                let agent = agent(TIMEOUT);
                let (mut latencies, mut errors) = (Vec::new(), Vec::new());
                while Instant::now() < deadline {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if n >= max_total {
                        break;
                    }
                    let t = Instant::now();
                    let result = request(n, &agent);
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    if let Err(e) = result {
                        errors.push(e);
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut out = Load {
        ok: 0,
        errors: 0,
        first_error: None,
        latencies_ms: Vec::new(),
        wall: 0.0,
    };
    for t in threads {
        let (latencies, errors) = t.join().unwrap_or_default();
        out.ok += latencies.len() - errors.len();
        out.errors += errors.len();
        out.first_error = out.first_error.or(errors.into_iter().next());
        out.latencies_ms.extend(latencies);
    }
    out.wall = start.elapsed().as_secs_f64();
    out.latencies_ms.sort_by(f64::total_cmp);
    out
}

/// The nearest-rank `q` quantile of sorted `v`.
pub(crate) fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// p50/p99 of the server's own times of successful requests.
pub(crate) fn server_times(times: &[(u16, f64)]) -> String {
    let mut ms: Vec<f64> = times
        .iter()
        .filter(|(s, _)| *s < 300)
        .map(|&(_, ms)| ms)
        .collect();
    ms.sort_by(f64::total_cmp);
    format!(
        "p50 {:.0} ms, p99 {:.0} ms",
        quantile(&ms, 0.50),
        quantile(&ms, 0.99)
    )
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub(crate) fn token(url: &str, project: &str, role: Role) -> Result<String, String> {
    let mut store = Store::connect(&Location::parse(url).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    tokens::create(
        &mut store,
        project,
        role,
        Some("bench-serve"),
        None,
        flake_core::meta::now_ms(),
    )
    .map(|c| c.token)
    .map_err(|e| e.to_string())
}

/// One table row: figure, value, ratio to its baseline, target, and
/// whether the target is met (`None`: no target).
struct Row {
    figure: String,
    value: String,
    ratio: String,
    target: &'static str,
    met: Option<bool>,
}

impl Row {
    fn new(figure: String, value: String, ratio: String, target: &'static str) -> Row {
        Row {
            figure,
            value,
            ratio,
            target,
            met: None,
        }
    }

    fn met(mut self, met: bool) -> Row {
        self.met = Some(met);
        self
    }
}

/// Runs every part and prints the table; whether every target was met.
pub fn run(root: &Path, o: &Options) -> Result<bool, String> {
    let flake = build_release(root)?;
    let work = root.join("target/xtask-bench");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    uploads(&flake, &work, o, &mut rows)?;
    reads(&flake, &work, o, &mut rows)?;
    println!("\n| Figure | Value | Ratio to baseline | Target |\n|---|---|---|---|");
    let mut all = true;
    for r in &rows {
        let mark = match r.met {
            Some(true) => " (met)",
            Some(false) => " (**missed**)",
            None => "",
        };
        all &= r.met != Some(false);
        println!(
            "| {} | {} | {} | {}{mark} |",
            r.figure, r.value, r.ratio, r.target
        );
    }
    Ok(all)
}

/// Parts 1, 2 and 4: the upload load, the COPY floor, the big upload.
fn uploads(flake: &Path, work: &Path, o: &Options, rows: &mut Vec<Row>) -> Result<(), String> {
    let pg = scratch()?;
    // The schema first, as a deployed database has it; then the tokens.
    let upload_token = token(pg.url(), PROJECT, Role::Upload)?;
    let big_upload = token(pg.url(), BIG_PROJECT, Role::Upload)?;
    let big_read = token(pg.url(), BIG_PROJECT, Role::Read)?;
    let server = Server::start(flake, pg.url())?;
    let report = Arc::new(junit(CASES));
    eprintln!(
        "bench-serve: uploads of {CASES} cases ({} KiB), one client, then {} clients for {} s",
        report.len() / 1024,
        o.clients,
        o.seconds
    );

    // Baseline: one client alone, after one uncounted upload.
    let single = agent(TIMEOUT);
    let commit = |n: usize| format!("{n:040x}");
    upload(
        &single,
        &server,
        PROJECT,
        &upload_token,
        "warm",
        &commit(0),
        &report,
    )?;
    let mut alone = Vec::new();
    for i in 0..10 {
        let t = Instant::now();
        let run_id = format!("single-{i}");
        upload(
            &single,
            &server,
            PROJECT,
            &upload_token,
            &run_id,
            &commit(i),
            &report,
        )?;
        alone.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let alone = median(alone);
    server.take_log();

    let sampler = RssSampler::start(server.child.id());
    let (base, body, tok) = (server.base.clone(), report.clone(), upload_token.clone());
    let url = move |n: usize| {
        format!(
            "{base}/api/v1/projects/{}/runs?run_id=load-{n:06}&commit={n:040x}&branch=main&name=junit.xml",
            encode(PROJECT)
        )
    };
    let result = load(
        o.clients,
        o.seconds,
        (o.seconds as usize * 400).max(o.clients),
        move |n, agent| {
            let req = agent.post(&url(n)).set("Authorization", &bearer(&tok));
            match send(req, Some(&body))? {
                (201, _) => Ok(()),
                (status, b) => Err(format!(
                    "{status} {}",
                    String::from_utf8_lossy(&b[..b.len().min(300)])
                )),
            }
        },
    );
    let sampled = sampler.stop();
    let hwm = server.status_kib("VmHWM").unwrap_or(0);
    let threads = server.status_kib("Threads").unwrap_or(0);
    let rss = sampled.max(hwm);
    let log = server.take_log();
    let rate = result.ok as f64 / result.wall;
    let l = &result.latencies_ms;
    let (p50, p99, max) = (quantile(l, 0.5), quantile(l, 0.99), quantile(l, 1.0));
    eprintln!(
        "  {} uploads in {:.1} s ({rate:.1}/s), {} errors{}; p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms; server-side {}; peak RSS {:.0} MiB",
        result.ok,
        result.wall,
        result.errors,
        result
            .first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        server_times(&log.uploads),
        mib(rss)
    );

    // The floor: the same rows by PostgreSQL's own COPY.
    eprintln!(
        "bench-serve: the floor, {} runs of the same rows by binary COPY from {} connections",
        result.ok.max(1),
        o.clients
    );
    let floor = copy_floor(pg.url(), result.ok.max(1), CASES, o.clients)?;
    let floor_rate = (result.ok.max(1) * CASES) as f64 / floor;
    let results_rate = rate * CASES as f64;
    eprintln!(
        "  {floor:.1} s: {floor_rate:.0} results/s; the uploads stored {results_rate:.0} results/s"
    );

    rows.push(
        Row::new(
            format!(
                "uploads of a {CASES}-case JUnit report, {} clients for {:.0} s",
                o.clients, result.wall
            ),
            format!(
                "**{rate:.1} uploads/s** ({} uploads, {} errors{})",
                result.ok,
                result.errors,
                result
                    .first_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            format!(
                "{results_rate:.0} results/s = **{:.2}x** the COPY floor",
                results_rate / floor_rate
            ),
            ">= 50 uploads/s, 0 errors",
        )
        .met(rate >= 50.0 && result.errors == 0),
    );
    rows.push(
        Row::new(
            "upload latency under that load (client side)".into(),
            format!(
                "p50 {p50:.0} ms, **p99 {p99:.0} ms**, max {max:.0} ms (server-side {})",
                server_times(&log.uploads)
            ),
            format!(
                "p99 **{:.1}x** one client's upload ({alone:.0} ms, median of 10)",
                p99 / alone
            ),
            "p99 <= 500 ms",
        )
        .met(p99 <= 500.0),
    );
    rows.push(
        Row::new(
            "server peak RSS during the upload load".into(),
            format!(
                "**{:.0} MiB** (VmHWM {:.0} MiB, VmRSS sampled every 100 ms {:.0} MiB; {threads} threads after the load)",
                mib(rss),
                mib(hwm),
                mib(sampled)
            ),
            String::new(),
            "<= 150 MB",
        )
        .met(rss as f64 * 1024.0 <= 150e6),
    );
    rows.push(Row::new(
        format!(
            "the floor: PostgreSQL binary `COPY` of the same rows ({} runs x {CASES} results and their attempts, {} connections, a transaction per run)",
            result.ok.max(1),
            o.clients
        ),
        format!("{floor_rate:.0} results/s ({floor:.1} s)"),
        "1.00x".into(),
        "",
    ));

    // Part 4: a big upload with flaky tests, until flaky-tests shows one.
    let big = junit(o.big);
    let big_path = work.join("bench-serve-big.xml");
    std::fs::write(&big_path, &big).map_err(|e| e.to_string())?;
    eprintln!(
        "bench-serve: one upload of {} cases ({:.1} MB), then flaky-tests until it shows",
        o.big,
        big.len() as f64 / 1e6
    );
    let big_agent = agent(BIG_TIMEOUT);
    let poller = agent(TIMEOUT);
    let start = Instant::now();
    upload(
        &big_agent,
        &server,
        BIG_PROJECT,
        &big_upload,
        "big",
        &commit(1),
        &big,
    )?;
    let answered = start.elapsed().as_secs_f64();
    let mut polls = 0;
    let visible = loop {
        polls += 1;
        if flaky_tests(&poller, &server, BIG_PROJECT, &big_read, 1)? > 0 {
            break start.elapsed().as_secs_f64();
        }
        if start.elapsed() > BIG_TIMEOUT {
            return Err("the big upload's flaky tests never showed in flaky-tests".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let big_log = server.take_log();
    let big_rss = server.status_kib("VmHWM").unwrap_or(0);
    drop(server);
    drop(pg);
    eprintln!(
        "  201 after {answered:.2} s, visible after {visible:.2} s ({polls} polls); server-side upload {}, flaky-tests {}; server VmHWM now {:.0} MiB",
        server_times(&big_log.uploads),
        server_times(&big_log.flaky),
        mib(big_rss)
    );

    // Its baseline: the CLI's ingest of the same file into a fresh database.
    let fresh = scratch()?;
    let path = big_path.to_str().expect("UTF-8 path");
    let args = [
        "flake",
        "ingest",
        path,
        "--database-url",
        fresh.url(),
        "--project",
        BIG_PROJECT,
        "--commit",
        "big",
    ];
    let ingest = time(flake, &args, work, &[])?.wall;
    drop(fresh);
    let _ = std::fs::remove_file(&big_path);
    eprintln!("  cargo flake ingest of the same file: {ingest:.2} s");
    rows.push(
        Row::new(
            format!(
                "one upload of {} cases ({:.0} MB): POST to 201, then until `flaky-tests` lists one of its flaky tests",
                o.big,
                big.len() as f64 / 1e6
            ),
            format!(
                "201 after {answered:.2} s, **visible after {visible:.2} s** (first `flaky-tests` of that project: {})",
                server_times(&big_log.flaky)
            ),
            format!(
                "**{:.2}x** `cargo flake ingest` of the same file into PostgreSQL ({ingest:.2} s); the 201 alone {:.2}x",
                visible / ingest,
                answered / ingest
            ),
            "<= 3 s",
        )
        .met(visible <= 3.0),
    );
    Ok(())
}

/// Writes `runs` runs of `cases` result rows and their attempt rows, as
/// an upload of [`junit`]`(cases)` writes them, by binary `COPY` into
/// scratch tables with `flake_results`' and `flake_attempts`' columns and
/// keys, from `clients` connections at once (a transaction per run, as the
/// uploads commit); the seconds it took. The tables are dropped after.
fn copy_floor(url: &str, runs: usize, cases: usize, clients: usize) -> Result<f64, String> {
    let sql = |e: postgres::Error| e.to_string();
    let mut client = postgres::Client::connect(url, postgres::NoTls).map_err(sql)?;
    client
        .batch_execute(
            "CREATE TABLE bench_floor_results (
                 test bigint NOT NULL, run bigint NOT NULL, bucket integer NOT NULL,
                 outcome smallint NOT NULL, attempts integer NOT NULL, duration_ms bigint,
                 PRIMARY KEY (test, run, bucket) INCLUDE (outcome));
             CREATE INDEX ON bench_floor_results (run);
             CREATE TABLE bench_floor_attempts (
                 test bigint NOT NULL, run bigint NOT NULL, bucket integer NOT NULL,
                 attempt integer NOT NULL, status smallint NOT NULL, duration_ms bigint,
                 failure bigint,
                 PRIMARY KEY (test, run, attempt, bucket));
             CREATE INDEX ON bench_floor_attempts (failure) WHERE failure IS NOT NULL;",
        )
        .map_err(sql)?;
    let next = Arc::new(AtomicUsize::new(1));
    let start = Instant::now();
    let writers: Vec<_> = (0..clients)
        .map(|_| {
            let (next, url) = (next.clone(), url.to_owned());
            std::thread::spawn(move || -> Result<(), String> {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).map_err(sql)?;
                loop {
                    let run = next.fetch_add(1, Ordering::Relaxed);
                    if run > runs {
                        return Ok(());
                    }
                    copy_run(&mut client, run as i64, cases).map_err(sql)?;
                }
            })
        })
        .collect();
    for w in writers {
        w.join()
            .map_err(|_| "a COPY writer panicked".to_owned())??;
    }
    let seconds = start.elapsed().as_secs_f64();
    client
        .batch_execute("DROP TABLE bench_floor_results, bench_floor_attempts")
        .map_err(sql)?;
    Ok(seconds)
}

/// One run's rows of [`copy_floor`], in one transaction.
fn copy_run(client: &mut postgres::Client, run: i64, cases: usize) -> Result<(), postgres::Error> {
    let bucket: i32 = 202_612;
    let duration: Option<i64> = Some(10);
    let mut tx = client.transaction()?;
    let copy = tx.copy_in(
        "COPY bench_floor_results (test, run, bucket, outcome, attempts, duration_ms) FROM STDIN BINARY",
    )?;
    let types = [
        Type::INT8,
        Type::INT8,
        Type::INT4,
        Type::INT2,
        Type::INT4,
        Type::INT8,
    ];
    let mut w = BinaryCopyInWriter::new(copy, &types);
    for i in 0..cases {
        let (outcome, attempts): (i16, i32) = match case(i) {
            Case::Pass => (0, 1),
            Case::Flaky => (1, 2),
            Case::Fail => (2, 1),
            Case::Skip => (3, 1),
        };
        let test = i as i64 + 1;
        w.write(&[&test, &run, &bucket, &outcome, &attempts, &duration])?;
    }
    w.finish()?;
    let copy = tx.copy_in(
        "COPY bench_floor_attempts (test, run, bucket, attempt, status, duration_ms, failure) FROM STDIN BINARY",
    )?;
    let types = [
        Type::INT8,
        Type::INT8,
        Type::INT4,
        Type::INT4,
        Type::INT2,
        Type::INT8,
        Type::INT8,
    ];
    let mut w = BinaryCopyInWriter::new(copy, &types);
    for i in 0..cases {
        let test = i as i64 + 1;
        let attempts: &[(i16, Option<i64>)] = match case(i) {
            Case::Pass => &[(0, None)],
            Case::Flaky => &[(1, Some(1)), (0, None)],
            Case::Fail => &[(1, Some(2))],
            Case::Skip => &[(3, None)],
        };
        for (n, (status, failure)) in attempts.iter().enumerate() {
            let attempt = n as i32 + 1;
            let row: [&(dyn ToSql + Sync); 7] =
                [&test, &run, &bucket, &attempt, status, &duration, failure];
            w.write(&row)?;
        }
    }
    w.finish()?;
    tx.commit()
}

/// Part 3: `flaky-tests` over the history, one client and many.
fn reads(flake: &Path, work: &Path, o: &Options, rows: &mut Vec<Row>) -> Result<(), String> {
    let pg = scratch()?;
    let (tests, runs) = (o.tests, o.runs);
    eprintln!("bench-serve: writing {tests} tests x {runs} runs (bench-pg's history)");
    let t = Instant::now();
    let mut store = Store::connect(&Location::parse(pg.url()).map_err(|e| e.to_string())?)
        .and_then(|s| s.with_project(HISTORY_PROJECT))
        .map_err(|e| e.to_string())?;
    // The runs end an hour ago: all of them in the default 30-day window.
    let start_ms = flake_core::meta::now_ms() - runs as i64 * 60_000 - 3_600_000;
    crate::bench_pg::record_history_from(&mut store, tests, runs, start_ms)?;
    drop(store);
    pg.vacuum_analyze();
    eprintln!("  {:.1} s", t.elapsed().as_secs_f64());
    let read = token(pg.url(), HISTORY_PROJECT, Role::Read)?;

    eprintln!("bench-serve: `cargo flake stats --format json` on the same database");
    let args = [
        "flake",
        "stats",
        "--format",
        "json",
        "--database-url",
        pg.url(),
        "--project",
        HISTORY_PROJECT,
    ];
    let stats = time(flake, &args, work, &[])?.wall;
    eprintln!("  {stats:.2} s");

    let server = Server::start(flake, pg.url())?;
    let single = agent(TIMEOUT);
    let items = flaky_tests(&single, &server, HISTORY_PROJECT, &read, 100)?;
    if items == 0 {
        return Err("flaky-tests of the history is empty".into());
    }
    let mut alone = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        flaky_tests(&single, &server, HISTORY_PROJECT, &read, 100)?;
        alone.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let alone = median(alone);
    eprintln!(
        "bench-serve: flaky-tests ({items} items), one client {alone:.0} ms (median of 10); {} clients, {} requests or {} s",
        o.clients, o.requests, o.seconds
    );
    server.take_log();
    let (base, tok) = (server.base.clone(), read.clone());
    let url = format!(
        "{base}/api/v1/projects/{}/flaky-tests?page_size=100",
        encode(HISTORY_PROJECT)
    );
    let result = load(
        o.clients,
        o.seconds,
        o.requests,
        move |_, agent| match send(agent.get(&url).set("Authorization", &bearer(&tok)), None)? {
            (200, _) => Ok(()),
            (status, b) => Err(format!(
                "{status} {}",
                String::from_utf8_lossy(&b[..b.len().min(300)])
            )),
        },
    );
    let log = server.take_log();
    let rss = server.status_kib("VmHWM").unwrap_or(0);
    drop(server);
    drop(pg);
    let l = &result.latencies_ms;
    let (p50, p99, max) = (quantile(l, 0.5), quantile(l, 0.99), quantile(l, 1.0));
    eprintln!(
        "  {} requests in {:.1} s, {} errors; p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms; server-side {}; server VmHWM {:.0} MiB",
        result.ok,
        result.wall,
        result.errors,
        server_times(&log.flaky),
        mib(rss)
    );
    rows.push(
        Row::new(
            format!(
                "`GET flaky-tests?page_size=100` over {tests} tests x {runs} runs, {} clients ({} requests in {:.1} s, {} errors)",
                o.clients, result.ok, result.wall, result.errors
            ),
            format!(
                "p50 {p50:.0} ms, **p99 {p99:.0} ms**, max {max:.0} ms (server-side {}; {:.1} requests/s)",
                server_times(&log.flaky),
                result.ok as f64 / result.wall
            ),
            format!(
                "p99 **{:.1}x** one client's request ({alone:.0} ms, median of 10); `cargo flake stats --format json` on the same database {:.0} ms",
                p99 / alone,
                stats * 1000.0
            ),
            "p99 <= 50 ms",
        )
        .met(p99 <= 50.0 && result.errors == 0),
    );
    Ok(())
}
