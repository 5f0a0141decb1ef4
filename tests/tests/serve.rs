//! `cargo flake serve`, as a real process on a loopback port, against an
//! SQLite file and (when `CARGO_FLAKE_TEST_DATABASE_URL` names a server) a
//! fresh PostgreSQL database: auth, uploads of real reports, idempotent
//! re-uploads, limits, the read API and a clean stop on SIGTERM.

use std::path::Path;

use flake_core::store::postgres::testing::TestDatabase;
use flake_core::tokens::{self, Role};
use flake_tests::{Flake, Server, report};

/// Status and JSON body of a request (errors included).
fn call(req: ureq::Request, body: Option<&[u8]>) -> (u16, serde_json::Value) {
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    (
        status,
        response.into_json().unwrap_or(serde_json::Value::Null),
    )
}

/// POSTs `len` bytes of spaces over a raw socket, ignoring a failed write
/// (the server may close early), and reads the answer.
fn raw_post(server: &Server, token: &str, len: usize) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let addr = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /api/v1/projects/{PROJECT_IN_URL}/runs HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(&vec![b' '; len]);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    // A chunked body carries its length first: the JSON is the line with a brace.
    let json = body.lines().find(|l| l.starts_with('{')).unwrap_or("null");
    (
        status,
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}

const PROJECT: &str = "github.com/org/app";
const PROJECT_IN_URL: &str = "github.com%2Forg%2Fapp";

fn runs_url(server: &Server, query: &str) -> String {
    server.url(&format!("/api/v1/projects/{PROJECT_IN_URL}/runs?{query}"))
}

/// Every scenario, against the database named by `db` (CLI flags).
fn scenario(dir: &Path, db: &[&str], location: &flake_core::store::Location) {
    let mut store = flake_core::store::Store::connect(location).unwrap();
    let now = flake_core::meta::now_ms();
    let upload = tokens::create(&mut store, PROJECT, Role::Upload, None, None, now).unwrap();
    let read = tokens::create(&mut store, PROJECT, Role::Read, None, None, now).unwrap();
    let other = tokens::create(&mut store, "other", Role::Admin, None, None, now).unwrap();
    let expired = tokens::create(
        &mut store,
        PROJECT,
        Role::Admin,
        None,
        Some(now - 1),
        now - 10,
    )
    .unwrap();
    let revoked = tokens::create(&mut store, PROJECT, Role::Admin, None, None, now).unwrap();
    assert!(store.revoke_token(revoked.record.id, now).unwrap());
    drop(store);

    let server = Server::start(dir, db, &["--max-body", "200KiB"]);
    let bearer = |t: &str| format!("Bearer {t}");
    let (status, body) = call(ureq::get(&server.url("/healthz")), None);
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, _) = call(ureq::get(&server.url("/readyz")), None);
    assert_eq!(status, 200);

    // Auth: every failure is a JSON error with the right status.
    let rspec = std::fs::read(report("rspec/run1.json")).unwrap();
    let post = |token: Option<&str>, query: &str, bytes: &[u8]| {
        let mut req = ureq::post(&runs_url(&server, query));
        if let Some(t) = token {
            req = req.set("Authorization", &bearer(t));
        }
        call(req, Some(bytes))
    };
    for (token, status, code) in [
        (None, 401, "unauthenticated"),
        (Some("cfk_1_nope"), 401, "unauthenticated"),
        (Some(expired.token.as_str()), 401, "unauthenticated"),
        (Some(revoked.token.as_str()), 401, "unauthenticated"),
        (Some(other.token.as_str()), 403, "forbidden"),
        (Some(read.token.as_str()), 403, "forbidden"),
    ] {
        let (got, body) = post(token, "commit=c1&branch=main", &rspec);
        assert_eq!(got, status, "{token:?}: {body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().len() > 5);
    }
    let (_, body) = post(Some(expired.token.as_str()), "", &rspec);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );

    // Uploads of every report family: 201 with counts and outcomes.
    for (i, rel) in [
        "rspec/run1.json",
        "pytest-json/reruns.json",
        "go-test/count3.json",
        "jest/jest.json",
        "libtest/cargo-test.json",
        "junit/nextest.xml",
        "ci-payload/github-actions.json",
    ]
    .iter()
    .enumerate()
    {
        let path = report(rel);
        let bytes = std::fs::read(&path).unwrap();
        let query = format!("commit=c{i}&branch=main&run_id=ci-{i}&name={rel}");
        let (status, body) = post(Some(&upload.token), &query, &bytes);
        assert_eq!(status, 201, "{rel}: {body}");
        assert_eq!(body["run_id"], format!("ci-{i}"));
        let counts = &body["counts"];
        let total: u64 = ["passed", "flaky", "failed", "skipped"]
            .iter()
            .map(|k| counts[k].as_u64().unwrap())
            .sum();
        assert_eq!(
            total as usize,
            body["tests"].as_array().unwrap().len(),
            "{rel}"
        );
        // The same upload again: 200, nothing counted twice.
        let (status, again) = post(Some(&upload.token), &query, &bytes);
        assert_eq!(status, 200, "{rel}: {again}");
        assert_eq!(
            (again["duplicate"].as_bool(), again["results"].as_u64()),
            (Some(true), Some(0))
        );
    }

    // A malformed report: 400 naming the file and the position; nothing stored.
    let (status, body) = post(
        Some(&upload.token),
        "name=broken.json",
        &rspec[..rspec.len() / 2],
    );
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("broken.json") && message.contains("line"),
        "{message}"
    );
    // Too big: 413 with a JSON body. The server answers as soon as the
    // declared length is over the limit, so the client may find the
    // connection closed while still sending: a raw socket reads the answer
    // whatever happened to the rest of the body.
    let (status, body) = raw_post(&server, &upload.token, 300 * 1024);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large");

    // Compressed bodies: gzip and zstd decode to the same report (the same
    // run, so the second is a repeat); a gzip bomb is refused, not inflated.
    let go = std::fs::read(report("go-test/count1.json")).unwrap();
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&go).unwrap();
        e.finish().unwrap()
    };
    let zst =
        ruzstd::encoding::compress_to_vec(&go[..], ruzstd::encoding::CompressionLevel::Fastest);
    let send = |encoding: &str, body: &[u8], query: &str| {
        let req = ureq::post(&runs_url(&server, query))
            .set("Authorization", &bearer(&upload.token))
            .set("Content-Encoding", encoding);
        call(req, Some(body))
    };
    let (status, body) = send("gzip", &gz, "commit=cz&branch=main&run_id=compressed");
    assert_eq!(status, 201, "{body}");
    let (status, body) = send("zstd", &zst, "commit=cz&branch=main&run_id=compressed");
    assert_eq!(
        (status, body["duplicate"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let bomb = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![b' '; 20 << 20]).unwrap();
        e.finish().unwrap()
    };
    assert!(
        bomb.len() < 200 * 1024,
        "the bomb fits the body limit: {}",
        bomb.len()
    );
    let (status, body) = send("gzip", &bomb, "");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    let (status, body) = send("br", &gz, "");
    assert_eq!(status, 415, "{body}");

    // Several reports in one multipart request form one run; metadata may
    // come as headers; a truncated multipart body is a 400, nothing stored.
    let boundary = "xX-flake-boundary-Xx";
    let part = |name: &str, bytes: &[u8]| {
        let mut p = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"report\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        p.extend_from_slice(bytes);
        p.extend_from_slice(b"\r\n");
        p
    };
    let pytest = std::fs::read(report("pytest-json/no-reruns.json")).unwrap();
    let mut form = part("rspec.json", &rspec);
    form.extend(part("pytest.json", &pytest));
    form.extend(format!("--{boundary}--\r\n").into_bytes());
    let multipart = |body: &[u8]| {
        let req = ureq::post(&runs_url(&server, ""))
            .set("Authorization", &bearer(&upload.token))
            .set(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .set("Flake-Run-Id", "matrix-7")
            .set("Flake-Commit", "cm")
            .set("Flake-Branch", "main");
        call(req, Some(body))
    };
    let (status, body) = multipart(&form);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["run_id"], "matrix-7");
    let ids: Vec<&str> = body["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.iter().any(|i| i.starts_with("./spec/")) && ids.iter().any(|i| i.contains(".py::")),
        "{ids:?}"
    );
    let (status, body) = multipart(&form[..form.len() - 40]);
    assert_eq!(status, 400, "{body}");

    // A flip: the same commit fails then passes in two runs: a flaky test,
    // found through the read API a page at a time.
    let junit = |outcome: &str, n: usize| {
        let mut x = String::from("<testsuite name=\"s\">");
        for t in 0..n {
            let fail = if t < 3 && outcome == "fail" {
                "<failure message=\"boom\">assertion failed</failure>"
            } else {
                ""
            };
            x.push_str(&format!(
                "<testcase classname=\"app.Mod\" name=\"t{t}\">{fail}</testcase>"
            ));
        }
        x.push_str("</testsuite>");
        x.into_bytes()
    };
    for (run, outcome) in [("flip-1", "fail"), ("flip-2", "pass")] {
        let query = format!("commit=samecommit&branch=main&run_id={run}");
        let (status, body) = post(Some(&upload.token), &query, &junit(outcome, 5));
        assert_eq!(status, 201, "{body}");
    }
    let flaky_url = |query: &str| {
        server.url(&format!(
            "/api/v1/projects/{PROJECT_IN_URL}/flaky-tests?{query}"
        ))
    };
    let get =
        |url: &str, token: &str| call(ureq::get(url).set("Authorization", &bearer(token)), None);
    let (status, body) = get(&flaky_url(""), &upload.token);
    assert_eq!(status, 403, "an upload token cannot read: {body}");
    let mut seen = Vec::new();
    let mut query = "page_size=2".to_owned();
    loop {
        let (status, page) = get(&flaky_url(&query), &read.token);
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        for item in items {
            seen.push(item["id"].as_str().unwrap().to_owned());
            // The fixtures' own flaky tests (pytest reruns, a Jest retry) are
            // listed too; the flips are checked in detail.
            if !item["id"].as_str().unwrap().starts_with("app.Mod::") {
                continue;
            }
            assert_eq!(item["class_name"], "app.Mod");
            assert_eq!(item["runs"], 2);
            assert!(item["flake_rate"].as_f64().unwrap() > 0.0);
            assert!(item["wilson_low"].as_f64().unwrap() < item["wilson_high"].as_f64().unwrap());
            assert_eq!(item["top_cluster"]["count"], 1, "{item}");
            assert!(item["last_occurrence"].is_string() && item["first_occurrence"].is_string());
        }
        match page["next_page_token"].as_str() {
            Some(t) => query = format!("page_size=2&page_token={t}"),
            None => break,
        }
    }
    let total = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total, "no test on two pages");
    let flips: Vec<&String> = seen
        .iter()
        .filter(|id| id.starts_with("app.Mod::"))
        .collect();
    assert_eq!(flips, ["app.Mod::t0", "app.Mod::t1", "app.Mod::t2"]);
    let (status, body) = get(&flaky_url("page_size=500"), &read.token);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_page_size"))
    );
    // A parameter of the wrong type is a JSON error too, not plain text.
    let (status, body) = get(&flaky_url("page_size=many"), &read.token);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_query")),
        "{body}"
    );
    // The stats endpoint gives what `stats --format json` gives.
    let (status, rows) = get(
        &server.url(&format!("/api/v1/projects/{PROJECT_IN_URL}/stats")),
        &read.token,
    );
    assert_eq!(status, 200);
    let t0 = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "app.Mod::t0")
        .unwrap();
    assert_eq!(
        (t0["flip_flaky"].as_u64(), t0["schema"].as_u64()),
        (Some(1), Some(1))
    );
    let (status, body) = call(ureq::get(&server.url("/nope")), None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // SIGTERM: the server stops accepting and exits 0.
    let mut server = server;
    let pid = server.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_service_authenticates_records_and_answers_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let location = flake_core::store::Location::Sqlite(db.clone());
    scenario(dir.path(), &["--db", db.to_str().unwrap()], &location);
}

#[test]
fn the_service_authenticates_records_and_answers_on_postgres() {
    let Some(pg) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let location = flake_core::store::Location::parse(pg.url()).unwrap();
    scenario(dir.path(), &["--database-url", pg.url()], &location);
}

/// `--prune-every`: the service prunes on its schedule, says so in
/// `/metrics`, and the statistics the default policy reads are the same.
#[test]
fn the_service_prunes_on_a_schedule_and_counts_it_in_metrics() {
    use flake_core::meta::RunMeta;
    use flake_core::model::{Attempt, AttemptStatus, Failure, TestResult};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let mut store = flake_core::store::Store::open(&db)
        .unwrap()
        .with_project(PROJECT)
        .unwrap();
    // 80 runs of 30 tests, a day apart, one test flaky now and then: more
    // than the default window (50), so the oldest runs can go.
    let now = flake_core::meta::now_ms();
    for i in 0..80i64 {
        let meta = RunMeta {
            run_id: format!("r{i}"),
            commit: Some(format!("{i:040x}")),
            branch: Some("main".into()),
            started_at: now - (80 - i) * 86_400_000,
            finished_at: now - (80 - i) * 86_400_000 + 1,
            source_format: "synthetic".into(),
            ..RunMeta::default()
        };
        let results: Vec<TestResult> = (0..30)
            .map(|t| {
                let attempts = if t == 0 && i % 5 == 0 {
                    let f = Failure::from_output(Some("timeout"), "timed out");
                    vec![
                        Attempt::failed(AttemptStatus::Fail, Some(3), f),
                        Attempt::pass(Some(2)),
                    ]
                } else {
                    vec![Attempt::pass(Some(1))]
                };
                TestResult::new(format!("mod::t{t}"), attempts)
            })
            .collect();
        store.record_run(&meta, &results, None).unwrap();
    }
    let opts = flake_core::stats::StatsOptions::default();
    let before = flake_core::stats::compute(&store, &opts).unwrap();
    let results_before = store.check().unwrap().results;
    drop(store);

    let db_arg = ["--db", db.to_str().unwrap()];
    let server = Server::start(
        dir.path(),
        &db_arg,
        &["--prune-every", "1s", "--keep-runs", "5"],
    );
    let metric = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let text = ureq::get(&server.url("/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        if metric(&text, "flake_prunes_total").unwrap_or(0.0) >= 1.0 {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no prune within 20 s:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let pruned = metric(&text, "flake_pruned_results_total").unwrap();
    assert!(pruned > 0.0, "{text}");
    assert!(
        metric(&text, "flake_last_prune_timestamp_seconds").is_some(),
        "{text}"
    );
    assert!(
        text.contains(
            "flake_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"}"
        ),
        "{text}"
    );
    drop(server);
    let store = flake_core::store::Store::open_existing(&db)
        .unwrap()
        .with_project(PROJECT)
        .unwrap();
    let after = flake_core::stats::compute(&store, &opts).unwrap();
    let check = store.check().unwrap();
    assert!(check.results < results_before, "{check:?}");
    assert!(check.problems.is_empty(), "{check:?}");
    let rows = |s: &flake_core::stats::Stats| -> Vec<(String, u64, u64, u64)> {
        s.tests
            .iter()
            .map(|t| (t.id.clone(), t.runs, t.flaky, t.passed))
            .collect()
    };
    assert_eq!(rows(&before), rows(&after));
    assert_eq!(before.suite, after.suite);
}

/// A JUnit report of `n` passing cases (a big upload).
fn big_junit(n: usize) -> Vec<u8> {
    let mut x = String::from("<testsuite name=\"big\">");
    for t in 0..n {
        x.push_str(&format!(
            "<testcase classname=\"big.Suite{}\" name=\"case_{t}\" time=\"0.001\"/>",
            t % 97
        ));
    }
    x.push_str("</testsuite>");
    x.into_bytes()
}

/// `kill -9` of the server in the middle of an upload, then a restart: the
/// run is complete or absent, never partial, and the client's retry lands
/// it exactly once.
fn killed_mid_upload(dir: &Path, db: &[&str], location: &flake_core::store::Location) {
    let mut store = flake_core::store::Store::connect(location).unwrap();
    let now = flake_core::meta::now_ms();
    let token = tokens::create(&mut store, PROJECT, Role::Upload, None, None, now).unwrap();
    drop(store);
    let cases = 40_000;
    let body = std::sync::Arc::new(big_junit(cases));
    let query = "commit=k1&branch=main&run_id=killed-upload";
    for delay_ms in [5u64, 60, 250] {
        let mut server = Server::start(dir, db, &[]);
        let url = runs_url(&server, query);
        let auth = format!("Bearer {}", token.token);
        let sent = {
            let (url, auth, body) = (url.clone(), auth.clone(), body.clone());
            std::thread::spawn(move || {
                let req = ureq::post(&url).set("Authorization", &auth);
                match req.send_bytes(&body) {
                    Ok(r) => Some(r.status()),
                    Err(ureq::Error::Status(code, _)) => Some(code),
                    Err(_) => None,
                }
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let _ = sent.join().unwrap();
        // Whatever the kill interrupted, the history holds the whole run or none of it.
        let store = flake_core::store::Store::connect(location)
            .unwrap()
            .with_project(PROJECT)
            .unwrap();
        let check = store.check().unwrap();
        assert!(check.problems.is_empty(), "{check:?}");
        if let Some(run) = store.run("killed-upload").unwrap() {
            assert_eq!(run.total as usize, cases, "a partial run after a kill");
        }
        drop(store);
        // The client retries against the restarted server: it lands once.
        let server = Server::start(dir, db, &[]);
        let req = ureq::post(&runs_url(&server, query)).set("Authorization", &auth);
        let (status, answer) = call(req, Some(&body));
        assert!(status == 201 || status == 200, "{status}: {answer}");
        let store = flake_core::store::Store::connect(location)
            .unwrap()
            .with_project(PROJECT)
            .unwrap();
        let run = store
            .run("killed-upload")
            .unwrap()
            .expect("the retry landed");
        assert_eq!(run.total as usize, cases);
        assert_eq!(store.runs().unwrap().len(), 1, "exactly once");
    }
}

#[test]
fn a_server_killed_mid_upload_leaves_the_run_whole_or_absent_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let location = flake_core::store::Location::Sqlite(db.clone());
    killed_mid_upload(dir.path(), &["--db", db.to_str().unwrap()], &location);
}

#[test]
fn a_server_killed_mid_upload_leaves_the_run_whole_or_absent_on_postgres() {
    let Some(pg) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let location = flake_core::store::Location::parse(pg.url()).unwrap();
    killed_mid_upload(dir.path(), &["--database-url", pg.url()], &location);
}

/// Two replicas on one PostgreSQL database take uploads at once: every
/// upload lands, once, whichever replica took it.
#[test]
fn two_replicas_on_one_database_take_uploads_at_once() {
    let Some(pg) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let location = flake_core::store::Location::parse(pg.url()).unwrap();
    let mut store = flake_core::store::Store::connect(&location).unwrap();
    let now = flake_core::meta::now_ms();
    let token = tokens::create(&mut store, PROJECT, Role::Upload, None, None, now).unwrap();
    drop(store);
    let db = ["--database-url", pg.url()];
    let replicas = [
        Server::start(dir.path(), &db, &[]),
        Server::start(dir.path(), &db, &[]),
    ];
    let body = std::sync::Arc::new(big_junit(500));
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let url = runs_url(
                &replicas[i % 2],
                &format!("commit=c{i}&branch=main&run_id=job-{i}"),
            );
            let (auth, body) = (format!("Bearer {}", token.token), body.clone());
            std::thread::spawn(move || {
                call(ureq::post(&url).set("Authorization", &auth), Some(&body))
            })
        })
        .collect();
    for t in threads {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 201, "{body}");
    }
    let store = flake_core::store::Store::connect(&location)
        .unwrap()
        .with_project(PROJECT)
        .unwrap();
    let runs = store.runs().unwrap();
    assert_eq!(runs.len(), 16);
    assert!(runs.iter().all(|r| r.total == 500));
    assert!(store.check().unwrap().problems.is_empty());
    assert_eq!(
        store.tests().unwrap().len(),
        500,
        "names interned once across replicas"
    );
}

/// `quarantine sync --server`: the service decides from the team history,
/// the committed file is edited here, comments kept; `--check` and
/// `--dry-run` behave as they do locally.
#[test]
fn quarantine_sync_asks_the_server_and_edits_the_file_here() {
    use flake_core::meta::RunMeta;
    use flake_core::model::{Attempt, AttemptStatus, Failure, TestResult};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let mut store = flake_core::store::Store::open(&db)
        .unwrap()
        .with_project(PROJECT)
        .unwrap();
    let now = flake_core::meta::now_ms();
    for i in 0..12i64 {
        let meta = RunMeta {
            run_id: format!("r{i}"),
            commit: Some(format!("{i:040x}")),
            branch: Some("main".into()),
            started_at: now - (12 - i) * 3_600_000,
            finished_at: now - (12 - i) * 3_600_000 + 1,
            source_format: "synthetic".into(),
            ..RunMeta::default()
        };
        let flaky = i == 10;
        let results: Vec<TestResult> = ["net::connects", "net::stable"]
            .iter()
            .map(|id| {
                let attempts = if flaky && *id == "net::connects" {
                    let f = Failure::from_output(Some("connection reset"), "reset by peer");
                    vec![
                        Attempt::failed(AttemptStatus::Fail, Some(3), f),
                        Attempt::pass(Some(2)),
                    ]
                } else {
                    vec![Attempt::pass(Some(1))]
                };
                TestResult::new(*id, attempts)
            })
            .collect();
        store.record_run(&meta, &results, None).unwrap();
    }
    let read = tokens::create(&mut store, PROJECT, Role::Read, None, None, now).unwrap();
    let upload = tokens::create(&mut store, PROJECT, Role::Upload, None, None, now).unwrap();
    drop(store);
    let server = Server::start(dir.path(), &["--db", db.to_str().unwrap()], &[]);
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("flake.toml"), "").unwrap();
    let qfile = repo.path().join("flake-quarantine.toml");
    let original = "# Reviewed on Mondays.\nversion = 1\n";
    std::fs::write(&qfile, original).unwrap();
    let sync = |token: &str, extra: &[&str]| {
        let args = [
            &[
                "quarantine",
                "sync",
                "--server",
                &server.base,
                "--project",
                PROJECT,
            ][..],
            extra,
        ]
        .concat();
        Flake::new(repo.path(), &args)
            .env("CARGO_FLAKE_TOKEN", token)
            .run()
    };
    let check = sync(&read.token, &["--check"]);
    assert_eq!(check.code, 1, "{}{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains("+") && check.stdout.contains("net::connects"),
        "{}",
        check.stdout
    );
    let dry = sync(&read.token, &["--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(
        std::fs::read_to_string(&qfile).unwrap(),
        original,
        "a dry run writes nothing"
    );
    let wrote = sync(&read.token, &[]);
    assert_eq!(wrote.code, 0, "{}", wrote.stderr);
    let text = std::fs::read_to_string(&qfile).unwrap();
    assert!(text.starts_with("# Reviewed on Mondays.\n"), "{text}");
    assert!(
        text.contains("net::connects") && !text.contains("net::stable"),
        "{text}"
    );
    let again = sync(&read.token, &["--check"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("up to date"), "{}", again.stderr);
    let refused = sync(&upload.token, &["--check"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("403"), "{}", refused.stderr);
}

/// SIGTERM while an upload is in flight: the server stops accepting, lets
/// the upload finish (it is recorded, whole), and exits 0.
#[test]
fn sigterm_lets_the_upload_in_flight_finish() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let mut store = flake_core::store::Store::open(&db).unwrap();
    let now = flake_core::meta::now_ms();
    let token = tokens::create(&mut store, PROJECT, Role::Upload, None, None, now).unwrap();
    drop(store);
    let mut server = Server::start(dir.path(), &["--db", db.to_str().unwrap()], &[]);
    let body = big_junit(20_000);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /api/v1/projects/{PROJECT_IN_URL}/runs?run_id=in-flight&commit=c&branch=main HTTP/1.1\r\n\
         Host: {addr}\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        token.token,
        body.len()
    );
    // Half the body is sent: the server has taken the request and waits
    // for the rest when the signal comes.
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = server.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    // New connections are refused now...
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "the server still accepts after SIGTERM"
    );
    // ...while the one in flight completes.
    stream.write_all(&body[body.len() / 2..]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(server.child.wait().unwrap().code(), Some(0));
    let store = flake_core::store::Store::open_existing(&db)
        .unwrap()
        .with_project(PROJECT)
        .unwrap();
    assert_eq!(store.run("in-flight").unwrap().unwrap().total, 20_000);
}

/// The README's curl commands work: a project name with slashes travels
/// percent-encoded in the path.
#[test]
fn curl_uploads_and_pages_with_a_percent_encoded_project() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "curl is needed in CI (.ci/run installs it)"
        );
        eprintln!("curl not found: this test was skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let mut store = flake_core::store::Store::open(&db).unwrap();
    let now = flake_core::meta::now_ms();
    let upload = tokens::create(&mut store, PROJECT, Role::Upload, None, None, now).unwrap();
    let read = tokens::create(&mut store, PROJECT, Role::Read, None, None, now).unwrap();
    drop(store);
    let server = Server::start(dir.path(), &["--db", db.to_str().unwrap()], &[]);
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.trim().parse::<u16>().unwrap(), body.to_owned())
    };
    let report = report("rspec/run1.json");
    let (code, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {}", upload.token),
        "--data-binary",
        &format!("@{}", report.display()),
        &runs_url(&server, "commit=abc&branch=main&run_id=curl-1"),
    ]);
    assert_eq!(code, 201, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["run_id"], "curl-1");
    let (code, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {}", read.token),
        &server.url(&format!("/api/v1/projects/{PROJECT_IN_URL}/stats")),
    ]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("./spec/calculator_spec.rb"), "{body}");
}
