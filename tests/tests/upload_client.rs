//! The clients of the team service, `cargo flake upload` and
//! `cargo flake test --upload`, against a real `cargo flake serve` process on
//! a loopback port (SQLite history), a loopback port with nothing listening,
//! and a loopback socket that answers every request with a 503. The server's
//! history is read through `flake_core::store::Store`, never SQL.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flake_core::store::Store;
use flake_core::tokens::{self, Role};
use flake_tests::{Flake, Outcome, Project, report};

const PROJECT: &str = "github.com/org/app";
/// Short pauses between retries, so a server that is down costs milliseconds.
const BACKOFF_VAR: &str = "__CARGO_FLAKE_UPLOAD_BACKOFF_MS";

/// A running `cargo flake serve` on an SQLite history; killed when dropped.
struct Server {
    child: Child,
    base: String,
    db: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server on a fresh history and creates an upload token of [`PROJECT`].
    fn start() -> (Server, String) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("server.db");
        let mut store = Store::open(&db).unwrap();
        let now = flake_core::meta::now_ms();
        let token = tokens::create(&mut store, PROJECT, Role::Upload, None, None, now)
            .unwrap()
            .token;
        drop(store);
        let args = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            db.to_str().unwrap(),
        ];
        let mut child = Flake::new(dir.path(), &args).spawn();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        let server = Server {
            child,
            base: format!("http://{addr}"),
            db,
            _dir: dir,
        };
        (server, token)
    }

    /// The server's history of [`PROJECT`].
    fn history(&self) -> Store {
        Store::open_existing(&self.db)
            .unwrap()
            .with_project(PROJECT)
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cargo flake upload ARGS` in `dir` with `token`, short backoff.
fn upload(dir: &Path, token: &str, args: &[&str]) -> Outcome {
    let all = [&["upload"][..], args].concat();
    Flake::new(dir, &all)
        .env("CARGO_FLAKE_TOKEN", token)
        .env(BACKOFF_VAR, "20")
        .run()
}

/// The test ids an `.expected.json` of a fixture report lists.
fn expected_ids(rel: &str) -> BTreeSet<String> {
    let path = report(&format!("{rel}.expected.json"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["tests"].as_object().unwrap().keys().cloned().collect()
}

/// The test ids of one stored run.
fn run_ids(store: &Store, seq: i64) -> BTreeSet<String> {
    store
        .results_of_run(seq)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

/// A loopback port on which nothing listens.
fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

const GOTESTSUM: &str = "junit/gotestsum.xml";
const RSPEC: &str = "rspec/run1.json";

#[test]
fn upload_sends_two_reports_as_one_run_and_a_repeat_records_nothing() {
    let (server, token) = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (report(GOTESTSUM), report(RSPEC));
    let args = [
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--server",
        &server.base,
        "--project",
        PROJECT,
        "--commit",
        "c0ffee",
        "--branch",
        "main",
    ];
    let out = upload(dir.path(), &token, &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    let line_of = |file: &str| {
        *lines
            .iter()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("no line for {file}:\n{}", out.stderr))
    };
    let gotestsum = line_of("gotestsum.xml");
    assert!(
        gotestsum.contains("recorded")
            && gotestsum.contains("16 tests (")
            && gotestsum.contains("(201)"),
        "{gotestsum}"
    );
    let rspec = line_of("run1.json");
    assert!(
        rspec.contains("recorded") && rspec.contains("13 tests ("),
        "{rspec}"
    );

    // One run on the server, holding both reports' tests, with the commit
    // and branch the client sent.
    let store = server.history();
    let runs = store.runs().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    let mut expected = expected_ids(GOTESTSUM);
    expected.extend(expected_ids(RSPEC));
    assert_eq!(run_ids(&store, run.seq), expected);
    assert_eq!(run.meta.commit.as_deref(), Some("c0ffee"));
    assert_eq!(run.meta.branch.as_deref(), Some("main"));
    // Every line names the one run.
    assert!(gotestsum.contains(&run.meta.run_id) && rspec.contains(&run.meta.run_id));
    drop(store);

    // The same invocation again: both files already recorded, still one run.
    let again = upload(dir.path(), &token, &args);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let skipped: Vec<&str> = again
        .stderr
        .lines()
        .filter(|l| l.contains("already recorded in run") && l.contains("(200)"))
        .collect();
    assert_eq!(skipped.len(), 2, "{}", again.stderr);
    assert!(!again.stderr.contains("(201)"), "{}", again.stderr);
    let store = server.history();
    let runs = store.runs().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(run_ids(&store, runs[0].seq).len(), expected.len());

    // A malformed report is refused (400, the server's message, exit 1) and
    // the good file of the same invocation still lands.
    let broken = dir.path().join("broken.json");
    let bytes = std::fs::read(&b).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    let pytest = report("pytest-json/reruns.json");
    let out = upload(
        dir.path(),
        &token,
        &[
            broken.to_str().unwrap(),
            pytest.to_str().unwrap(),
            "--server",
            &server.base,
            "--project",
            PROJECT,
            "--run-id",
            "ci-42",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let rejected = out
        .stderr
        .lines()
        .find(|l| l.contains("broken.json"))
        .unwrap();
    assert!(
        rejected.contains("rejected") && rejected.contains("400") && rejected.contains("line"),
        "{rejected}"
    );
    let store = server.history();
    let run = store.run("ci-42").unwrap().expect("the good file's run");
    assert_eq!(
        run_ids(&store, run.seq),
        expected_ids("pytest-json/reruns.json")
    );
}

#[test]
fn a_wrong_token_is_refused_at_once_and_fails() {
    let (server, _token) = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (report(GOTESTSUM), report(RSPEC));
    let started = Instant::now();
    // Long pauses: a retry would show in the time taken.
    let out = Flake::new(
        dir.path(),
        &[
            "upload",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--server",
            &server.base,
            "--project",
            PROJECT,
        ],
    )
    .env("CARGO_FLAKE_TOKEN", "cfk_1_not-a-real-secret")
    .env(BACKOFF_VAR, "3000")
    .run();
    let took = started.elapsed();
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(took < Duration::from_millis(2500), "retried? {took:?}");
    let first = out
        .stderr
        .lines()
        .find(|l| l.contains("gotestsum.xml"))
        .unwrap();
    assert!(
        first.contains("401") && first.contains("unknown token") && first.contains("not retried"),
        "{first}"
    );
    // The same token would go with the second file: it is not sent.
    let second = out
        .stderr
        .lines()
        .find(|l| l.contains("run1.json"))
        .unwrap();
    assert!(
        second.contains("not sent") && second.contains("token was refused"),
        "{second}"
    );
    assert!(server.history().runs().unwrap().is_empty());

    // No token at all: a usage error before anything is sent.
    let out = upload(
        dir.path(),
        "",
        &[a.to_str().unwrap(), "--server", &server.base],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("CARGO_FLAKE_TOKEN"), "{}", out.stderr);
}

#[test]
fn a_server_that_is_down_warns_unless_the_upload_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let server = format!("http://127.0.0.1:{}", dead_port());
    let a = report(GOTESTSUM);
    let b = report(RSPEC);
    let started = Instant::now();
    let args = [
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--server",
        &server,
        "--project",
        PROJECT,
    ];
    let out = upload(dir.path(), "cfk_1_x", &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("warning: the upload failed after 4 attempts (connection refused)"),
        "{}",
        out.stderr
    );
    let first = out
        .stderr
        .lines()
        .find(|l| l.contains("gotestsum.xml"))
        .unwrap();
    assert!(first.contains("after 4 of 4 attempts"), "{first}");
    // After the first file found the server down, the second is not tried.
    let second = out
        .stderr
        .lines()
        .find(|l| l.contains("run1.json"))
        .unwrap();
    assert!(second.contains("not sent"), "{second}");

    let required = upload(
        dir.path(),
        "cfk_1_x",
        &[&args[..], &["--upload-required"]].concat(),
    );
    assert_eq!(required.code, 1, "{}", required.stderr);
    assert!(
        required
            .stderr
            .contains("error: the upload failed after 4 attempts"),
        "{}",
        required.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_server_answering_503_is_retried_four_times_after_its_retry_after() {
    // A loopback socket that answers every request with a 503 asking for a
    // second's pause, and counts them.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            // Read the head and the body the head announces, then answer.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let mut wanted = None;
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if wanted.is_none()
                    && let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n")
                {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    wanted = Some(end + 4 + len);
                }
                if wanted.is_some_and(|w| buf.len() >= w) {
                    break;
                }
            }
            let body = r#"{"error":{"code":"database_unavailable","message":"the database is restarting"}}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let a = report(RSPEC);
    let started = std::time::Instant::now();
    let out = upload(
        dir.path(),
        "cfk_1_x",
        &[
            a.to_str().unwrap(),
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--project",
            PROJECT,
            "--upload-required",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(requests.load(Ordering::SeqCst), 4, "{}", out.stderr);
    // Three pauses of the second the server asked for, not the test's
    // millisecond backoff.
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
    assert!(
        out.stderr.contains("503 the database is restarting"),
        "{}",
        out.stderr
    );
}

#[test]
fn test_upload_sends_the_recorded_run_under_its_own_id() {
    let (server, token) = Server::start();
    let p = Project::new("rust-e2e");
    let head = p.git(&["rev-parse", "HEAD"]);
    let flake_test = |server: &str, extra: &[&str]| {
        let state = tempfile::tempdir().unwrap();
        let args = [
            &["test", "--project", PROJECT, "--upload", server][..],
            extra,
        ]
        .concat();
        p.flake(&args)
            .env("FLAKE_FIXTURE_STATE", state.path())
            .env("CARGO_FLAKE_TOKEN", &token)
            .env(BACKOFF_VAR, "20")
            .run()
    };
    let out = flake_test(&server.base, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let local = flake_tests::history(&p.path().join(".flake/history.db"));
    let local_runs = local.runs().unwrap();
    assert_eq!(local_runs.len(), 1);
    let run_id = &local_runs[0].meta.run_id;
    let summary = out.stderr.split("cargo flake:").nth(1).unwrap();
    assert!(
        summary.contains(&format!(
            "upload: recorded as run {run_id} on {} (6 tests (3 passed, 2 flaky, 1 skipped))",
            server.base
        )),
        "{summary}"
    );
    assert!(summary.contains("gate: PASS"), "{summary}");

    // The server holds that run: same id, commit, branch and tests, the
    // flaky ones flaky.
    let remote = server.history();
    let remote_runs = remote.runs().unwrap();
    assert_eq!(remote_runs.len(), 1);
    let r = &remote_runs[0];
    assert_eq!(&r.meta.run_id, run_id);
    assert_eq!(r.meta.commit.as_deref(), Some(head.as_str()));
    assert_eq!(r.meta.branch.as_deref(), Some("main"));
    assert_eq!((r.total, r.flaky, r.skipped), (6, 2, 1));
    assert_eq!(run_ids(&remote, r.seq), run_ids(&local, local_runs[0].seq));

    // The server is down: the summary says so and the gate stands, unless
    // the upload is required.
    let down = format!("http://127.0.0.1:{}", dead_port());
    let out = flake_test(&down, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "upload: failed after 4 attempts (connection refused); the gate is unaffected"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("gate: PASS"), "{}", out.stderr);
    let out = flake_test(&down, &["--upload-required"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "upload: failed after 4 attempts (connection refused); --upload-required: exit 1"
        ),
        "{}",
        out.stderr
    );
    // The local history recorded all three runs all the same.
    assert_eq!(local.runs().unwrap().len(), 3);
}
