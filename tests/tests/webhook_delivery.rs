//! Webhook delivery end to end: real `cargo flake serve` processes on
//! loopback ports, the real PostgreSQL, and real receivers on loopback (a
//! recorder in this process, and the Python and JavaScript receivers of
//! docs/webhooks.md). Retries are sped up with the server's test-only
//! schedule variable; everything else is what production runs.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flake_core::store::postgres::testing::TestDatabase;
use flake_core::store::{Location, Store};
use flake_core::tokens::{self, Role};
use flake_tests::{Flake, Server};

const PROJECT: &str = "github.com/org/app";
const PROJECT_IN_URL: &str = "github.com%2Forg%2Fapp";
/// Retries 50 ms apart instead of seconds to hours.
const FAST: (&str, &str) = ("__CARGO_FLAKE_WEBHOOK_SCHEDULE_MS", "50,50,50,50,50,50,50");

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Received {
    at: Instant,
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

/// A loopback HTTP receiver that records every request and answers what
/// `answer(n)` says for the `n`-th request (from 0) of a webhook-id, after
/// `hold` (to keep a delivery in flight).
struct Recorder {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    /// Ids in flight now, and whether one was ever in flight twice at once.
    overlap: Arc<Mutex<(HashSet<String>, bool)>>,
}

impl Recorder {
    fn start(answer: impl Fn(usize) -> (u16, Duration) + Send + Sync + 'static) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let overlap: Arc<Mutex<(HashSet<String>, bool)>> = Arc::default();
        let answer = Arc::new(answer);
        let (g, o) = (got.clone(), overlap.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (g, o, answer) = (g.clone(), o.clone(), answer.clone());
                std::thread::spawn(move || serve_one(stream, &g, &o, &*answer));
            }
        });
        Recorder { port, got, overlap }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `done` holds of what was received, or panics after `secs`.
    fn wait_for(&self, secs: u64, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {secs} s; received {} request(s)",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve_one(
    stream: TcpStream,
    got: &Mutex<Vec<Received>>,
    overlap: &Mutex<(HashSet<String>, bool)>,
    answer: &(dyn Fn(usize) -> (u16, Duration) + Send + Sync),
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut headers = HashMap::new();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let id = headers.get("webhook-id").cloned().unwrap_or_default();
    {
        let mut o = overlap.lock().unwrap();
        if !o.0.insert(id.clone()) {
            o.1 = true;
        }
    }
    let n = {
        let mut g = got.lock().unwrap();
        let n = g.iter().filter(|r| r.id == id).count();
        g.push(Received {
            at: Instant::now(),
            id: id.clone(),
            timestamp: headers
                .get("webhook-timestamp")
                .cloned()
                .unwrap_or_default(),
            signature: headers
                .get("webhook-signature")
                .cloned()
                .unwrap_or_default(),
            body,
        });
        n
    };
    let (status, hold) = answer(n);
    std::thread::sleep(hold);
    overlap.lock().unwrap().0.remove(&id);
    let mut stream = stream;
    // A 429 asks for a second's pause, against the test schedule's 50 ms.
    let retry_after = if status == 429 {
        "retry-after: 1\r\n"
    } else {
        ""
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\n{retry_after}connection: close\r\n\r\n"
    );
}

/// A nextest JUnit report at `timestamp` in which `flaky` tests pass on a
/// retry, `hard` fail every attempt and `pass` pass.
fn junit(timestamp: &str, flaky: &[&str], hard: &[&str], pass: &[&str]) -> Vec<u8> {
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"nextest-run\" timestamp=\"{timestamp}\">\n<testsuite name=\"app\" tests=\"{}\">\n",
        flaky.len() + hard.len() + pass.len()
    );
    for t in flaky {
        x.push_str(&format!(
            "<testcase name=\"{t}\" classname=\"app\" timestamp=\"{timestamp}\" time=\"0.01\"><flakyFailure message=\"thread '{t}' panicked at src/net.rs:88:5\" type=\"test failure\">thread '{t}' panicked at src/net.rs:88:5:\nassertion failed: conn.is_open()</flakyFailure></testcase>\n"
        ));
    }
    for t in hard {
        x.push_str(&format!(
            "<testcase name=\"{t}\" classname=\"app\" timestamp=\"{timestamp}\" time=\"0.01\"><failure message=\"boom\" type=\"test failure\">thread '{t}' panicked at src/lib.rs:1:1:\nboom</failure><rerunFailure message=\"boom\" type=\"test failure\">boom</rerunFailure></testcase>\n"
        ));
    }
    for t in pass {
        x.push_str(&format!(
            "<testcase name=\"{t}\" classname=\"app\" timestamp=\"{timestamp}\" time=\"0.01\"/>\n"
        ));
    }
    x.push_str("</testsuite>\n</testsuites>\n");
    x.into_bytes()
}

/// The service's database with tokens; `None` without PostgreSQL.
struct Setup {
    pg: TestDatabase,
    dir: tempfile::TempDir,
    upload: String,
    admin: String,
}

impl Setup {
    fn new() -> Option<Setup> {
        let pg = TestDatabase::create()?;
        let mut store = Store::connect(&Location::parse(pg.url()).unwrap()).unwrap();
        let now = flake_core::meta::now_ms();
        let upload = tokens::create(&mut store, PROJECT, Role::Upload, None, None, now)
            .unwrap()
            .token;
        let admin = tokens::create(&mut store, PROJECT, Role::Admin, None, None, now)
            .unwrap()
            .token;
        Some(Setup {
            pg,
            dir: tempfile::tempdir().unwrap(),
            upload,
            admin,
        })
    }

    fn db(&self) -> [&str; 2] {
        ["--database-url", self.pg.url()]
    }

    fn flake(&self, args: &[&str]) -> Flake {
        let all = [args, &self.db(), &["--project", PROJECT]].concat();
        Flake::new(self.dir.path(), &all)
    }

    /// `webhook add`: the endpoint's id and secret.
    fn add(&self, url: &str, events: &str) -> (i64, String) {
        let out = self
            .flake(&["webhook", "add", "--url", url, "--events", events])
            .run();
        assert_eq!(out.code, 0, "{}", out.stderr);
        let id = out
            .stderr
            .split("added webhook ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no id in {}", out.stderr));
        (id, out.stdout.trim().to_owned())
    }

    fn server(&self, extra: &[&str]) -> Server {
        Server::start_with(self.dir.path(), &self.db(), extra, &[FAST])
    }

    fn upload(&self, server: &Server, run: &str, report: &[u8]) {
        let url = server.url(&format!(
            "/api/v1/projects/{PROJECT_IN_URL}/runs?run_id={run}&commit=c0ffee&branch=main"
        ));
        let answer = ureq::post(&url)
            .set("Authorization", &format!("Bearer {}", self.upload))
            .send_bytes(report)
            .unwrap_or_else(|e| panic!("upload {run}: {e}"));
        assert_eq!(answer.status(), 201);
    }

    fn admin_get(&self, server: &Server, path: &str) -> serde_json::Value {
        ureq::get(&server.url(&format!("/api/v1/projects/{PROJECT_IN_URL}{path}")))
            .set("Authorization", &format!("Bearer {}", self.admin))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    }
}

/// Verifies a delivery with Python's own `hmac`: an implementation that
/// shares nothing with ours.
fn python_verifies(secret: &str, r: &Received) -> bool {
    let script = r#"
import base64, hashlib, hmac, sys
secret, msg_id, ts, header = sys.argv[1:5]
key = base64.b64decode(secret.removeprefix("whsec_"))
body = sys.stdin.buffer.read()
mac = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
ok = any(hmac.compare_digest(s.partition(",")[2], mac) for s in header.split() if s.startswith("v1,"))
sys.exit(0 if ok else 1)
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, secret, &r.id, &r.timestamp, &r.signature])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (the CI image has it; .ci/run checks)");
    child.stdin.take().unwrap().write_all(&r.body).unwrap();
    child.wait().unwrap().success()
}

/// A receiver that fails twice gets the event on the third attempt, every
/// attempt with the same webhook-id and a signature Python's hmac accepts;
/// the attempts are listed with their statuses; `webhook verify` accepts
/// the delivery and refuses it with a timestamp over five minutes old. The
/// flaky test is announced once, with its data; the hard failure never.
#[test]
fn a_failing_receiver_gets_the_same_signed_event_until_it_accepts() {
    let Some(s) = Setup::new() else {
        eprintln!("skipped: CARGO_FLAKE_TEST_DATABASE_URL is not set");
        return;
    };
    let receiver = Recorder::start(|n| (if n < 2 { 503 } else { 204 }, Duration::ZERO));
    let (hook, secret) = s.add(&receiver.url(), "flaky_test.new,flaky_test.resolved");
    let server = s.server(&[
        "--allow-private-webhook-targets",
        "--public-url",
        "https://flake.example.com/",
    ]);
    let now = jiff::Timestamp::now().to_string();
    s.upload(
        &server,
        "r1",
        &junit(&now, &["net::reconnects"], &["db::down"], &["ok"]),
    );
    let got = receiver.wait_for(30, "three attempts", |g| g.len() >= 3);
    assert_eq!(got.len(), 3, "one event, three attempts: {got:?}");
    assert!(
        got.iter()
            .all(|r| r.id == got[0].id && r.id.starts_with("msg_"))
    );
    for r in &got {
        assert!(python_verifies(&secret, r), "python refuses {r:?}");
        assert!(!python_verifies(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            r
        ));
    }
    let event: serde_json::Value = serde_json::from_slice(&got[2].body).unwrap();
    assert_eq!(event["type"], "flaky_test.new");
    let data = &event["data"];
    // A JUnit test's id is its classname and name.
    assert_eq!(data["test_id"], "app net::reconnects");
    assert_eq!(data["commit"], "c0ffee");
    assert_eq!(data["branch"], "main");
    assert_eq!(data["run_id"], "r1");
    assert_eq!(
        data["details_url"],
        "https://flake.example.com/p/github.com%2Forg%2Fapp/t/app%20net%3A%3Areconnects"
    );
    assert_eq!(
        data["failure"]["message"].as_str().unwrap().lines().last(),
        Some("assertion failed: conn.is_open()")
    );
    // The payload has every field the OpenAPI document's example shows.
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(flake_tests::repo_root().join("docs/openapi.json")).unwrap(),
    )
    .unwrap();
    let example = &doc["webhooks"]["flaky_test.new"]["post"]["requestBody"]["content"]["application/json"]
        ["example"]["data"];
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(data), keys(example));

    // The attempts, through the API.
    let page = s.admin_get(&server, &format!("/webhooks/{hook}/deliveries"));
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["state"], "delivered");
    assert_eq!(items[0]["msg_id"], got[0].id.as_str());
    let statuses: Vec<u64> = items[0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 503, 204]);
    let metrics = ureq::get(&server.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("flake_webhook_attempts_total{result=\"delivered\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flake_webhook_attempts_total{result=\"retried\"} 2\n"),
        "{metrics}"
    );

    // The receivers' check, as a command: fresh passes, stale is refused.
    let verify = |r: &Received, timestamp: &str, signature: &str| {
        Flake::new(
            s.dir.path(),
            &[
                "webhook",
                "verify",
                "--secret",
                &secret,
                "--id",
                &r.id,
                "--timestamp",
                timestamp,
                "--signature",
                signature,
            ],
        )
        .run_with_input(&r.body)
    };
    let ok = verify(&got[2], &got[2].timestamp, &got[2].signature);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let stale_ts = (flake_core::meta::now_ms() / 1000 - 301).to_string();
    let stale_sig =
        flake_core::webhooks::sign(&secret, &got[2].id, stale_ts.parse().unwrap(), &got[2].body)
            .unwrap();
    let stale = verify(&got[2], &stale_ts, &stale_sig);
    assert_eq!(stale.code, 1, "{}", stale.stderr);
    assert!(stale.stderr.contains("tolerance"), "{}", stale.stderr);
    let forged = verify(&got[2], &got[2].timestamp, "v1,AAAA");
    assert_eq!(forged.code, 1);

    // The same test flaky again, and the hard failure again: nothing new.
    s.upload(
        &server,
        "r2",
        &junit(&now, &["net::reconnects"], &["db::down"], &[]),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(receiver.received().len(), 3, "no second announcement");
    let list = s.flake(&["webhook", "list"]).run();
    assert!(list.stdout.contains("active"), "{}", list.stdout);
}

/// A 410 disables the endpoint (and `webhook list` says so); a receiver
/// answering 429 with `Retry-After` is not asked again before it.
#[test]
fn gone_disables_the_endpoint_and_retry_after_is_honoured() {
    let Some(s) = Setup::new() else {
        eprintln!("skipped: CARGO_FLAKE_TEST_DATABASE_URL is not set");
        return;
    };
    let gone = Recorder::start(|_| (410, Duration::ZERO));
    let (gone_id, _) = s.add(&gone.url(), "run.completed");
    let busy = Recorder::start(|n| (if n == 0 { 429 } else { 204 }, Duration::ZERO));
    let (_busy_id, _) = s.add(&busy.url(), "run.completed");
    let server = s.server(&["--allow-private-webhook-targets"]);
    let now = jiff::Timestamp::now().to_string();
    s.upload(&server, "r1", &junit(&now, &[], &[], &["a"]));
    gone.wait_for(20, "the 410", |g| !g.is_empty());
    let tries = busy.wait_for(20, "the retry after 429", |g| g.len() >= 2);
    let pause = tries[1].at - tries[0].at;
    assert!(
        pause >= Duration::from_millis(900),
        "Retry-After: 1 ignored: {pause:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = s.flake(&["webhook", "list", "--format", "json"]).run();
        let rows: serde_json::Value = list.json();
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == gone_id)
            .unwrap()
            .clone();
        if row["disabled_at"].is_i64() {
            assert_eq!(row["disabled_reason"], "the receiver answered 410 Gone");
            break;
        }
        assert!(Instant::now() < deadline, "never disabled: {row}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let human = s.flake(&["webhook", "list"]).run();
    assert!(human.stdout.contains("disabled"), "{}", human.stdout);
    // A disabled endpoint gets nothing more.
    s.upload(&server, "r2", &junit(&now, &[], &[], &["a"]));
    busy.wait_for(20, "the next run", |g| g.len() >= 3);
    assert_eq!(gone.received().len(), 1);
}

/// Loopback, private and metadata targets are refused without the flag,
/// and the refusal is the attempt's error; nothing reaches the receiver.
#[test]
fn private_targets_are_refused_without_the_flag() {
    let Some(s) = Setup::new() else {
        eprintln!("skipped: CARGO_FLAKE_TEST_DATABASE_URL is not set");
        return;
    };
    let receiver = Recorder::start(|_| (204, Duration::ZERO));
    let (loopback, _) = s.add(&receiver.url(), "run.completed");
    let named = format!("http://localhost:{}/hook", receiver.port);
    let (by_name, _) = s.add(&named, "run.completed");
    let (metadata, _) = s.add("http://169.254.169.254/latest/meta-data", "run.completed");
    let _server = s.server(&[]);
    for id in [loopback, by_name, metadata] {
        let out = s
            .flake(&["webhook", "test", &id.to_string(), "--wait", "20s"])
            .run();
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("refused"), "{}", out.stdout);
        assert!(
            out.stdout.contains("--allow-private-webhook-targets"),
            "{}",
            out.stdout
        );
    }
    assert!(receiver.received().is_empty());
}

/// `kill -9` of the server while its delivery is in flight: the restarted
/// server sends the message again, under the same webhook-id.
#[test]
fn a_server_killed_mid_delivery_delivers_again_after_a_restart() {
    let Some(s) = Setup::new() else {
        eprintln!("skipped: CARGO_FLAKE_TEST_DATABASE_URL is not set");
        return;
    };
    // The first request is held long enough to kill the server under it.
    let receiver = Recorder::start(|n| {
        (
            204,
            if n == 0 {
                Duration::from_secs(4)
            } else {
                Duration::ZERO
            },
        )
    });
    let (hook, _) = s.add(&receiver.url(), "run.completed");
    let mut first = s.server(&["--allow-private-webhook-targets"]);
    let now = jiff::Timestamp::now().to_string();
    s.upload(&first, "r1", &junit(&now, &[], &[], &["a"]));
    receiver.wait_for(20, "the first attempt", |g| !g.is_empty());
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let _second = s.server(&["--allow-private-webhook-targets"]);
    let got = receiver.wait_for(30, "the delivery after the restart", |g| g.len() >= 2);
    assert_eq!(got[0].id, got[1].id);
    let listed = s
        .flake(&[
            "webhook",
            "deliveries",
            &hook.to_string(),
            "--format",
            "json",
        ])
        .run();
    let rows = listed.json();
    assert_eq!(rows[0]["state"], "delivered", "{rows}");
    assert_eq!(rows[0]["msg_id"], got[0].id.as_str());
}

/// Two replicas, 1,000 events: every one delivered, none in flight twice
/// at once.
#[test]
fn two_replicas_deliver_a_thousand_events_each_once_at_a_time() {
    let Some(s) = Setup::new() else {
        eprintln!("skipped: CARGO_FLAKE_TEST_DATABASE_URL is not set");
        return;
    };
    let receiver = Recorder::start(|_| (204, Duration::from_millis(2)));
    s.add(&receiver.url(), "flaky_test.new");
    let a = s.server(&["--allow-private-webhook-targets"]);
    let _b = s.server(&["--allow-private-webhook-targets"]);
    let names: Vec<String> = (0..1000).map(|i| format!("t{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let now = jiff::Timestamp::now().to_string();
    s.upload(&a, "r1", &junit(&now, &refs, &[], &[]));
    let got = receiver.wait_for(120, "1,000 events", |g| {
        g.iter().map(|r| &r.id).collect::<HashSet<_>>().len() >= 1000
    });
    let ids: HashSet<&String> = got.iter().map(|r| &r.id).collect();
    assert_eq!(ids.len(), 1000);
    assert!(
        !receiver.overlap.lock().unwrap().1,
        "an id was in flight twice at once"
    );
    let tests: HashSet<String> = got
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            v["data"]["test_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(tests.len(), 1000);
}

/// The receivers of docs/webhooks.md, run as they are printed: each
/// verifies a real delivery and refuses a stale and a forged one.
#[test]
fn the_documented_receivers_verify_real_deliveries() {
    let Some(s) = Setup::new() else {
        eprintln!("skipped: CARGO_FLAKE_TEST_DATABASE_URL is not set");
        return;
    };
    let doc = std::fs::read_to_string(flake_tests::repo_root().join("docs/webhooks.md")).unwrap();
    let block = |tag: &str| -> String {
        let start = doc
            .find(&format!("```{tag} receiver\n"))
            .unwrap_or_else(|| panic!("no {tag} receiver"));
        let code = &doc[start..];
        let code = &code[code.find('\n').unwrap() + 1..];
        code[..code.find("```").unwrap()].to_owned()
    };
    let server = s.server(&["--allow-private-webhook-targets"]);
    for (tag, program, ext) in [("python", "python3", "py"), ("js", "node", "js")] {
        let path = s.dir.path().join(format!("receiver.{ext}"));
        std::fs::write(&path, block(tag)).unwrap();
        // The secret comes from `webhook add` below; the receiver reads it
        // at start, so add a placeholder endpoint first to learn the port.
        let secret = flake_core::webhooks::new_secret().unwrap();
        let mut child = std::process::Command::new(program)
            .arg(&path)
            .env("WEBHOOK_SECRET", &secret)
            .env("PORT", "0")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let port: u16 = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{tag}: no port in {line:?}"));
        let url = format!("http://127.0.0.1:{port}/flake");
        // An endpoint whose secret is the receiver's: created through the
        // store, as `webhook add` does, with a known secret.
        let mut store = Store::connect(&Location::parse(s.pg.url()).unwrap()).unwrap();
        let id = store
            .insert_webhook(&flake_core::store::WebhookEndpoint::new(
                PROJECT,
                url.clone(),
                vec!["run.completed".into()],
                secret.clone(),
                flake_core::meta::now_ms(),
            ))
            .unwrap();
        let ping = s.flake(&["webhook", "test", &id.to_string()]).run();
        assert_eq!(ping.code, 0, "{tag}: {}{}", ping.stdout, ping.stderr);
        line.clear();
        out.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("verified msg_") && line.trim_end().ends_with(" ping"),
            "{tag}: {line:?}"
        );
        // Stale and forged requests, signed by us, are refused.
        let body = br#"{"type":"ping","timestamp":"2026-01-01T00:00:00Z","data":{}}"#;
        let stale = flake_core::meta::now_ms() / 1000 - 400;
        for (ts, signature, why) in [
            (
                stale,
                flake_core::webhooks::sign(&secret, "msg_x", stale, body).unwrap(),
                "tolerance",
            ),
            (
                stale + 400,
                "v1,Zm9yZ2Vk".to_owned(),
                "no signature matches",
            ),
        ] {
            let answer = ureq::post(&url)
                .set("webhook-id", "msg_x")
                .set("webhook-timestamp", &ts.to_string())
                .set("webhook-signature", &signature)
                .send_bytes(body);
            assert!(
                matches!(answer, Err(ureq::Error::Status(400, _))),
                "{tag}: {answer:?}"
            );
            line.clear();
            out.read_line(&mut line).unwrap();
            assert!(
                line.starts_with("refused:") && line.contains(why),
                "{tag}: {line:?}"
            );
        }
        let _ = child.kill();
        let _ = child.wait();
        store.remove_webhook(id).unwrap();
    }
    drop(server);
}

/// A flaky test planted in uploaded history is announced once, and after
/// 14 days (of the runs' own timestamps) of clean runs resolved once; a
/// test that only fails hard is never announced.
#[test]
fn a_planted_flaky_test_is_announced_once_and_resolved_once() {
    let Some(s) = Setup::new() else {
        eprintln!("skipped: CARGO_FLAKE_TEST_DATABASE_URL is not set");
        return;
    };
    let receiver = Recorder::start(|_| (204, Duration::ZERO));
    s.add(&receiver.url(), "flaky_test.new,flaky_test.resolved");
    let server = s.server(&[
        "--allow-private-webhook-targets",
        "--resolved-after-runs",
        "3",
    ]);
    let start = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 30);
    let day = |d: i64| (start + jiff::SignedDuration::from_hours(24 * d)).to_string();
    let events = |n: usize| -> Vec<(String, String)> {
        let got = receiver.wait_for(20, "the events", |g| g.len() >= n);
        got.iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                (
                    v["type"].as_str().unwrap().to_owned(),
                    v["data"]["test_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    s.upload(&server, "d0", &junit(&day(0), &["t"], &["hard"], &[]));
    s.upload(&server, "d1", &junit(&day(1), &["t"], &["hard"], &[]));
    assert_eq!(
        events(1),
        [("flaky_test.new".to_owned(), "app t".to_owned())]
    );
    for d in 2..15 {
        s.upload(
            &server,
            &format!("d{d}"),
            &junit(&day(d), &[], &["hard"], &["t"]),
        );
    }
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        receiver.received().len(),
        1,
        "resolved before 14 quiet days"
    );
    s.upload(&server, "d15", &junit(&day(15), &[], &["hard"], &["t"]));
    s.upload(&server, "d16", &junit(&day(16), &[], &["hard"], &["t"]));
    let got = events(2);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(receiver.received().len(), 2, "{got:?}");
    assert_eq!(
        got[1],
        ("flaky_test.resolved".to_owned(), "app t".to_owned())
    );
    let resolved: serde_json::Value = serde_json::from_slice(&receiver.received()[1].body).unwrap();
    assert_eq!(resolved["data"]["run_id"], "d15");
    assert_eq!(
        resolved["data"]["last_occurrence"].as_str().unwrap()[..10],
        day(1)[..10]
    );
}

/// `quarantine.proposal_changed`: once a test flakes often enough for the
/// default policy, the proposal that adds it is announced once, with the
/// file and its diff; more runs that change nothing announce nothing.
#[test]
fn a_changed_quarantine_proposal_is_announced_once() {
    let Some(s) = Setup::new() else {
        eprintln!("skipped: CARGO_FLAKE_TEST_DATABASE_URL is not set");
        return;
    };
    let receiver = Recorder::start(|_| (204, Duration::ZERO));
    s.add(&receiver.url(), "quarantine.proposal_changed");
    let a = s.server(&["--allow-private-webhook-targets"]);
    let _b = s.server(&["--allow-private-webhook-targets"]);
    let now = jiff::Timestamp::now().to_string();
    // Ten runs (the default policy's min-runs), the test flaky in each.
    for r in 0..10 {
        s.upload(&a, &format!("r{r}"), &junit(&now, &["t"], &[], &["steady"]));
    }
    let got = receiver.wait_for(30, "the proposal", |g| !g.is_empty());
    let event: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(event["type"], "quarantine.proposal_changed");
    let data = &event["data"];
    assert_eq!(data["added"], serde_json::json!(["app t"]));
    assert_eq!(data["quarantined"], serde_json::json!(["app t"]));
    assert!(
        data["file"].as_str().unwrap().contains("\"app t\""),
        "{data}"
    );
    let diff = data["diff"].as_str().unwrap();
    assert!(
        diff.contains("+++ b/flake-quarantine.toml") && diff.contains("+id = \"app t\""),
        "{diff}"
    );
    // Two replicas looked; one announced. More of the same changes nothing.
    s.upload(&a, "r10", &junit(&now, &["t"], &[], &["steady"]));
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(receiver.received().len(), 1);
}

/// A single-node service on an SQLite history delivers too: the same
/// outbox, claims under a lease instead of a session.
#[test]
fn a_service_on_sqlite_delivers_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let db_arg = ["--db", db.to_str().unwrap()];
    let receiver = Recorder::start(|n| (if n == 0 { 500 } else { 204 }, Duration::ZERO));
    let add = Flake::new(
        dir.path(),
        &[
            &[
                "webhook",
                "add",
                "--url",
                &receiver.url(),
                "--events",
                "flaky_test.new",
            ][..],
            &db_arg,
            &["--project", PROJECT],
        ]
        .concat(),
    )
    .run();
    assert_eq!(add.code, 0, "{}", add.stderr);
    let secret = add.stdout.trim().to_owned();
    let upload = {
        let mut store = Store::open(&db).unwrap();
        tokens::create(
            &mut store,
            PROJECT,
            Role::Upload,
            None,
            None,
            flake_core::meta::now_ms(),
        )
        .unwrap()
        .token
    };
    let server = Server::start_with(
        dir.path(),
        &db_arg,
        &["--allow-private-webhook-targets"],
        &[FAST],
    );
    let now = jiff::Timestamp::now().to_string();
    let answer =
        ureq::post(&server.url(&format!("/api/v1/projects/{PROJECT_IN_URL}/runs?run_id=s1")))
            .set("Authorization", &format!("Bearer {upload}"))
            .send_bytes(&junit(&now, &["t"], &[], &["u"]))
            .unwrap();
    assert_eq!(answer.status(), 201);
    let got = receiver.wait_for(20, "the retried event", |g| g.len() >= 2);
    assert_eq!(got[0].id, got[1].id);
    assert!(python_verifies(&secret, &got[1]));
    let event: serde_json::Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(event["data"]["test_id"], "app t");
}

/// The admin API: an endpoint created, rotated and pinged over HTTP; during
/// the overlap both the old and the new secret sign the delivery.
#[test]
fn the_admin_api_creates_rotates_and_pings_an_endpoint() {
    let Some(s) = Setup::new() else {
        eprintln!("skipped: CARGO_FLAKE_TEST_DATABASE_URL is not set");
        return;
    };
    let receiver = Recorder::start(|_| (204, Duration::ZERO));
    let server = s.server(&["--allow-private-webhook-targets"]);
    let api = |path: &str| server.url(&format!("/api/v1/projects/{PROJECT_IN_URL}/webhooks{path}"));
    let bearer = format!("Bearer {}", s.admin);
    let created: serde_json::Value = ureq::post(&api(""))
        .set("Authorization", &bearer)
        .send_json(serde_json::json!({"url": receiver.url(), "events": ["run.completed"]}))
        .unwrap()
        .into_json()
        .unwrap();
    let id = created["id"].as_i64().unwrap();
    let old = created["secret"].as_str().unwrap().to_owned();
    // A typo is a 422 naming the event; an upload token may not manage hooks.
    let typo = ureq::post(&api(""))
        .set("Authorization", &bearer)
        .send_json(serde_json::json!({"url": receiver.url(), "events": ["run.complete"]}));
    let Err(ureq::Error::Status(422, r)) = typo else {
        panic!("{typo:?}")
    };
    assert!(
        r.into_string()
            .unwrap()
            .contains("did you mean `run.completed`")
    );
    let forbidden = ureq::get(&api(""))
        .set("Authorization", &format!("Bearer {}", s.upload))
        .call();
    assert!(
        matches!(forbidden, Err(ureq::Error::Status(403, _))),
        "{forbidden:?}"
    );
    let listed: serde_json::Value = ureq::get(&api(""))
        .set("Authorization", &bearer)
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(listed["items"][0]["id"], id);
    assert!(!listed.to_string().contains("whsec_"), "{listed}");

    let rotated: serde_json::Value =
        ureq::post(&api(&format!("/{id}/rotate-secret?overlap_hours=1")))
            .set("Authorization", &bearer)
            .call()
            .unwrap()
            .into_json()
            .unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let pinged: serde_json::Value = ureq::post(&api(&format!("/{id}/test")))
        .set("Authorization", &bearer)
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let got = receiver.wait_for(20, "the ping", |g| !g.is_empty());
    assert_eq!(pinged["webhook_id"], got[0].id.as_str());
    assert_eq!(
        got[0].signature.split(' ').count(),
        2,
        "{}",
        got[0].signature
    );
    assert!(python_verifies(&new, &got[0]) && python_verifies(&old, &got[0]));
    // Replay the delivered ping: the same id again.
    let page = s.admin_get(&server, &format!("/webhooks/{id}/deliveries?page_size=1"));
    let delivery = page["items"][0]["id"].as_i64().unwrap();
    ureq::post(&api(&format!("/{id}/deliveries/{delivery}/replay")))
        .set("Authorization", &bearer)
        .call()
        .unwrap();
    let got = receiver.wait_for(20, "the replay", |g| g.len() >= 2);
    assert_eq!(got[1].id, got[0].id);
    let removed = ureq::delete(&api(&format!("/{id}")))
        .set("Authorization", &bearer)
        .call()
        .unwrap();
    assert_eq!(removed.status(), 200);
    let gone = ureq::delete(&api(&format!("/{id}")))
        .set("Authorization", &bearer)
        .call();
    assert!(matches!(gone, Err(ureq::Error::Status(404, _))), "{gone:?}");
}
