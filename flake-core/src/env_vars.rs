//! Environment variables cargo-flake reads, declared once so `--help` and
//! the README list the same set.

/// Path of the history database; `--db` wins over it.
pub const CARGO_FLAKE_DB: &str = "CARGO_FLAKE_DB";
/// The upload token of `cargo flake upload` and `test --upload`.
pub const CARGO_FLAKE_TOKEN: &str = "CARGO_FLAKE_TOKEN";
/// The team server of `cargo flake upload`.
pub const CARGO_FLAKE_SERVER: &str = "CARGO_FLAKE_SERVER";
/// URL of the history database (`postgres://…`, `sqlite://PATH` or a path); `--database-url` wins.
pub const CARGO_FLAKE_DATABASE_URL: &str = "CARGO_FLAKE_DATABASE_URL";
/// Project the runs belong to; `--project` wins, the normalised git remote is the default.
pub const CARGO_FLAKE_PROJECT: &str = "CARGO_FLAKE_PROJECT";
/// Path of the quarantine file; `--quarantine` wins over it.
pub const CARGO_FLAKE_QUARANTINE: &str = "CARGO_FLAKE_QUARANTINE";
/// The cargo executable, set by cargo when it runs a subcommand.
pub const CARGO: &str = "CARGO";
/// Disables colour when set to any non-empty value.
pub const NO_COLOR: &str = "NO_COLOR";
/// `always`, `never` or `auto`, as for cargo itself.
pub const CARGO_TERM_COLOR: &str = "CARGO_TERM_COLOR";
/// Set to `true` by GitHub Actions: cargo-flake then prints workflow-command annotations.
pub const GITHUB_ACTIONS: &str = "GITHUB_ACTIONS";
/// File GitHub Actions shows as the job summary; cargo-flake appends a Markdown summary to it.
pub const GITHUB_STEP_SUMMARY: &str = "GITHUB_STEP_SUMMARY";
/// Set to 1 to print fixed placeholders for times and durations (snapshot tests).
pub const CARGO_FLAKE_REDACT: &str = "__CARGO_FLAKE_REDACT";
/// Password of a PostgreSQL history whose URL has none (as libpq reads it).
pub const PGPASSWORD: &str = "PGPASSWORD";
/// PostgreSQL password file (`host:port:database:user:password` lines); default `~/.pgpass`.
pub const PGPASSFILE: &str = "PGPASSFILE";
/// A PostgreSQL server URL the tests may create scratch databases on; unset, those tests are skipped.
pub const CARGO_FLAKE_TEST_DATABASE_URL: &str = "CARGO_FLAKE_TEST_DATABASE_URL";

/// Every variable with a one-line description, for help texts.
pub const ALL: &[(&str, &str)] = &[
    (
        CARGO_FLAKE_TOKEN,
        "upload token of `cargo flake upload` and `test --upload` (never a flag)",
    ),
    (
        CARGO_FLAKE_SERVER,
        "team server URL of `cargo flake upload` when --server is not given",
    ),
    (
        CARGO_FLAKE_DB,
        "history database path (default <root>/.flake/history.db)",
    ),
    (
        CARGO_FLAKE_DATABASE_URL,
        "history database URL: postgres://…, sqlite://PATH or a path (a password is never printed)",
    ),
    (
        CARGO_FLAKE_PROJECT,
        "project of the runs (default: the git remote as host/owner/repo, else the folder name)",
    ),
    (
        CARGO_FLAKE_QUARANTINE,
        "quarantine file path (default <root>/flake-quarantine.toml)",
    ),
    (
        CARGO_FLAKE_TEST_DATABASE_URL,
        "cargo-flake's own tests: the PostgreSQL server they create scratch databases on",
    ),
    (NO_COLOR, "disable colours"),
    (CARGO_TERM_COLOR, "always | never | auto"),
    (
        "GITHUB_ACTIONS, GITLAB_CI, BUILDKITE, CIRCLECI, JENKINS_URL",
        "CI detection: branch, commit and job for detached HEADs",
    ),
    (
        GITHUB_STEP_SUMMARY,
        "under GitHub Actions: `cargo flake test` appends a Markdown summary here",
    ),
    (
        "PGPASSWORD, PGPASSFILE",
        "password of a PostgreSQL history whose URL has none, else the passfile (default ~/.pgpass)",
    ),
    (
        CARGO_FLAKE_TEST_DATABASE_URL,
        "cargo-flake's own test suite: a PostgreSQL server to create scratch databases on",
    ),
];
