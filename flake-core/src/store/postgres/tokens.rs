//! API tokens in PostgreSQL (see [`crate::tokens`]).

use std::path::PathBuf;

use postgres::Row;

use super::{PgBackend, sql_err};
use crate::store::{Role, StoreError, TokenRecord};

/// The advisory lock of scheduled maintenance ("cflk" then "mant").
const MAINTENANCE_LOCK: i64 = 0x6366_6c6b_6d61_6e74;

const COLUMNS: &str = "id, project, role, name, hash, created_at, expires_at, revoked_at";

impl PgBackend {
    /// See [`crate::store::Backend::insert_token`].
    pub(crate) fn insert_token(&mut self, t: &TokenRecord) -> Result<i64, StoreError> {
        let row = self
            .client
            .get_mut()
            .query_one(
                "INSERT INTO flake_tokens (project, role, name, hash, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &t.project,
                    &t.role.name(),
                    &t.name,
                    &&t.hash[..],
                    &t.created_at,
                    &t.expires_at,
                ],
            )
            .map_err(sql_err(&self.shown))?;
        Ok(row.get(0))
    }

    /// See [`crate::store::Backend::token`].
    pub(crate) fn token(&self, id: i64) -> Result<Option<TokenRecord>, StoreError> {
        let rows = self
            .client
            .borrow_mut()
            .query(
                &format!("SELECT {COLUMNS} FROM flake_tokens WHERE id = $1"),
                &[&id],
            )
            .map_err(sql_err(&self.shown))?;
        rows.first().map(|r| self.record(r)).transpose()
    }

    /// See [`crate::store::Backend::tokens`].
    pub(crate) fn tokens(&self, project: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = self
            .client
            .borrow_mut()
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM flake_tokens WHERE $1::text IS NULL OR project = $1 ORDER BY id"
                ),
                &[&project],
            )
            .map_err(sql_err(&self.shown))?;
        rows.iter().map(|r| self.record(r)).collect()
    }

    /// See [`crate::store::Backend::try_maintenance_lock`]: a session-level
    /// advisory lock, held by this connection until released (or until the
    /// connection ends, so a replica that dies mid-prune frees it).
    pub(crate) fn try_maintenance_lock(&mut self) -> Result<bool, StoreError> {
        let row = self
            .client
            .get_mut()
            .query_one("SELECT pg_try_advisory_lock($1)", &[&MAINTENANCE_LOCK])
            .map_err(sql_err(&self.shown))?;
        Ok(row.get(0))
    }

    /// See [`crate::store::Backend::history_version`].
    pub(crate) fn history_version(&self, project: &str) -> Result<(i64, i64, i64), StoreError> {
        let row = self
            .client
            .borrow_mut()
            .query_one(
                "SELECT count(*), coalesce(max(id), 0), coalesce(sum(total), 0)::bigint
                 FROM flake_runs WHERE project = $1",
                &[&project],
            )
            .map_err(sql_err(&self.shown))?;
        Ok((row.get(0), row.get(1), row.get(2)))
    }

    /// See [`crate::store::Backend::release_maintenance_lock`].
    pub(crate) fn release_maintenance_lock(&mut self) -> Result<(), StoreError> {
        self.client
            .get_mut()
            .execute("SELECT pg_advisory_unlock($1)", &[&MAINTENANCE_LOCK])
            .map_err(sql_err(&self.shown))?;
        Ok(())
    }

    /// See [`crate::store::Backend::revoke_token`].
    pub(crate) fn revoke_token(&mut self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        let n = self
            .client
            .get_mut()
            .execute(
                "UPDATE flake_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &now_ms],
            )
            .map_err(sql_err(&self.shown))?;
        Ok(n == 1)
    }

    fn record(&self, r: &Row) -> Result<TokenRecord, StoreError> {
        let id: i64 = r.get(0);
        let damaged = |what: &str| StoreError::Damaged {
            path: PathBuf::from(&self.shown),
            what: format!("token {id} has {what}"),
        };
        let role: String = r.get(2);
        let hash: Vec<u8> = r.get(4);
        Ok(TokenRecord {
            id,
            project: r.get(1),
            role: Role::parse(&role).ok_or_else(|| damaged("an unknown role"))?,
            name: r.get(3),
            created_at: r.get(5),
            expires_at: r.get(6),
            revoked_at: r.get(7),
            hash: hash.try_into().map_err(|_| damaged("a malformed hash"))?,
        })
    }
}

fn webhook_row(r: &Row) -> crate::store::WebhookEndpoint {
    super::outbox::webhook_row_at(r, 0)
}

impl PgBackend {
    /// See [`crate::store::Backend::insert_webhook`].
    pub(crate) fn insert_webhook(
        &mut self,
        e: &crate::store::WebhookEndpoint,
    ) -> Result<i64, StoreError> {
        let row = self
            .client
            .get_mut()
            .query_one(
                "INSERT INTO flake_webhook_endpoints (project, url, events, secret, created_at)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[
                    &e.project,
                    &e.url,
                    &e.events.join(","),
                    &e.secret,
                    &e.created_at,
                ],
            )
            .map_err(sql_err(&self.shown))?;
        Ok(row.get(0))
    }

    /// See [`crate::store::Backend::webhooks`].
    pub(crate) fn webhooks(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<crate::store::WebhookEndpoint>, StoreError> {
        let rows = self
            .client
            .borrow_mut()
            .query(
                &format!(
                    "SELECT {} FROM flake_webhook_endpoints
                     WHERE $1::text IS NULL OR project = $1 ORDER BY id",
                    crate::store::webhook_columns(None)
                ),
                &[&project],
            )
            .map_err(sql_err(&self.shown))?;
        Ok(rows.iter().map(webhook_row).collect())
    }

    /// See [`crate::store::Backend::remove_webhook`].
    pub(crate) fn remove_webhook(&mut self, id: i64) -> Result<bool, StoreError> {
        let n = self
            .client
            .get_mut()
            .execute("DELETE FROM flake_webhook_endpoints WHERE id = $1", &[&id])
            .map_err(sql_err(&self.shown))?;
        Ok(n == 1)
    }

    /// See [`crate::store::Backend::rotate_webhook_secret`].
    pub(crate) fn rotate_webhook_secret(
        &mut self,
        id: i64,
        secret: &str,
        previous_until: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .client
            .get_mut()
            .execute(
                "UPDATE flake_webhook_endpoints
                 SET previous_secret = secret, previous_until = $3, secret = $2 WHERE id = $1",
                &[&id, &secret, &previous_until],
            )
            .map_err(sql_err(&self.shown))?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::postgres::testing::TestDatabase;
    use crate::store::{Location, Store};

    /// Of two replicas, one holds the maintenance lock at a time; it is free
    /// again once released, and when its holder's connection ends.
    #[test]
    fn one_connection_at_a_time_holds_the_maintenance_lock() {
        let Some(db) = TestDatabase::create() else {
            return;
        };
        let location = Location::parse(db.url()).unwrap();
        let mut a = Store::connect(&location).unwrap();
        let mut b = Store::connect(&location).unwrap();
        assert!(a.try_maintenance_lock().unwrap());
        assert!(!b.try_maintenance_lock().unwrap());
        a.release_maintenance_lock().unwrap();
        assert!(b.try_maintenance_lock().unwrap());
        drop(b);
        let mut c = Store::connect(&location).unwrap();
        assert!(
            c.try_maintenance_lock().unwrap(),
            "a closed connection frees it"
        );
        c.release_maintenance_lock().unwrap();
    }
}
