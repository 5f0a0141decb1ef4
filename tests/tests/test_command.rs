//! End-to-end tests of `cargo flake test` against a real fixture project run
//! through the real nextest and the real `cargo test`.
//!
//! The fixture (`tests/fixtures/projects/rust-e2e`) has a passing test, an
//! ignored one, `flaky_once` (fails its first execution), `flaky_twice` (fails
//! its first two) and `hard_failure` (fails every time when
//! `FIXTURE_HARD_FAIL` is set). Executions are counted in `FLAKE_FIXTURE_STATE`.

use std::collections::BTreeMap;
use std::path::Path;

use flake_tests::{Flake, Outcome, Project};

const FLAKY_ONCE: &str = "flaky-fixture tests::flaky_once";
const FLAKY_TWICE: &str = "flaky-fixture::it flaky_twice";
const HARD: &str = "flaky-fixture tests::hard_failure";

/// Runs `cargo flake test <args>` with a fresh execution counter.
fn flake_test(p: &Project, args: &[&str], hard_fail: bool) -> Outcome {
    let state = tempfile::tempdir().unwrap();
    let mut all = vec!["test"];
    all.extend_from_slice(args);
    let mut cmd = p.flake(&all).env("FLAKE_FIXTURE_STATE", state.path());
    if hard_fail {
        cmd = cmd.env("FIXTURE_HARD_FAIL", "1");
    }
    cmd.run()
}

/// id -> (outcome, attempts, quarantined) from the JSON output.
fn classification(out: &Outcome) -> BTreeMap<String, (String, u64, bool)> {
    let json = out.json();
    json["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                (
                    t["outcome"].as_str().unwrap().to_owned(),
                    t["attempts"].as_u64().unwrap(),
                    t["quarantined"].as_bool().unwrap(),
                ),
            )
        })
        .collect()
}

fn expected(hard_fail: bool, quarantined_hard: bool) -> BTreeMap<String, (String, u64, bool)> {
    let hard = if hard_fail {
        ("failed", 3)
    } else {
        ("passed", 1)
    };
    [
        ("flaky-fixture tests::passes", ("passed", 1), false),
        (FLAKY_ONCE, ("flaky", 2), false),
        (HARD, hard, quarantined_hard),
        ("flaky-fixture tests::ignored", ("skipped", 0), false),
        ("flaky-fixture::it integration_passes", ("passed", 1), false),
        (FLAKY_TWICE, ("flaky", 3), false),
    ]
    .into_iter()
    .map(|(id, (o, a), q)| (id.to_owned(), (o.to_owned(), a, q)))
    .collect()
}

/// run id, commit, branch, runner, test count.
type RunRow = (String, Option<String>, Option<String>, String, i64);

fn db_runs(db: &Path) -> Vec<RunRow> {
    flake_tests::history(db)
        .runs()
        .unwrap()
        .into_iter()
        .map(|r| {
            let m = r.meta;
            (
                m.run_id,
                m.commit,
                m.branch,
                m.runner.unwrap_or_default(),
                r.total,
            )
        })
        .collect()
}

#[test]
fn nextest_flaky_run_passes_records_commit_and_branch() {
    let p = Project::new("rust-e2e");
    let head = p.git(&["rev-parse", "HEAD"]);
    let out = flake_test(&p, &["--message-format", "json"], false);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(classification(&out), expected(false, false));
    let json = out.json();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["gate"], "pass");
    assert_eq!(json["commit"], head.as_str());
    assert_eq!(json["branch"], "main");
    // nextest's own output went to stderr, so stdout held only our JSON.
    assert!(out.stderr.contains("FLAKY 2/3"), "{}", out.stderr);

    let db = p.path().join(".flake/history.db");
    let runs = db_runs(&db);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].0, json["run_id"].as_str().unwrap());
    assert_eq!(runs[0].1.as_deref(), Some(head.as_str()));
    assert_eq!(runs[0].2.as_deref(), Some("main"));
    assert_eq!(runs[0].3, "nextest");
    assert_eq!(runs[0].4, 6);
    // The database folder ignores itself, so the work tree stays clean.
    assert_eq!(p.git(&["status", "--porcelain"]), "");

    // The human summary names every flaky test with its attempts and first failure.
    let human = flake_test(&p, &[], false);
    assert_eq!(human.code, 0, "{}", human.stderr);
    let summary = human
        .stderr
        .split("cargo flake:")
        .nth(1)
        .expect("our summary follows nextest's");
    assert!(
        summary.contains("6 tests: 3 passed, 2 flaky, 1 skipped"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("FLAKY 2/3  {FLAKY_ONCE}")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("FLAKY 3/3  {FLAKY_TWICE}")),
        "{summary}"
    );
    assert!(
        summary.contains("connection reset on attempt 1  at src/lib.rs:"),
        "{summary}"
    );
    assert!(summary.contains("history: .flake/history.db"), "{summary}");
    assert!(summary.contains("on main)"), "{summary}");
    assert!(summary.contains("gate: PASS"), "{summary}");
    assert_eq!(db_runs(&db).len(), 2);
}

#[test]
fn hard_failure_fails_the_gate_until_quarantined() {
    let p = Project::new("rust-e2e");
    let out = flake_test(&p, &[], true);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("FAILED 3/3  {HARD}")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("expected 4, got 5"), "{}", out.stderr);
    assert!(
        out.stderr.contains("gate: FAIL (1 test failed)"),
        "{}",
        out.stderr
    );

    let add = p
        .flake(&["quarantine", "add", HARD, "--reason", "tracked in #123"])
        .run();
    assert_eq!(add.code, 0, "{}", add.stderr);
    let q = std::fs::read_to_string(p.path().join("flake-quarantine.toml")).unwrap();
    assert!(q.contains(&format!("id = \"{HARD}\"")), "{q}");
    assert!(q.contains("reason = \"tracked in #123\""), "{q}");

    let out = flake_test(&p, &[], true);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("{HARD}  (quarantined: failure ignored)")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("gate: PASS (1 quarantined failure ignored)"),
        "{}",
        out.stderr
    );

    let json = flake_test(&p, &["--message-format", "json"], true);
    assert_eq!(json.code, 0, "{}", json.stderr);
    assert_eq!(classification(&json), expected(true, true));
    assert_eq!(json.json()["counts"]["ignored"], 1);

    let list = p.flake(&["quarantine", "list", "--format", "json"]).run();
    assert_eq!(list.code, 0);
    let entries = list.json();
    assert_eq!(entries[0]["id"], HARD);
    assert_eq!(entries[0]["reason"], "tracked in #123");
    assert_eq!(entries[0]["pinned"], false);

    let rm = p.flake(&["quarantine", "remove", HARD]).run();
    assert_eq!(rm.code, 0, "{}", rm.stderr);
    assert_eq!(flake_test(&p, &[], true).code, 1);
    let again = p.flake(&["quarantine", "remove", HARD]).run();
    assert_eq!(again.code, 2, "removing an absent id is a usage error");
    assert!(
        again.stderr.contains("is not quarantined"),
        "{}",
        again.stderr
    );
}

#[test]
fn a_build_failure_is_never_green_even_with_quarantine() {
    let p = Project::new("rust-e2e");
    p.flake(&["quarantine", "add", HARD]).run();
    let lib = p.path().join("src/lib.rs");
    let src = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, src.replace("a + b", "a + ")).unwrap();
    for runner in ["nextest", "cargo-test"] {
        let out = flake_test(&p, &["--runner", runner], true);
        assert_eq!(out.code, 1, "{runner}: {}", out.stderr);
        assert!(
            out.stderr.contains("build failed"),
            "{runner}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("gate: FAIL"),
            "{runner}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("nothing recorded"),
            "{runner}: {}",
            out.stderr
        );
        let json = flake_test(&p, &["--runner", runner, "--message-format", "json"], true);
        assert_eq!(json.code, 1);
        assert_eq!(json.json()["gate"], "fail");
    }
}

#[test]
fn a_broken_quarantine_file_is_an_error_and_stays_untouched() {
    let p = Project::new("rust-e2e");
    let broken = "version = 1\n[[test]]\nid = \"a\"\nreason = \"unterminated\n";
    let path = p.path().join("flake-quarantine.toml");
    std::fs::write(&path, broken).unwrap();
    let out = flake_test(&p, &[], false);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("flake-quarantine.toml"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("line 4"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("Starting"),
        "tests must not run: {}",
        out.stderr
    );
    let add = p.flake(&["quarantine", "add", "x"]).run();
    assert_eq!(add.code, 2);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
    assert!(
        !p.path().join(".flake/history.db").exists()
            || db_runs(&p.path().join(".flake/history.db")).is_empty()
    );
}

#[test]
fn cargo_test_runner_classifies_like_nextest_into_one_history() {
    let p = Project::new("rust-e2e");
    let db = p.path().join("shared.db");
    let db_arg = db.to_str().unwrap();
    let nextest = flake_test(&p, &["--message-format", "json", "--db", db_arg], true);
    let cargo_test = flake_test(
        &p,
        &[
            "--runner",
            "cargo-test",
            "--message-format",
            "json",
            "--db",
            db_arg,
        ],
        true,
    );
    assert_eq!(nextest.code, 1, "{}", nextest.stderr);
    assert_eq!(cargo_test.code, 1, "{}", cargo_test.stderr);
    assert_eq!(classification(&nextest), expected(true, false));
    assert_eq!(classification(&cargo_test), expected(true, false));
    let runs = db_runs(&db);
    let runners: Vec<&str> = runs.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(runners, vec!["nextest", "cargo-test"]);
    // Same ids: the history holds each test once across both runners.
    let history = flake_tests::history(&db);
    assert_eq!(history.tests().unwrap().len(), 6);
    // Per-attempt failure text is kept, with the panic location.
    let last = history.runs().unwrap().last().unwrap().seq;
    let location = history
        .attempts(FLAKY_ONCE, last)
        .unwrap()
        .into_iter()
        .find_map(|a| a.failure.and_then(|f| f.location))
        .expect("a failed attempt with a location");
    assert!(location.starts_with("src/lib.rs:"), "{location}");
    assert!(cargo_test.stderr.contains("RETRY"), "{}", cargo_test.stderr);
}

#[test]
fn retries_zero_turns_flaky_into_failed() {
    let p = Project::new("rust-e2e");
    let out = flake_test(&p, &["--retries", "0", "--message-format", "json"], false);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let c = classification(&out);
    assert_eq!(c[FLAKY_ONCE], ("failed".to_owned(), 1, false));
    assert_eq!(c[FLAKY_TWICE], ("failed".to_owned(), 1, false));
}

#[test]
fn runner_args_after_double_dash_reach_nextest() {
    let p = Project::new("rust-e2e");
    let out = flake_test(
        &p,
        &[
            "--message-format",
            "json",
            "--",
            "-E",
            "test(=tests::passes)",
        ],
        false,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let c = classification(&out);
    // Only the selected test ran. nextest still reports the binary's
    // `#[ignore]` test as skipped (its own summary counts it too); tests the
    // filter excluded are not results at all.
    let ran: Vec<_> = c
        .iter()
        .filter(|(_, v)| v.0 != "skipped")
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(ran, vec!["flaky-fixture tests::passes"], "{c:?}");
    assert!(
        c.keys()
            .all(|k| k == "flaky-fixture tests::passes" || k == "flaky-fixture tests::ignored"),
        "{c:?}"
    );
    let bad = flake_test(&p, &["--", "-E", "test(=unclosed"], false);
    assert_eq!(
        bad.code, 2,
        "an invalid filterset is a usage error: {}",
        bad.stderr
    );
}

#[test]
fn two_concurrent_runs_on_one_database_both_land() {
    let a = Project::new("rust-e2e");
    let b = Project::new("rust-e2e");
    // Two CI jobs of one repository: their clones share the remote, so the
    // project (and the history in it) is one.
    for p in [&a, &b] {
        p.git(&[
            "remote",
            "add",
            "origin",
            "git@example.com:org/rust-e2e.git",
        ]);
    }
    let shared = tempfile::tempdir().unwrap();
    let db = shared.path().join("history.db");
    // Build both first so the two runs overlap in their test phase.
    for p in [&a, &b] {
        let o = flake_test(
            p,
            &[
                "--db",
                db.to_str().unwrap(),
                "--",
                "-E",
                "test(=tests::passes)",
            ],
            false,
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
    }
    let states: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let children: Vec<_> = [&a, &b]
        .iter()
        .zip(&states)
        .map(|(p, s)| {
            Flake::new(p.path(), &["test", "--db", db.to_str().unwrap()])
                .env("FLAKE_FIXTURE_STATE", s.path())
                .spawn()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let runs = db_runs(&db);
    assert_eq!(runs.len(), 4);
    assert!(runs[2..].iter().all(|r| r.4 == 6), "{runs:?}");
    assert_eq!(
        flake_tests::history(&db).project(),
        "example.com/org/rust-e2e"
    );
}

#[test]
fn detached_head_in_ci_takes_the_branch_from_ci_variables() {
    let p = Project::new("rust-e2e");
    let head = p.git(&["rev-parse", "HEAD"]);
    p.git(&["checkout", "-q", "--detach"]);
    let state = tempfile::tempdir().unwrap();
    let out = p
        .flake(&[
            "test",
            "--message-format",
            "json",
            "--",
            "-E",
            "test(=tests::passes)",
        ])
        .env("FLAKE_FIXTURE_STATE", state.path())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_HEAD_REF", "feature/login")
        .env("GITHUB_REF_NAME", "17/merge")
        .env("GITHUB_RUN_ID", "99")
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert_eq!(json["branch"], "feature/login");
    assert_eq!(json["commit"], head.as_str());

    // Explicit flags win over everything.
    let out = p
        .flake(&[
            "test",
            "--message-format",
            "json",
            "--commit",
            "abc123",
            "--branch",
            "release",
            "--run-id",
            "my-run",
            "--",
            "-E",
            "test(=tests::passes)",
        ])
        .env("FLAKE_FIXTURE_STATE", state.path())
        .run();
    let json = out.json();
    assert_eq!(
        (
            json["commit"].as_str(),
            json["branch"].as_str(),
            json["run_id"].as_str()
        ),
        (Some("abc123"), Some("release"), Some("my-run"))
    );
}

#[test]
fn outside_git_the_run_is_recorded_without_commit_and_says_so() {
    let p = Project::copy("rust-e2e");
    let out = flake_test(
        &p,
        &["--runner", "cargo-test", "--message-format", "json"],
        false,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    assert!(json["commit"].is_null());
    let warnings = json["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("not a git repository")),
        "{warnings:?}"
    );
    assert_eq!(classification(&out), expected(false, false));
}

#[test]
fn without_nextest_cargo_test_is_chosen_and_forcing_nextest_is_a_clear_error() {
    let p = Project::new("rust-e2e");
    // A cargo that has no `nextest` subcommand, as on a machine without nextest.
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("cargo");
    let real = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    std::fs::write(
        &fake,
        format!("#!/bin/sh\nif [ \"$1\" = nextest ]; then echo \"error: no such command: nextest\" >&2; exit 101; fi\nexec \"{real}\" \"$@\"\n"),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let out = p
        .flake(&["test", "--message-format", "json"])
        .env("CARGO", &fake)
        .env("FLAKE_FIXTURE_STATE", state.path())
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("cargo-nextest is not installed; running with `--runner cargo-test`"),
        "{}",
        out.stderr
    );
    assert_eq!(classification(&out), expected(false, false));

    let forced = p
        .flake(&["test", "--runner", "nextest"])
        .env("CARGO", &fake)
        .run();
    assert_eq!(forced.code, 2, "{}", forced.stderr);
    assert!(
        forced.stderr.contains("cargo-nextest is not installed"),
        "{}",
        forced.stderr
    );
    assert!(
        forced.stderr.contains("cargo install cargo-nextest"),
        "{}",
        forced.stderr
    );
}

#[test]
fn a_users_nextest_profile_retries_and_junit_path_are_respected() {
    let p = Project::new("rust-e2e");
    std::fs::create_dir_all(p.path().join(".config")).unwrap();
    std::fs::write(
        p.path().join(".config/nextest.toml"),
        "[profile.ci]\nretries = 0\n\n[profile.ci.junit]\npath = \"mine.xml\"\n\n\
         [[profile.default.overrides]]\nfilter = 'test(=flaky_twice)'\nretries = 5\n",
    )
    .unwrap();
    p.commit("nextest config");
    // The profile's own retries (0) win over cargo-flake's default of 2, and
    // its JUnit path wins over ours: the results are read from there.
    let ci = flake_test(
        &p,
        &["--message-format", "json", "--", "--profile", "ci"],
        false,
    );
    assert_eq!(ci.code, 1, "{}", ci.stderr);
    let c = classification(&ci);
    assert_eq!(c[FLAKY_ONCE], ("failed".to_owned(), 1, false));
    assert_eq!(c.len(), 6, "{c:?}");
    assert!(p.path().join("target/nextest/ci/mine.xml").exists());
    // A per-test override in the default profile applies (flaky_twice may use
    // 5 retries, it needs 2); others get cargo-flake's default of 2.
    let default = flake_test(&p, &["--message-format", "json"], false);
    assert_eq!(default.code, 0, "{}", default.stderr);
    assert_eq!(classification(&default), expected(false, false));
    // `--retries` overrides every configured value.
    let forced = flake_test(&p, &["--retries", "1", "--message-format", "json"], false);
    assert_eq!(forced.code, 1, "{}", forced.stderr);
    assert_eq!(
        classification(&forced)[FLAKY_TWICE],
        ("failed".to_owned(), 2, false)
    );
}

#[test]
fn an_interrupted_run_is_reported_not_recorded_and_not_green() {
    let p = Project::new("rust-e2e");
    std::fs::write(
        p.path().join("tests/slow.rs"),
        "#[test]\nfn slow() {\n    let dir = std::env::var(\"FLAKE_FIXTURE_STATE\").unwrap();\n    \
         std::fs::write(std::path::Path::new(&dir).join(\"slow-started\"), \"\").unwrap();\n    \
         std::thread::sleep(std::time::Duration::from_secs(3));\n}\n",
    )
    .unwrap();
    p.commit("slow test");
    // Build first, so the interrupt lands while the test runs.
    let warm = flake_test(&p, &["--", "-E", "test(=tests::passes)"], false);
    assert_eq!(warm.code, 0, "{}", warm.stderr);
    let state = tempfile::tempdir().unwrap();
    let child = p
        .flake(&[
            "test",
            "--message-format",
            "json",
            "--",
            "-E",
            "binary(slow)",
        ])
        .env("FLAKE_FIXTURE_STATE", state.path())
        .spawn();
    let started = state.path().join("slow-started");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow test never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Ctrl-C as the terminal would deliver it to cargo-flake.
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["gate"], "fail");
    assert!(
        json["problem"].as_str().unwrap().contains("interrupted"),
        "{json:#}"
    );
    assert!(json["database"].is_null(), "{json:#}");
    assert_eq!(
        db_runs(&p.path().join(".flake/history.db")).len(),
        1,
        "only the warm-up run"
    );
}
