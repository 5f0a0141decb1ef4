//! Where the history lives: `--database-url` and `--db`, parsed once.
//!
//! `postgres://…` and `postgresql://…` select the shared PostgreSQL backend;
//! `sqlite://PATH` or a plain path selects an SQLite file. A URL is only ever
//! shown through [`Location`]'s `Display`, which masks a password, so no
//! message can leak one.

use std::fmt;
use std::path::PathBuf;

/// A history database named by the user.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL, kept whole for the client and shown masked.
    Postgres(String),
}

/// Why a database URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// A scheme this build has no backend for.
    #[error(
        "`{shown}` is not a database URL cargo-flake knows: use `postgres://…`, `sqlite://PATH` or a plain path"
    )]
    UnknownScheme {
        /// The URL, password masked.
        shown: String,
    },
    /// An empty URL, or `sqlite://` with nothing after it.
    #[error("the database URL names no database: write `postgres://…`, `sqlite://PATH` or a path")]
    EmptyPath,
}

impl Location {
    /// Parses `--database-url` (or `CARGO_FLAKE_DATABASE_URL`).
    ///
    /// ```
    /// use flake_core::store::Location;
    /// let pg = Location::parse("postgres://ci:s3cret@db.internal/flake").unwrap();
    /// assert_eq!(pg.to_string(), "postgres://ci:***@db.internal/flake");
    /// assert_eq!(
    ///     Location::parse("sqlite://.flake/history.db").unwrap(),
    ///     Location::Sqlite(".flake/history.db".into())
    /// );
    /// ```
    pub fn parse(url: &str) -> Result<Location, LocationError> {
        let trimmed = url.trim();
        if trimmed.is_empty() {
            // An empty path would open a private temporary database: every
            // run recorded into it would be lost without a word.
            return Err(LocationError::EmptyPath);
        }
        let lower = trimmed.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(Location::Postgres(trimmed.to_owned()));
        }
        if let Some(path) = strip_prefix_ignore_case(trimmed, "sqlite://") {
            if path.is_empty() {
                return Err(LocationError::EmptyPath);
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = trimmed.split_once("://")
            && !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err(LocationError::UnknownScheme {
                shown: mask_password(trimmed),
            });
        }
        Ok(Location::Sqlite(PathBuf::from(trimmed)))
    }

    /// Whether this is the shared PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&mask_password(url)),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output ends up in logs and panics too: mask there as well.
        match self {
            Location::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Location::Postgres(_) => f.debug_tuple("Postgres").field(&self.to_string()).finish(),
        }
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `scheme://user:***@host/…`: the password of the userinfo and of a
/// `password=` query parameter replaced, everything else kept for diagnosis.
pub fn mask_password(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let authority_end = out[start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| start + i);
        // The last `@` of the authority ends the userinfo: a raw `@` in a
        // password should be percent-encoded, but a leak is worse than leniency.
        if let Some(at) = out[start..authority_end].rfind('@').map(|i| start + i)
            && let Some(colon) = out[start..at].find(':').map(|i| start + i)
        {
            out.replace_range(colon + 1..at, "***");
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", masked.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_backends() {
        assert!(Location::parse("postgres://h/db").unwrap().is_postgres());
        assert!(Location::parse("PostgreSQL://h/db").unwrap().is_postgres());
        assert_eq!(
            Location::parse("sqlite:///abs/h.db").unwrap(),
            Location::Sqlite("/abs/h.db".into())
        );
        assert_eq!(
            Location::parse("history.db").unwrap(),
            Location::Sqlite("history.db".into())
        );
        for empty in ["sqlite://", "", "  "] {
            assert!(
                matches!(Location::parse(empty), Err(LocationError::EmptyPath)),
                "{empty:?}"
            );
        }
        let err = Location::parse("mysql://root:hunter2@h/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("mysql://root:***@h/db"), "{err}");
    }

    #[test]
    fn passwords_never_show() {
        let cases = [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?password=pw&sslmode=require",
                "postgres://h/db?password=***&sslmode=require",
            ),
            ("postgres://u:p%40ss@h/db?x=1", "postgres://u:***@h/db?x=1"),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
        ];
        for (url, shown) in cases {
            let loc = Location::parse(url).unwrap();
            assert_eq!(loc.to_string(), shown);
            assert!(!format!("{loc:?}").contains("pw"), "{loc:?}");
        }
    }
}
