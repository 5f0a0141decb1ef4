//! Browser sessions of the dashboard.
//!
//! A person pastes a read token once (`POST /login`); the server answers
//! with a random session id in an `HttpOnly; SameSite=Strict` cookie, so the
//! token itself never travels again and never reaches a URL, a page or a log
//! line. Sessions live in this replica's memory: they do not survive a
//! restart, and behind a load balancer they need sticky routing (or a sign-in
//! per replica).
//!
//! Forms are protected against cross-site requests twice: the cookie is
//! `SameSite=Strict` (a browser does not send it on a request started by
//! another site), and every form of a signed-in page carries the session's
//! CSRF token in a hidden field, checked on every POST. The login form, which
//! has no session yet, checks that `Origin` (or `Referer`) names this host.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use axum::http::{HeaderMap, header};

/// The cookie's name.
pub const COOKIE: &str = "flake_session";

/// The longest a session lives, ms (shorter when the token expires sooner).
pub const MAX_AGE_MS: i64 = 12 * 3600 * 1000;

/// More live sessions than this and sign-ins are refused (memory bound).
const MAX_SESSIONS: usize = 100_000;

/// One signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    /// Projects it may read (a token is scoped to one project).
    pub projects: Vec<String>,
    /// The token it was made from: checked again on every page, so revoking
    /// the token ends the session.
    pub token_id: i64,
    /// When it ends, Unix ms.
    pub expires_at: i64,
    /// The CSRF token its forms carry.
    pub csrf: String,
}

/// Why a session could not be made.
#[derive(Debug)]
pub enum SessionError {
    /// The operating system's generator failed.
    Random,
    /// Too many live sessions.
    Full,
}

/// The live sessions of this replica, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves the map whole (every change
        // is one insert or remove), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for a token of `project`; its id and the session.
    pub fn create(
        &self,
        project: &str,
        token_id: i64,
        token_expires_at: Option<i64>,
        now_ms: i64,
    ) -> Result<(String, Session), SessionError> {
        let id = random_hex().ok_or(SessionError::Random)?;
        let csrf = random_hex().ok_or(SessionError::Random)?;
        let cap = now_ms + MAX_AGE_MS;
        let session = Session {
            projects: vec![project.to_owned()],
            token_id,
            expires_at: token_expires_at.map_or(cap, |e| e.min(cap)),
            csrf,
        };
        let mut map = self.lock();
        map.retain(|_, s| s.expires_at > now_ms);
        if map.len() >= MAX_SESSIONS {
            return Err(SessionError::Full);
        }
        map.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session `id`; an expired one is forgotten.
    pub fn get(&self, id: &str, now_ms: i64) -> Option<Session> {
        let mut map = self.lock();
        match map.get(id) {
            Some(s) if s.expires_at > now_ms => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends session `id`.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// 32 random bytes from the operating system, in hex.
pub fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(flake_core::meta::hex(&bytes))
}

/// The session id of the request's cookie, if it sent one.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Whether the request reached the proxy in front of us over https.
pub fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// `Set-Cookie` for session `id`, living `max_age_ms`.
pub fn set_cookie(id: &str, max_age_ms: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        (max_age_ms / 1000).max(0)
    )
}

/// `Set-Cookie` that deletes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// Whether `Origin` (or, without it, `Referer`) names the host the request
/// was sent to. A request with neither (an old browser, a script) passes:
/// the cookie's `SameSite=Strict` and the form's token are the other lines.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(host) = text(header::HOST) else {
        return false;
    };
    let authority = |url: &str| -> Option<String> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))?;
        Some(rest.split(['/', '?', '#']).next()?.to_ascii_lowercase())
    };
    let host = host.to_ascii_lowercase();
    if let Some(origin) = text(header::ORIGIN) {
        return authority(origin).is_some_and(|a| a == host);
    }
    if let Some(referer) = text(header::REFERER) {
        return authority(referer).is_some_and(|a| a == host);
    }
    true
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cookies_and_origins_are_read_strictly() {
        let h = headers(&[("cookie", "a=1; flake_session=abc; b=2")]);
        assert_eq!(cookie(&h).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers(&[("cookie", "flake_sessionx=1")])), None);
        let ok = [("host", "h:1"), ("origin", "http://h:1")];
        assert!(same_origin(&headers(&ok)));
        assert!(!same_origin(&headers(&[
            ("host", "h:1"),
            ("origin", "http://evil")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "h:1"),
            ("origin", "null")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "h:1"),
            ("referer", "http://h:1/login")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "h:1"),
            ("referer", "http://h:1.evil/login")
        ])));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", ""));
    }

    #[test]
    fn sessions_expire_with_their_token_or_after_twelve_hours() {
        let s = Sessions::default();
        let (id, a) = s.create("p", 1, None, 1000).unwrap();
        assert_eq!(a.expires_at, 1000 + MAX_AGE_MS);
        let (_, b) = s.create("p", 1, Some(5000), 1000).unwrap();
        assert_eq!(b.expires_at, 5000);
        assert!(s.get(&id, 2000).is_some());
        assert!(s.get(&id, 1000 + MAX_AGE_MS).is_none());
        assert!(s.get(&id, 0).is_none(), "an expired session is forgotten");
    }
}
