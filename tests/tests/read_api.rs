//! The read API of `cargo flake serve` beyond stats and flaky-tests: one
//! test's story (`tests/{id}`), the quarantine proposal, and the OpenAPI
//! document, against a real server process on a loopback port with an
//! SQLite history and (when `CARGO_FLAKE_TEST_DATABASE_URL` names a server)
//! a fresh PostgreSQL database. Everything is uploaded through the API.

use std::path::Path;

use flake_core::store::postgres::testing::TestDatabase;
use flake_core::tokens::{self, Role};
use flake_tests::{Server, report};

/// Status, content type and JSON body of a request (errors included).
fn call(req: ureq::Request, body: Option<&[u8]>) -> (u16, String, serde_json::Value) {
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
    let kind = response.content_type().to_owned();
    let text = response.into_string().unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text:?}"));
    (status, kind, json)
}

use flake_core::webhooks::percent_encode as encode;

const PROJECT: &str = "github.com/org/app";
const PROJECT_IN_URL: &str = "github.com%2Forg%2Fapp";
/// The flaky test: fails in `flip-1`, passes in `flip-2`, same commit.
const FLAKY: &str = "app.Mod::t0";
/// A test whose id has a `/` and spaces.
const AWKWARD: &str = "app/Mod::handles a space";

/// A JUnit report of the flaky test (failing or passing) and the awkward one.
fn junit(fail: bool) -> Vec<u8> {
    let t0 = if fail {
        r#"<testcase classname="app.Mod" name="t0" time="0.25"><failure message="boom">assertion failed: left == right</failure></testcase>"#
    } else {
        r#"<testcase classname="app.Mod" name="t0" time="0.01"/>"#
    };
    format!(
        r#"<testsuite name="s">{t0}<testcase classname="app/Mod" name="handles a space" time="0.002"/></testsuite>"#
    )
    .into_bytes()
}

/// Every scenario, against the database named by `db` (CLI flags).
fn scenario(dir: &Path, db: &[&str], location: &flake_core::store::Location) {
    let mut store = flake_core::store::Store::connect(location).unwrap();
    let now = flake_core::meta::now_ms();
    let upload = tokens::create(&mut store, PROJECT, Role::Upload, None, None, now).unwrap();
    let read = tokens::create(&mut store, PROJECT, Role::Read, None, None, now).unwrap();
    let admin = tokens::create(&mut store, PROJECT, Role::Admin, None, None, now).unwrap();
    drop(store);

    let server = Server::start(dir, db, &[]);
    let bearer = |t: &str| format!("Bearer {t}");
    let post = |path: &str, token: &str, body: &[u8]| {
        call(
            ureq::post(&server.url(path)).set("Authorization", &bearer(token)),
            Some(body),
        )
    };
    let get = |path: &str, token: &str| {
        call(
            ureq::get(&server.url(path)).set("Authorization", &bearer(token)),
            None,
        )
    };
    let runs_path = |query: &str| format!("/api/v1/projects/{PROJECT_IN_URL}/runs?{query}");

    // Real fixture reports, then ten clean runs and a flip, all through the API.
    for (i, rel) in [
        "rspec/run1.json",
        "pytest-json/reruns.json",
        "jest/jest.json",
    ]
    .iter()
    .enumerate()
    {
        let bytes = std::fs::read(report(rel)).unwrap();
        let (status, _, body) = post(
            &runs_path(&format!("commit=f{i}&branch=main&run_id=fixture-{i}")),
            &upload.token,
            &bytes,
        );
        assert_eq!(status, 201, "{rel}: {body}");
    }
    for i in 0..10 {
        let (status, _, body) = post(
            &runs_path(&format!("commit=c{i}&branch=main&run_id=clean-{i}")),
            &upload.token,
            &junit(false),
        );
        assert_eq!(status, 201, "{body}");
        let ids: Vec<&str> = body["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [FLAKY, AWKWARD], "the ids the test relies on");
    }
    for (run, fail) in [("flip-1", true), ("flip-2", false)] {
        let (status, _, body) = post(
            &runs_path(&format!("commit=samecommit&branch=main&run_id={run}")),
            &upload.token,
            &junit(fail),
        );
        assert_eq!(status, 201, "{body}");
    }

    let test_path = |id: &str, query: &str| {
        format!(
            "/api/v1/projects/{PROJECT_IN_URL}/tests/{}{query}",
            encode(id)
        )
    };

    // The flaky test's story: its stats row, its runs newest first, its cluster.
    let (status, kind, story) = get(&test_path(FLAKY, ""), &read.token);
    assert_eq!(status, 200, "{story}");
    assert_eq!(kind, "application/json");
    assert_eq!(story["id"], FLAKY);
    let stats = &story["stats"];
    assert_eq!(
        (
            stats["runs"].as_u64(),
            stats["flaky"].as_u64(),
            stats["flip_flaky"].as_u64(),
            stats["passed"].as_u64(),
            stats["failed"].as_u64(),
        ),
        (Some(12), Some(1), Some(1), Some(11), Some(0)),
        "{stats}"
    );
    assert!((stats["flake_rate"].as_f64().unwrap() - 1.0 / 12.0).abs() < 1e-9);
    assert_eq!(stats["insufficient_history"], false);
    assert_eq!(stats["last_flaky"]["run_id"], "flip-1");
    let runs = story["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 12, "{story}");
    let (newest, flip) = (&runs[0], &runs[1]);
    assert_eq!(
        (newest["run_id"].as_str(), newest["outcome"].as_str()),
        (Some("flip-2"), Some("passed"))
    );
    assert_eq!(newest["flaky_evidence"], false);
    assert_eq!(newest["duration_ms"], 10);
    assert_eq!(
        (flip["run_id"].as_str(), flip["outcome"].as_str()),
        (Some("flip-1"), Some("failed"))
    );
    assert_eq!(
        flip["flaky_evidence"], true,
        "a failure contradicted by a pass of samecommit"
    );
    assert_eq!(flip["commit"], "samecommit");
    assert_eq!(flip["attempts"], 1);
    assert_eq!(flip["duration_ms"], 250);
    assert_eq!(flip["attempt_durations_ms"], serde_json::json!([250]));
    assert!(flip["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(runs[2]["run_id"], "clean-9");
    let clusters = story["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 1, "{story}");
    assert_eq!(clusters[0]["count"], 1);
    assert_eq!(clusters[0]["kind"], "fail");
    assert!(
        clusters[0]["message"].as_str().unwrap().contains("boom")
            || clusters[0]["message"]
                .as_str()
                .unwrap()
                .contains("assertion failed"),
        "{clusters:?}"
    );
    assert_eq!(flip["cluster"], clusters[0]["fingerprint"]);
    assert_eq!(newest["cluster"], serde_json::Value::Null);
    assert_eq!(
        stats["clusters"][0]["fingerprint"],
        clusters[0]["fingerprint"]
    );
    assert_eq!(story["by_branch"][0]["key"], "main");
    assert_eq!(story["by_branch"][0]["runs"], 12);
    assert_eq!(story["recent"].as_array().unwrap().len(), 12);
    assert_eq!(
        story["recent"][10], "failed",
        "oldest first: flip-1 is 11th"
    );
    // `runs` caps the timeline; the stats still use the whole window.
    let (status, _, short) = get(&test_path(FLAKY, "?runs=2"), &read.token);
    assert_eq!(status, 200);
    assert_eq!(short["runs"].as_array().unwrap().len(), 2);
    assert_eq!(short["stats"]["runs"], 12);
    for bad in ["?runs=0", "?runs=201", "?runs=lots"] {
        let (status, _, body) = get(&test_path(FLAKY, bad), &read.token);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("bad_runs")),
            "{bad}: {body}"
        );
    }
    // The flaky-tests list links to the same story.
    let (_, _, page) = get(
        &format!("/api/v1/projects/{PROJECT_IN_URL}/flaky-tests"),
        &read.token,
    );
    let item = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == FLAKY)
        .unwrap_or_else(|| panic!("{page}"));
    let (status, _, linked) = get(item["details_url"].as_str().unwrap(), &read.token);
    assert_eq!((status, &linked["id"]), (200, &story["id"]));

    // An id with `/` and spaces travels percent-encoded in one path segment.
    let (status, _, awkward) = get(&test_path(AWKWARD, ""), &admin.token);
    assert_eq!(status, 200, "{awkward}");
    assert_eq!(awkward["id"], AWKWARD);
    assert_eq!(
        (
            awkward["stats"]["runs"].as_u64(),
            awkward["stats"]["flaky"].as_u64()
        ),
        (Some(12), Some(0))
    );
    assert_eq!(
        awkward["runs"][0]["attempt_durations_ms"],
        serde_json::json!([2])
    );
    assert!(awkward["clusters"].as_array().unwrap().is_empty());

    // An unknown test: 404 with a JSON error naming it.
    let (status, _, body) = get(&test_path("app.Mod::nope", ""), &read.token);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_test")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("app.Mod::nope")
    );
    // The token is for this project only.
    let (status, _, _) = get(
        &format!("/api/v1/projects/other/tests/{}", encode(FLAKY)),
        &read.token,
    );
    assert_eq!(status, 403, "a token of another project");

    // The proposal for an empty file: add the flaky test, with a diff.
    let proposal_path = format!("/api/v1/projects/{PROJECT_IN_URL}/quarantine/proposal");
    let propose = |token: &str, body: &str| post(&proposal_path, token, body.as_bytes());
    let (status, _, proposal) = propose(&read.token, "");
    assert_eq!(status, 200, "{proposal}");
    assert_eq!(proposal["changed"], true);
    let adds: Vec<&serde_json::Value> = proposal["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["action"] == "add")
        .collect();
    assert_eq!(adds.len(), 1, "{proposal}");
    assert_eq!(adds[0]["id"], FLAKY);
    assert_eq!(adds[0]["runs"], 12);
    assert!(
        adds[0]["reason"].as_str().unwrap().contains("1/12 runs"),
        "{}",
        adds[0]
    );
    let file = proposal["file"].as_str().unwrap();
    // What `sync` writes for a missing file: its header and version first.
    assert!(file.starts_with("# Quarantined tests"), "{file}");
    assert!(file.contains("\nversion = 1\n"), "{file}");
    assert!(file.contains(r#"id = "app.Mod::t0""#), "{file}");
    assert!(file.contains(r#"source = "auto""#), "{file}");
    let diff = proposal["diff"].as_str().unwrap();
    assert!(
        diff.starts_with("--- a/flake-quarantine.toml\n+++ b/flake-quarantine.toml\n@@ "),
        "{diff}"
    );
    assert!(diff.contains("\n+id = \"app.Mod::t0\"\n"), "{diff}");
    assert!(
        !diff
            .lines()
            .any(|l| l.starts_with('-') && !l.starts_with("---"))
    );

    // The proposed file, sent back: nothing to change.
    let (status, _, again) = propose(&read.token, file);
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (again["changed"].as_bool(), again["diff"].as_str()),
        (Some(false), Some(""))
    );
    assert_eq!(again["file"], file);
    assert_eq!(again["findings"][0]["action"], "keep");
    assert_eq!(again["findings"][0]["id"], FLAKY);

    // A hand-written file that has it, with comments: unchanged, byte for byte.
    let committed = "# Quarantined by hand; ask #ci before removing.\n\n[[test]]\nid = \"app.Mod::t0\" # the flip\nadded = \"2026-01-05\"\nreason = \"flips on samecommit\"\n";
    let (status, _, kept) = propose(&admin.token, committed);
    assert_eq!(status, 200, "{kept}");
    assert_eq!(kept["changed"], false, "{kept}");
    assert_eq!(kept["file"], committed);
    // The service keeps the file it was sent as the project's: the flaky
    // test is quarantined in flaky-tests and in its story now.
    let quarantined = |token: &str| {
        let (_, _, page) = get(
            &format!("/api/v1/projects/{PROJECT_IN_URL}/flaky-tests"),
            token,
        );
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == FLAKY)
            .unwrap()["quarantined"]
            .clone()
    };
    assert_eq!(quarantined(&read.token), true);
    let (_, _, story_now) = get(&test_path(FLAKY, ""), &read.token);
    assert_eq!(story_now["stats"]["quarantined"], true, "{story_now}");

    // A file with comments and no entry: the entry is added, the comments stay.
    let commented = "# Managed by cargo flake quarantine sync; comments survive.\n";
    let (status, _, edited) = propose(&read.token, commented);
    assert_eq!(status, 200, "{edited}");
    let file = edited["file"].as_str().unwrap();
    assert!(file.starts_with(commented), "{file}");
    assert!(file.contains(r#"id = "app.Mod::t0""#), "{file}");
    assert!(
        edited["diff"]
            .as_str()
            .unwrap()
            .contains("\n # Managed by cargo flake quarantine sync; comments survive.\n"),
        "the comment is context, not a change: {}",
        edited["diff"]
    );

    // A broken file: 400 naming the position.
    let broken = "[[test]]\nid = \"app.Mod::t0\"\nadded = 2026-13-45x\n";
    let (status, _, body) = propose(&read.token, broken);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_quarantine_file")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 3, column"), "{message}");

    // Auth: an upload token cannot read; no token is 401.
    let (status, _, body) = get(&test_path(FLAKY, ""), &upload.token);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _, body) = propose(&upload.token, "");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _, body) = call(ureq::post(&server.url(&proposal_path)), Some(b""));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    // Even a broken body is refused before it is parsed.
    let (status, _, _) = propose(&upload.token, broken);
    assert_eq!(status, 403);

    // The OpenAPI document: served without a token, the checked-in file,
    // and every path it describes is a route of this server.
    let (status, kind, doc) = call(ureq::get(&server.url("/api/v1/openapi.json")), None);
    assert_eq!((status, kind.as_str()), (200, "application/json"));
    let checked_in: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(doc, checked_in);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 16, "{:?}", paths.keys());
    for (template, item) in paths {
        // A webhook's id is a number; a test's, a percent-encoded name.
        let id = if template.contains("/webhooks/") {
            "7".to_owned()
        } else {
            encode(FLAKY)
        };
        let path = template
            .replace("{project}", PROJECT_IN_URL)
            .replace("{id}", &id)
            .replace("{delivery}", "42");
        for method in item.as_object().unwrap().keys() {
            let url = server.url(&path);
            let req = ureq::request(&method.to_uppercase(), &url);
            // A body, so that no route answers 400 for an empty one first.
            let sent = if method == "post" {
                req.send_bytes(b"x")
            } else {
                req.call()
            };
            let (status, body) = match sent {
                Ok(r) => (r.status(), r.into_string().unwrap()),
                Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
                Err(e) => panic!("{method} {path}: {e}"),
            };
            assert_ne!(status, 405, "{method} {template}: wrong method");
            assert!(
                !(status == 404 && body.contains("no such route")),
                "{method} {template} is not a route of the server"
            );
            // Without a token, everything under a project is 401.
            if template.contains("{project}") {
                assert_eq!(status, 401, "{method} {template}: {body}");
            } else {
                assert_eq!(status, 200, "{method} {template}: {body}");
            }
        }
    }
    let (status, _, body) = call(ureq::get(&server.url("/api/v1/nope.json")), None);
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (404, Some("no such route"))
    );
}

#[test]
fn the_read_api_tells_stories_proposes_quarantines_and_describes_itself_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let location = flake_core::store::Location::Sqlite(db.clone());
    scenario(dir.path(), &["--db", db.to_str().unwrap()], &location);
}

#[test]
fn the_read_api_tells_stories_proposes_quarantines_and_describes_itself_on_postgres() {
    let Some(pg) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let location = flake_core::store::Location::parse(pg.url()).unwrap();
    scenario(dir.path(), &["--database-url", pg.url()], &location);
}
