//! Command-line definition. Clap stops here: commands turn these into
//! flake-core option structs.

use std::path::PathBuf;

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// `cargo` with the `flake` subcommand, so `cargo flake --help` reads naturally.
#[derive(Debug, Parser)]
#[command(name = "cargo", bin_name = "cargo", styles = clap::builder::styling::Styles::styled())]
pub enum Cargo {
    /// Make flaky tests visible, measured and harmless.
    Flake(Flake),
}

const FLAKE_LONG_ABOUT: &str = "\
Make flaky tests visible, measured and harmless.

`cargo flake test` runs the workspace's tests through cargo-nextest with retries,
classifies every test as passed / flaky / failed / skipped, records the run in a
history database keyed by git commit and branch, and acts as a pre-merge gate
that ignores failures of tests listed in flake-quarantine.toml.

Exit codes: 0 gate passed, 1 gate failed (a non-quarantined test failed, or the
run produced no results: build failure, crashed runner), 2 usage or tool error.";

const ENV_HELP: &str = "\
Environment:
  CARGO_FLAKE_DB          history database (default <root>/.flake/history.db)
  CARGO_FLAKE_QUARANTINE  quarantine file (default <root>/flake-quarantine.toml)
  NO_COLOR                disable colours; CARGO_TERM_COLOR=always|never|auto
  GITHUB_ACTIONS, GITLAB_CI, BUILDKITE, CIRCLECI, JENKINS_URL
                          CI detection: branch and job for detached HEADs";

/// cargo-flake's own arguments.
#[derive(Debug, Args)]
#[command(version, about = "Make flaky tests visible, measured and harmless", long_about = FLAKE_LONG_ABOUT, after_help = ENV_HELP)]
pub struct Flake {
    /// When to use colours.
    #[arg(long, value_enum, global = true, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Colour choice.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the tests with retries, record the run and apply the gate.
    #[command(long_about = TEST_LONG_ABOUT)]
    Test(TestArgs),
    /// Record test reports from other tools (JUnit, pytest, Jest, RSpec, go test, libtest) in the history.
    #[command(long_about = INGEST_LONG_ABOUT)]
    Ingest(IngestArgs),
    /// Apply the gate (with quarantine) to test reports of any language, without recording them.
    Gate(GateArgs),
    /// Flake rates per test over a rolling window of runs, worst first.
    #[command(long_about = STATS_LONG_ABOUT)]
    Stats(StatsArgs),
    /// List, add, remove or sync quarantined tests.
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// One test's story: recent runs, flake rate and interval, failure causes, quarantine status.
    Show(ShowArgs),
    /// Why a test flakes: causes ranked by the evidence in its history.
    #[command(long_about = WHY_LONG_ABOUT)]
    Why(WhyArgs),
    /// Write the history as one self-contained HTML file.
    #[command(long_about = REPORT_LONG_ABOUT)]
    Report(ReportArgs),
    /// Run chosen tests N times, record every iteration, and measure their flake rates.
    #[command(long_about = HUNT_LONG_ABOUT)]
    Hunt(HuntArgs),
    /// Look after the history database: migrate, check, copy between databases.
    #[command(subcommand)]
    Db(DbCommand),
    /// API tokens of the team service (`cargo flake serve`): create, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Webhook endpoints of the team service: add, list, remove, rotate-secret.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Serve the history over HTTP: uploads from CI jobs and a read API.
    #[command(long_about = SERVE_LONG_ABOUT)]
    Serve(ServeArgs),
    /// Send test reports to a team server (`cargo flake serve`) as one run.
    #[command(long_about = UPLOAD_LONG_ABOUT)]
    Upload(UploadArgs),
    /// Every stored result with its run's metadata, as CSV or JSON Lines, for spreadsheets and notebooks.
    #[command(long_about = EXPORT_LONG_ABOUT)]
    Export(ExportArgs),
}

const EXPORT_LONG_ABOUT: &str = "\
Every stored result with its run's metadata, as CSV or JSON Lines, for
spreadsheets and notebooks.

One row per test per run, runs oldest first (in the order they were recorded),
then by test id. The columns, always in this order (docs/export.md describes
each; new columns are only ever added at the end):

  project, run_id, commit, branch, started_at, finished_at, host, os, target,
  ci_provider, ci_job, runner, test_id, outcome, attempts, duration_ms

Times are RFC 3339 in UTC with milliseconds; outcome is passed, flaky, failed
or skipped; duration_ms is the final attempt's. CSV follows RFC 4180: a header
line, CRLF line ends, fields quoted when they hold a comma, a quote or a line
break, and a missing value left empty. JSON Lines has one object per line with
the same keys in the same order, and null for a missing value.

The rows are streamed: memory stays flat however large the history, and
`| head` stops the export quietly. With --output the file is written whole or
not at all.";

/// `cargo flake export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Only runs started on or after this date (YYYY-MM-DD, UTC; an RFC 3339 time; or `30d` for 30 days ago)
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Write to this file instead of standard output (replaced only once the export is complete)
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `--format` of export.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ExportFormat {
    /// Comma-separated values (RFC 4180) with a header line.
    Csv,
    /// JSON Lines: one object per line.
    Jsonl,
}

const UPLOAD_LONG_ABOUT: &str = "\
Send test reports to a team server (`cargo flake serve`) as one run.

Each file is POSTed as is to {server}/api/v1/projects/{project}/runs; the server
parses it (any format `ingest` reads) and records it. The run's identity is
resolved here, the way `ingest` resolves it: --commit and --branch, else git,
else the CI provider's variables; --run-id, else the CI job's identity, else an
id derived from the reports' content, commit and branch. All files of one
invocation share that run id, so they form one run, and sending them again
records nothing twice.

The token comes from the environment variable CARGO_FLAKE_TOKEN only (an upload
token of the project, from `cargo flake token create --role upload`), never from
a flag, so it stays out of shell history and CI logs.

Connection errors, timeouts and 5xx answers are retried: 4 attempts, waiting
about 0.5 s, 1 s and 2 s (each ±25%). A 4xx answer (a bad or revoked token, a
token of another project, a malformed report, a report over the server's size
limit) is never retried: it will not get better by waiting.

Exit codes: 0 when every file was recorded (or already was); 0 with a warning
when the server stayed unreachable or answered 5xx, so a server outage never
fails a CI job, unless --upload-required (then 1); 1 when the server rejected a
file (4xx); 2 on usage errors (no token, no server, an unreadable file).";

/// `cargo flake upload`.
#[derive(Debug, Args)]
#[command(after_help = UPLOAD_ENV_HELP)]
pub struct UploadArgs {
    /// Report files (JUnit XML, pytest-json, Jest, RSpec, go test -json, libtest, CI payload).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The server's URL, e.g. https://flake.internal [env: CARGO_FLAKE_SERVER]
    #[arg(long, value_name = "URL", env = "CARGO_FLAKE_SERVER", hide_env = true, value_parser = NonEmptyStringValueParser::new())]
    pub server: Option<String>,
    /// Project the runs belong to [env: CARGO_FLAKE_PROJECT] [default: the git
    /// remote as host/owner/repo, else the root folder's name]
    #[arg(long, value_name = "NAME", value_parser = NonEmptyStringValueParser::new())]
    pub project: Option<String>,
    #[command(flatten)]
    pub revision: RevisionArgs,
    /// Report format [default: detected by the server]
    #[arg(long, value_enum, default_value_t = FormatChoice::Auto)]
    pub format: FormatChoice,
    #[command(flatten)]
    pub upload: UploadOptions,
}

const UPLOAD_ENV_HELP: &str = "\
Environment:
  CARGO_FLAKE_TOKEN    the upload token (required; never a flag)
  CARGO_FLAKE_SERVER   the server's URL when --server is not given
  CARGO_FLAKE_PROJECT  the project when --project is not given";

/// How an upload may fail: shared by `upload` and `test --upload`.
#[derive(Debug, Args)]
pub struct UploadOptions {
    /// Exit 1 when the server stays unreachable or answers 5xx after the
    /// retries (without this flag: a warning, and the exit code is not
    /// touched). With `test --upload`, a rejected upload (4xx) then fails too;
    /// `upload` exits 1 on a 4xx in any case.
    #[arg(long)]
    pub upload_required: bool,
    /// Seconds one request may take, connecting included, before it counts
    /// as failed (and is retried).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upload_timeout: u64,
}

const SERVE_LONG_ABOUT: &str = "\
Serve the history over HTTP: uploads from CI jobs and a read API.

Stateless: any number of replicas can share one PostgreSQL history
(--database-url), and any replica answers any request; an SQLite history
serves a single node. Every API request needs `Authorization: Bearer <token>`
(create tokens with `cargo flake token create`). Ctrl-C or SIGTERM stops
accepting, lets the requests in flight finish, and exits 0. One log line per
request goes to stderr. Endpoints: docs/service.md.";

/// `cargo flake serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Address and port to listen on (port 0: any free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Largest upload accepted (bytes, or with a unit: 256MiB).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size_arg)]
    pub max_body: u64,
    /// Prune every project on this schedule (e.g. 6h, 1d, 30m); off by
    /// default. One replica prunes at a time; what went shows in /metrics.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub prune_every: Option<std::time::Duration>,
    /// Scheduled prunes keep runs that started within this many days.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=36_525))]
    pub keep_days: Option<u32>,
    /// Scheduled prunes keep each project's newest N runs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_runs: Option<u32>,
    /// The address people reach this service at (https://flake.example.com):
    /// webhook payloads link to the dashboard's test pages under it.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// `flaky_test.resolved` needs this many days without a flaky result...
    #[arg(long, value_name = "DAYS", default_value_t = 14,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub resolved_after_days: u32,
    /// ...and at least this many clean passes since the last flake.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub resolved_after_runs: u32,
    /// Deliver webhooks to loopback, private, link-local and cloud-metadata
    /// addresses too (refused by default, so a webhook cannot reach into the
    /// network the server runs in).
    #[arg(long)]
    pub allow_private_webhook_targets: bool,
    /// Webhook deliveries this replica sends at once.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub webhook_workers: u32,
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; expected e.g. 30m, 6h or 1d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(format!(
                "`{s}` is not a duration; expected e.g. 30m, 6h or 1d"
            ));
        }
    };
    if secs == 0 {
        return Err("the prune interval must be longer than 0".into());
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// `cargo flake token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for one project and role, and print it once (only
    /// its hash is stored: it cannot be shown again).
    Create {
        #[command(flatten)]
        db: DbArg,
        /// What the token may do: upload runs, read, or both (admin).
        #[arg(long, value_enum)]
        role: TokenRole,
        /// The first day (UTC) on which the token no longer works, YYYY-MM-DD.
        #[arg(long, value_name = "DATE")]
        expires: Option<String>,
        /// A note for people, e.g. which CI uses it.
        #[arg(long, value_name = "TEXT", value_parser = NonEmptyStringValueParser::new())]
        name: Option<String>,
    },
    /// List the project's tokens (never their secrets).
    List {
        #[command(flatten)]
        db: DbArg,
        /// Every project's tokens.
        #[arg(long)]
        all_projects: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
    /// Revoke a token by its id (the number in `cfk_<id>_...`, or from `list`).
    Revoke {
        #[command(flatten)]
        db: DbArg,
        /// The token's id.
        id: i64,
    },
}

/// `cargo flake webhook ...`.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add an endpoint for the project's events and print its signing secret
    /// once (`whsec_...`; receivers verify deliveries with it, by the
    /// Standard Webhooks rules).
    Add {
        #[command(flatten)]
        db: DbArg,
        /// Where deliveries go (https:// in production).
        #[arg(long, value_name = "URL")]
        url: String,
        /// Event types, comma-separated: flaky_test.new, flaky_test.resolved,
        /// quarantine.proposal_changed, run.completed.
        #[arg(long, value_name = "LIST", value_delimiter = ',', required = true)]
        events: Vec<String>,
    },
    /// List the project's endpoints (never their secrets).
    List {
        #[command(flatten)]
        db: DbArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
    /// Remove an endpoint by id.
    Remove {
        #[command(flatten)]
        db: DbArg,
        /// The endpoint's id (from `list`).
        id: i64,
    },
    /// Give an endpoint a new secret and print it once; the old one keeps
    /// signing (both signatures are sent) until the overlap ends.
    RotateSecret {
        #[command(flatten)]
        db: DbArg,
        /// The endpoint's id (from `list`).
        id: i64,
        /// How long the old secret keeps signing (e.g. 24h, 7d).
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration_arg)]
        overlap: std::time::Duration,
    },
    /// Send a `ping` event to an endpoint and wait for a running `cargo
    /// flake serve` on this database to deliver it; exit 1 if it was not
    /// delivered in time (the attempts say why).
    Test {
        #[command(flatten)]
        db: DbArg,
        /// The endpoint's id (from `list`).
        id: i64,
        /// How long to wait for the delivery.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration_arg)]
        wait: std::time::Duration,
    },
    /// An endpoint's recent deliveries with every attempt's status and latency.
    Deliveries {
        #[command(flatten)]
        db: DbArg,
        /// The endpoint's id (from `list`).
        id: i64,
        /// How many, newest first.
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
    /// Send a finished delivery again, under its original `webhook-id`.
    Replay {
        #[command(flatten)]
        db: DbArg,
        /// The endpoint's id.
        id: i64,
        /// The delivery's id (from `deliveries`).
        delivery: i64,
    },
    /// Check a delivery's signature as a receiver does (Standard Webhooks):
    /// the body on stdin, the headers as flags. Exit 0 when it verifies,
    /// 1 when it does not (the reason on stderr).
    Verify {
        /// The endpoint's secret (`whsec_...`); or set CARGO_FLAKE_WEBHOOK_SECRET.
        #[arg(
            long,
            value_name = "SECRET",
            env = "CARGO_FLAKE_WEBHOOK_SECRET",
            hide_env_values = true
        )]
        secret: String,
        /// The `webhook-id` header.
        #[arg(long, value_name = "ID")]
        id: String,
        /// The `webhook-timestamp` header (Unix seconds).
        #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
        timestamp: i64,
        /// The `webhook-signature` header (`v1,...`, several space-separated).
        #[arg(long, value_name = "HEADER")]
        signature: String,
        /// How far the timestamp may be from now: older deliveries are
        /// refused as replays.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration_arg)]
        tolerance: std::time::Duration,
    },
}

/// `--role` of `token create`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenRole {
    /// Upload runs (CI jobs).
    Upload,
    /// Read statistics, tests and the dashboard.
    Read,
    /// Both, and the project's webhooks.
    Admin,
}

/// `cargo flake db ...`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create or upgrade the schema, explicitly (for servers where the
    /// application's role may not run DDL; other commands migrate on their own).
    Migrate {
        #[command(flatten)]
        db: DbArg,
    },
    /// Schema version, counts and integrity; exit 1 when a problem is found.
    Check {
        #[command(flatten)]
        db: DbArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
    /// Copy a history into another database (SQLite into PostgreSQL and
    /// back). Idempotent: runs already copied are skipped, so a cut-short
    /// copy can simply be run again.
    Copy(CopyArgs),
    /// Remove old runs of this project, keeping whatever the current
    /// decisions read.
    #[command(long_about = PRUNE_LONG_ABOUT)]
    Prune(PruneArgs),
}

const PRUNE_LONG_ABOUT: &str = "\
Remove old runs of this project, keeping whatever the current decisions read.

A run goes when any limit lets it go: older than --keep-days, beyond the newest
--keep-runs, or among the oldest runs while the database is over --max-size.
Limits not given come from [workspace.metadata.flake.retention] (or the
[retention] table of flake.toml); with no limit at all nothing is pruned.

Whatever the limits say, every result that `stats`, `quarantine sync` and
`show` read stays: each test's window (however far back it reaches for a test
that rarely runs), the same-code passes that made a failure a flip, each
test's newest result, the storm runs the suite line counts, and the runs
since each quarantined test was last seen (stale detection counts them). So their
answers are the same before and after. Failure texts and attempts go with
their results.

SQLite deletes in short transactions (a run recorded meanwhile still lands)
and then rewrites the file so it shrinks. Killed midway, the history stays
consistent; run it again to finish.";

/// `cargo flake db prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub quarantine: QuarantineArg,
    /// Keep runs that started within this many days.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=36_525))]
    pub keep_days: Option<u32>,
    /// Keep the newest N runs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_runs: Option<u32>,
    /// Remove the oldest runs until the database is at most this size
    /// (bytes, or with a unit: 500MB, 2GiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub max_size: Option<u64>,
    /// Say what would go (runs, results, bytes) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Human)]
    pub format: ListFormat,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    flake_core::retention::parse_size(s).ok_or_else(|| {
        format!("`{s}` is not a size; expected bytes or a number with a unit such as 500MB or 2GiB")
    })
}

/// `cargo flake db copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The history to read: a path, sqlite://PATH or postgres://… (a password
    /// from PGPASSWORD or a passfile).
    #[arg(long, value_name = "URL", value_parser = NonEmptyStringValueParser::new())]
    pub from: String,
    /// The history to write (created if it is an SQLite file).
    #[arg(long, value_name = "URL", value_parser = NonEmptyStringValueParser::new())]
    pub to: String,
    /// Copy only this project (default: every project of the source). Runs
    /// recorded before projects existed are copied under `--as`, else the
    /// current repository's project.
    #[arg(long, value_name = "NAME", value_parser = NonEmptyStringValueParser::new())]
    pub project: Option<String>,
    /// Record the copied runs under this project name in the destination.
    #[arg(long = "as", value_name = "NAME", value_parser = NonEmptyStringValueParser::new())]
    pub as_project: Option<String>,
}

const REPORT_LONG_ABOUT: &str = "\
Write the history as one self-contained HTML file.

The file makes no network requests (inline CSS, SVG and a little JavaScript for
sorting and filtering) and reads fine without JavaScript, so it can be attached
to a ticket or a CI job. It shows the suite summary, every test with its flake
rate, Wilson interval and recent runs, and for tests with flaky or failed runs
the durations of every attempt, the failure causes, and breakdowns by branch,
platform and host; plus the quarantine file.";

const HUNT_LONG_ABOUT: &str = "\
Run chosen tests N times, record every iteration, and measure their flake rates.

Select tests with runner arguments after `--`, e.g.
`cargo flake hunt --runs 50 -- -E 'test(/net/)'`. With a nextest that has
stress mode, one nextest invocation runs all iterations (one build); otherwise
the runner is invoked once per iteration. Every iteration is recorded as a run
of the current commit, the flake rate of each test over the hunt is printed
with its 95% interval, and the HTML report is written. Use it to confirm a
suspect, or to prove a fix before releasing a test from quarantine.

--isolate ID asks whether one test fails because of the other tests of its
binary (state they share: a file, a port, the environment, a database), and
which. It runs the test alone N times (--runs, default 20), with all the other
tests of its binary N times, and so again with --test-threads 1. When it passes
alone and fails with the others, the others are bisected: the test runs with
one half, then the other, and the half that makes it fail is halved again, down
to one test where the failure allows. One failure shows that a set triggers it;
a set counts as clean only after N runs without a failure (a trigger that is
itself a matter of timing needs repeats). The suspects are confirmed with N runs
with them alone and N runs with all the others but them. Retries are off and
nothing is recorded: these line-ups are unusual on purpose and would skew the
history. With nextest each test is its own process; with --runner cargo-test
the tests of a binary share one process, so statics and environment variables
set by a test count too. Arguments after `--` may choose packages, features or
a profile, not tests.

Exit code: 0 when every iteration ran (whatever the tests did), 1 when an
iteration could not produce results, 2 on usage or tool errors.";

/// `cargo flake show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Test id, exactly as cargo flake prints it.
    pub id: String,
    /// Runs listed in the timeline.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub runs: usize,
    #[command(flatten)]
    pub window: WindowArgs,
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub quarantine: QuarantineArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Human)]
    pub format: ListFormat,
}

const WHY_LONG_ABOUT: &str = "\
Why a test flakes: causes ranked by the evidence in its history.

Compares the runs in which the test failed an attempt with those in which it
passed at once: durations (a timeout?), host, OS, target, CI provider and
runner, run length and size (load), other tests failing in the same runs
(shared state), hour and weekday, a clean streak ended by a change (with the
commits' subjects when run inside the repository), and the kind of failure
message. Each hypothesis has its numbers and a p-value corrected for every
comparison made; strong means p < 0.001 after the correction.

Order effects inside one test binary do not show in a history: `cargo flake
hunt --isolate ID` tests them.

--explain-with CMD pipes the evidence as JSON to a command you name (a local
model, a script) and prints its answer, labelled as its answer. cargo flake
never calls a network service itself.";

/// `cargo flake why`.
#[derive(Debug, Args)]
pub struct WhyArgs {
    /// Test id, exactly as cargo flake prints it.
    pub id: String,
    /// The test's newest runs weighed.
    #[arg(long, default_value_t = 1_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(10..=100_000))]
    pub runs: u64,
    /// Also pipe the evidence (the JSON output) to this shell command and
    /// print what it answers, labelled as its answer.
    #[arg(long, value_name = "CMD")]
    pub explain_with: Option<String>,
    #[command(flatten)]
    pub db: DbArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Human)]
    pub format: ListFormat,
}

/// `cargo flake report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Where to write the HTML file.
    #[arg(long, required = true, value_name = "PATH")]
    pub html: PathBuf,
    #[command(flatten)]
    pub window: WindowArgs,
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub quarantine: QuarantineArg,
}

/// `cargo flake hunt`.
#[derive(Debug, Args)]
pub struct HuntArgs {
    /// Iterations; with --isolate, runs per line-up, and the runs a set of
    /// tests must pass to count as clean [default with --isolate: 20]
    #[arg(long, required_unless_present = "isolate", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub runs: Option<u32>,
    /// Find out whether this test fails because of the other tests of its
    /// binary, and which: alone, with the others, with one test thread, then
    /// a bisection of the others. Nothing is recorded.
    #[arg(long, value_name = "ID", conflicts_with_all = ["retries", "html", "db", "database_url", "project", "commit", "branch", "run_id", "path"])]
    pub isolate: Option<String>,
    /// Output format of --isolate [default: human]
    #[arg(long, value_enum, requires = "isolate")]
    pub format: Option<ListFormat>,
    /// Retries per failing test within an iteration (overrides nextest configuration).
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Test runner; defaults to nextest, or cargo-test when nextest is not installed.
    #[arg(long, value_enum, value_name = "RUNNER")]
    pub runner: Option<RunnerChoice>,
    /// Where to write the HTML report [default: <root>/.flake/hunt-report.html]
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub revision: RevisionArgs,
    #[command(flatten)]
    pub quarantine: QuarantineArg,
    /// Arguments for the runner (after `--`): the test selection.
    #[arg(last = true, value_name = "RUNNER ARGS")]
    pub runner_args: Vec<String>,
}

/// Window settings for rates (the same as `cargo flake stats`).
#[derive(Debug, Args)]
pub struct WindowArgs {
    /// Runs per test to compute over [default: 50, or the configured window]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub window: Option<u32>,
    /// Fewer runs than this is insufficient history [default: 10, or configured]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub min_runs: Option<u32>,
}

const STATS_LONG_ABOUT: &str = "\
Flake rates per test over a rolling window of runs, worst first.

For each test: its last N runs (skipped results are not runs), how many passed,
were flaky and failed, the flake rate with its 95% Wilson interval, the last
flaky run, and whether it is quarantined. Flaky means it recovered on a retry,
or failed on a commit on which it also passed in another run (same OS and
target). Hard failures are not flakiness. Runs of at least 20 tests
(`storm-min-tests`) in which at least 80% failed (infrastructure storms) are
left out, and counted. Tests that never ran (skipped in every run) are listed
with 0 runs. Below --min-runs a rate is
reported as insufficient history. Defaults come from [workspace.metadata.flake]
in Cargo.toml (or flake.toml); flags override them.

The last line is suite-wide: the share of recent runs with any flaky test,
against a target of 0.5%.";

/// `cargo flake stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub quarantine: QuarantineArg,
    /// Runs per test to compute over [default: 50, or the configured window]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub window: Option<u32>,
    /// Fewer runs than this is insufficient history [default: 10, or configured]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub min_runs: Option<u32>,
    /// Only runs of this branch (repeatable) [default: the configured branches, else all]
    #[arg(long, value_name = "NAME")]
    pub branch: Vec<String>,
    /// Only runs started on or after this date (YYYY-MM-DD, RFC 3339 time, or `14d` for 14 days ago)
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Only runs on this OS (`linux`, `macos`, `windows`) or target triple
    #[arg(long, value_name = "OS_OR_TARGET")]
    pub variant: Option<String>,
    /// Order of tests.
    #[arg(long, value_enum, default_value_t = SortChoice::Rate)]
    pub sort: SortChoice,
    /// Output format; json lists every test, human and markdown the flaky, failing and quarantined ones.
    #[arg(long, value_enum, default_value_t = StatsFormat::Human)]
    pub format: StatsFormat,
    /// List every test in human and markdown output, not only those with flaky or failed runs.
    #[arg(long)]
    pub all: bool,
}

/// `--sort` of stats.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum SortChoice {
    /// Highest flake rate first.
    Rate,
    /// Most flaky runs first.
    Count,
    /// By test id.
    Name,
}

/// `--format` of stats.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum StatsFormat {
    /// A table for a terminal.
    Human,
    /// A JSON array, one object per test.
    Json,
    /// A Markdown table for CI summaries.
    Markdown,
}

const TEST_LONG_ABOUT: &str = "\
Run the tests with retries, record the run and apply the gate.

By default the tests run through cargo-nextest with 2 retries; nextest's own
progress output stays on the terminal, and a summary follows: counts by outcome,
every flaky test with its attempts, every quarantined failure (ignored by the
gate), where the history was written, and the gate verdict.

Retries: without --retries, a `retries` setting in your .config/nextest.toml
(profile or per-test override) wins, and 2 applies otherwise. --retries N is
passed to nextest and overrides every configured value.

--runner cargo-test (chosen automatically when nextest is not installed) runs
`cargo test`'s binaries with libtest's JSON output, which is unstable: the test
processes (never the build) get RUSTC_BOOTSTRAP=1 to enable it on stable. Only
failed tests are re-run, with --exact. Ids and classification match nextest's.

Everything after `--` goes to the runner: `cargo flake test -- -p my-crate`,
`-- -E 'test(/net/)'`, `-- --profile ci`, `-- --partition count:1/2`.";

/// `cargo flake test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Retries per failing test (overrides nextest configuration).
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Test runner; defaults to nextest, or cargo-test when nextest is not installed.
    #[arg(long, value_enum, value_name = "RUNNER")]
    pub runner: Option<RunnerChoice>,
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub revision: RevisionArgs,
    #[command(flatten)]
    pub quarantine: QuarantineArg,
    /// Output format: human summary on stderr, or the final JSON object alone on stdout.
    #[arg(long, value_enum, default_value_t = MessageFormat::Human, value_name = "FORMAT")]
    pub message_format: MessageFormat,
    /// Fail the gate on flaky tests too (quarantined ones excepted).
    #[arg(long)]
    pub fail_on_flaky: bool,
    /// Also write the classified run as JUnit XML (flakyFailure / rerunFailure, nextest's convention).
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// After recording the run locally, send it (as JUnit XML, with its run
    /// id, commit and branch) to this team server; the token comes from
    /// CARGO_FLAKE_TOKEN. A failed upload is reported in the summary and leaves
    /// the gate's verdict alone, unless --upload-required.
    #[arg(long, value_name = "URL", value_parser = NonEmptyStringValueParser::new())]
    pub upload: Option<String>,
    #[command(flatten)]
    pub upload_options: UploadOptions,
    /// Arguments for the runner (after `--`).
    #[arg(last = true, value_name = "RUNNER ARGS")]
    pub runner_args: Vec<String>,
}

/// `--runner`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum RunnerChoice {
    /// cargo-nextest (recommended).
    Nextest,
    /// `cargo test` with libtest JSON.
    CargoTest,
}

/// `--message-format`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum MessageFormat {
    /// A summary for people.
    Human,
    /// One JSON object on stdout.
    Json,
}

/// `--format` for listings.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ListFormat {
    /// A table for people.
    Human,
    /// JSON for scripts.
    Json,
}

/// `--db`, `--database-url` and `--project`: which history, which project in it.
#[derive(Debug, Args)]
pub struct DbArg {
    /// History database file (SQLite) [env: CARGO_FLAKE_DB] [default: <root>/.flake/history.db]
    #[arg(long, value_name = "PATH", conflicts_with = "database_url")]
    pub db: Option<PathBuf>,
    /// History database URL: postgres://USER@HOST/DB (shared), sqlite://PATH or a
    /// path. Give passwords through PGPASSWORD or a passfile, never in committed
    /// config; a URL is always printed with its password masked
    /// [env: CARGO_FLAKE_DATABASE_URL]
    #[arg(long, value_name = "URL", value_parser = NonEmptyStringValueParser::new())]
    pub database_url: Option<String>,
    /// Project the runs belong to, so one database can hold many repositories
    /// [env: CARGO_FLAKE_PROJECT] [default: the git remote as host/owner/repo,
    /// else the root folder's name]
    #[arg(long, value_name = "NAME", value_parser = NonEmptyStringValueParser::new())]
    pub project: Option<String>,
}

/// `--quarantine`.
#[derive(Debug, Args)]
pub struct QuarantineArg {
    /// Quarantine file [env: CARGO_FLAKE_QUARANTINE] [default: <root>/flake-quarantine.toml]
    #[arg(long = "quarantine", value_name = "PATH")]
    pub path: Option<PathBuf>,
}

/// Commit, branch and run id overrides.
#[derive(Debug, Args)]
pub struct RevisionArgs {
    /// Commit SHA to record (default: git HEAD, else CI variables).
    #[arg(long, value_name = "SHA", value_parser = NonEmptyStringValueParser::new())]
    pub commit: Option<String>,
    /// Branch to record (default: git branch, else CI variables for detached HEADs).
    #[arg(long, value_name = "NAME", value_parser = NonEmptyStringValueParser::new())]
    pub branch: Option<String>,
    /// Run id; results with the same id form one logical run (shards).
    #[arg(long, value_name = "ID", value_parser = NonEmptyStringValueParser::new())]
    pub run_id: Option<String>,
}

const INGEST_LONG_ABOUT: &str = "\
Record test reports from other tools in the history.

The format is detected from each file's content (not its name); --format
overrides. All files of one invocation form one logical run: a test failing in
one file and passing in a later rerun file is flaky. Re-ingesting the same
report never double-counts. A file that cannot be read is an error naming the
file and position, and nothing from the invocation is stored.";

/// `cargo flake ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Report files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = FormatChoice::Auto)]
    pub format: FormatChoice,
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub revision: RevisionArgs,
    /// Output format of the summary.
    #[arg(long = "message-format", value_enum, default_value_t = MessageFormat::Human, value_name = "FORMAT")]
    pub message_format: MessageFormat,
}

/// `cargo flake gate`.
#[derive(Debug, Args)]
pub struct GateArgs {
    /// Report files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = FormatChoice::Auto)]
    pub format: FormatChoice,
    #[command(flatten)]
    pub quarantine: QuarantineArg,
    /// Fail the gate on flaky tests too (quarantined ones excepted).
    #[arg(long)]
    pub fail_on_flaky: bool,
    /// Output format.
    #[arg(long = "message-format", value_enum, default_value_t = MessageFormat::Human, value_name = "FORMAT")]
    pub message_format: MessageFormat,
}

/// `--format` of reports.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum FormatChoice {
    /// Detect from content.
    Auto,
    /// JUnit XML (any dialect).
    Junit,
    /// pytest-json-report.
    PytestJson,
    /// Jest --json.
    Jest,
    /// RSpec --format json.
    Rspec,
    /// go test -json.
    GoTest,
    /// libtest JSON lines.
    Libtest,
    /// Structured CI payload.
    CiPayload,
}

/// `cargo flake quarantine ...`.
#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// List quarantined tests.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
        #[command(flatten)]
        quarantine: QuarantineArg,
    },
    /// Quarantine a test: its failures stop failing the gate.
    Add {
        /// Test id, exactly as cargo flake prints it.
        id: String,
        /// Why (an issue reference helps the next reader).
        #[arg(long)]
        reason: Option<String>,
        /// Never release it automatically.
        #[arg(long)]
        pin: bool,
        /// Owner (person or team).
        #[arg(long)]
        owner: Option<String>,
        /// Issue link.
        #[arg(long)]
        issue: Option<String>,
        /// Release it after this date (YYYY-MM-DD, a UTC calendar date like every date in the file).
        #[arg(long, value_name = "DATE")]
        expires: Option<String>,
        #[command(flatten)]
        quarantine: QuarantineArg,
        #[command(flatten)]
        db: DbArg,
    },
    /// Release a test from quarantine.
    Remove {
        /// Test id.
        id: String,
        #[command(flatten)]
        quarantine: QuarantineArg,
    },
    /// Apply the flake-rate policy: quarantine tests over the threshold, release recovered ones.
    #[command(long_about = SYNC_LONG_ABOUT)]
    Sync(SyncArgs),
}

const SYNC_LONG_ABOUT: &str = "\
Apply the flake-rate policy to the quarantine file.

Adds tests whose flake rate over the window is at least 5% (with at least 10
runs and a flake among the last 20 runs), releases entries that recovered (20
clean runs in a row since added), expired (`expires` before today, in UTC) or went
stale (test not recorded for 30 days while at least 10 runs were), and prints
one line per change with its reason. Pinned entries are only released by their
expiry date. Settings: [workspace.metadata.flake] in Cargo.toml, or flake.toml.

The file is rewritten atomically and only when something changed; comments,
unknown keys and hand-written fields are kept.

--check (for CI) writes nothing and exits 1 with a diff when the committed file
is out of date, 0 when it is current. --dry-run shows the changes without
writing.";

/// `cargo flake quarantine sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub quarantine: QuarantineArg,
    /// Write nothing; exit 1 and print a diff if the file is out of date.
    #[arg(long)]
    pub check: bool,
    /// Show the changes without writing them.
    #[arg(long)]
    pub dry_run: bool,
    /// Decide from the team history of a `cargo flake serve` (its default
    /// policy) instead of a local database; the token comes from
    /// CARGO_FLAKE_TOKEN (a read token).
    #[arg(long, value_name = "URL", conflicts_with_all = ["db", "database_url"])]
    pub server: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cargo, clap::Error> {
        Cargo::try_parse_from(std::iter::once("cargo").chain(args.iter().copied()))
    }

    #[test]
    fn good_command_lines() {
        let Cargo::Flake(f) = parse(&[
            "flake",
            "test",
            "--retries",
            "3",
            "--",
            "-p",
            "x",
            "--profile",
            "ci",
        ])
        .unwrap();
        let Command::Test(t) = f.command else {
            panic!()
        };
        assert_eq!(t.retries, Some(3));
        assert_eq!(t.runner_args, vec!["-p", "x", "--profile", "ci"]);
        let Cargo::Flake(f) = parse(&[
            "flake",
            "test",
            "--runner",
            "cargo-test",
            "--message-format",
            "json",
            "--db",
            "h.db",
        ])
        .unwrap();
        let Command::Test(t) = f.command else {
            panic!()
        };
        assert_eq!(t.runner, Some(RunnerChoice::CargoTest));
        assert_eq!(t.message_format, MessageFormat::Json);
        assert_eq!(t.db.db, Some(PathBuf::from("h.db")));
        let Cargo::Flake(f) = parse(&[
            "flake",
            "quarantine",
            "add",
            "a b",
            "--reason",
            "r",
            "--pin",
        ])
        .unwrap();
        let Command::Quarantine(QuarantineCommand::Add {
            id, pin, reason, ..
        }) = f.command
        else {
            panic!()
        };
        assert_eq!(
            (id.as_str(), pin, reason.as_deref()),
            ("a b", true, Some("r"))
        );
        assert!(
            parse(&[
                "flake", "ingest", "a.xml", "b.xml", "--format", "junit", "--run-id", "ci-1"
            ])
            .is_ok()
        );
        assert!(parse(&["flake", "gate", "x.json", "--quarantine", "q.toml"]).is_ok());
        assert!(
            parse(&[
                "flake",
                "--color",
                "never",
                "quarantine",
                "list",
                "--format",
                "json"
            ])
            .is_ok()
        );
    }

    #[test]
    fn report_show_hunt_and_junit_lines() {
        let Cargo::Flake(f) =
            parse(&["flake", "report", "--html", "r.html", "--db", "h.db"]).unwrap();
        let Command::Report(r) = f.command else {
            panic!()
        };
        assert_eq!(r.html, PathBuf::from("r.html"));
        assert_eq!(r.window.window, None);
        let Cargo::Flake(f) =
            parse(&["flake", "show", "a b", "--runs", "5", "--format", "json"]).unwrap();
        let Command::Show(s) = f.command else {
            panic!()
        };
        assert_eq!(
            (s.id.as_str(), s.runs, s.format),
            ("a b", 5, ListFormat::Json)
        );
        let Cargo::Flake(f) =
            parse(&["flake", "hunt", "--runs", "20", "--", "-E", "test(/net/)"]).unwrap();
        let Command::Hunt(h) = f.command else {
            panic!()
        };
        assert_eq!((h.runs, h.runner_args.len()), (Some(20), 2));
        let Cargo::Flake(f) = parse(&["flake", "test", "--junit", "out.xml"]).unwrap();
        let Command::Test(t) = f.command else {
            panic!()
        };
        assert_eq!(t.junit, Some(PathBuf::from("out.xml")));
        assert!(parse(&["flake", "report"]).is_err(), "--html is required");
        assert!(parse(&["flake", "hunt"]).is_err(), "--runs is required");
        assert!(parse(&["flake", "hunt", "--runs", "0"]).is_err());
        assert!(parse(&["flake", "show"]).is_err());
    }

    #[test]
    fn hunt_isolate_lines() {
        let Cargo::Flake(f) = parse(&[
            "flake",
            "hunt",
            "--isolate",
            "app tests::a",
            "--format",
            "json",
            "--",
            "-p",
            "app",
        ])
        .unwrap();
        let Command::Hunt(h) = f.command else {
            panic!()
        };
        assert_eq!(h.isolate.as_deref(), Some("app tests::a"));
        assert_eq!((h.runs, h.format), (None, Some(ListFormat::Json)));
        // Nothing is recorded, so history and report flags would be silently ignored.
        for extra in [
            &["--db", "h.db"][..],
            &["--html", "r.html"],
            &["--retries", "1"],
            &["--commit", "abc"],
            &["--quarantine", "q.toml"],
        ] {
            let args = [&["flake", "hunt", "--isolate", "a b"][..], extra].concat();
            assert!(parse(&args).is_err(), "{extra:?}");
        }
        assert!(parse(&["flake", "hunt", "--runs", "3", "--format", "json"]).is_err());
    }

    #[test]
    fn stats_and_sync_command_lines() {
        let Cargo::Flake(f) = parse(&[
            "flake",
            "stats",
            "--window",
            "30",
            "--branch",
            "main",
            "--branch",
            "dev",
            "--since",
            "2026-11-01",
            "--variant",
            "linux",
            "--sort",
            "count",
            "--format",
            "markdown",
        ])
        .unwrap();
        let Command::Stats(s) = f.command else {
            panic!()
        };
        assert_eq!(s.window, Some(30));
        assert_eq!(s.branch, vec!["main", "dev"]);
        assert_eq!(
            (s.sort, s.format),
            (SortChoice::Count, StatsFormat::Markdown)
        );
        let Cargo::Flake(f) =
            parse(&["flake", "quarantine", "sync", "--check", "--db", "h.db"]).unwrap();
        let Command::Quarantine(QuarantineCommand::Sync(a)) = f.command else {
            panic!()
        };
        assert!(a.check && !a.dry_run);
        assert!(parse(&["flake", "stats", "--window", "0"]).is_err());
        // An empty value would record a run under an empty id, commit,
        // branch or project, or open a throwaway database: refused.
        for flag in [
            "--run-id",
            "--commit",
            "--branch",
            "--project",
            "--database-url",
        ] {
            assert!(
                parse(&["flake", "ingest", "r.xml", &format!("{flag}=")]).is_err(),
                "{flag}"
            );
        }
        assert!(parse(&["flake", "db", "copy", "--from", "", "--to", "b.db"]).is_err());
        assert!(parse(&["flake", "stats", "--format", "xml"]).is_err());
        assert!(parse(&["flake", "stats", "--sort", "speed"]).is_err());
        assert!(parse(&["flake", "quarantine", "sync", "--force"]).is_err());
    }

    #[test]
    fn upload_command_lines() {
        let Cargo::Flake(f) = parse(&[
            "flake",
            "upload",
            "a.xml",
            "b.json",
            "--server",
            "https://flake.internal",
            "--run-id",
            "ci-1",
            "--upload-required",
            "--upload-timeout",
            "5",
        ])
        .unwrap();
        let Command::Upload(u) = f.command else {
            panic!()
        };
        assert_eq!(u.files.len(), 2);
        assert_eq!(u.server.as_deref(), Some("https://flake.internal"));
        assert!(u.upload.upload_required);
        assert_eq!(u.upload.upload_timeout, 5);
        let Cargo::Flake(f) = parse(&["flake", "test", "--upload", "http://h:8080"]).unwrap();
        let Command::Test(t) = f.command else {
            panic!()
        };
        assert_eq!(t.upload.as_deref(), Some("http://h:8080"));
        assert!(!t.upload_options.upload_required);
        assert_eq!(t.upload_options.upload_timeout, 60);
        // The token is never a flag.
        assert!(parse(&["flake", "upload", "a.xml", "--token", "cfk_1_x"]).is_err());
        assert!(parse(&["flake", "upload"]).is_err(), "files are required");
        assert!(parse(&["flake", "upload", "a.xml", "--upload-timeout", "0"]).is_err());
    }

    #[test]
    fn bad_command_lines() {
        assert!(parse(&["flake", "test", "--retries", "-1"]).is_err());
        assert!(parse(&["flake", "test", "--runner", "jest"]).is_err());
        assert!(parse(&["flake", "test", "--message-format", "xml"]).is_err());
        assert!(parse(&["flake", "ingest"]).is_err(), "files are required");
        assert!(parse(&["flake", "gate"]).is_err());
        assert!(parse(&["flake", "quarantine", "add"]).is_err());
        assert!(parse(&["flake", "frobnicate"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cargo::command().debug_assert();
    }
}

#[cfg(test)]
mod docs_tests;
