//! `quarantine sync`: compute the statistics the policy decides on, evaluate
//! it, and apply the changes to the file in memory, so the caller can show,
//! check or write the result.

use std::collections::HashMap;

use jiff::civil::Date;

use super::policy::{self, Finding};
use super::{QuarantineError, QuarantineFile};
use crate::config::Config;
use crate::stats::{self, Stats, StatsOptions};
use crate::store::{Store, StoreError};

/// Why a sync could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The history could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The quarantine file could not be read or written.
    #[error(transparent)]
    Quarantine(#[from] QuarantineError),
}

/// What `sync` would do.
#[derive(Debug)]
pub struct SyncPlan {
    /// Every finding, sorted by id (changes and kept entries).
    pub findings: Vec<Finding>,
    /// The statistics the decisions were made on.
    pub stats: Stats,
    /// The file with the changes applied (not yet written).
    pub file: QuarantineFile,
}

impl SyncPlan {
    /// The file's text before the sync (empty when it did not exist).
    pub fn before(&self) -> &str {
        self.file.original().unwrap_or("")
    }

    /// The file's text after the sync.
    pub fn after(&self) -> String {
        if self.file.original().is_none() && !self.findings.iter().any(Finding::is_change) {
            // Nothing to add to a missing file: it stays missing.
            return String::new();
        }
        self.file.render()
    }

    /// Whether the file is out of date.
    pub fn changed(&self) -> bool {
        self.before() != self.after()
    }

    /// The findings that change the file.
    pub fn changes(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_change())
    }

    /// Writes the file atomically if it changed; returns whether it wrote.
    pub fn write(&self) -> Result<bool, QuarantineError> {
        if !self.changed() {
            return Ok(false);
        }
        self.file.save()
    }
}

/// Plans a sync of `file` against the history in `store`.
///
/// ```
/// use flake_core::{config::Config, quarantine::{self, QuarantineFile}, store::Store};
/// let store = Store::open_in_memory().unwrap();
/// let file = QuarantineFile::load(std::path::Path::new("does-not-exist.toml")).unwrap();
/// let today = "2026-11-21".parse().unwrap();
/// let plan = quarantine::plan(&store, file, &Config::default(), today).unwrap();
/// assert!(!plan.changed());
/// ```
pub fn plan(
    store: &Store,
    mut file: QuarantineFile,
    config: &Config,
    today: Date,
) -> Result<SyncPlan, SyncError> {
    let mut stats = stats::compute(store, &StatsOptions::from_config(config))?;
    stats.mark_quarantined(&file);
    let ids: Vec<String> = file.entries().iter().map(|e| e.id.clone()).collect();
    let last_seen: HashMap<String, i64> = stats::last_seen(store, &ids)?;
    let findings = policy::evaluate(&stats, file.entries(), &last_seen, config, today);
    policy::apply(&findings, &mut file, today);
    // Refuse here, not at write time, so `--check` and `--dry-run` never
    // show an edit that could not be written.
    file.check()?;
    Ok(SyncPlan {
        findings,
        stats,
        file,
    })
}
