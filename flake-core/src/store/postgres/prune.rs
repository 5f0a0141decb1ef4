//! Pruning a project's history in PostgreSQL (see [`crate::store::PrunePlan`]).

use super::PgBackend;
use crate::store::{PrunePlan, PruneSummary, StoreError};

impl PgBackend {
    /// See [`crate::store::Backend::size`].
    pub(crate) fn size(&self) -> Result<u64, StoreError> {
        Err(StoreError::Unsupported {
            db: self.shown.clone(),
            what: "size measurements",
        })
    }

    /// See [`crate::store::Backend::prune`].
    pub(crate) fn prune(
        &mut self,
        _project: &str,
        _plan: &PrunePlan,
        _dry_run: bool,
    ) -> Result<PruneSummary, StoreError> {
        Err(StoreError::Unsupported {
            db: self.shown.clone(),
            what: "prunes",
        })
    }
}
