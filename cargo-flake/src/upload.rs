//! The HTTP client of the team service (`cargo flake serve`), shared by
//! `cargo flake upload` and `cargo flake test --upload`.
//!
//! One report per request, as the raw body of
//! `POST {server}/api/v1/projects/{project}/runs?run_id=…&commit=…` (see
//! docs/service.md). Connection errors, timeouts and 5xx answers are retried
//! with exponential backoff and jitter (they may pass: a restarting server, a
//! proxy in between), and so is a 429, waiting at least what its
//! `Retry-After` asks (up to a minute); another 4xx answer never is (a bad token or a malformed report
//! will not get better by waiting). Redirects are not followed: a POST that is
//! redirected loses its body, so the user is told the URL to use instead.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use serde::Deserialize;

/// Requests made before giving up on a connection error or a 5xx answer.
pub const ATTEMPTS: u32 = 4;
/// Pause before the first retry; each further retry waits twice as long
/// (0.5 s, 1 s, 2 s), each ±25% so that many jobs do not retry in step.
const BASE_BACKOFF: Duration = Duration::from_millis(500);
/// Overrides [`BASE_BACKOFF`] in milliseconds: cargo-flake's own tests, which
/// must not wait seconds for a server that is down.
const BACKOFF_VAR: &str = "__CARGO_FLAKE_UPLOAD_BACKOFF_MS";
/// The environment variable holding the bearer token. It is never a flag, so
/// it lands in neither shell history nor CI logs.
pub const TOKEN_VAR: &str = "CARGO_FLAKE_TOKEN";

/// The bearer token from [`TOKEN_VAR`], or a usage error saying how to get one.
pub fn token_from_env() -> Result<String, crate::commands::Usage> {
    match std::env::var(TOKEN_VAR) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        _ => Err(crate::commands::Usage(format!(
            "uploading needs a token in the environment variable {TOKEN_VAR} (an upload \
             token of this project: `cargo flake token create --role upload` on the \
             server's database); it is never taken from a flag, so it stays out of \
             shell history and CI logs"
        ))),
    }
}

/// A client of one server.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    /// The server's base URL, without a trailing slash.
    base: String,
    token: String,
    backoff: Duration,
    timeout: Duration,
}

/// What the server said about one report.
#[derive(Debug)]
pub enum Answer {
    /// 201 (recorded) or 200 (already recorded in that run).
    Recorded(Recorded),
    /// An answer that waiting will not change: a 4xx, a redirect, or
    /// something that is not the service's answer.
    Rejected {
        /// HTTP status (0 when the request could not even be made).
        status: u16,
        /// The error code of the JSON body, if any.
        code: Option<String>,
        /// The server's message, or ours.
        message: String,
    },
    /// No usable answer after every attempt: connection errors, timeouts, 5xx.
    Unavailable {
        /// The last problem.
        last: String,
    },
}

/// The body of a 201 or 200 answer (the fields cargo-flake shows).
#[derive(Debug, Deserialize)]
pub struct Recorded {
    /// The run the report went into.
    pub run_id: String,
    /// Whether every report had been recorded in this run before.
    #[serde(default)]
    pub duplicate: bool,
    /// Tests per outcome in this report.
    #[serde(default)]
    pub counts: Counts,
}

/// Tests per outcome.
#[derive(Debug, Default, Deserialize)]
pub struct Counts {
    /// Passed.
    #[serde(default)]
    pub passed: u64,
    /// Flaky.
    #[serde(default)]
    pub flaky: u64,
    /// Failed.
    #[serde(default)]
    pub failed: u64,
    /// Skipped.
    #[serde(default)]
    pub skipped: u64,
}

impl Counts {
    /// `12 tests (10 passed, 1 flaky, 1 failed)`.
    pub fn describe(&self) -> String {
        let total = self.passed + self.flaky + self.failed + self.skipped;
        let mut parts = vec![format!("{} passed", self.passed)];
        for (n, what) in [
            (self.flaky, "flaky"),
            (self.failed, "failed"),
            (self.skipped, "skipped"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        let s = if total == 1 { "" } else { "s" };
        format!("{total} test{s} ({})", parts.join(", "))
    }
}

/// One report's upload: the answer and how many requests it took.
#[derive(Debug)]
pub struct Sent {
    /// The outcome.
    pub answer: Answer,
    /// Requests made (1 to [`ATTEMPTS`]).
    pub attempts: u32,
}

/// The run metadata sent with every report, as query parameters.
#[derive(Debug, Default, Clone)]
pub struct RunParams {
    /// Uploads with the same run id form one run.
    pub run_id: Option<String>,
    /// Commit SHA.
    pub commit: Option<String>,
    /// Branch.
    pub branch: Option<String>,
    /// Host name.
    pub host: Option<String>,
    /// Operating system.
    pub os: Option<String>,
    /// Target triple or other variant.
    pub variant: Option<String>,
    /// CI provider.
    pub ci_provider: Option<String>,
    /// CI job.
    pub ci_job: Option<String>,
    /// The CI run.
    pub ci_url: Option<String>,
    /// Report format; `None` lets the server detect it.
    pub format: Option<String>,
}

impl Client {
    /// A client of `server` (`http://` or `https://`), each request bounded by `timeout`.
    pub fn new(
        server: &str,
        token: String,
        timeout: Duration,
    ) -> Result<Client, crate::commands::Usage> {
        let base = server.trim().trim_end_matches('/').to_owned();
        let scheme_ok = ["http://", "https://"].iter().any(|s| {
            base.get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s))
                && base.len() > s.len()
        });
        if !scheme_ok {
            return Err(crate::commands::Usage(format!(
                "the server `{server}` is not an http:// or https:// URL"
            )));
        }
        let backoff = std::env::var(BACKOFF_VAR)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(BASE_BACKOFF);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .redirects(0)
            .user_agent(concat!("cargo-flake/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client {
            agent,
            base,
            token,
            backoff,
            timeout,
        })
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// Sends one report of `project`, retrying what may pass.
    pub fn send(&self, project: &str, name: &str, params: &RunParams, body: &[u8]) -> Sent {
        let url = self.runs_url(project, name, params);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt(&url, body) {
                Attempt::Done(answer) => return Sent { answer, attempts },
                Attempt::Retry(last, _) if attempts >= ATTEMPTS => {
                    return Sent {
                        answer: Answer::Unavailable { last },
                        attempts,
                    };
                }
                Attempt::Retry(_, asked) => std::thread::sleep(
                    jittered(self.backoff, attempts).max(asked.unwrap_or_default()),
                ),
            }
        }
    }

    /// Asks the server what `quarantine sync` would make of `file` (the
    /// quarantine file's bytes) from the team history: its JSON answer
    /// (`changed`, `file`, `diff`, `findings`). Retried like an upload.
    pub fn proposal(&self, project: &str, file: &[u8]) -> Result<serde_json::Value, String> {
        let url = format!(
            "{}/api/v1/projects/{}/quarantine/proposal",
            self.base,
            encode(project)
        );
        let mut attempts = 0;
        loop {
            attempts += 1;
            let request = self
                .agent
                .post(&url)
                .set("Authorization", &format!("Bearer {}", self.token))
                .set("Content-Type", "application/toml");
            let retry = match request.send_bytes(file) {
                Ok(r) => {
                    return r.into_json().map_err(|e| {
                        format!("the answer is not a cargo flake server's ({e}); is the URL the server's?")
                    });
                }
                Err(ureq::Error::Status(status, r)) if status < 500 => {
                    let (_, message) = error_body(r);
                    return Err(format!("{status}: {message}"));
                }
                Err(ureq::Error::Status(status, r)) => format!("{status} {}", error_body(r).1),
                Err(ureq::Error::Transport(t)) => match self.transport(&t) {
                    Attempt::Retry(reason, _) => reason,
                    Attempt::Done(_) => return Err(format!("cannot send to this URL: {t}")),
                },
            };
            if attempts >= ATTEMPTS {
                return Err(format!("no answer after {attempts} attempts ({retry})"));
            }
            std::thread::sleep(jittered(self.backoff, attempts));
        }
    }

    fn runs_url(&self, project: &str, name: &str, p: &RunParams) -> String {
        let mut url = format!("{}/api/v1/projects/{}/runs?", self.base, encode(project));
        let pairs = [
            ("run_id", p.run_id.as_deref()),
            ("commit", p.commit.as_deref()),
            ("branch", p.branch.as_deref()),
            ("name", Some(name)),
            ("host", p.host.as_deref()),
            ("os", p.os.as_deref()),
            ("variant", p.variant.as_deref()),
            ("ci_provider", p.ci_provider.as_deref()),
            ("ci_job", p.ci_job.as_deref()),
            ("ci_url", p.ci_url.as_deref()),
            ("format", p.format.as_deref()),
        ];
        let query: Vec<String> = pairs
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(v))))
            .collect();
        url.push_str(&query.join("&"));
        url
    }

    fn attempt(&self, url: &str, body: &[u8]) -> Attempt {
        let request = self
            .agent
            .post(url)
            .set("Authorization", &format!("Bearer {}", self.token))
            .set("Content-Type", "application/octet-stream");
        let response = match request.send_bytes(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return self.transport(&t),
        };
        let status = response.status();
        if (200..300).contains(&status) {
            return Attempt::Done(match response.into_json::<Recorded>() {
                Ok(r) => Answer::Recorded(r),
                Err(e) => Answer::Rejected {
                    status,
                    code: None,
                    message: format!(
                        "the answer is not a cargo flake server's ({e}); is the URL the server's?"
                    ),
                },
            });
        }
        if (300..400).contains(&status) {
            let to = response
                .header("Location")
                .unwrap_or("elsewhere")
                .to_owned();
            return Attempt::Done(Answer::Rejected {
                status,
                code: None,
                message: format!("the server redirects to {to}; give that URL as the server"),
            });
        }
        let asked = retry_after(&response);
        let (code, message) = error_body(response);
        if status >= 500 || status == 429 {
            Attempt::Retry(format!("{status} {message}"), asked)
        } else {
            Attempt::Done(Answer::Rejected {
                status,
                code,
                message,
            })
        }
    }

    /// A transport error: retried, unless it is about the URL itself.
    fn transport(&self, t: &ureq::Transport) -> Attempt {
        use ureq::ErrorKind;
        let reason = match t.kind() {
            ErrorKind::InvalidUrl | ErrorKind::UnknownScheme => {
                return Attempt::Done(Answer::Rejected {
                    status: 0,
                    code: None,
                    message: format!("cannot send to this URL: {t}"),
                });
            }
            ErrorKind::Dns => format!(
                "cannot resolve the server's name{}",
                t.message().map(|m| format!(": {m}")).unwrap_or_default()
            ),
            _ => io_reason(t, self.timeout).unwrap_or_else(|| {
                t.message()
                    .map(str::to_owned)
                    .unwrap_or_else(|| t.kind().to_string())
            }),
        };
        Attempt::Retry(reason, None)
    }
}

enum Attempt {
    Done(Answer),
    /// Why, and the pause the server asked for (`Retry-After`).
    Retry(String, Option<Duration>),
}

/// The longest `Retry-After` honoured: a CI job should not hang on a
/// server that asks for an hour; it gives up after its attempts instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A 429 or 503 answer's `Retry-After` in seconds, capped.
fn retry_after(response: &ureq::Response) -> Option<Duration> {
    retry_after_secs(response.header("Retry-After")?, MAX_RETRY_AFTER)
}

/// A `Retry-After` value in seconds, at most `cap` (an HTTP date is rare
/// from the servers we talk to and is taken as absent).
pub(crate) fn retry_after_secs(value: &str, cap: Duration) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s).min(cap))
}

/// A short reason from the I/O error under a transport error.
fn io_reason(t: &ureq::Transport, timeout: Duration) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return Some(match io.kind() {
                K::ConnectionRefused => "connection refused".to_owned(),
                K::ConnectionReset => "connection reset".to_owned(),
                K::TimedOut | K::WouldBlock => {
                    format!("no answer within {} s", timeout.as_secs_f64())
                }
                _ => io.to_string(),
            });
        }
        source = e.source();
    }
    None
}

/// The code and message of a JSON error body, else the status text.
fn error_body(response: ureq::Response) -> (Option<String>, String) {
    let fallback = format!("{} {}", response.status(), response.status_text());
    let text = response.into_string().unwrap_or_default();
    let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    let error = json.as_ref().map(|j| &j["error"]);
    let code = error.and_then(|e| e["code"].as_str()).map(str::to_owned);
    let message = error
        .and_then(|e| e["message"].as_str())
        .map(str::to_owned)
        .unwrap_or(fallback);
    (code, message)
}

/// The pause after failed attempt `n` (1-based): `base`·2^(n-1), ±25%.
fn jittered(base: Duration, n: u32) -> Duration {
    jitter(base.saturating_mul(1 << (n - 1).min(10)), 0.25)
}

/// `d` moved at random by up to ±`spread` (a fraction), so that many
/// clients (or deliveries) waiting the same time do not retry in step.
pub(crate) fn jitter(d: Duration, spread: f64) -> Duration {
    // A process-random number without another dependency: the standard
    // library seeds every `RandomState` from the OS, and each new one differs.
    let unit = (std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % 10_001) as f64
        / 10_000.0; // 0..=1
    d.mul_f64(1.0 - spread + unit * 2.0 * spread)
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved kept).
pub use flake_core::webhooks::percent_encode as encode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_a_quarter() {
        let base = Duration::from_millis(500);
        for (n, nominal) in [(1, 500.0), (2, 1000.0), (3, 2000.0)] {
            for _ in 0..50 {
                let d = jittered(base, n).as_secs_f64() * 1000.0;
                assert!((nominal * 0.75..=nominal * 1.25).contains(&d), "{n}: {d}");
            }
        }
        let spread: std::collections::BTreeSet<_> =
            (0..20).map(|_| jittered(base, 2).as_micros()).collect();
        assert!(spread.len() > 1, "jitter varies");
    }

    #[test]
    fn encodes_projects_and_values() {
        assert_eq!(encode("github.com/org/app"), "github.com%2Forg%2Fapp");
        assert_eq!(encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(encode("ü"), "%C3%BC");
    }

    #[test]
    fn only_http_urls() {
        let t = Duration::from_secs(1);
        assert!(Client::new("ftp://x", "t".into(), t).is_err());
        assert!(Client::new("http://", "t".into(), t).is_err());
        assert!(Client::new("flake.internal:8080", "t".into(), t).is_err());
        let c = Client::new("HTTPS://flake.internal/", "t".into(), t).unwrap();
        assert_eq!(c.server(), "HTTPS://flake.internal");
        let url = c.runs_url(
            "github.com/org/app",
            "a b.xml",
            &RunParams {
                run_id: Some("r1".into()),
                branch: Some("feature/x".into()),
                ..RunParams::default()
            },
        );
        assert_eq!(
            url,
            "HTTPS://flake.internal/api/v1/projects/github.com%2Forg%2Fapp/runs?run_id=r1&branch=feature%2Fx&name=a%20b.xml"
        );
    }
}
