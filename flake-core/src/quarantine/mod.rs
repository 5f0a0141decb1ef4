//! The committed quarantine file, `flake-quarantine.toml`.
//!
//! Tests listed there still run, but the gate ignores their failures (and
//! says so). The file is written only by `cargo flake quarantine ...` or by
//! hand; this module reads it with `toml` for typed access and edits it with
//! `toml_edit`, so comments, unknown keys and the order of keys survive.

mod file;
pub mod policy;
pub mod sync;

pub use file::{Entry, EntrySource, QuarantineError, QuarantineFile};
pub use policy::{AddFinding, Finding, KeepReason, ReleaseReason};
pub use sync::{SyncError, SyncPlan, plan};
