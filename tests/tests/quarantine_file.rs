//! `flake-quarantine.toml` is the user's file: every shape of it that the
//! schema accepts is edited in place with its comments, every other shape is
//! refused with exit 2 and left byte for byte as it was, and a rewrite keeps
//! the file's mode, its symlink and any edit made by someone else meanwhile.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flake_core::quarantine::{Entry, QuarantineError, QuarantineFile};
use flake_tests::{Flake, flake};

/// A workspace root with no history yet.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
    dir
}

/// A nextest JUnit report in which `app api::login` is flaky or passes.
fn ingest(dir: &Path, run: usize, login_flaky: bool) {
    let login = if login_flaky {
        r#"<testcase name="api::login" classname="app" time="0.010"><flakyFailure message="reset" type="test failure">reset</flakyFailure></testcase>"#
    } else {
        r#"<testcase name="api::login" classname="app" time="0.010"/>"#
    };
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="1" failures="0" errors="0" uuid="00000000-0000-4000-8000-{run:012}" time="0.1">
    <testsuite name="app" tests="1" skipped="0" errors="0" failures="0">
        {login}
    </testsuite>
</testsuites>
"#
    );
    let path = dir.join(format!("run-{run}.xml"));
    std::fs::write(&path, xml).unwrap();
    let out = flake(
        dir,
        &[
            "ingest",
            path.to_str().unwrap(),
            "--commit",
            &format!("c{run}"),
            "--run-id",
            &format!("r{run}"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// Ten runs in which `app api::login` flakes half the time: sync adds it.
fn flaky_history(dir: &Path) {
    for run in 0..10 {
        ingest(dir, run, run % 2 == 1);
    }
}

/// The UTC dates at the start and at the end of `f`: a test that reads the
/// clock around midnight accepts either.
fn utc_dates_around<T>(f: impl FnOnce() -> T) -> (T, [String; 2]) {
    let today = || {
        jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date()
            .to_string()
    };
    let before = today();
    let out = f();
    (out, [before, today()])
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The umask this process (and so the binary it starts) runs under.
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

const INLINE: &str = r#"# Reviewed by the CI team.
version = 1
test = [
    # flaky since the TLS upgrade
    { id = "net tls", reason = "upstream bug", source = "manual", pinned = true }, # ask @net
    { id = "zz old", reason = "hand-written" },
]
"#;

#[test]
fn inline_array_of_tables_is_edited_in_place_by_add_remove_and_sync() {
    let dir = project();
    let root = dir.path();
    let qfile = root.join("flake-quarantine.toml");
    std::fs::write(&qfile, INLINE).unwrap();

    let list = flake(root, &["quarantine", "list", "--format", "json"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert_eq!(list.json().as_array().unwrap().len(), 2);

    let (add, days) = utc_dates_around(|| {
        flake(
            root,
            &["quarantine", "add", "app db::pool", "--reason", "slow disk"],
        )
    });
    assert_eq!(add.code, 0, "{}", add.stderr);
    let text = std::fs::read_to_string(&qfile).unwrap();
    let added = |day: &str| {
        INLINE.replace(
            "test = [\n",
            &format!(
                "test = [\n    {{ id = \"app db::pool\", added = \"{day}\", reason = \"slow disk\", source = \"manual\" }},\n"
            ),
        )
    };
    assert!(days.iter().any(|d| text == added(d)), "{text}");

    // Removing what was added restores the file byte for byte.
    let remove = flake(root, &["quarantine", "remove", "app db::pool"]);
    assert_eq!(remove.code, 0, "{}", remove.stderr);
    assert_eq!(std::fs::read_to_string(&qfile).unwrap(), INLINE);

    // The comment on the line of `net tls` leaves with it; the line of the
    // entry before it keeps its own.
    let remove = flake(root, &["quarantine", "remove", "net tls"]);
    assert_eq!(remove.code, 0, "{}", remove.stderr);
    assert_eq!(
        std::fs::read_to_string(&qfile).unwrap(),
        "# Reviewed by the CI team.\nversion = 1\ntest = [\n    { id = \"zz old\", reason = \"hand-written\" },\n]\n"
    );

    std::fs::write(&qfile, INLINE).unwrap();
    flaky_history(root);
    let (sync, days) = utc_dates_around(|| flake(root, &["quarantine", "sync"]));
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    assert!(
        sync.stdout.starts_with("+ app api::login"),
        "{}",
        sync.stdout
    );
    let text = std::fs::read_to_string(&qfile).unwrap();
    let synced = |day: &str| {
        INLINE.replace(
            "test = [\n",
            &format!(
                "test = [\n    {{ id = \"app api::login\", added = \"{day}\", reason = \"50.0% flaky (5/10 runs, 95% CI 23.7–76.3%, window 50 runs)\", source = \"auto\" }},\n"
            ),
        )
    };
    assert!(days.iter().any(|d| text == synced(d)), "{text}");
    let check = flake(root, &["quarantine", "sync", "--check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
}

#[test]
fn shapes_the_schema_refuses_are_exit_2_and_left_byte_for_byte() {
    let dir = project();
    let root = dir.path();
    let qfile = root.join("flake-quarantine.toml");
    let cases: &[&[u8]] = &[
        b"[test]\nid = \"a\"\n",
        b"test.id = \"a\"\n",
        b"test = \"a\"\n",
        b"test = [{ id = \"a\" }, 3]\n",
        b"test = [[{ id = \"a\" }]]\n",
        b"test = [{ id = \"a\" }, { id = \"a\" }]\n",
        b"test = [{ reason = \"no id\" }]\n",
        b"version = \"1\"\n",
        b"version = 1.0\n",
        b"version = 0\n",
        b"version = -1\n",
        b"version = 2\n",
        b"[version]\n",
        b"version = 1\n[[test]]\nid = \"a\"\nadded = 2026-11-21T10:00:00Z\n",
        b"version = 1\n[[test]]\nid = \"a\"\nexpires = \"2026-11-21T10:00:00+14:00\"\n",
        b"version = 1\n[[test]]\nid = \"\xff\"\n",
    ];
    for &bytes in cases {
        std::fs::write(&qfile, bytes).unwrap();
        for args in [
            &["quarantine", "add", "x"][..],
            &["quarantine", "remove", "a"],
            &["quarantine", "sync"],
            &["quarantine", "list"],
        ] {
            let out = flake(root, args);
            let shown = String::from_utf8_lossy(bytes);
            assert_eq!(out.code, 2, "{args:?} on {shown:?}: {}", out.stderr);
            assert!(
                out.stderr.contains("flake-quarantine.toml"),
                "{args:?} on {shown:?}: {}",
                out.stderr
            );
            assert_eq!(
                std::fs::read(&qfile).unwrap(),
                bytes,
                "{args:?} on {shown:?}"
            );
        }
    }
}

#[test]
fn crlf_and_bom_files_keep_their_line_endings_and_bom() {
    let dir = project();
    let root = dir.path();
    let qfile = root.join("flake-quarantine.toml");
    let original = "\u{feff}# Windows checkout.\r\nversion = 1\r\n\r\n[[test]]\r\nid = \"b\"\r\nsource = \"manual\" # kept\r\n";
    std::fs::write(&qfile, original).unwrap();
    let (add, days) = utc_dates_around(|| flake(root, &["quarantine", "add", "a"]));
    assert_eq!(add.code, 0, "{}", add.stderr);
    let text = std::fs::read_to_string(&qfile).unwrap();
    let expected = |day: &str| {
        format!(
            "\u{feff}# Windows checkout.\r\nversion = 1\r\n\r\n[[test]]\r\nid = \"a\"\r\nadded = \"{day}\"\r\nsource = \"manual\"\r\n\r\n[[test]]\r\nid = \"b\"\r\nsource = \"manual\" # kept\r\n"
        )
    };
    assert!(days.iter().any(|d| text == expected(d)), "{text:?}");
    let remove = flake(root, &["quarantine", "remove", "a"]);
    assert_eq!(remove.code, 0, "{}", remove.stderr);
    assert_eq!(std::fs::read_to_string(&qfile).unwrap(), original);
}

#[test]
fn rewrites_keep_the_mode_of_the_file_and_new_files_follow_the_umask() {
    let dir = project();
    let root = dir.path();
    let qfile = root.join("flake-quarantine.toml");
    for wanted in [0o644, 0o664, 0o640] {
        std::fs::write(&qfile, "version = 1\n").unwrap();
        std::fs::set_permissions(&qfile, std::fs::Permissions::from_mode(wanted)).unwrap();
        let add = flake(root, &["quarantine", "add", "a"]);
        assert_eq!(add.code, 0, "{}", add.stderr);
        assert!(
            std::fs::read_to_string(&qfile)
                .unwrap()
                .contains("id = \"a\"")
        );
        assert_eq!(mode(&qfile), wanted, "{wanted:o}");
    }
    std::fs::remove_file(&qfile).unwrap();
    let add = flake(root, &["quarantine", "add", "a"]);
    assert_eq!(add.code, 0, "{}", add.stderr);
    assert_eq!(mode(&qfile), 0o666 & !umask());
}

#[test]
fn a_symlinked_file_is_written_through_to_its_target() {
    let dir = project();
    let root = dir.path();
    std::fs::create_dir(root.join("shared")).unwrap();
    let target = root.join("shared").join("quarantine.toml");
    let link = root.join("flake-quarantine.toml");
    std::fs::write(&target, "# Shared by three repositories.\nversion = 1\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o664)).unwrap();
    std::os::unix::fs::symlink("shared/quarantine.toml", &link).unwrap();

    let add = flake(root, &["quarantine", "add", "a"]);
    assert_eq!(add.code, 0, "{}", add.stderr);
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_symlink(), "the link was replaced");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        PathBuf::from("shared/quarantine.toml")
    );
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(
        text.starts_with("# Shared by three repositories.\nversion = 1\n\n[[test]]\nid = \"a\"\n"),
        "{text}"
    );
    assert_eq!(mode(&target), 0o664);
    // No temporary file is left next to the link or the target.
    for d in [root.to_owned(), root.join("shared")] {
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".flake-tmp"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    // A link whose target does not exist yet creates the target.
    let dangling = root.join("other.toml");
    std::os::unix::fs::symlink("shared/new.toml", &dangling).unwrap();
    let add = flake(
        root,
        &[
            "quarantine",
            "add",
            "b",
            "--quarantine",
            dangling.to_str().unwrap(),
        ],
    );
    assert_eq!(add.code, 0, "{}", add.stderr);
    assert!(
        std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(root.join("shared/new.toml"))
            .unwrap()
            .contains("id = \"b\"")
    );
}

#[test]
fn a_file_changed_on_disk_since_it_was_read_is_not_overwritten() {
    let dir = project();
    let path = dir.path().join("flake-quarantine.toml");
    std::fs::write(&path, "version = 1\n").unwrap();
    let entry = |id: &str| Entry {
        id: id.into(),
        ..Entry::default()
    };

    // Two syncs read the same file; the first writes, the second must not
    // overwrite that write with its own view.
    let mut first = QuarantineFile::load(&path).unwrap();
    let mut second = QuarantineFile::load(&path).unwrap();
    first.add(entry("a"));
    assert!(first.save().unwrap());
    let written = std::fs::read(&path).unwrap();
    second.add(entry("b"));
    let err = second.save().unwrap_err();
    assert!(matches!(err, QuarantineError::Changed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("not modified"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), written);

    // A file created by someone else after we found none is not replaced either.
    let missing = dir.path().join("new.toml");
    let mut late = QuarantineFile::load(&missing).unwrap();
    std::fs::write(&missing, "# someone else's\n").unwrap();
    late.add(entry("c"));
    assert!(matches!(
        late.save().unwrap_err(),
        QuarantineError::Changed { .. }
    ));
    assert_eq!(
        std::fs::read_to_string(&missing).unwrap(),
        "# someone else's\n"
    );
}

/// `add` and `sync` date entries with the same clock, the UTC calendar date,
/// whatever the local time zone. At any moment one of UTC+14 and UTC-12 is on
/// another calendar day than UTC.
#[test]
fn add_and_sync_date_entries_in_utc_whatever_the_time_zone() {
    for tz in ["XXX-14", "XXX+12"] {
        let dir = project();
        let root = dir.path();
        flaky_history(root);
        let qfile = root.join("flake-quarantine.toml");
        let (add, days) = utc_dates_around(|| {
            Flake::new(root, &["quarantine", "add", "by hand"])
                .env("TZ", tz)
                .run()
        });
        assert_eq!(add.code, 0, "{}", add.stderr);
        let (sync, sync_days) = utc_dates_around(|| {
            Flake::new(root, &["quarantine", "sync"])
                .env("TZ", tz)
                .run()
        });
        assert_eq!(sync.code, 0, "{}", sync.stderr);
        let file = QuarantineFile::load(&qfile).unwrap();
        let added = |id: &str| file.get(id).unwrap().added.clone().unwrap();
        assert!(days.contains(&added("by hand")), "TZ={tz}: {days:?}");
        assert!(
            sync_days.contains(&added("app api::login")),
            "TZ={tz}: {sync_days:?}"
        );
    }
}
