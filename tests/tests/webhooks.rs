//! `cargo flake webhook`: endpoints per project, a secret shown once and
//! never listed, rotation with an overlap, removal by id.

use flake_tests::flake;

#[test]
fn webhook_endpoints_are_added_listed_rotated_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let app = ["--db", db_s, "--project", "github.com/org/app"];
    let cmd = |sub: &[&str], extra: &[&str]| {
        flake(dir.path(), &[&["webhook"][..], sub, &app, extra].concat())
    };
    let add = cmd(
        &["add"],
        &[
            "--url",
            "https://hooks.example/flaky",
            "--events",
            "flaky_test.new,flaky_test.resolved",
        ],
    );
    assert_eq!(add.code, 0, "{}", add.stderr);
    let secret = add.stdout.trim().to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    assert!(
        add.stderr.contains("shown only this once"),
        "{}",
        add.stderr
    );
    // The secret signs a delivery a receiver can verify.
    let header = flake_core::webhooks::sign(&secret, "msg_1", 1_700_000_000, b"{}").unwrap();
    assert_eq!(
        flake_core::webhooks::verify(
            &secret,
            "msg_1",
            1_700_000_000,
            b"{}",
            &header,
            1_700_000_000,
            300
        ),
        Ok(())
    );

    let list = cmd(&["list"], &["--format", "json"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(
        !list.stdout.contains("whsec_"),
        "a secret leaked: {}",
        list.stdout
    );
    let rows = list.json();
    assert_eq!(rows[0]["url"], "https://hooks.example/flaky");
    assert_eq!(
        rows[0]["events"],
        serde_json::json!(["flaky_test.new", "flaky_test.resolved"])
    );
    let id = rows[0]["id"].as_i64().unwrap().to_string();

    let rotated = cmd(&["rotate-secret"], &[&id, "--overlap", "2d"]);
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    let new = rotated.stdout.trim();
    assert!(new.starts_with("whsec_") && new != secret);
    let listed = cmd(&["list"], &["--format", "json"]).json();
    let until = listed[0]["previous_until"].as_i64().unwrap();
    let now = flake_core::meta::now_ms();
    assert!(
        (until - now - 2 * 86_400_000).abs() < 60_000,
        "{until} vs {now}"
    );

    // Another project cannot see or touch it.
    let other = flake(
        dir.path(),
        &["webhook", "remove", "--db", db_s, "--project", "other", &id],
    );
    assert_eq!(other.code, 1, "{}", other.stderr);
    let mistyped = cmd(
        &["add"],
        &[
            "--url",
            "https://x.example/h",
            "--events",
            "flaky_test.news",
        ],
    );
    assert_eq!(mistyped.code, 2);
    assert!(
        mistyped.stderr.contains("did you mean `flaky_test.new`"),
        "{}",
        mistyped.stderr
    );
    let not_a_url = cmd(
        &["add"],
        &["--url", "ftp://x.example/h", "--events", "run.completed"],
    );
    assert_eq!(not_a_url.code, 2, "{}", not_a_url.stderr);

    let removed = cmd(&["remove"], &[&id]);
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    assert_eq!(
        cmd(&["list"], &["--format", "json"]).json(),
        serde_json::json!([])
    );
}
