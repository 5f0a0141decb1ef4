//! One database, many repositories: projects, `--project`, `--database-url`.

use std::path::Path;

use flake_tests::{Flake, flake, report};

fn stats_ids(dir: &Path, args: &[&str]) -> Vec<String> {
    let out = flake(
        dir,
        &[&["stats", "--format", "json", "--min-runs", "1"][..], args].concat(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut ids: Vec<String> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn two_projects_in_one_database_see_only_their_own_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("team.db");
    let url = format!("sqlite://{}", db.display());
    // Two repositories (folders without remotes: their names are the projects).
    let (app, lib) = (dir.path().join("app"), dir.path().join("lib"));
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(&lib).unwrap();
    let go = report("junit/gotestsum.xml");
    let nextest = report("junit/nextest.xml");
    for (cwd, file) in [(&app, &go), (&lib, &nextest)] {
        let out = flake(
            cwd,
            &[
                "ingest",
                file.to_str().unwrap(),
                "--database-url",
                &url,
                "--run-id",
                "ci-1",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let app_ids = stats_ids(&app, &["--database-url", &url]);
    let lib_ids = stats_ids(&lib, &["--database-url", &url]);
    assert!(!app_ids.is_empty() && !lib_ids.is_empty());
    assert!(
        app_ids
            .iter()
            .all(|id| id.starts_with("example.com/flakefixture/")),
        "{app_ids:?}"
    );
    assert!(
        lib_ids.iter().all(|id| id.starts_with("nextest-junit")),
        "{lib_ids:?}"
    );
    // `--project` names a project from anywhere; the same run id in two
    // projects is two runs, and `show` finds a test only in its own project.
    assert_eq!(
        stats_ids(
            dir.path(),
            &["--db", db.to_str().unwrap(), "--project", "app"]
        ),
        app_ids
    );
    let other = flake(
        dir.path(),
        &[
            "show",
            &lib_ids[0],
            "--db",
            db.to_str().unwrap(),
            "--project",
            "app",
        ],
    );
    assert_ne!(other.code, 0, "{}", other.stdout);
    let mine = flake(
        dir.path(),
        &[
            "show",
            &lib_ids[0],
            "--db",
            db.to_str().unwrap(),
            "--project",
            "lib",
        ],
    );
    assert_eq!(mine.code, 0, "{}", mine.stderr);
    let store = flake_core::store::Store::open_existing(&db).unwrap();
    assert_eq!(store.projects().unwrap(), ["app", "lib"]);
    // The environment names the database and the project too.
    let env = Flake::new(
        dir.path(),
        &["stats", "--format", "json", "--min-runs", "1"],
    )
    .env("CARGO_FLAKE_DATABASE_URL", &url)
    .env("CARGO_FLAKE_PROJECT", "lib")
    .run();
    assert_eq!(env.code, 0, "{}", env.stderr);
    assert_eq!(env.json().as_array().unwrap().len(), lib_ids.len());
}

#[test]
fn database_urls_are_checked_and_never_show_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = flake(
        dir.path(),
        &[
            "stats",
            "--database-url",
            "mysql://root:hunter2@db.internal/flake",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    assert!(
        out.stderr.contains("mysql://root:***@db.internal/flake"),
        "{}",
        out.stderr
    );
    let both = flake(
        dir.path(),
        &["stats", "--db", "a.db", "--database-url", "sqlite://b.db"],
    );
    assert_eq!(both.code, 2, "{}", both.stderr);
    assert!(both.stderr.contains("--database-url"), "{}", both.stderr);
}
