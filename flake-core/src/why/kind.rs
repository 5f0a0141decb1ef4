//! What kind of failure a message describes, by rules over its normalised
//! text: the failure's own words are often the best clue to its cause.

use serde::Serialize;

/// A class of failure message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Timed out, deadline exceeded.
    Timeout,
    /// Connection refused, reset, or a broken pipe.
    Connection,
    /// A port or socket address already in use.
    AddressInUse,
    /// A panic in another thread, or a lock it poisoned.
    OtherThread,
    /// An assertion about time, durations or ordering.
    TimeOrOrder,
    /// Killed by a signal, or out of memory.
    SignalOrMemory,
    /// None of the above.
    Other,
}

impl FailureKind {
    /// Words for a person.
    pub fn describe(self) -> &'static str {
        match self {
            FailureKind::Timeout => "a timeout",
            FailureKind::Connection => "a refused or reset connection",
            FailureKind::AddressInUse => "an address already in use",
            FailureKind::OtherThread => "a panic in another thread (or a poisoned lock)",
            FailureKind::TimeOrOrder => "an assertion on time or ordering",
            FailureKind::SignalOrMemory => "a signal or running out of memory",
            FailureKind::Other => "an assertion or error without a known pattern",
        }
    }

    /// What to try for this kind.
    pub fn advice(self) -> &'static str {
        match self {
            FailureKind::Timeout => {
                "find what is slow (a lock, I/O, a busy machine) or raise the limit; compare the durations below"
            }
            FailureKind::Connection => {
                "wait for the service to be ready (retry with backoff, a readiness check) instead of connecting at once"
            }
            FailureKind::AddressInUse => {
                "bind port 0 and read the port back, instead of a fixed port other tests or runs also use"
            }
            FailureKind::OtherThread => {
                "a background thread panicked: look at the thread named in the message and what it shares"
            }
            FailureKind::TimeOrOrder => {
                "the assertion depends on timing or iteration order: compare with tolerance, sort, or use a fake clock"
            }
            FailureKind::SignalOrMemory => {
                "look at the machine's memory and the process's limits; run it alone to see its own footprint"
            }
            FailureKind::Other => "read the failure cluster's message and location",
        }
    }
}

/// Classifies a failure message (any case; the first rule that matches).
pub fn classify(message: &str) -> FailureKind {
    let m = message.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if any(&[
        "address already in use",
        "addrinuse",
        "address in use",
        "os error 98",
    ]) {
        FailureKind::AddressInUse
    } else if any(&[
        "timed out",
        "timeout",
        "time out",
        "deadline exceeded",
        "deadline has elapsed",
    ]) {
        FailureKind::Timeout
    } else if any(&[
        "connection refused",
        "connection reset",
        "econnrefused",
        "econnreset",
        "broken pipe",
        "os error 111",
        "os error 104",
        "connection aborted",
    ]) {
        FailureKind::Connection
    } else if any(&["poisoned", "poisonerror", "panicked in another thread"])
        || (m.contains("thread '") && m.contains("panicked") && m.contains("<unnamed>"))
    {
        FailureKind::OtherThread
    } else if any(&[
        "sigsegv",
        "sigkill",
        "sigabrt",
        "sigbus",
        "signal",
        "out of memory",
        "memory allocation",
        "stack overflow",
    ]) || m
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w == "oom" || w == "oomkilled")
    {
        FailureKind::SignalOrMemory
    } else if any(&[
        "elapsed", "duration", "instant", "ordering", "order", "sorted",
    ]) && any(&["assert", "expected", "left", "failed"])
    {
        FailureKind::TimeOrOrder
    } else {
        FailureKind::Other
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn messages_of_real_failures_are_classified() {
        for (message, kind) in [
            ("test timed out after 60s", FailureKind::Timeout),
            ("error: deadline has elapsed", FailureKind::Timeout),
            (
                "called `Result::unwrap()` on an `Err` value: Os { code: 111, kind: ConnectionRefused, message: \"Connection refused\" }",
                FailureKind::Connection,
            ),
            (
                "bind 127.0.0.1:8080: Address already in use (os error 98)",
                FailureKind::AddressInUse,
            ),
            (
                "called `Result::unwrap()` on an `Err` value: PoisonError { .. }",
                FailureKind::OtherThread,
            ),
            (
                "process aborted with signal 6 (SIGABRT)",
                FailureKind::SignalOrMemory,
            ),
            (
                "assertion failed: elapsed < Duration::from_millis(50)",
                FailureKind::TimeOrOrder,
            ),
            ("assertion `left == right` failed", FailureKind::Other),
            // Words, not letters: "boom" is not "oom".
            ("boom", FailureKind::Other),
            ("container OOMKilled", FailureKind::SignalOrMemory),
        ] {
            assert_eq!(classify(message), kind, "{message}");
        }
    }
}
