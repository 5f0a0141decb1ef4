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
