//! Errors of the history store, the same for every backend: the client
//! library's error is kept as the source, by its message, never by its type.

use std::path::{Path, PathBuf};

/// The error of a backend's client library (SQLite's, PostgreSQL's).
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// Why the history database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database's folder could not be created.
    #[error("failed to create the history folder `{}`", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// SQLite could not open the file.
    #[error("failed to open the history database `{}`", path.display())]
    Open {
        /// The database.
        path: PathBuf,
        /// Why.
        #[source]
        source: BackendError,
    },
    /// The file is not an SQLite database.
    #[error("`{}` is not a cargo-flake history database; it was not modified (pass `--db` to choose another file)", path.display())]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: BackendError,
    },
    /// Written by a newer cargo-flake.
    #[error(
        "the history database `{}` has schema version {found}, newer than this cargo-flake understands ({supported}); upgrade cargo-flake or use another `--db`",
        path.display()
    )]
    TooNew {
        /// The database.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// An SQLite database of another program: nothing of ours is written to it.
    #[error("`{}` is not a cargo-flake history database: {why}; it was not modified (pass `--db` to choose another file)", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        why: String,
    },
    /// A history whose schema is damaged beyond what this build can read.
    #[error("the history database `{}` is damaged: {what}; it was not modified", path.display())]
    Damaged {
        /// The database.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A reading command found no history to read.
    #[error("no history database at `{}`: record runs with `cargo flake test` or `cargo flake ingest` first, or pass `--db`", path.display())]
    NoHistory {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Results of one run id would mix two commits or branches.
    #[error(
        "run `{run_id}` is recorded for {existing}, and this one is for {new}: refusing to merge them (use another `--run-id`)"
    )]
    RunConflict {
        /// The run id.
        run_id: String,
        /// Commit and branch of the recorded run.
        existing: String,
        /// Commit and branch of the results being added.
        new: String,
    },
    /// Any other error of the database.
    #[error("history database `{}` failed", path.display())]
    Sql {
        /// The database (a file, or a URL with its password masked).
        path: PathBuf,
        /// The client library's error.
        #[source]
        source: BackendError,
    },
    /// This build cannot do that with this database.
    #[error("`{db}`: {what} are not supported by this build of cargo-flake")]
    Unsupported {
        /// The database, password masked.
        db: String,
        /// What was asked.
        what: &'static str,
    },
    /// The database server refused to sign in (wrong password, unknown role).
    #[error(
        "could not sign in to `{db}`: {reason} (the password comes from the URL, `PGPASSWORD` or the passfile `PGPASSFILE`, default ~/.pgpass)"
    )]
    Auth {
        /// The server URL, password masked.
        db: String,
        /// The server's reason, which never holds the password.
        reason: String,
    },
    /// A stored value this build cannot interpret.
    #[error("history database `{}` holds an unknown {what} code {code}", path.display())]
    Corrupt {
        /// The database.
        path: PathBuf,
        /// Which column.
        what: &'static str,
        /// The value.
        code: i64,
    },
}

impl StoreError {
    /// Fills in the path of errors raised before the path was known.
    pub(crate) fn with_path(self, path: &Path) -> Self {
        match self {
            StoreError::Sql { source, .. } => StoreError::Sql {
                path: path.to_owned(),
                source,
            },
            StoreError::TooNew {
                found, supported, ..
            } => StoreError::TooNew {
                path: path.to_owned(),
                found,
                supported,
            },
            StoreError::NotADatabase { source, .. } => StoreError::NotADatabase {
                path: path.to_owned(),
                source,
            },
            StoreError::Foreign { why, .. } => StoreError::Foreign {
                path: path.to_owned(),
                why,
            },
            StoreError::Damaged { what, .. } => StoreError::Damaged {
                path: path.to_owned(),
                what,
            },
            other => other,
        }
    }
}
