//! `cargo flake why`, through the real binary, over the synthetic history
//! whose causes are known (flake_core::why::synthetic): the command, its
//! JSON, `--explain-with`, `show`'s brief, and the API route.

use flake_core::store::Store;
use flake_core::why::synthetic;
use flake_tests::{Flake, Server};

fn history(dir: &std::path::Path) -> std::path::PathBuf {
    let db = dir.join("history.db");
    let mut store = Store::open(&db).unwrap().with_project("synthetic").unwrap();
    synthetic::generate(&mut store, 400, 11).unwrap();
    db
}

#[test]
fn why_names_the_planted_cause_with_its_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path());
    let db = db.to_str().unwrap();
    let flake = |args: &[&str]| {
        Flake::new(
            dir.path(),
            &[args, &["--db", db, "--project", "synthetic"]].concat(),
        )
        .env("NO_COLOR", "1")
        .run()
    };
    let human = flake(&["why", "planted::host_specific"]);
    assert_eq!(human.code, 0, "{}", human.stderr);
    let first = human
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("1. "))
        .unwrap_or_else(|| panic!("{}", human.stdout));
    assert!(first.contains("environment strong"), "{}", human.stdout);
    assert!(
        human.stdout.contains("fails only on host=ci-3"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("hunt --isolate planted::host_specific"),
        "{}",
        human.stdout
    );

    let json = flake(&["why", "planted::timeout_near_limit", "--format", "json"]).json();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["verdict"], "flaky");
    assert_eq!(json["hypotheses"][0]["cause"], "timing");
    assert_eq!(json["hypotheses"][0]["strength"], "strong");
    assert!(json["hypotheses"][0]["p_value"].as_f64().unwrap() < 0.001);
    assert!(
        json["hypotheses"][0]["evidence"]["bunched_under_ms"]
            .as_f64()
            .unwrap()
            > 9_000.0
    );

    let random = flake(&["why", "random::flaky_0"]);
    assert!(
        random.stdout.contains("No cause stands out beyond chance")
            || !random.stdout.contains("strong"),
        "{}",
        random.stdout
    );

    // The evidence goes to the named command; its answer is labelled.
    let evidence = dir.path().join("evidence.json");
    let cmd = format!(
        "cat > '{}'; echo the explainer blames the host",
        evidence.display()
    );
    let explained = flake(&["why", "planted::host_specific", "--explain-with", &cmd]);
    assert_eq!(explained.code, 0, "{}", explained.stderr);
    assert!(
        explained.stdout.contains(&format!("Answer of `{cmd}`")),
        "{}",
        explained.stdout
    );
    assert!(
        explained.stdout.contains("  the explainer blames the host"),
        "{}",
        explained.stdout
    );
    let sent: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&evidence).unwrap()).unwrap();
    assert_eq!(sent["hypotheses"][0]["cause"], "environment");
    let failing = flake(&["why", "planted::host_specific", "--explain-with", "exit 3"]);
    assert_eq!(failing.code, 2, "{}", failing.stderr);
    assert!(
        failing.stderr.contains("--explain-with `exit 3` failed"),
        "{}",
        failing.stderr
    );

    let unknown = flake(&["why", "no::such::test"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("has no test `no::such::test`"),
        "{}",
        unknown.stderr
    );

    // `show` carries the brief.
    let show = flake(&["show", "planted::hour_of_day"]);
    assert!(show.stdout.contains("Why"), "{}", show.stdout);
    assert!(
        show.stdout.contains("time of day (strong)"),
        "{}",
        show.stdout
    );
    let show_json = flake(&["show", "planted::hour_of_day", "--format", "json"]).json();
    assert_eq!(show_json["why"]["hypotheses"][0]["cause"], "time");
}

#[test]
fn the_api_answers_why_for_a_read_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path());
    let token = {
        let mut store = Store::open(&db).unwrap();
        flake_core::tokens::create(
            &mut store,
            "synthetic",
            flake_core::tokens::Role::Read,
            None,
            None,
            flake_core::meta::now_ms(),
        )
        .unwrap()
        .token
    };
    let server = Server::start(dir.path(), &["--db", db.to_str().unwrap()], &[]);
    let url = server.url("/api/v1/projects/synthetic/tests/planted%3A%3Aorder_dependent/why");
    let answer: serde_json::Value = ureq::get(&url)
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(answer["hypotheses"][0]["cause"], "shared_state");
    assert_eq!(
        answer["hypotheses"][0]["evidence"]["other_test"],
        "planted::polluter"
    );
    let anonymous = ureq::get(&url).call();
    assert!(matches!(anonymous, Err(ureq::Error::Status(401, _))));
    let bad = ureq::get(&format!("{url}?runs=5"))
        .set("Authorization", &format!("Bearer {token}"))
        .call();
    assert!(matches!(bad, Err(ureq::Error::Status(400, _))));
}

/// The HTML report's heatmaps show the planted causes where they are: the
/// hour-of-day test's failures at 02 UTC, the host-specific test's on
/// ci-3, each cell with its value in text and its counts in its title.
#[test]
fn the_report_heatmaps_show_where_and_when_tests_fail() {
    let dir = tempfile::tempdir().unwrap();
    let db = history(dir.path());
    let html = dir.path().join("report.html");
    let out = Flake::new(
        dir.path(),
        &[
            "report",
            "--html",
            html.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--project",
            "synthetic",
        ],
    )
    .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<h2>Where and when tests fail</h2>"));
    for title in ["By day", "By host", "By OS and target", "By hour of day"] {
        assert!(page.contains(&format!("<h3>{title}</h3>")), "{title}");
    }
    // A cell: its title has the counts, its text the percentage.
    let cell = |id: &str, column: &str| -> (String, String) {
        let key = format!("title=\"{id} · {column}: ");
        let at = page
            .find(&key)
            .unwrap_or_else(|| panic!("no cell {id} {column}"));
        let rest = &page[at + key.len()..];
        let counts = rest[..rest.find('"').unwrap()].to_owned();
        let text = rest[rest.find('>').unwrap() + 1..rest.find("</td>").unwrap()].to_owned();
        (counts, text)
    };
    let (counts, text) = cell("planted::hour_of_day", "02");
    // The report's window is the policy's 50 runs: a few at 02 UTC.
    assert!(text.parse::<u32>().unwrap() > 0, "{counts} {text}");
    let (_, other_hour) = cell("planted::hour_of_day", "03");
    assert_eq!(other_hour, "0");
    let (_, host) = cell("planted::host_specific", "ci-3");
    assert!(host.parse::<u32>().unwrap() > 0, "{host}");
    let (counts, elsewhere) = cell("planted::host_specific", "ci-1");
    assert_eq!(elsewhere, "0", "{counts}");
    assert!(
        counts.ends_with("runs failed") && counts.starts_with("0 of "),
        "{counts}"
    );
    // The worst tests' details say why, over the report's window.
    assert!(page.contains("<h4>Why</h4>"));
    assert!(page.contains("<code>cargo flake why planted::host_specific</code>"));
    // The timeout test's bunched durations stand out even in 50 runs.
    assert!(
        page.contains("<strong>timing</strong>"),
        "no timing hypothesis"
    );
}

/// A clean streak ended by a change: `why` names the commit range and,
/// inside the repository, the subjects of the commits in it.
#[test]
fn a_change_names_the_commits_between_the_last_clean_and_the_first_failing_run() {
    use flake_core::meta::RunMeta;
    use flake_core::model::{Attempt, AttemptStatus, Failure, TestResult};
    let p = flake_tests::Project::new("rust-e2e");
    let clean = p.git(&["rev-parse", "HEAD"]);
    std::fs::write(p.path().join("notes.txt"), "1").unwrap();
    p.commit("Bump the connection pool to 64");
    std::fs::write(p.path().join("notes.txt"), "2").unwrap();
    let bad = p.commit("Retry the handshake once");
    let db = p.path().join("history.db");
    let mut store = Store::open(&db).unwrap().with_project("app").unwrap();
    let fail = || {
        Attempt::failed(
            AttemptStatus::Fail,
            Some(5),
            Failure::from_output(None, "thread 't' panicked at src/lib.rs:1:1:\nboom"),
        )
    };
    for i in 0..60 {
        let (commit, flaky) = if i < 40 {
            (&clean, false)
        } else {
            (&bad, i % 3 == 0)
        };
        let result = if flaky {
            TestResult::new("net::handshake", vec![fail(), Attempt::pass(Some(5))])
        } else {
            TestResult::new("net::handshake", vec![Attempt::pass(Some(5))])
        };
        let meta = RunMeta {
            run_id: format!("r{i}"),
            commit: Some(commit.clone()),
            branch: Some("main".into()),
            started_at: 1_767_571_200_000 + i * 3_600_000,
            finished_at: 1_767_571_200_000 + i * 3_600_000 + 1_000,
            source_format: "test".into(),
            ..RunMeta::default()
        };
        store.record_run(&meta, &[result], None).unwrap();
    }
    drop(store);
    let out = p
        .flake(&[
            "why",
            "net::handshake",
            "--db",
            db.to_str().unwrap(),
            "--project",
            "app",
        ])
        .env("NO_COLOR", "1")
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("a change strong"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("between {}..{}", &clean[..10], &bad[..10])),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Retry the handshake once"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Bump the connection pool to 64"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("initial"), "{}", out.stdout);
}
