//! The webhook outbox in SQLite: the same tables and rules as PostgreSQL's
//! (`store/postgres/outbox.rs`) for a single-node service. One writer at a
//! time holds the database (`BEGIN IMMEDIATE`), so a claim needs no row
//! locks; it is marked with this process's claimant number and a lease.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};

use super::write::RunWriter;
use super::{SqliteBackend, sql_err};
use crate::model::Outcome;
use crate::store::events::{EventTx, FlakeState, OutboxMessage};
use crate::store::{
    AttemptOutcome, Delivery, DeliveryAttempt, DeliveryRecord, NextStep, StoreError,
};

fn outcome(path: &std::path::Path, code: i64) -> Result<Outcome, StoreError> {
    Outcome::from_code(code).ok_or(StoreError::Corrupt {
        path: path.to_owned(),
        what: "outcome",
        code,
    })
}

impl EventTx for RunWriter<'_> {
    fn flaky_in_run(&mut self) -> Result<Vec<i64>, StoreError> {
        let mut candidates = std::mem::take(&mut self.flaky_candidates);
        candidates.sort_unstable();
        candidates.dedup();
        // A later merge may have made a candidate's result something else.
        Ok(self
            .outcomes_in_run(&candidates)?
            .into_iter()
            .filter(|(_, o)| *o == Outcome::Flaky)
            .map(|(t, _)| t)
            .collect())
    }

    fn lock_states(&mut self, flaky: &[i64], at: i64) -> Result<Vec<FlakeState>, StoreError> {
        let sql = sql_err(&self.path);
        let mut fresh = HashSet::new();
        {
            let mut insert = self
                .tx
                .prepare_cached(
                    "INSERT INTO flaky_state (test, project, first_flaky_at, last_flaky_at, clean_runs, open)
                     VALUES (?1, ?2, ?3, ?3, 0, 0) ON CONFLICT (test) DO NOTHING",
                )
                .map_err(&sql)?;
            for &test in flaky {
                if insert
                    .execute(params![test, self.project, at])
                    .map_err(&sql)?
                    == 1
                {
                    fresh.insert(test);
                }
            }
        }
        // The open rows (a partial index) and this run's flaky ones, not
        // every test that ever flaked.
        let listed = serde_json::to_string(flaky).map_err(|e| StoreError::Damaged {
            path: self.path.clone(),
            what: e.to_string(),
        })?;
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT test, first_flaky_at, last_flaky_at, clean_runs, open FROM flaky_state
                 WHERE project = ?1 AND open
                 UNION
                 SELECT test, first_flaky_at, last_flaky_at, clean_runs, open FROM flaky_state
                 WHERE test IN (SELECT value FROM json_each(?2))
                 ORDER BY test",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map(params![self.project, listed], |r| {
                Ok(FlakeState {
                    test: r.get(0)?,
                    first_flaky_at: r.get(1)?,
                    last_flaky_at: r.get(2)?,
                    clean_runs: r.get(3)?,
                    open: r.get(4)?,
                    fresh: false,
                })
            })
            .map_err(&sql)?;
        let mut out = Vec::new();
        for row in rows {
            let mut s = row.map_err(&sql)?;
            s.fresh = fresh.contains(&s.test);
            out.push(s);
        }
        Ok(out)
    }

    fn outcomes_in_run(&mut self, tests: &[i64]) -> Result<HashMap<i64, Outcome>, StoreError> {
        let sql = sql_err(&self.path);
        let mut stmt = self
            .tx
            .prepare_cached("SELECT outcome FROM results WHERE test = ?1 AND run = ?2")
            .map_err(&sql)?;
        let mut out = HashMap::new();
        for &test in tests {
            let code: Option<i64> = stmt
                .query_row(params![test, self.run], |r| r.get(0))
                .optional()
                .map_err(&sql)?;
            if let Some(code) = code {
                out.insert(test, outcome(&self.path, code)?);
            }
        }
        Ok(out)
    }

    fn save_states(&mut self, states: &[FlakeState]) -> Result<(), StoreError> {
        let sql = sql_err(&self.path);
        let mut stmt = self
            .tx
            .prepare_cached(
                "UPDATE flaky_state SET first_flaky_at = ?2, last_flaky_at = ?3, clean_runs = ?4, open = ?5
                 WHERE test = ?1",
            )
            .map_err(&sql)?;
        for s in states {
            stmt.execute(params![
                s.test,
                s.first_flaky_at,
                s.last_flaky_at,
                s.clean_runs,
                s.open
            ])
            .map_err(&sql)?;
        }
        Ok(())
    }

    fn subscriptions(&mut self) -> Result<HashSet<String>, StoreError> {
        let sql = sql_err(&self.path);
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT events FROM webhook_endpoints WHERE project = ?1 AND disabled_at IS NULL",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map([&self.project], |r| r.get::<_, String>(0))
            .map_err(&sql)?;
        let mut out = HashSet::new();
        for row in rows {
            out.extend(crate::store::event_list(&row.map_err(&sql)?));
        }
        Ok(out)
    }

    fn test_names(&mut self, tests: &[i64]) -> Result<HashMap<i64, String>, StoreError> {
        let sql = sql_err(&self.path);
        let mut stmt = self
            .tx
            .prepare_cached("SELECT name FROM tests WHERE id = ?1")
            .map_err(&sql)?;
        let mut out = HashMap::new();
        for &test in tests {
            if let Some(name) = stmt
                .query_row([test], |r| r.get::<_, String>(0))
                .optional()
                .map_err(&sql)?
            {
                out.insert(test, name);
            }
        }
        Ok(out)
    }

    fn recent_outcomes(
        &mut self,
        tests: &[i64],
        limit: usize,
    ) -> Result<HashMap<i64, Vec<Outcome>>, StoreError> {
        let sql = sql_err(&self.path);
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT outcome FROM results WHERE test = ?1 ORDER BY run DESC LIMIT ?2",
            )
            .map_err(&sql)?;
        let mut out = HashMap::new();
        for &test in tests {
            let codes = stmt
                .query_map(params![test, limit as i64], |r| r.get::<_, i64>(0))
                .map_err(&sql)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(&sql)?;
            let outcomes = codes
                .into_iter()
                .map(|c| outcome(&self.path, c))
                .collect::<Result<Vec<_>, _>>()?;
            out.insert(test, outcomes);
        }
        Ok(out)
    }

    fn run_failures(
        &mut self,
        tests: &[i64],
    ) -> Result<HashMap<i64, (String, Option<String>)>, StoreError> {
        let sql = sql_err(&self.path);
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT f.message, f.location FROM attempts a JOIN failures f ON f.id = a.failure
                 WHERE a.test = ?1 AND a.run = ?2 ORDER BY a.attempt LIMIT 1",
            )
            .map_err(&sql)?;
        let mut out = HashMap::new();
        for &test in tests {
            if let Some(found) = stmt
                .query_row(params![test, self.run], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(&sql)?
            {
                out.insert(test, found);
            }
        }
        Ok(out)
    }

    fn run_counts(&mut self) -> Result<[i64; 4], StoreError> {
        let sql = sql_err(&self.path);
        self.tx
            .query_row(
                "SELECT passed, flaky, failed, skipped FROM runs WHERE id = ?1",
                [self.run],
                |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]),
            )
            .map_err(&sql)
    }

    fn enqueue(&mut self, messages: &[OutboxMessage]) -> Result<(), StoreError> {
        let sql = sql_err(&self.path);
        enqueue(self.tx, &self.project, messages, None).map_err(&sql)
    }
}

/// Stores `messages` and a pending delivery of each to every enabled
/// endpoint of `project` subscribed to its type, or only to `endpoint`.
fn enqueue(
    conn: &rusqlite::Connection,
    project: &str,
    messages: &[OutboxMessage],
    endpoint: Option<i64>,
) -> rusqlite::Result<()> {
    let mut message = conn.prepare_cached(
        "INSERT INTO webhook_messages (project, msg_id, event_type, payload, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut fan_out = conn.prepare_cached(
        "INSERT INTO webhook_deliveries (message, endpoint, state, next_attempt_at)
         SELECT ?1, id, 'pending', ?2 FROM webhook_endpoints
         WHERE project = ?3 AND disabled_at IS NULL
           AND CASE WHEN ?5 IS NULL THEN (',' || events || ',') LIKE ('%,' || ?4 || ',%')
                    ELSE id = ?5 END
         ORDER BY id",
    )?;
    for m in messages {
        message.execute(params![
            project,
            m.msg_id,
            m.event_type,
            m.payload,
            m.created_at
        ])?;
        let id = conn.last_insert_rowid();
        fan_out.execute(params![id, m.created_at, project, m.event_type, endpoint])?;
    }
    Ok(())
}

/// A number for this process's claims: SQLite has no sessions to tell a
/// live claimant from a dead one, so claims of another process end with
/// their lease.
fn claimant() -> i64 {
    static CLAIMANT: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *CLAIMANT.get_or_init(|| {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        i64::from(i32::from_le_bytes(b) & i32::MAX)
    })
}

impl SqliteBackend {
    /// See [`crate::store::Backend::enqueue_ping`].
    pub(crate) fn enqueue_ping(
        &mut self,
        endpoint: i64,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let sql = sql_err(&self.display_path());
        let project: Option<String> = self
            .conn
            .query_row(
                "SELECT project FROM webhook_endpoints WHERE id = ?1",
                [endpoint],
                |r| r.get(0),
            )
            .optional()
            .map_err(&sql)?;
        let Some(project) = project else {
            return Ok(None);
        };
        let message = crate::store::events::ping(&project, now_ms);
        let tx = self.conn.transaction().map_err(&sql)?;
        enqueue(
            &tx,
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
        let sql = sql_err(&self.display_path());
        // A read first: an idle dispatcher polls, and must not take the
        // write lock from the writers each time it finds nothing.
        let due: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM webhook_deliveries
                                WHERE state = 'pending' AND next_attempt_at <= ?1)",
                [now_ms],
                |r| r.get(0),
            )
            .map_err(&sql)?;
        if !due {
            return Ok(Vec::new());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&sql)?;
        let columns = crate::store::webhook_columns(Some("e"));
        let claimed = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT d.id, d.attempts + 1, m.msg_id, m.event_type, m.payload, {columns}
                     FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message
                     JOIN webhook_endpoints e ON e.id = d.endpoint
                     WHERE d.state = 'pending' AND d.next_attempt_at <= ?1
                       AND (d.claimed_until IS NULL OR d.claimed_until < ?1)
                       AND e.disabled_at IS NULL
                     ORDER BY d.next_attempt_at, d.id LIMIT ?2"
                ))
                .map_err(&sql)?;
            stmt.query_map(params![now_ms, limit as i64], |r| {
                Ok(Delivery {
                    id: r.get(0)?,
                    attempt: r.get(1)?,
                    msg_id: r.get(2)?,
                    event_type: r.get(3)?,
                    payload: r.get(4)?,
                    endpoint: super::tokens::webhook_row_at(r, 5)?,
                })
            })
            .map_err(&sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&sql)?
        };
        {
            let mut update = tx
                .prepare(
                    "UPDATE webhook_deliveries SET claimed_until = ?2, claimed_by = ?3, attempts = attempts + 1
                     WHERE id = ?1",
                )
                .map_err(&sql)?;
            for d in &claimed {
                update
                    .execute(params![d.id, now_ms + lease_ms, claimant()])
                    .map_err(&sql)?;
            }
        }
        tx.commit().map_err(&sql)?;
        Ok(claimed)
    }

    /// See [`crate::store::Backend::finish_deliveries`].
    pub(crate) fn finish_deliveries(
        &mut self,
        outcomes: &[AttemptOutcome],
    ) -> Result<(), StoreError> {
        let sql = sql_err(&self.display_path());
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&sql)?;
        {
            let mut update = tx
                .prepare(
                    "UPDATE webhook_deliveries SET state = ?2, next_attempt_at = coalesce(?3, next_attempt_at),
                        claimed_until = NULL, claimed_by = NULL, last_status = ?4, last_error = ?5,
                        finished_at = ?6
                     WHERE id = ?1 AND claimed_by = ?7",
                )
                .map_err(&sql)?;
            let mut attempt = tx
                .prepare(
                    "INSERT INTO webhook_attempts (delivery, attempted_at, status, latency_ms, error)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(&sql)?;
            let mut endpoint = tx
                .prepare(
                    "UPDATE webhook_endpoints SET
                        failing_since = CASE WHEN ?2 THEN NULL ELSE coalesce(failing_since, ?4) END,
                        disabled_at = CASE WHEN ?3 IS NULL THEN disabled_at ELSE coalesce(disabled_at, ?4) END,
                        disabled_reason = CASE WHEN ?3 IS NULL THEN disabled_reason
                                               ELSE coalesce(disabled_reason, ?3) END
                     WHERE id = ?1",
                )
                .map_err(&sql)?;
            for o in outcomes {
                let (state, next, disable) = match &o.next {
                    NextStep::Delivered => ("delivered", None, None),
                    NextStep::RetryAt(t) => ("pending", Some(*t), None),
                    NextStep::GiveUp => ("failed", None, None),
                    NextStep::DisableEndpoint(reason) => ("failed", None, Some(reason.as_str())),
                };
                let finished = (state != "pending").then_some(o.attempted_at + o.latency_ms);
                let n = update
                    .execute(params![
                        o.delivery,
                        state,
                        next,
                        o.status,
                        o.error,
                        finished,
                        claimant()
                    ])
                    .map_err(&sql)?;
                if n == 0 {
                    continue;
                }
                attempt
                    .execute(params![
                        o.delivery,
                        o.attempted_at,
                        o.status,
                        o.latency_ms,
                        o.error
                    ])
                    .map_err(&sql)?;
                endpoint
                    .execute(params![
                        o.endpoint,
                        o.next == NextStep::Delivered,
                        disable,
                        o.attempted_at
                    ])
                    .map_err(&sql)?;
            }
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
        let sql = sql_err(&self.display_path());
        let mut stmt = self
            .conn
            .prepare(
                "SELECT d.id, m.msg_id, m.event_type, d.state, d.attempts, m.created_at, d.next_attempt_at
                 FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message
                 WHERE d.endpoint = ?1 AND (?2 IS NULL OR d.id < ?2)
                 ORDER BY d.id DESC LIMIT ?3",
            )
            .map_err(&sql)?;
        let mut out = stmt
            .query_map(params![endpoint, before, limit as i64], |r| {
                let state: String = r.get(3)?;
                Ok(DeliveryRecord {
                    id: r.get(0)?,
                    msg_id: r.get(1)?,
                    event_type: r.get(2)?,
                    next_attempt_at: if state == "pending" {
                        Some(r.get(6)?)
                    } else {
                        None
                    },
                    state,
                    attempts: r.get(4)?,
                    created_at: r.get(5)?,
                    history: Vec::new(),
                })
            })
            .map_err(&sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&sql)?;
        let mut attempts = self
            .conn
            .prepare(
                "SELECT attempted_at, status, latency_ms, error FROM webhook_attempts
                 WHERE delivery = ?1 ORDER BY id",
            )
            .map_err(&sql)?;
        for d in &mut out {
            d.history = attempts
                .query_map([d.id], |r| {
                    Ok(DeliveryAttempt {
                        attempted_at: r.get(0)?,
                        status: r.get(1)?,
                        latency_ms: r.get(2)?,
                        error: r.get(3)?,
                    })
                })
                .map_err(&sql)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(&sql)?;
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
        let sql = sql_err(&self.display_path());
        let n = self
            .conn
            .execute(
                "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ?3, finished_at = NULL
                 WHERE id = ?2 AND endpoint = ?1 AND state <> 'pending'",
                params![endpoint, delivery, now_ms],
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
        let sql = sql_err(&self.display_path());
        self.conn
            .execute(
                "INSERT INTO quarantine_files (project, content, received_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (project) DO UPDATE SET content = excluded.content,
                    received_at = excluded.received_at",
                params![project, content, now_ms],
            )
            .map_err(&sql)?;
        Ok(())
    }

    /// See [`crate::store::Backend::quarantine_file`].
    pub(crate) fn quarantine_file(
        &self,
        project: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let sql = sql_err(&self.display_path());
        self.conn
            .query_row(
                "SELECT content, received_at FROM quarantine_files WHERE project = ?1",
                [project],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&sql)
    }

    /// See [`crate::store::Backend::last_proposal`].
    pub(crate) fn last_proposal(&self, project: &str) -> Result<String, StoreError> {
        let sql = sql_err(&self.display_path());
        Ok(self
            .conn
            .query_row(
                "SELECT content FROM webhook_proposals WHERE project = ?1",
                [project],
                |r| r.get(0),
            )
            .optional()
            .map_err(&sql)?
            .unwrap_or_default())
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
        let sql = sql_err(&self.display_path());
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&sql)?;
        let current: String = tx
            .query_row(
                "SELECT content FROM webhook_proposals WHERE project = ?1",
                [project],
                |r| r.get(0),
            )
            .optional()
            .map_err(&sql)?
            .unwrap_or_default();
        if current != previous {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO webhook_proposals (project, content, announced_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (project) DO UPDATE SET content = excluded.content,
                announced_at = excluded.announced_at",
            params![project, content, now_ms],
        )
        .map_err(&sql)?;
        let message = crate::store::events::proposal(data.clone(), now_ms);
        enqueue(&tx, project, std::slice::from_ref(&message), None).map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(true)
    }

    /// See [`crate::store::Backend::pending_deliveries`].
    pub(crate) fn pending_deliveries(&self) -> Result<i64, StoreError> {
        let sql = sql_err(&self.display_path());
        self.conn
            .query_row(
                "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .map_err(&sql)
    }
}
