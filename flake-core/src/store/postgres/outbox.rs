//! The webhook outbox in PostgreSQL: event detection inside a run's
//! transaction (see `store/events.rs`), and the delivery queue that the
//! service's workers in every replica share.
//!
//! A worker claims due deliveries with `FOR UPDATE SKIP LOCKED`, marking
//! them with its database session's pid and a lease; until the lease ends,
//! or the session does (a killed replica's connection closes), no other
//! worker takes them, so a message is never in flight twice at once. After
//! either, the delivery is due again under the same `webhook-id`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use postgres::types::ToSql;

use super::write::RunWriter;
use super::{PgBackend, sql_err};
use crate::model::Outcome;
use crate::store::events::{EventTx, FlakeState, OutboxMessage};
use crate::store::{
    AttemptOutcome, Delivery, DeliveryAttempt, DeliveryRecord, NextStep, StoreError,
};

fn corrupt(shown: &str, code: i64) -> StoreError {
    StoreError::Corrupt {
        path: PathBuf::from(shown),
        what: "outcome",
        code,
    }
}

impl EventTx for RunWriter<'_> {
    fn flaky_in_run(&mut self) -> Result<Vec<i64>, StoreError> {
        Ok(self
            .entries
            .iter()
            .filter(|e| e.dirty && e.row.outcome == Outcome::Flaky)
            .filter_map(|e| e.test)
            .collect())
    }

    fn lock_states(&mut self, flaky: &[i64], at: i64) -> Result<Vec<FlakeState>, StoreError> {
        let sql = sql_err(&self.shown);
        let tx = self.tx.get_mut();
        let fresh: HashSet<i64> = if flaky.is_empty() {
            HashSet::new()
        } else {
            tx.query(
                "INSERT INTO flake_flaky_state (test, project, first_flaky_at, last_flaky_at, clean_runs, open)
                 SELECT t, $1, $3, $3, 0, false FROM unnest($2::bigint[]) t ORDER BY t
                 ON CONFLICT (test) DO NOTHING RETURNING test",
                &[&self.project, &flaky, &at],
            )
            .map_err(&sql)?
            .iter()
            .map(|r| r.get(0))
            .collect()
        };
        let rows = tx
            .query(
                "SELECT test, first_flaky_at, last_flaky_at, clean_runs, open FROM flake_flaky_state
                 WHERE project = $1 AND (open OR test = ANY($2)) ORDER BY test FOR UPDATE",
                &[&self.project, &flaky],
            )
            .map_err(&sql)?;
        Ok(rows
            .iter()
            .map(|r| {
                let test: i64 = r.get(0);
                FlakeState {
                    test,
                    first_flaky_at: r.get(1),
                    last_flaky_at: r.get(2),
                    clean_runs: r.get::<_, i32>(3).into(),
                    open: r.get(4),
                    fresh: fresh.contains(&test),
                }
            })
            .collect())
    }

    fn outcomes_in_run(&mut self, tests: &[i64]) -> Result<HashMap<i64, Outcome>, StoreError> {
        let wanted: HashSet<i64> = tests.iter().copied().collect();
        Ok(self
            .entries
            .iter()
            .filter_map(|e| Some((e.test?, e.row.outcome)))
            .filter(|(t, _)| wanted.contains(t))
            .collect())
    }

    fn save_states(&mut self, states: &[FlakeState]) -> Result<(), StoreError> {
        let sql = sql_err(&self.shown);
        let tests: Vec<i64> = states.iter().map(|s| s.test).collect();
        let first: Vec<i64> = states.iter().map(|s| s.first_flaky_at).collect();
        let last: Vec<i64> = states.iter().map(|s| s.last_flaky_at).collect();
        let clean: Vec<i32> = states
            .iter()
            .map(|s| i32::try_from(s.clean_runs).unwrap_or(i32::MAX))
            .collect();
        let open: Vec<bool> = states.iter().map(|s| s.open).collect();
        self.tx
            .get_mut()
            .execute(
                "UPDATE flake_flaky_state s SET first_flaky_at = u.f, last_flaky_at = u.l, clean_runs = u.c,
                    open = u.o
                 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::integer[], $5::boolean[])
                    u(t, f, l, c, o)
                 WHERE s.test = u.t",
                &[&tests, &first, &last, &clean, &open],
            )
            .map_err(&sql)?;
        Ok(())
    }

    fn subscriptions(&mut self) -> Result<HashSet<String>, StoreError> {
        let sql = sql_err(&self.shown);
        let rows = self
            .tx
            .get_mut()
            .query(
                "SELECT events FROM flake_webhook_endpoints WHERE project = $1 AND disabled_at IS NULL",
                &[&self.project],
            )
            .map_err(&sql)?;
        Ok(rows
            .iter()
            .flat_map(|r| crate::store::event_list(r.get(0)).collect::<Vec<_>>())
            .collect())
    }

    fn test_names(&mut self, tests: &[i64]) -> Result<HashMap<i64, String>, StoreError> {
        let sql = sql_err(&self.shown);
        let rows = self
            .tx
            .get_mut()
            .query(
                "SELECT id, name FROM flake_tests WHERE id = ANY($1)",
                &[&tests],
            )
            .map_err(&sql)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn recent_outcomes(
        &mut self,
        tests: &[i64],
        limit: usize,
    ) -> Result<HashMap<i64, Vec<Outcome>>, StoreError> {
        let sql = sql_err(&self.shown);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // One index range per test, newest first, stopping at the limit.
        let rows = self
            .tx
            .get_mut()
            .query(
                "SELECT t.k, r.outcome FROM unnest($1::bigint[]) t(k),
                    LATERAL (SELECT outcome, run FROM flake_results WHERE test = t.k
                             ORDER BY run DESC LIMIT $2) r
                 ORDER BY t.k, r.run DESC",
                &[&tests, &limit],
            )
            .map_err(&sql)?;
        let mut out: HashMap<i64, Vec<Outcome>> = HashMap::new();
        for r in rows {
            let code: i16 = r.get(1);
            let outcome =
                Outcome::from_code(code.into()).ok_or_else(|| corrupt(&self.shown, code.into()))?;
            out.entry(r.get(0)).or_default().push(outcome);
        }
        Ok(out)
    }

    fn run_failures(
        &mut self,
        tests: &[i64],
    ) -> Result<HashMap<i64, (String, Option<String>)>, StoreError> {
        let sql = sql_err(&self.shown);
        let rows = self
            .tx
            .get_mut()
            .query(
                "SELECT DISTINCT ON (a.test) a.test, f.message, f.location
                 FROM flake_attempts a JOIN flake_failures f ON f.id = a.failure
                 WHERE a.run = $1 AND a.bucket = $2 AND a.test = ANY($3)
                 ORDER BY a.test, a.attempt",
                &[&self.run, &self.bucket, &tests],
            )
            .map_err(&sql)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect())
    }

    fn run_counts(&mut self) -> Result<[i64; 4], StoreError> {
        let sql = sql_err(&self.shown);
        let r = self
            .tx
            .get_mut()
            .query_one(
                "SELECT passed, flaky, failed, skipped FROM flake_runs WHERE id = $1",
                &[&self.run],
            )
            .map_err(&sql)?;
        Ok([r.get(0), r.get(1), r.get(2), r.get(3)])
    }

    fn enqueue(&mut self, messages: &[OutboxMessage]) -> Result<(), StoreError> {
        let sql = sql_err(&self.shown);
        enqueue(self.tx.get_mut(), &self.project, messages, None).map_err(&sql)
    }
}

/// Stores `messages` and a pending delivery of each to every enabled
/// endpoint of `project` subscribed to its type, or only to `endpoint`.
fn enqueue(
    client: &mut impl postgres::GenericClient,
    project: &str,
    messages: &[OutboxMessage],
    endpoint: Option<i64>,
) -> Result<(), postgres::Error> {
    for chunk in messages.chunks(1_000) {
        let ids: Vec<&str> = chunk.iter().map(|m| m.msg_id.as_str()).collect();
        let types: Vec<&str> = chunk.iter().map(|m| m.event_type).collect();
        let payloads: Vec<&str> = chunk.iter().map(|m| m.payload.as_str()).collect();
        let at: Vec<i64> = chunk.iter().map(|m| m.created_at).collect();
        let params: [&(dyn ToSql + Sync); 6] = [&project, &ids, &types, &payloads, &at, &endpoint];
        client.execute(
            "WITH m AS (
                INSERT INTO flake_webhook_messages (project, msg_id, event_type, payload, created_at)
                SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[])
                RETURNING id, event_type, created_at)
             INSERT INTO flake_webhook_deliveries (message, endpoint, state, next_attempt_at)
             SELECT m.id, e.id, 'pending', m.created_at FROM m JOIN flake_webhook_endpoints e
                ON e.project = $1 AND e.disabled_at IS NULL
                AND (CASE WHEN $6::bigint IS NULL
                     THEN (',' || e.events || ',') LIKE ('%,' || m.event_type || ',%')
                     ELSE e.id = $6 END)
             ORDER BY m.id, e.id",
            &params,
        )?;
    }
    Ok(())
}

impl PgBackend {
    /// See [`crate::store::Backend::enqueue_ping`].
    pub(crate) fn enqueue_ping(
        &mut self,
        endpoint: i64,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let sql = sql_err(&self.shown);
        let client = self.client.get_mut();
        let Some(row) = client
            .query_opt(
                "SELECT project FROM flake_webhook_endpoints WHERE id = $1",
                &[&endpoint],
            )
            .map_err(&sql)?
        else {
            return Ok(None);
        };
        let project: String = row.get(0);
        let message = crate::store::events::ping(&project, now_ms);
        let mut tx = client.transaction().map_err(&sql)?;
        enqueue(
            &mut tx,
            &project,
            std::slice::from_ref(&message),
            Some(endpoint),
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(Some(message.msg_id))
    }

    /// See [`crate::store::Backend::claim_deliveries`].
    pub(crate) fn claim_deliveries(
        &mut self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let sql = sql_err(&self.shown);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // A claim stands while its lease runs and its session lives; a
        // worker that died (its session gone) leaves work due at once.
        let rows = self
            .client
            .get_mut()
            .query(
                &format!(
                    "WITH c AS (
                        UPDATE flake_webhook_deliveries d
                        SET claimed_until = $1 + $2, claimed_by = pg_backend_pid(), attempts = d.attempts + 1
                        FROM (SELECT id FROM flake_webhook_deliveries
                              WHERE state = 'pending' AND next_attempt_at <= $1
                                AND (claimed_until IS NULL OR claimed_until < $1
                                     OR claimed_by NOT IN (SELECT pid FROM pg_stat_activity))
                                AND endpoint IN (SELECT id FROM flake_webhook_endpoints
                                                 WHERE disabled_at IS NULL)
                              ORDER BY next_attempt_at, id LIMIT $3
                              FOR UPDATE SKIP LOCKED) due
                        WHERE d.id = due.id
                        RETURNING d.id, d.attempts, d.message, d.endpoint)
                     SELECT c.id, c.attempts, m.msg_id, m.event_type, m.payload, {}
                     FROM c JOIN flake_webhook_messages m ON m.id = c.message
                     JOIN flake_webhook_endpoints e ON e.id = c.endpoint
                     ORDER BY c.id",
                    crate::store::webhook_columns(Some("e"))
                ),
                &[&now_ms, &lease_ms, &limit],
            )
            .map_err(&sql)?;
        Ok(rows
            .iter()
            .map(|r| Delivery {
                id: r.get(0),
                attempt: r.get::<_, i32>(1).into(),
                msg_id: r.get(2),
                event_type: r.get(3),
                payload: r.get(4),
                endpoint: webhook_row_at(r, 5),
            })
            .collect())
    }

    /// See [`crate::store::Backend::finish_deliveries`].
    pub(crate) fn finish_deliveries(
        &mut self,
        outcomes: &[AttemptOutcome],
    ) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let sql = sql_err(&self.shown);
        let mut tx = self.client.get_mut().transaction().map_err(&sql)?;
        let mut ids = Vec::new();
        let mut states = Vec::new();
        let mut next = Vec::new();
        let mut status = Vec::new();
        let mut at = Vec::new();
        let mut latency = Vec::new();
        let mut errors = Vec::new();
        for o in outcomes {
            ids.push(o.delivery);
            let (state, when) = match &o.next {
                NextStep::Delivered => ("delivered", None),
                NextStep::RetryAt(t) => ("pending", Some(*t)),
                NextStep::GiveUp | NextStep::DisableEndpoint(_) => ("failed", None),
            };
            states.push(state);
            next.push(when);
            status.push(o.status.map(i32::from));
            at.push(o.attempted_at);
            latency.push(o.latency_ms);
            errors.push(o.error.as_deref());
        }
        // Only the claim's holder records it: a worker whose lease ran out
        // and whose delivery another worker took meanwhile leaves it be.
        tx.execute(
            "WITH u AS (
                SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::integer[], $5::bigint[],
                                     $6::bigint[], $7::text[])
                    u(id, state, next, status, at, latency, error)),
             done AS (
                UPDATE flake_webhook_deliveries d SET state = u.state,
                    next_attempt_at = coalesce(u.next, d.next_attempt_at), claimed_until = NULL,
                    claimed_by = NULL, last_status = u.status, last_error = u.error,
                    finished_at = CASE WHEN u.state = 'pending' THEN NULL ELSE u.at + u.latency END
                FROM u WHERE d.id = u.id AND d.claimed_by = pg_backend_pid()
                RETURNING d.id)
             INSERT INTO flake_webhook_attempts (delivery, attempted_at, status, latency_ms, error)
             SELECT u.id, u.at, u.status, u.latency, u.error FROM u JOIN done ON done.id = u.id",
            &[&ids, &states, &next, &status, &at, &latency, &errors],
        )
        .map_err(&sql)?;
        // Endpoints: a success clears the failing streak, a failure starts
        // one, and a disabling outcome disables.
        let mut by_endpoint: HashMap<i64, (bool, Option<&str>, i64)> = HashMap::new();
        for o in outcomes {
            let e = by_endpoint
                .entry(o.endpoint)
                .or_insert((false, None, o.attempted_at));
            e.0 |= o.next == NextStep::Delivered;
            if let NextStep::DisableEndpoint(reason) = &o.next {
                e.1 = Some(reason);
            }
            e.2 = e.2.min(o.attempted_at);
        }
        for (endpoint, (ok, disable, first)) in by_endpoint {
            tx.execute(
                "UPDATE flake_webhook_endpoints SET
                    failing_since = CASE WHEN $2 THEN NULL ELSE coalesce(failing_since, $4) END,
                    disabled_at = CASE WHEN $3::text IS NULL THEN disabled_at ELSE coalesce(disabled_at, $4) END,
                    disabled_reason = CASE WHEN $3::text IS NULL THEN disabled_reason
                                           ELSE coalesce(disabled_reason, $3) END
                 WHERE id = $1",
                &[&endpoint, &ok, &disable, &first],
            )
            .map_err(&sql)?;
        }
        tx.commit().map_err(&sql)?;
        Ok(())
    }

    /// See [`crate::store::Backend::deliveries`].
    pub(crate) fn deliveries(
        &self,
        endpoint: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let sql = sql_err(&self.shown);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut client = self.client.borrow_mut();
        let rows = client
            .query(
                "SELECT d.id, m.msg_id, m.event_type, d.state, d.attempts, m.created_at, d.next_attempt_at
                 FROM flake_webhook_deliveries d JOIN flake_webhook_messages m ON m.id = d.message
                 WHERE d.endpoint = $1 AND ($2::bigint IS NULL OR d.id < $2)
                 ORDER BY d.id DESC LIMIT $3",
                &[&endpoint, &before, &limit],
            )
            .map_err(&sql)?;
        let mut out: Vec<DeliveryRecord> = rows
            .iter()
            .map(|r| {
                let state: String = r.get(3);
                DeliveryRecord {
                    id: r.get(0),
                    msg_id: r.get(1),
                    event_type: r.get(2),
                    next_attempt_at: (state == "pending").then(|| r.get(6)),
                    state,
                    attempts: r.get::<_, i32>(4).into(),
                    created_at: r.get(5),
                    history: Vec::new(),
                }
            })
            .collect();
        let ids: Vec<i64> = out.iter().map(|d| d.id).collect();
        let attempts = client
            .query(
                "SELECT delivery, attempted_at, status, latency_ms, error FROM flake_webhook_attempts
                 WHERE delivery = ANY($1) ORDER BY delivery, id",
                &[&ids],
            )
            .map_err(&sql)?;
        let index: HashMap<i64, usize> = out.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
        for a in attempts {
            if let Some(&i) = index.get(&a.get::<_, i64>(0)) {
                out[i].history.push(DeliveryAttempt {
                    attempted_at: a.get(1),
                    status: a
                        .get::<_, Option<i32>>(2)
                        .and_then(|s| u16::try_from(s).ok()),
                    latency_ms: a.get(3),
                    error: a.get(4),
                });
            }
        }
        Ok(out)
    }

    /// See [`crate::store::Backend::replay_delivery`].
    pub(crate) fn replay_delivery(
        &mut self,
        endpoint: i64,
        delivery: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = sql_err(&self.shown);
        let n = self
            .client
            .get_mut()
            .execute(
                "UPDATE flake_webhook_deliveries SET state = 'pending', next_attempt_at = $3,
                    finished_at = NULL
                 WHERE id = $2 AND endpoint = $1 AND state <> 'pending'",
                &[&endpoint, &delivery, &now_ms],
            )
            .map_err(&sql)?;
        Ok(n == 1)
    }

    /// See [`crate::store::Backend::save_quarantine_file`].
    pub(crate) fn save_quarantine_file(
        &mut self,
        project: &str,
        content: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let sql = sql_err(&self.shown);
        self.client
            .get_mut()
            .execute(
                "INSERT INTO flake_quarantine_files (project, content, received_at) VALUES ($1, $2, $3)
                 ON CONFLICT (project) DO UPDATE SET content = excluded.content,
                    received_at = excluded.received_at",
                &[&project, &content, &now_ms],
            )
            .map_err(&sql)?;
        Ok(())
    }

    /// See [`crate::store::Backend::quarantine_file`].
    pub(crate) fn quarantine_file(
        &self,
        project: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let sql = sql_err(&self.shown);
        let row = self
            .client
            .borrow_mut()
            .query_opt(
                "SELECT content, received_at FROM flake_quarantine_files WHERE project = $1",
                &[&project],
            )
            .map_err(&sql)?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// See [`crate::store::Backend::last_proposal`].
    pub(crate) fn last_proposal(&self, project: &str) -> Result<String, StoreError> {
        let sql = sql_err(&self.shown);
        let row = self
            .client
            .borrow_mut()
            .query_opt(
                "SELECT content FROM flake_webhook_proposals WHERE project = $1",
                &[&project],
            )
            .map_err(&sql)?;
        Ok(row.map(|r| r.get(0)).unwrap_or_default())
    }

    /// See [`crate::store::Backend::announce_proposal`].
    pub(crate) fn announce_proposal(
        &mut self,
        project: &str,
        previous: &str,
        content: &str,
        data: &serde_json::Value,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let sql = sql_err(&self.shown);
        let mut tx = self.client.get_mut().transaction().map_err(&sql)?;
        tx.execute(
            "INSERT INTO flake_webhook_proposals (project, content, announced_at) VALUES ($1, '', 0)
             ON CONFLICT (project) DO NOTHING",
            &[&project],
        )
        .map_err(&sql)?;
        let current: String = tx
            .query_one(
                "SELECT content FROM flake_webhook_proposals WHERE project = $1 FOR UPDATE",
                &[&project],
            )
            .map_err(&sql)?
            .get(0);
        if current != previous {
            return Ok(false);
        }
        tx.execute(
            "UPDATE flake_webhook_proposals SET content = $2, announced_at = $3 WHERE project = $1",
            &[&project, &content, &now_ms],
        )
        .map_err(&sql)?;
        let message = crate::store::events::proposal(data.clone(), now_ms);
        enqueue(&mut tx, project, std::slice::from_ref(&message), None).map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(true)
    }

    /// See [`crate::store::Backend::pending_deliveries`].
    pub(crate) fn pending_deliveries(&self) -> Result<i64, StoreError> {
        let sql = sql_err(&self.shown);
        let row = self
            .client
            .borrow_mut()
            .query_one(
                "SELECT count(*) FROM flake_webhook_deliveries WHERE state = 'pending'",
                &[],
            )
            .map_err(&sql)?;
        Ok(row.get(0))
    }
}

/// An endpoint read from the columns `store::webhook_columns` lists, from `start` on.
pub(super) fn webhook_row_at(r: &postgres::Row, start: usize) -> crate::store::WebhookEndpoint {
    let events: String = r.get(start + 3);
    crate::store::WebhookEndpoint {
        id: r.get(start),
        project: r.get(start + 1),
        url: r.get(start + 2),
        events: crate::store::event_list(&events).collect(),
        secret: r.get(start + 4),
        previous_secret: r.get(start + 5),
        previous_until: r.get(start + 6),
        created_at: r.get(start + 7),
        disabled_at: r.get(start + 8),
        disabled_reason: r.get(start + 9),
        failing_since: r.get(start + 10),
    }
}
