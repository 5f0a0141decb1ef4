//! API tokens of the team service: scoped to one project and one role,
//! shown once, stored only as a hash.
//!
//! A token reads `cfk_<id>_<secret>`: `id` is the row that holds it (not
//! secret, so a lookup by it tells an attacker nothing), `secret` is 32
//! random bytes in hex. The database keeps BLAKE3(secret) only; checking a
//! token is one lookup by id and a constant-time comparison of hashes, so
//! neither the lookup nor the comparison leaks how much of a guess was
//! right. A fast hash is right here: the secret has 256 bits of entropy, so
//! there is nothing to brute-force that a slow password hash would protect.
//! The `cfk_` prefix lets secret scanners find tokens pasted where they
//! should not be.

use subtle::ConstantTimeEq;

pub use crate::store::{Role, TokenRecord};
use crate::store::{Store, StoreError};

/// Why a presented token was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Not a token of ours, or no such token (401).
    Unknown,
    /// Revoked (401).
    Revoked,
    /// Expired (401).
    Expired,
}

/// A new token: the text to show once, and its record.
#[derive(Debug)]
pub struct Created {
    /// `cfk_<id>_<secret>`: shown once, never stored.
    pub token: String,
    /// As stored.
    pub record: TokenRecord,
}

/// Creates a token for `project` with `role`, valid until `expires_at`.
pub fn create(
    store: &mut Store,
    project: &str,
    role: Role,
    name: Option<&str>,
    expires_at: Option<i64>,
    now_ms: i64,
) -> Result<Created, StoreError> {
    let mut secret = [0u8; 32];
    fill_random(&mut secret)?;
    let secret = crate::meta::hex(&secret);
    let hash = *blake3::hash(secret.as_bytes()).as_bytes();
    let mut record = TokenRecord {
        id: 0,
        project: project.to_owned(),
        role,
        name: name.map(str::to_owned),
        created_at: now_ms,
        expires_at,
        revoked_at: None,
        hash,
    };
    record.id = store.insert_token(&record)?;
    Ok(Created {
        token: format!("cfk_{}_{secret}", record.id),
        record,
    })
}

/// Checks a presented token at `now_ms`: its record when it is valid.
pub fn authenticate(
    store: &Store,
    presented: &str,
    now_ms: i64,
) -> Result<Result<TokenRecord, Rejected>, StoreError> {
    let Some((id, secret)) = split(presented) else {
        return Ok(Err(Rejected::Unknown));
    };
    let Some(record) = store.token(id)? else {
        return Ok(Err(Rejected::Unknown));
    };
    let hash = blake3::hash(secret.as_bytes());
    if !bool::from(hash.as_bytes().ct_eq(&record.hash)) {
        return Ok(Err(Rejected::Unknown));
    }
    if record.revoked_at.is_some() {
        return Ok(Err(Rejected::Revoked));
    }
    if !record.active(now_ms) {
        return Ok(Err(Rejected::Expired));
    }
    Ok(Ok(record))
}

/// `cfk_<id>_<secret>` into its id and secret.
fn split(token: &str) -> Option<(i64, &str)> {
    let rest = token.strip_prefix("cfk_")?;
    let (id, secret) = rest.split_once('_')?;
    let id: i64 = id.parse().ok().filter(|&i| i > 0)?;
    (secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit())).then_some((id, secret))
}

/// Fills `buf` from the operating system's generator.
fn fill_random(buf: &mut [u8]) -> Result<(), StoreError> {
    getrandom::fill(buf).map_err(|e| StoreError::Unsupported {
        db: "the operating system".into(),
        what: if e.raw_os_error().is_some() {
            "random numbers (the OS generator failed)"
        } else {
            "random numbers"
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_admin_allows_everything() {
        for role in [Role::Upload, Role::Read, Role::Admin] {
            assert_eq!(Role::parse(role.name()), Some(role));
        }
        assert_eq!(Role::parse("owner"), None);
        assert!(Role::Admin.allows(Role::Upload) && Role::Admin.allows(Role::Read));
        assert!(!Role::Upload.allows(Role::Read) && !Role::Read.allows(Role::Upload));
    }

    #[test]
    fn malformed_tokens_are_rejected_before_any_lookup() {
        let good = format!("cfk_12_{}", "ab".repeat(32));
        assert_eq!(split(&good), Some((12, &good[7..])));
        for bad in [
            "",
            "cfk_",
            "cfk_12",
            "cfk_x_abcd",
            "cfk_0_",
            "Bearer cfk_1_aa",
            &format!("cfk_-1_{}", "ab".repeat(32)),
            &format!("cfk_1_{}", "zz".repeat(32)),
            &format!("cfk_1_{}", "ab".repeat(31)),
        ] {
            assert_eq!(split(bad), None, "{bad}");
        }
    }
}
