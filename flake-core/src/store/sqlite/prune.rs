//! Pruning a project's history in SQLite (see [`crate::store::PrunePlan`]).

use super::SqliteBackend;
use crate::store::{PrunePlan, PruneSummary, StoreError};

impl SqliteBackend {
    /// See [`crate::store::Backend::size`].
    pub(crate) fn size(&self) -> Result<u64, StoreError> {
        todo!()
    }

    /// See [`crate::store::Backend::prune`].
    pub(crate) fn prune(
        &mut self,
        _project: &str,
        _plan: &PrunePlan,
        _dry_run: bool,
    ) -> Result<PruneSummary, StoreError> {
        todo!()
    }
}
