//! The history: every run, every test result, every failed attempt, behind
//! one seam with two backends.
//!
//! Everything above this module (ingest, the runners, stats, quarantine,
//! reports, hunt) talks to a [`Store`]: a handle on one database for one
//! project. A `Store` forwards to a [`Backend`], the trait each backend
//! implements; SQL lives only in the backend modules:
//! - [`sqlite`]: the embedded default, one file per checkout or CI cache;
//! - [`postgres`]: the shared history of a team.
//!
//! The contract every backend keeps:
//! - a run is written in one transaction ([`RunWrite`]): dropping the writer
//!   without [`RunWrite::commit`] leaves nothing, and a killed writer leaves
//!   no partial run;
//! - run ids and test ids are per project: two repositories in one database
//!   never see each other's runs, tests or de-duplication;
//! - reads of a test's window cost one range read by its interned key, so a
//!   report over thousands of tests never looks tests up by name one by one;
//! - a database of another program, or of a newer schema, is refused before
//!   anything is written to it.

/// The [`Backend`] methods every backend answers with an inherent method of
/// the same name and signature: one list, so two backends cannot drift.
macro_rules! forward_backend {
    ($ty:ident) => {
        fn adopt_unnamed(&mut self, project: &str) -> Result<(), StoreError> {
            $ty::adopt(self, project)
        }
        fn begin_run<'a>(
            &'a mut self,
            project: &str,
            meta: &crate::meta::RunMeta,
            events: &crate::store::events::EventConfig,
        ) -> Result<Box<dyn crate::store::RunWrite + 'a>, StoreError> {
            Ok(Box::new($ty::begin_run(self, project, meta, events)?))
        }
        fn projects(&self) -> Result<Vec<String>, StoreError> {
            $ty::projects(self)
        }
        fn runs(&self, project: &str) -> Result<Vec<crate::store::RunRecord>, StoreError> {
            $ty::runs(self, project)
        }
        fn run(
            &self,
            project: &str,
            run_id: &str,
        ) -> Result<Option<crate::store::RunRecord>, StoreError> {
            $ty::run(self, project, run_id)
        }
        fn results_of_run(
            &self,
            run_seq: i64,
        ) -> Result<Vec<crate::store::ResultRecord>, StoreError> {
            $ty::results_of_run(self, run_seq)
        }
        fn tests(&self, project: &str) -> Result<Vec<crate::store::StoredTest>, StoreError> {
            $ty::tests(self, project)
        }
        fn tests_by_key(
            &self,
            project: &str,
            only: Option<i64>,
        ) -> Result<Vec<crate::store::StoredTest>, StoreError> {
            $ty::tests_by_key(self, project, only)
        }
        fn test_key(&self, project: &str, id: &str) -> Result<Option<i64>, StoreError> {
            $ty::test_key(self, project, id)
        }
        fn window(
            &self,
            test: i64,
            limit: usize,
        ) -> Result<Vec<crate::store::WindowResult>, StoreError> {
            $ty::window(self, test, limit)
        }
        fn results_since(
            &self,
            test: i64,
            since_run: i64,
        ) -> Result<Vec<crate::store::WindowResult>, StoreError> {
            $ty::results_since(self, test, since_run)
        }
        fn scan_results(
            &self,
            test: i64,
            since_run: i64,
            visit: &mut dyn FnMut(i64, crate::model::Outcome) -> bool,
        ) -> Result<(), StoreError> {
            $ty::scan_results(self, test, since_run, visit)
        }
        fn outcome_in(
            &self,
            test: i64,
            run_seq: i64,
        ) -> Result<Option<crate::model::Outcome>, StoreError> {
            $ty::outcome_in(self, test, run_seq)
        }
        fn attempts_between(
            &self,
            test: i64,
            from: i64,
            to: i64,
        ) -> Result<Vec<crate::store::RunAttempt>, StoreError> {
            $ty::attempts_between(self, test, from, to)
        }
        fn attempts_of_run(
            &self,
            run_seq: i64,
        ) -> Result<Vec<(String, crate::store::RunAttempt)>, StoreError> {
            $ty::attempts_of_run(self, run_seq)
        }
        fn failing_in_runs(&self, runs: &[i64]) -> Result<Vec<(i64, i64)>, StoreError> {
            $ty::failing_in_runs(self, runs)
        }
        fn last_result_runs(
            &self,
            project: &str,
            ids: &std::collections::HashSet<String>,
        ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
            $ty::last_result_runs(self, project, ids)
        }
        fn check(&self) -> Result<crate::store::Check, StoreError> {
            $ty::check_all(self)
        }
        fn size(&self) -> Result<u64, StoreError> {
            $ty::size(self)
        }
        fn prune(
            &mut self,
            project: &str,
            plan: &crate::store::PrunePlan,
            dry_run: bool,
        ) -> Result<crate::store::PruneSummary, StoreError> {
            $ty::prune(self, project, plan, dry_run)
        }
        fn insert_token(&mut self, token: &crate::store::TokenRecord) -> Result<i64, StoreError> {
            $ty::insert_token(self, token)
        }
        fn token(&self, id: i64) -> Result<Option<crate::store::TokenRecord>, StoreError> {
            $ty::token(self, id)
        }
        fn tokens(
            &self,
            project: Option<&str>,
        ) -> Result<Vec<crate::store::TokenRecord>, StoreError> {
            $ty::tokens(self, project)
        }
        fn revoke_token(&mut self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
            $ty::revoke_token(self, id, now_ms)
        }
        fn try_maintenance_lock(&mut self) -> Result<bool, StoreError> {
            $ty::try_maintenance_lock(self)
        }
        fn history_version(&self, project: &str) -> Result<(i64, i64, i64), StoreError> {
            $ty::history_version(self, project)
        }
        fn insert_webhook(
            &mut self,
            endpoint: &crate::store::WebhookEndpoint,
        ) -> Result<i64, StoreError> {
            $ty::insert_webhook(self, endpoint)
        }
        fn webhooks(
            &self,
            project: Option<&str>,
        ) -> Result<Vec<crate::store::WebhookEndpoint>, StoreError> {
            $ty::webhooks(self, project)
        }
        fn remove_webhook(&mut self, id: i64) -> Result<bool, StoreError> {
            $ty::remove_webhook(self, id)
        }
        fn rotate_webhook_secret(
            &mut self,
            id: i64,
            secret: &str,
            previous_until: i64,
        ) -> Result<bool, StoreError> {
            $ty::rotate_webhook_secret(self, id, secret, previous_until)
        }
        fn release_maintenance_lock(&mut self) -> Result<(), StoreError> {
            $ty::release_maintenance_lock(self)
        }
        fn enqueue_ping(
            &mut self,
            endpoint: i64,
            now_ms: i64,
        ) -> Result<Option<String>, StoreError> {
            $ty::enqueue_ping(self, endpoint, now_ms)
        }
        fn claim_deliveries(
            &mut self,
            now_ms: i64,
            lease_ms: i64,
            limit: usize,
        ) -> Result<Vec<crate::store::Delivery>, StoreError> {
            $ty::claim_deliveries(self, now_ms, lease_ms, limit)
        }
        fn finish_deliveries(
            &mut self,
            outcomes: &[crate::store::AttemptOutcome],
        ) -> Result<(), StoreError> {
            $ty::finish_deliveries(self, outcomes)
        }
        fn deliveries(
            &self,
            endpoint: i64,
            before: Option<i64>,
            limit: usize,
        ) -> Result<Vec<crate::store::DeliveryRecord>, StoreError> {
            $ty::deliveries(self, endpoint, before, limit)
        }
        fn replay_delivery(
            &mut self,
            endpoint: i64,
            delivery: i64,
            now_ms: i64,
        ) -> Result<bool, StoreError> {
            $ty::replay_delivery(self, endpoint, delivery, now_ms)
        }
        fn pending_deliveries(&self) -> Result<i64, StoreError> {
            $ty::pending_deliveries(self)
        }
        fn last_proposal(&self, project: &str) -> Result<String, StoreError> {
            $ty::last_proposal(self, project)
        }
        fn save_quarantine_file(
            &mut self,
            project: &str,
            content: &str,
            now_ms: i64,
        ) -> Result<(), StoreError> {
            $ty::save_quarantine_file(self, project, content, now_ms)
        }
        fn quarantine_file(&self, project: &str) -> Result<Option<(String, i64)>, StoreError> {
            $ty::quarantine_file(self, project)
        }
        fn announce_proposal(
            &mut self,
            project: &str,
            previous: &str,
            content: &str,
            data: &serde_json::Value,
            now_ms: i64,
        ) -> Result<bool, StoreError> {
            $ty::announce_proposal(self, project, previous, content, data, now_ms)
        }
        fn tests_with_outcomes(
            &self,
            project: &str,
            flaky_runs: &[i64],
            failed_runs: &[i64],
        ) -> Result<Vec<crate::store::StoredTest>, StoreError> {
            $ty::tests_with_outcomes(self, project, flaky_runs, failed_runs)
        }
        fn attempts_since_each(
            &self,
            tests: &[(i64, i64)],
        ) -> Result<Vec<(i64, crate::store::RunAttempt)>, StoreError> {
            $ty::attempts_since_each(self, tests)
        }
        fn export(
            &self,
            project: &str,
            since_ms: Option<i64>,
            visit: &mut dyn FnMut(&crate::store::ExportRow<'_>) -> Result<bool, StoreError>,
        ) -> Result<(), StoreError> {
            $ty::export(self, project, since_ms, visit)
        }
    };
}

/// The [`RunWrite`] methods every backend's writer answers with an inherent
/// method of the same name: one list for both writers.
macro_rules! forward_run_write {
    ($ty:ident) => {
        impl crate::store::RunWrite for $ty<'_> {
            fn add_keyed(
                &mut self,
                key: u128,
                result: &crate::model::TestResult,
            ) -> Result<(), StoreError> {
                $ty::add_keyed(self, key, result)
            }
            fn update_meta(&mut self, meta: &crate::meta::RunMeta) -> Result<(), StoreError> {
                $ty::update_meta(self, meta)
            }
            fn source_recorded(&self, digest: &str) -> Result<bool, StoreError> {
                $ty::source_recorded(self, digest)
            }
            fn add_source(&mut self, digest: &str) -> Result<(), StoreError> {
                $ty::add_source(self, digest)
            }
            fn set_run_id(&mut self, run_id: &str) -> Result<bool, StoreError> {
                $ty::set_run_id(self, run_id)
            }
            fn commit(self: Box<Self>) -> Result<crate::store::WriteSummary, StoreError> {
                $ty::commit(*self)
            }
        }
    };
}

pub mod copy;
mod error;
pub mod events;
mod export;
mod location;
mod merge;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod tests;
mod types;

pub use error::{BackendError, StoreError};
pub use location::{Location, LocationError, mask_password};
pub use sqlite::{APPLICATION_ID, SCHEMA_VERSION};
pub use types::{
    AttemptOutcome, Check, Delivery, DeliveryAttempt, DeliveryRecord, ExportRow, NextStep,
    PrunePlan, PruneSummary, ResultRecord, Role, RunAttempt, RunRecord, StoredTest, TokenRecord,
    WebhookEndpoint, WindowResult, WriteSummary, name_key,
};
pub(crate) use types::{event_list, webhook_columns};

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::meta::RunMeta;
use crate::model::{Outcome, TestResult};

/// One database, as the layers above the store need it. Methods that take a
/// `project` see only that project's runs and tests; methods that take an
/// interned test key or run sequence number are project-scoped by the key.
pub trait Backend: std::fmt::Debug + Send {
    /// The database for messages: a file path, or a URL with its password masked.
    fn describe(&self) -> String;
    /// The file behind an SQLite backend; `None` in memory or on a server.
    fn path(&self) -> Option<&Path>;
    /// Gives runs and tests recorded without a project to `project` (a
    /// history written before projects existed); a no-op when there are none.
    fn adopt_unnamed(&mut self, project: &str) -> Result<(), StoreError>;

    /// The projects with at least one run, by name.
    fn projects(&self) -> Result<Vec<String>, StoreError>;
    /// All runs of `project`, oldest first.
    fn runs(&self, project: &str) -> Result<Vec<RunRecord>, StoreError>;
    /// The run of `project` with this id, if recorded.
    fn run(&self, project: &str, run_id: &str) -> Result<Option<RunRecord>, StoreError>;
    /// Every result of one run, by test id.
    fn results_of_run(&self, run_seq: i64) -> Result<Vec<ResultRecord>, StoreError>;
    /// Tests of `project` with at least one result, by id.
    fn tests(&self, project: &str) -> Result<Vec<StoredTest>, StoreError>;
    /// Every interned test of `project` (or only the one with key `only`), by key.
    fn tests_by_key(&self, project: &str, only: Option<i64>)
    -> Result<Vec<StoredTest>, StoreError>;
    /// The interned key of a test id in `project`.
    fn test_key(&self, project: &str, id: &str) -> Result<Option<i64>, StoreError>;
    /// The most recent `limit` results of a test, newest first.
    fn window(&self, test: i64, limit: usize) -> Result<Vec<WindowResult>, StoreError>;
    /// A test's results in runs `>= since_run`, newest first.
    fn results_since(&self, test: i64, since_run: i64) -> Result<Vec<WindowResult>, StoreError>;
    /// Visits a test's results in runs `>= since_run`, newest first, until
    /// `visit` returns `false`: the rolling window reads only what it needs.
    fn scan_results(
        &self,
        test: i64,
        since_run: i64,
        visit: &mut dyn FnMut(i64, Outcome) -> bool,
    ) -> Result<(), StoreError>;
    /// A test's outcome in one run.
    fn outcome_in(&self, test: i64, run_seq: i64) -> Result<Option<Outcome>, StoreError>;
    /// Every stored attempt of one run, by test id then attempt, with failures.
    fn attempts_of_run(&self, run_seq: i64) -> Result<Vec<(String, RunAttempt)>, StoreError>;
    /// The (run, test key) pairs of every failed attempt in `runs`, once
    /// each: which tests failed in those runs, in one pass.
    fn failing_in_runs(&self, runs: &[i64]) -> Result<Vec<(i64, i64)>, StoreError>;
    /// Counts and consistency of the whole database (`cargo flake db check`).
    fn check(&self) -> Result<Check, StoreError>;
    /// Bytes the whole database takes (every project).
    fn size(&self) -> Result<u64, StoreError>;
    /// Removes from `project` what `plan` lets go ([`PrunePlan`] says
    /// exactly which rows), in transactions short enough that a run being
    /// recorded meanwhile still lands, then gives the space back where the
    /// backend can. `dry_run` counts and changes nothing. Interrupted, it
    /// leaves a consistent history: every transaction removes whole results
    /// with their attempts.
    fn prune(
        &mut self,
        project: &str,
        plan: &PrunePlan,
        dry_run: bool,
    ) -> Result<PruneSummary, StoreError>;
    /// Stores a new API token (its hash only); returns its id.
    fn insert_token(&mut self, token: &TokenRecord) -> Result<i64, StoreError>;
    /// The token with this id, active or not.
    fn token(&self, id: i64) -> Result<Option<TokenRecord>, StoreError>;
    /// Every token (of `project`, if given), by id.
    fn tokens(&self, project: Option<&str>) -> Result<Vec<TokenRecord>, StoreError>;
    /// Revokes a token at `now_ms`; `false` when there is no such token or
    /// it was revoked already.
    fn revoke_token(&mut self, id: i64, now_ms: i64) -> Result<bool, StoreError>;
    /// Takes the database-wide maintenance lock (scheduled prunes) for this
    /// connection without waiting: `false` when another process holds it,
    /// so that of many service replicas one prunes at a time.
    fn try_maintenance_lock(&mut self) -> Result<bool, StoreError>;
    /// Releases [`Backend::try_maintenance_lock`].
    fn release_maintenance_lock(&mut self) -> Result<(), StoreError>;
    /// What changes whenever `project`'s results do: its run count, newest
    /// run and the sum of its runs' totals (a new run, a shard merged into
    /// one, a pruned run). One aggregate read: caches check it per request.
    fn history_version(&self, project: &str) -> Result<(i64, i64, i64), StoreError>;
    /// Stores a webhook endpoint; returns its id.
    fn insert_webhook(&mut self, endpoint: &WebhookEndpoint) -> Result<i64, StoreError>;
    /// Every webhook endpoint (of `project`, if given), by id.
    fn webhooks(&self, project: Option<&str>) -> Result<Vec<WebhookEndpoint>, StoreError>;
    /// Removes an endpoint; `false` when there was none.
    fn remove_webhook(&mut self, id: i64) -> Result<bool, StoreError>;
    /// Replaces an endpoint's secret; the current one keeps signing until
    /// `previous_until`. `false` when there is no such endpoint.
    fn rotate_webhook_secret(
        &mut self,
        id: i64,
        secret: &str,
        previous_until: i64,
    ) -> Result<bool, StoreError>;
    /// Queues a `ping` message to one endpoint (`cargo flake webhook
    /// test`); its `webhook-id`, or `None` when there is no such endpoint.
    fn enqueue_ping(&mut self, endpoint: i64, now_ms: i64) -> Result<Option<String>, StoreError>;
    /// Claims up to `limit` deliveries due at `now_ms` for `lease_ms`, for
    /// this connection: while the lease runs and the connection lives, no
    /// other worker gets them. Each claim counts as an attempt.
    fn claim_deliveries(
        &mut self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Records what became of claimed deliveries (only those this
    /// connection still holds) and of their endpoints.
    fn finish_deliveries(&mut self, outcomes: &[AttemptOutcome]) -> Result<(), StoreError>;
    /// An endpoint's deliveries, newest first, with ids below `before`.
    fn deliveries(
        &self,
        endpoint: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Makes a finished delivery of `endpoint` due again at `now_ms`, under
    /// its `webhook-id`; `false` when there is none or it is still pending.
    fn replay_delivery(
        &mut self,
        endpoint: i64,
        delivery: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Deliveries not yet delivered nor given up.
    fn pending_deliveries(&self) -> Result<i64, StoreError>;
    /// Keeps `content` as the quarantine file `project`'s repository has
    /// now (sent with a proposal request), received at `now_ms`.
    fn save_quarantine_file(
        &mut self,
        project: &str,
        content: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// The quarantine file `project`'s repository last sent, and when.
    fn quarantine_file(&self, project: &str) -> Result<Option<(String, i64)>, StoreError>;
    /// The quarantine file last announced by `quarantine.proposal_changed`
    /// for `project` (empty before the first).
    fn last_proposal(&self, project: &str) -> Result<String, StoreError>;
    /// In one transaction: if the announced file is still `previous`,
    /// replaces it with `content` and queues the event with `data` for the
    /// project's subscribed endpoints; `false` (nothing written) when
    /// another replica announced meanwhile.
    fn announce_proposal(
        &mut self,
        project: &str,
        previous: &str,
        content: &str,
        data: &serde_json::Value,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// A test's stored attempts in runs `from..=to`, oldest first, with failures.
    fn attempts_between(
        &self,
        test: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<RunAttempt>, StoreError>;
    /// The newest run in which each of `ids` (tests of `project`) has any result.
    fn last_result_runs(
        &self,
        project: &str,
        ids: &HashSet<String>,
    ) -> Result<HashMap<String, i64>, StoreError>;

    /// Starts recording the run `meta` of `project` in one transaction; a run
    /// with the same id is merged into (shards of one logical run).
    fn begin_run<'a>(
        &'a mut self,
        project: &str,
        meta: &RunMeta,
        events: &events::EventConfig,
    ) -> Result<Box<dyn RunWrite + 'a>, StoreError>;

    /// The tests of `project` with a `flaky` result in one of `flaky_runs`
    /// or a `failed` one in one of `failed_runs`, by key: one set query
    /// over those runs' results, so statistics wanted only for tests with
    /// flaky evidence need not read every test's window
    /// ([`crate::stats::compute_flaky`]).
    fn tests_with_outcomes(
        &self,
        project: &str,
        flaky_runs: &[i64],
        failed_runs: &[i64],
    ) -> Result<Vec<StoredTest>, StoreError>;
    /// [`Backend::attempts_between`] from each `(test, since_run)` on, for
    /// many tests in few round trips: every attempt with its test's key, by
    /// test (in the order given), run and attempt.
    fn attempts_since_each(
        &self,
        tests: &[(i64, i64)],
    ) -> Result<Vec<(i64, RunAttempt)>, StoreError>;
    /// Visits every result of `project` in runs started at or after
    /// `since_ms`, with its run: runs oldest first (by sequence number), and
    /// within a run by test id (bytewise), until `visit` returns `false`.
    /// Streamed a chunk of runs at a time, each run whole as it stood when
    /// read, with no lock held between chunks: memory follows the largest
    /// run and the project's test names, not the history (see
    /// `store/export.rs`), and every backend visits the same rows in the
    /// same order.
    fn export(
        &self,
        project: &str,
        since_ms: Option<i64>,
        visit: &mut dyn FnMut(&ExportRow<'_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;
}

/// An open transaction recording one run. Dropping it without
/// [`RunWrite::commit`] rolls everything back, so an interrupted ingest or a
/// parse error leaves no partial run.
pub trait RunWrite {
    /// Records one test result, its id's [`name_key`] computed by the caller
    /// (a parsing thread can take that work off the writing thread). A second
    /// result for the same test in this run is merged with the first (a
    /// retry, a rerun file or another shard; see [`crate::model::RunMerge`]).
    fn add_keyed(&mut self, key: u128, result: &TestResult) -> Result<(), StoreError>;

    /// [`RunWrite::add_keyed`] with the key computed here.
    fn add(&mut self, result: &TestResult) -> Result<(), StoreError> {
        self.add_keyed(name_key(&result.id), result)
    }

    /// Replaces the run's metadata (known fully only after its reports were
    /// read). When merging into a recorded run, whose metadata stands, the
    /// commit and branch must agree with it ([`StoreError::RunConflict`]) and
    /// only fill in what it lacked.
    fn update_meta(&mut self, meta: &RunMeta) -> Result<(), StoreError>;

    /// Whether a source (a report file) with this content digest was recorded
    /// before *in this run*: a retried upload is skipped and never
    /// double-counts, while the same bytes in another run are that run's.
    fn source_recorded(&self, digest: &str) -> Result<bool, StoreError>;

    /// Records that a source with this digest is part of this run.
    fn add_source(&mut self, digest: &str) -> Result<(), StoreError>;

    /// Renames the run before commit (to an id derived from its content). If
    /// the project has a run with that id, the rename is refused: `false`.
    fn set_run_id(&mut self, run_id: &str) -> Result<bool, StoreError>;

    /// Commits the run; only now does any of it become visible. A run whose
    /// every source was a duplicate adds nothing (and leaves no empty run).
    fn commit(self: Box<Self>) -> Result<WriteSummary, StoreError>;
}

// Counts name lookups on this thread, so tests can require that readers over
// many tests never look ids up by name (one scan or round trip each).
#[cfg(test)]
thread_local! {
    static NAME_LOOKUPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Name lookups on this thread since the last call.
#[cfg(test)]
pub(crate) fn take_name_lookups() -> usize {
    NAME_LOOKUPS.with(|n| n.replace(0))
}

/// A history database opened for one project.
#[derive(Debug)]
pub struct Store {
    backend: Box<dyn Backend>,
    project: String,
    events: events::EventConfig,
}

impl Store {
    /// A store over `backend`, for the unnamed project (see [`Store::with_project`]).
    pub fn from_backend(backend: Box<dyn Backend>) -> Store {
        Store {
            backend,
            project: String::new(),
            events: events::EventConfig::default(),
        }
    }

    /// Opens (creating if needed) the SQLite history at `path`, migrating
    /// older schemas. See [`sqlite::SqliteBackend::open`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store::from_backend(Box::new(sqlite::SqliteBackend::open(
            path,
        )?)))
    }

    /// Opens the SQLite history at `path` for a command that only reads it:
    /// a missing or empty file is [`StoreError::NoHistory`], nothing is created.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        Ok(Store::from_backend(Box::new(
            sqlite::SqliteBackend::open_existing(path)?,
        )))
    }

    /// A private in-memory SQLite history (tests, dry runs).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Ok(Store::from_backend(Box::new(
            sqlite::SqliteBackend::open_in_memory()?,
        )))
    }

    /// Opens the history at `location`, creating an SQLite file if needed.
    pub fn connect(location: &Location) -> Result<Store, StoreError> {
        match location {
            Location::Sqlite(path) => Store::open(path),
            Location::Postgres(url) => Ok(Store::from_backend(Box::new(
                postgres::PgBackend::connect(url)?,
            ))),
        }
    }

    /// Opens the history at `location` for reading: nothing is created.
    pub fn connect_existing(location: &Location) -> Result<Store, StoreError> {
        match location {
            Location::Sqlite(path) => Store::open_existing(path),
            Location::Postgres(url) => Ok(Store::from_backend(Box::new(
                postgres::PgBackend::connect_existing(url)?,
            ))),
        }
    }

    /// This store scoped to `project`: every read and write is that
    /// project's. Runs recorded without a project (by a release before
    /// projects existed) are adopted by the first named project that opens
    /// the database.
    pub fn with_project(mut self, project: impl Into<String>) -> Result<Store, StoreError> {
        let project = project.into();
        if !project.is_empty() {
            self.backend.adopt_unnamed(&project)?;
        }
        self.project = project;
        Ok(self)
    }

    /// Scopes this store to `project` without adopting unnamed rows: for
    /// tools that read a database as it is (`cargo flake db copy`).
    pub fn select_project(&mut self, project: impl Into<String>) {
        self.project = project.into();
    }

    /// The project this store reads and writes.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The file behind this store, `None` in memory or on a server.
    pub fn path(&self) -> Option<&Path> {
        self.backend.path()
    }

    /// The database, for messages (a URL's password masked).
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Bytes the whole database takes (every project).
    pub fn size(&self) -> Result<u64, StoreError> {
        self.backend.size()
    }

    /// Removes from this project what `plan` lets go (see [`Backend::prune`]).
    pub fn prune(&mut self, plan: &PrunePlan, dry_run: bool) -> Result<PruneSummary, StoreError> {
        self.backend.prune(&self.project, plan, dry_run)
    }

    /// Stores a new API token (see [`crate::tokens`]).
    pub fn insert_token(&mut self, token: &TokenRecord) -> Result<i64, StoreError> {
        self.backend.insert_token(token)
    }

    /// The token with this id, active or not.
    pub fn token(&self, id: i64) -> Result<Option<TokenRecord>, StoreError> {
        self.backend.token(id)
    }

    /// Every token of the database (of `project`, if given).
    pub fn tokens(&self, project: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        self.backend.tokens(project)
    }

    /// Revokes a token; `false` when it does not exist or was revoked already.
    pub fn revoke_token(&mut self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        self.backend.revoke_token(id, now_ms)
    }

    /// See [`Backend::try_maintenance_lock`].
    pub fn try_maintenance_lock(&mut self) -> Result<bool, StoreError> {
        self.backend.try_maintenance_lock()
    }

    /// See [`Backend::release_maintenance_lock`].
    pub fn release_maintenance_lock(&mut self) -> Result<(), StoreError> {
        self.backend.release_maintenance_lock()
    }

    /// See [`Backend::history_version`].
    pub fn history_version(&self) -> Result<(i64, i64, i64), StoreError> {
        self.backend.history_version(&self.project)
    }

    /// See [`Backend::insert_webhook`].
    pub fn insert_webhook(&mut self, endpoint: &WebhookEndpoint) -> Result<i64, StoreError> {
        self.backend.insert_webhook(endpoint)
    }

    /// See [`Backend::webhooks`].
    pub fn webhooks(&self, project: Option<&str>) -> Result<Vec<WebhookEndpoint>, StoreError> {
        self.backend.webhooks(project)
    }

    /// See [`Backend::remove_webhook`].
    pub fn remove_webhook(&mut self, id: i64) -> Result<bool, StoreError> {
        self.backend.remove_webhook(id)
    }

    /// See [`Backend::rotate_webhook_secret`].
    pub fn rotate_webhook_secret(
        &mut self,
        id: i64,
        secret: &str,
        previous_until: i64,
    ) -> Result<bool, StoreError> {
        self.backend
            .rotate_webhook_secret(id, secret, previous_until)
    }

    /// The projects of this database with at least one run, by name.
    pub fn projects(&self) -> Result<Vec<String>, StoreError> {
        self.backend.projects()
    }

    /// All runs, oldest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.backend.runs(&self.project)
    }

    /// The run with this id, if recorded.
    pub fn run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        self.backend.run(&self.project, run_id)
    }

    /// Every result of one run, by test id (reports and tests; not a hot path).
    pub fn results_of_run(&self, run_seq: i64) -> Result<Vec<ResultRecord>, StoreError> {
        self.backend.results_of_run(run_seq)
    }

    /// Every test that has at least one result, by id.
    pub fn tests(&self) -> Result<Vec<StoredTest>, StoreError> {
        self.backend.tests(&self.project)
    }

    /// Every interned test (or only the one with key `only`), by key.
    pub(crate) fn tests_by_key(&self, only: Option<i64>) -> Result<Vec<StoredTest>, StoreError> {
        self.backend.tests_by_key(&self.project, only)
    }

    /// The interned key of a test id, if it was ever recorded. Fine for the
    /// one id a user names; readers that walk many tests carry
    /// [`StoredTest::key`] or [`crate::stats::TestStats::key`] instead.
    pub fn test_key(&self, id: &str) -> Result<Option<i64>, StoreError> {
        #[cfg(test)]
        NAME_LOOKUPS.with(|n| n.set(n.get() + 1));
        self.backend.test_key(&self.project, id)
    }

    /// The most recent `limit` results of the test with key `test`, newest first.
    pub fn window(&self, test: i64, limit: usize) -> Result<Vec<WindowResult>, StoreError> {
        self.backend.window(test, limit)
    }

    /// Results of the test with key `test` in runs `>= since_run`, newest first.
    pub fn results_since(
        &self,
        test: i64,
        since_run: i64,
    ) -> Result<Vec<WindowResult>, StoreError> {
        self.backend.results_since(test, since_run)
    }

    /// See [`Backend::scan_results`].
    pub(crate) fn scan_results(
        &self,
        test: i64,
        since_run: i64,
        visit: &mut dyn FnMut(i64, Outcome) -> bool,
    ) -> Result<(), StoreError> {
        self.backend.scan_results(test, since_run, visit)
    }

    /// See [`Backend::tests_with_outcomes`].
    pub(crate) fn tests_with_outcomes(
        &self,
        flaky_runs: &[i64],
        failed_runs: &[i64],
    ) -> Result<Vec<StoredTest>, StoreError> {
        self.backend
            .tests_with_outcomes(&self.project, flaky_runs, failed_runs)
    }

    /// See [`Backend::attempts_since_each`].
    pub(crate) fn attempts_since_each(
        &self,
        tests: &[(i64, i64)],
    ) -> Result<Vec<(i64, RunAttempt)>, StoreError> {
        self.backend.attempts_since_each(tests)
    }

    /// See [`Backend::outcome_in`].
    pub(crate) fn outcome_in(
        &self,
        test: i64,
        run_seq: i64,
    ) -> Result<Option<Outcome>, StoreError> {
        self.backend.outcome_in(test, run_seq)
    }

    /// The most recent `limit` results of one test, newest first (empty for
    /// a test never recorded).
    pub fn history(&self, test_id: &str, limit: usize) -> Result<Vec<WindowResult>, StoreError> {
        match self.test_key(test_id)? {
            Some(key) => self.window(key, limit),
            None => Ok(Vec::new()),
        }
    }

    /// Stored attempts of the test with key `test` in runs `>= since_run`,
    /// oldest first, with their failures. Plain single-attempt passes have no
    /// attempt rows (their result row describes them).
    pub fn attempts_since(&self, test: i64, since_run: i64) -> Result<Vec<RunAttempt>, StoreError> {
        self.backend.attempts_between(test, since_run, i64::MAX)
    }

    /// The stored attempts of one test in one run (empty for plain passes).
    pub fn attempts(&self, test_id: &str, run_seq: i64) -> Result<Vec<RunAttempt>, StoreError> {
        match self.test_key(test_id)? {
            Some(key) => self.backend.attempts_between(key, run_seq, run_seq),
            None => Ok(Vec::new()),
        }
    }

    /// See [`Backend::attempts_of_run`].
    pub fn attempts_of_run(&self, run_seq: i64) -> Result<Vec<(String, RunAttempt)>, StoreError> {
        self.backend.attempts_of_run(run_seq)
    }

    /// See [`Backend::failing_in_runs`].
    pub fn failing_in_runs(&self, runs: &[i64]) -> Result<Vec<(i64, i64)>, StoreError> {
        self.backend.failing_in_runs(runs)
    }

    /// The id of the test with interned key `key`.
    pub fn test_name(&self, key: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .backend
            .tests_by_key(&self.project, Some(key))?
            .into_iter()
            .next()
            .map(|t| t.id))
    }

    /// See [`Backend::check`].
    pub fn check(&self) -> Result<Check, StoreError> {
        self.backend.check()
    }

    /// See [`Backend::last_result_runs`].
    pub fn last_result_runs(
        &self,
        ids: &HashSet<String>,
    ) -> Result<HashMap<String, i64>, StoreError> {
        self.backend.last_result_runs(&self.project, ids)
    }

    /// Starts recording the run described by `meta`.
    ///
    /// If a run with the same id exists, the results are merged into it (shards
    /// of one logical run). Reports read from files are checked with
    /// [`RunWrite::source_recorded`] and marked with [`RunWrite::add_source`],
    /// so a retried upload never double-counts.
    pub fn begin_run(&mut self, meta: &RunMeta) -> Result<Box<dyn RunWrite + '_>, StoreError> {
        self.backend.begin_run(&self.project, meta, &self.events)
    }

    /// Sets how the webhook events of the runs this store records are
    /// decided (see [`events`]); the defaults otherwise.
    pub fn set_events(&mut self, config: events::EventConfig) {
        self.events = config;
    }

    /// See [`Backend::enqueue_ping`].
    pub fn enqueue_ping(
        &mut self,
        endpoint: i64,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        self.backend.enqueue_ping(endpoint, now_ms)
    }

    /// See [`Backend::claim_deliveries`].
    pub fn claim_deliveries(
        &mut self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.backend.claim_deliveries(now_ms, lease_ms, limit)
    }

    /// See [`Backend::finish_deliveries`].
    pub fn finish_deliveries(&mut self, outcomes: &[AttemptOutcome]) -> Result<(), StoreError> {
        self.backend.finish_deliveries(outcomes)
    }

    /// See [`Backend::deliveries`].
    pub fn deliveries(
        &self,
        endpoint: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.backend.deliveries(endpoint, before, limit)
    }

    /// See [`Backend::replay_delivery`].
    pub fn replay_delivery(
        &mut self,
        endpoint: i64,
        delivery: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.backend.replay_delivery(endpoint, delivery, now_ms)
    }

    /// See [`Backend::pending_deliveries`].
    pub fn pending_deliveries(&self) -> Result<i64, StoreError> {
        self.backend.pending_deliveries()
    }

    /// See [`Backend::save_quarantine_file`] (this store's project).
    pub fn save_quarantine_file(&mut self, content: &str, now_ms: i64) -> Result<(), StoreError> {
        self.backend
            .save_quarantine_file(&self.project, content, now_ms)
    }

    /// See [`Backend::quarantine_file`] (this store's project).
    pub fn quarantine_file(&self) -> Result<Option<(String, i64)>, StoreError> {
        self.backend.quarantine_file(&self.project)
    }

    /// See [`Backend::last_proposal`] (this store's project).
    pub fn last_proposal(&self) -> Result<String, StoreError> {
        self.backend.last_proposal(&self.project)
    }

    /// See [`Backend::announce_proposal`] (this store's project).
    pub fn announce_proposal(
        &mut self,
        previous: &str,
        content: &str,
        data: &serde_json::Value,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.backend
            .announce_proposal(&self.project, previous, content, data, now_ms)
    }

    /// See [`Backend::export`] (this store's project).
    pub fn export(
        &self,
        since_ms: Option<i64>,
        visit: &mut dyn FnMut(&ExportRow<'_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.backend.export(&self.project, since_ms, visit)
    }

    /// Records a whole run in one call.
    pub fn record_run(
        &mut self,
        meta: &RunMeta,
        results: &[TestResult],
        source_digest: Option<&str>,
    ) -> Result<WriteSummary, StoreError> {
        let mut writer = self.begin_run(meta)?;
        if let Some(d) = source_digest
            && writer.source_recorded(d)?
        {
            return writer.commit();
        }
        for r in results {
            writer.add(r)?;
        }
        if let Some(d) = source_digest {
            writer.add_source(d)?;
        }
        writer.commit()
    }
}
