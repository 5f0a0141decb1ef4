//! Scratch databases on a real PostgreSQL server, for the tests of this
//! crate and of the `tests` crate (never a mock: the point is the server).
//!
//! `CARGO_FLAKE_TEST_DATABASE_URL` names a server and a database to connect
//! to for administration (`postgres://postgres@127.0.0.1:5432/test` in CI).
//! Each [`TestDatabase`] is a database of its own, created fresh and dropped
//! when the value is dropped (a failing test unwinds through that too), so
//! tests run in parallel. Unset, the PostgreSQL tests skip and one line per
//! test process says so; set but unreachable, they fail.

use std::io::Write;
use std::sync::Once;

use crate::env_vars::CARGO_FLAKE_TEST_DATABASE_URL;

static SKIPPED: Once = Once::new();

/// A database created for one test, dropped with this value.
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// A fresh database on the test server, or `None` (after saying so once)
    /// when `CARGO_FLAKE_TEST_DATABASE_URL` is unset.
    ///
    /// # Panics
    /// When the variable is set and the server cannot be used: in CI a
    /// missing server must fail the tests, not skip them.
    pub fn create() -> Option<TestDatabase> {
        let server = std::env::var(CARGO_FLAKE_TEST_DATABASE_URL)
            .ok()
            .filter(|s| !s.trim().is_empty());
        let Some(server) = server else {
            SKIPPED.call_once(|| {
                // Straight to the process's stderr: the test harness captures
                // `eprintln!` of passing tests, and this line must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "note: PostgreSQL tests skipped; set {CARGO_FLAKE_TEST_DATABASE_URL} \
                     (e.g. postgres://postgres@127.0.0.1:5432/test) to run them"
                );
            });
            return None;
        };
        let name = format!(
            "flake_t_{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        admin(&server)
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("creating the test database `{name}` failed: {e:?}"));
        let url = with_database(&server, &name);
        Some(TestDatabase { server, name, url })
    }

    /// The URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Brings the planner's statistics and the visibility map up to date,
    /// as autovacuum does some time after a bulk load: benchmarks that load
    /// a history and query it at once would otherwise time a database no
    /// server in use looks like.
    pub fn vacuum_analyze(&self) {
        super::connect::connect(&self.url)
            .and_then(|mut c| {
                c.batch_execute("VACUUM ANALYZE")
                    .map_err(super::sql_err(&self.url))
            })
            .unwrap_or_else(|e| panic!("VACUUM ANALYZE of `{}` failed: {e}", self.name));
    }

    /// A plain connection, for tests that must reach under the store.
    #[cfg(test)]
    pub(crate) fn client(&self) -> postgres::Client {
        super::connect::connect(&self.url).expect("connect to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // FORCE ends connections a failing test left open.
        let dropped = super::connect::connect(&self.server).and_then(|mut c| {
            c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .map_err(super::sql_err(&self.server))
        });
        if let Err(e) = dropped
            && !std::thread::panicking()
        {
            panic!("dropping the test database `{}` failed: {e}", self.name);
        }
    }
}

/// A connection to the administration database named by the variable.
fn admin(server: &str) -> postgres::Client {
    super::connect::connect(server).unwrap_or_else(|e| {
        let mut why = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            why = format!("{why}: {c}");
            cause = c.source();
        }
        panic!("{CARGO_FLAKE_TEST_DATABASE_URL} is set but its server cannot be used: {why}")
    })
}

/// `url` with its database replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5432/test?connect_timeout=5", "x"),
            "postgres://u@h:5432/x?connect_timeout=5"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
