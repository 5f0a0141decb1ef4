//! API tokens in SQLite (see [`crate::tokens`]).

use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteBackend, sql_err};
use crate::store::{Role, StoreError, TokenRecord};

const COLUMNS: &str = "id, project, role, name, hash, created_at, expires_at, revoked_at";

impl SqliteBackend {
    /// See [`crate::store::Backend::insert_token`].
    pub(crate) fn insert_token(&mut self, t: &TokenRecord) -> Result<i64, StoreError> {
        let sql = sql_err(&self.display_path());
        self.conn
            .execute(
                "INSERT INTO tokens (project, role, name, hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    t.project,
                    t.role.name(),
                    t.name,
                    &t.hash[..],
                    t.created_at,
                    t.expires_at
                ],
            )
            .map_err(&sql)?;
        Ok(self.conn.last_insert_rowid())
    }

    /// See [`crate::store::Backend::token`].
    pub(crate) fn token(&self, id: i64) -> Result<Option<TokenRecord>, StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        let row = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM tokens WHERE id = ?1"),
                [id],
                |r| Ok(raw(r)),
            )
            .optional()
            .map_err(&sql)?;
        row.map(|r| record(r, &path)).transpose()
    }

    /// See [`crate::store::Backend::tokens`].
    pub(crate) fn tokens(&self, project: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        let path = self.display_path();
        let sql = sql_err(&path);
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM tokens WHERE ?1 IS NULL OR project = ?1 ORDER BY id"
            ))
            .map_err(&sql)?;
        let rows = stmt
            .query_map([project], |r| Ok(raw(r)))
            .map_err(&sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&sql)?;
        rows.into_iter().map(|r| record(r, &path)).collect()
    }

    /// See [`crate::store::Backend::try_maintenance_lock`]. An SQLite history
    /// is served by a single node, and a prune's short transactions already
    /// serialise with every writer: there is no second replica to exclude.
    pub(crate) fn try_maintenance_lock(&mut self) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// See [`crate::store::Backend::release_maintenance_lock`].
    pub(crate) fn release_maintenance_lock(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// See [`crate::store::Backend::history_version`].
    pub(crate) fn history_version(&self, project: &str) -> Result<(i64, i64, i64), StoreError> {
        self.conn
            .query_row(
                "SELECT count(*), coalesce(max(id), 0), coalesce(sum(total), 0) FROM runs WHERE project = ?1",
                [project],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(sql_err(&self.display_path()))
    }

    /// See [`crate::store::Backend::revoke_token`].
    pub(crate) fn revoke_token(&mut self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        let sql = sql_err(&self.display_path());
        let n = self
            .conn
            .execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now_ms],
            )
            .map_err(&sql)?;
        Ok(n == 1)
    }
}

type Raw = rusqlite::Result<(
    i64,
    String,
    String,
    Option<String>,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<i64>,
)>;

fn raw(r: &Row<'_>) -> Raw {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn record(raw: Raw, path: &std::path::Path) -> Result<TokenRecord, StoreError> {
    let (id, project, role, name, hash, created_at, expires_at, revoked_at) =
        raw.map_err(sql_err(path))?;
    let damaged = |what: &str| StoreError::Damaged {
        path: path.to_owned(),
        what: format!("token {id} has {what}"),
    };
    Ok(TokenRecord {
        id,
        project,
        role: Role::parse(&role).ok_or_else(|| damaged("an unknown role"))?,
        name,
        created_at,
        expires_at,
        revoked_at,
        hash: hash.try_into().map_err(|_| damaged("a malformed hash"))?,
    })
}

fn webhook_row(r: &Row<'_>) -> rusqlite::Result<crate::store::WebhookEndpoint> {
    webhook_row_at(r, 0)
}

/// An endpoint read from the columns `store::webhook_columns` lists, from `start` on.
pub(super) fn webhook_row_at(
    r: &Row<'_>,
    start: usize,
) -> rusqlite::Result<crate::store::WebhookEndpoint> {
    let events: String = r.get(start + 3)?;
    Ok(crate::store::WebhookEndpoint {
        id: r.get(start)?,
        project: r.get(start + 1)?,
        url: r.get(start + 2)?,
        events: crate::store::event_list(&events).collect(),
        secret: r.get(start + 4)?,
        previous_secret: r.get(start + 5)?,
        previous_until: r.get(start + 6)?,
        created_at: r.get(start + 7)?,
        disabled_at: r.get(start + 8)?,
        disabled_reason: r.get(start + 9)?,
        failing_since: r.get(start + 10)?,
    })
}

impl SqliteBackend {
    /// See [`crate::store::Backend::insert_webhook`].
    pub(crate) fn insert_webhook(
        &mut self,
        e: &crate::store::WebhookEndpoint,
    ) -> Result<i64, StoreError> {
        let sql = sql_err(&self.display_path());
        self.conn
            .execute(
                "INSERT INTO webhook_endpoints (project, url, events, secret, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![e.project, e.url, e.events.join(","), e.secret, e.created_at],
            )
            .map_err(&sql)?;
        Ok(self.conn.last_insert_rowid())
    }

    /// See [`crate::store::Backend::webhooks`].
    pub(crate) fn webhooks(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<crate::store::WebhookEndpoint>, StoreError> {
        let sql = sql_err(&self.display_path());
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {} FROM webhook_endpoints WHERE ?1 IS NULL OR project = ?1 ORDER BY id",
                crate::store::webhook_columns(None)
            ))
            .map_err(&sql)?;
        stmt.query_map([project], webhook_row)
            .map_err(&sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(&sql)
    }

    /// See [`crate::store::Backend::remove_webhook`].
    pub(crate) fn remove_webhook(&mut self, id: i64) -> Result<bool, StoreError> {
        let sql = sql_err(&self.display_path());
        // No foreign keys in this schema: the endpoint's queue goes with it,
        // in one transaction.
        let tx = self.conn.transaction().map_err(&sql)?;
        tx.execute(
            "DELETE FROM webhook_attempts WHERE delivery IN
                (SELECT id FROM webhook_deliveries WHERE endpoint = ?1)",
            [id],
        )
        .map_err(&sql)?;
        tx.execute("DELETE FROM webhook_deliveries WHERE endpoint = ?1", [id])
            .map_err(&sql)?;
        let n = tx
            .execute("DELETE FROM webhook_endpoints WHERE id = ?1", [id])
            .map_err(&sql)?;
        tx.commit().map_err(&sql)?;
        Ok(n == 1)
    }

    /// See [`crate::store::Backend::rotate_webhook_secret`].
    pub(crate) fn rotate_webhook_secret(
        &mut self,
        id: i64,
        secret: &str,
        previous_until: i64,
    ) -> Result<bool, StoreError> {
        let sql = sql_err(&self.display_path());
        let n = self
            .conn
            .execute(
                "UPDATE webhook_endpoints SET previous_secret = secret, previous_until = ?3, secret = ?2
                 WHERE id = ?1",
                params![id, secret, previous_until],
            )
            .map_err(&sql)?;
        Ok(n == 1)
    }
}
