//! Webhook signatures by the Standard Webhooks rules, and which addresses a
//! delivery may go to.
//!
//! A delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`. The
//! timestamp is signed, so a captured delivery cannot be replayed after the
//! receiver's tolerance (five minutes is usual), and the id lets a receiver
//! drop a retry it has already handled. While a secret is being rotated,
//! both the old and the new secret sign (space-separated signatures), as the
//! rules allow, so receivers can switch at their own pace.
//!
//! Secrets read `whsec_<base64 of 32 random bytes>`; the key is the decoded
//! bytes.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A test turned flaky: it had no flaky result it was not yet announced for.
pub const FLAKY_NEW: &str = "flaky_test.new";
/// A flaky test recovered: quiet for days, with clean runs since.
pub const FLAKY_RESOLVED: &str = "flaky_test.resolved";
/// What `quarantine sync` would write for the project changed.
pub const PROPOSAL_CHANGED: &str = "quarantine.proposal_changed";
/// A run was recorded (opt-in per endpoint).
pub const RUN_COMPLETED: &str = "run.completed";
/// The event `cargo flake webhook test` sends; every endpoint receives it.
pub const PING: &str = "ping";
/// The event types an endpoint can subscribe to.
pub const EVENTS: [&str; 4] = [FLAKY_NEW, FLAKY_RESOLVED, PROPOSAL_CHANGED, RUN_COMPLETED];

/// Checks an endpoint URL: absolute http(s), a host, no credentials, no
/// spaces. Where it may point (not into private networks) is checked at
/// delivery, when the name is resolved.
pub fn check_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` is not an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || url.contains(char::is_whitespace) {
        return Err(format!("`{url}` has no host, or contains spaces"));
    }
    if authority.contains('@') {
        return Err(format!(
            "`{url}` carries credentials; receivers check the signature instead"
        ));
    }
    Ok(())
}

/// The event types of a comma-separated list or of repeated values, each
/// known (an unknown one gets a "did you mean"), without repeats.
pub fn parse_events<'a>(list: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut wanted: Vec<String> = Vec::new();
    for e in list
        .into_iter()
        .flat_map(|e| e.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        if !EVENTS.contains(&e) {
            let hint = crate::config::suggest(e, EVENTS.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_else(|| format!("; known events: {}", EVENTS.join(", ")));
            return Err(format!("unknown event `{e}`{hint}"));
        }
        if !wanted.iter().any(|w| w == e) {
            wanted.push(e.to_owned());
        }
    }
    if wanted.is_empty() {
        return Err(format!(
            "no event named; known events: {}",
            EVENTS.join(", ")
        ));
    }
    Ok(wanted)
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a
/// project name such as `github.com/org/repo` or a test id is one path
/// segment.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why a signing secret cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// Not `whsec_` followed by base64.
    #[error("a webhook secret reads `whsec_<base64>`")]
    Malformed,
    /// The operating system's random generator failed.
    #[error("the operating system's random generator failed")]
    Random,
}

/// A new secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> Result<String, SecretError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|_| SecretError::Random)?;
    Ok(format!("whsec_{}", BASE64.encode(key)))
}

fn key(secret: &str) -> Result<Vec<u8>, SecretError> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    match BASE64.decode(encoded) {
        Ok(k) if !k.is_empty() => Ok(k),
        _ => Err(SecretError::Malformed),
    }
}

/// `v1,<signature>` of one message with one secret.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SecretError> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key(secret)?)
        .map_err(|_| SecretError::Malformed)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header: one signature per secret (the current
/// one first, then any still in their rotation overlap).
pub fn signature_header(
    secrets: &[&str],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SecretError> {
    let signatures = secrets
        .iter()
        .map(|s| sign(s, id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

/// Why a receiver refuses a delivery.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The secret is not usable.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The timestamp is further than the tolerance from now.
    #[error("the timestamp is outside the tolerance (a replay, or a skewed clock)")]
    Stale,
    /// No signature matches.
    #[error("no signature matches")]
    Mismatch,
}

/// Checks a delivery as a receiver does: some `v1` signature of the header
/// matches (compared in constant time) and the timestamp is within
/// `tolerance_secs` of `now_secs`.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    if (now_secs - timestamp).abs() > tolerance_secs {
        return Err(VerifyError::Stale);
    }
    let expected = sign(secret, id, timestamp, body)?;
    let matches = header
        .split(' ')
        .filter(|s| s.starts_with("v1,"))
        .any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())));
    if matches {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Whether a delivery may go to `ip`: not loopback, private, link-local,
/// shared (CGNAT), unspecified, multicast, documentation or cloud-metadata
/// space, for IPv4, IPv6, and IPv4 inside IPv6. The caller connects to the
/// address it checked, so a name that resolves elsewhere later (DNS
/// rebinding) cannot redirect the delivery.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signs_the_specifications_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sign(secret, id, ts, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let header = sign(secret, id, ts, body).unwrap();
        assert_eq!(verify(secret, id, ts, body, &header, ts + 10, 300), Ok(()));
        assert_eq!(
            verify(secret, id, ts, b"{\"test\": 1}", &header, ts, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(secret, id, ts, body, &header, ts + 301, 300),
            Err(VerifyError::Stale)
        );
    }

    #[test]
    fn both_secrets_sign_during_a_rotation() {
        let (old, new) = (new_secret().unwrap(), new_secret().unwrap());
        assert!(old.starts_with("whsec_") && old != new);
        let header = signature_header(&[&new, &old], "msg_1", 5, b"{}").unwrap();
        assert_eq!(header.split(' ').count(), 2);
        for s in [&old, &new] {
            assert_eq!(verify(s, "msg_1", 5, b"{}", &header, 5, 300), Ok(()));
        }
        let other = new_secret().unwrap();
        assert_eq!(
            verify(&other, "msg_1", 5, b"{}", &header, 5, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(sign("whsec_%%%", "m", 1, b""), Err(SecretError::Malformed));
    }

    #[test]
    fn private_and_metadata_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
