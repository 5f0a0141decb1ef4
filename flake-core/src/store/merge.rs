//! Writer rules every backend shares, kept in one copy so that a run merged
//! in SQLite and in PostgreSQL ends the same: the revision check of a reused
//! run id and the content digest that de-duplicates failure texts.

use crate::meta::RunMeta;

use super::StoreError;

/// Refuses to merge results of `meta` into a recorded run of another
/// commit or branch: a reused or colliding run id must never blend two runs.
/// A side that is unknown, or a commit given as a prefix of the other, agrees.
pub(crate) fn check_same_revision(
    run_id: &str,
    commit: &Option<String>,
    branch: &Option<String>,
    meta: &RunMeta,
) -> Result<(), StoreError> {
    let commits_differ = match (commit, &meta.commit) {
        (Some(a), Some(b)) => !(a.starts_with(b.as_str()) || b.starts_with(a.as_str())),
        _ => false,
    };
    let branches_differ = matches!((branch, &meta.branch), (Some(a), Some(b)) if a != b);
    if !commits_differ && !branches_differ {
        return Ok(());
    }
    Err(StoreError::RunConflict {
        run_id: run_id.to_owned(),
        existing: describe_revision(commit.as_deref(), branch.as_deref()),
        new: describe_revision(meta.commit.as_deref(), meta.branch.as_deref()),
    })
}

/// "commit `abc` on branch `main`", for messages; unknown parts are left out.
fn describe_revision(commit: Option<&str>, branch: Option<&str>) -> String {
    match (commit, branch) {
        (Some(c), Some(b)) => format!("commit `{c}` on branch `{b}`"),
        (Some(c), None) => format!("commit `{c}`"),
        (None, Some(b)) => format!("branch `{b}`"),
        (None, None) => "no known commit or branch".into(),
    }
}

/// The key a failure text is stored under: 128 bits of BLAKE3 over its
/// message, location and output, so a failure repeated in every run is
/// stored once, and a history copied between backends keeps its keys.
pub(crate) fn failure_digest(message: &str, location: Option<&str>, output: &str) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(message.as_bytes());
    h.update(&[0]);
    h.update(location.unwrap_or("").as_bytes());
    h.update(&[0]);
    h.update(output.as_bytes());
    h.finalize().as_bytes()[..16].try_into().expect("16 bytes")
}
