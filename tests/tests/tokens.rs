//! `cargo flake token`: a token is printed once, stored only as a hash,
//! listed without its secret, and revoked by id.

use flake_tests::flake;

#[test]
fn a_token_is_shown_once_listed_without_its_secret_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.db");
    let db_s = db.to_str().unwrap();
    let base = ["--db", db_s, "--project", "github.com/org/app"];
    let create = |extra: &[&str]| {
        flake(
            dir.path(),
            &[&["token", "create"][..], &base, extra].concat(),
        )
    };
    let out = create(&["--role", "upload", "--name", "ci matrix"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let token = out.stdout.trim().to_owned();
    assert!(
        token.starts_with("cfk_1_") && token.len() == 6 + 64,
        "{token}"
    );
    assert!(
        out.stderr.contains("shown only this once"),
        "{}",
        out.stderr
    );
    let read = create(&["--role", "read", "--expires", "2999-01-01"]);
    assert_eq!(read.code, 0, "{}", read.stderr);

    let list = flake(
        dir.path(),
        &[&["token", "list", "--format", "json"][..], &base].concat(),
    );
    assert_eq!(list.code, 0, "{}", list.stderr);
    let secret = &token[6..];
    assert!(
        !list.stdout.contains(secret),
        "a secret leaked: {}",
        list.stdout
    );
    let rows = list.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["role"], "upload");
    assert_eq!(rows[0]["name"], "ci matrix");
    assert_eq!(rows[0]["project"], "github.com/org/app");
    assert!(rows[1]["expires_at"].as_i64().unwrap() > 0);
    // The file holds the hash, not the secret.
    assert!(!String::from_utf8_lossy(&std::fs::read(&db).unwrap()).contains(secret));

    let revoke = flake(
        dir.path(),
        &[&["token", "revoke"][..], &base, &["1"]].concat(),
    );
    assert_eq!(revoke.code, 0, "{}", revoke.stderr);
    let again = flake(
        dir.path(),
        &[&["token", "revoke"][..], &base, &["1"]].concat(),
    );
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("revoked already"), "{}", again.stderr);
    let human = flake(dir.path(), &[&["token", "list"][..], &base].concat());
    assert!(
        human.stdout.contains("revoked") && human.stdout.contains("active"),
        "{}",
        human.stdout
    );
    // Another project sees none of them.
    let other = flake(
        dir.path(),
        &[
            "token",
            "list",
            "--db",
            db_s,
            "--project",
            "other",
            "--format",
            "json",
        ],
    );
    assert_eq!(other.json(), serde_json::json!([]));

    let past = create(&["--role", "read", "--expires", "2020-01-01"]);
    assert_eq!(past.code, 2);
    assert!(past.stderr.contains("not in the future"), "{}", past.stderr);
    let bad = create(&["--role", "owner"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}
