//! Failure clustering: one root cause, one cluster.
//!
//! A failure's text changes from run to run in ways that say nothing about its
//! cause: thread ids, ports, addresses, temporary paths, durations, counters,
//! uuids. [`normalize`] replaces those with placeholders; [`fingerprint`]
//! hashes the normalised message together with *where* the failure happened:
//! the failure location when the report names one (a Rust panic location, a
//! pytest or Go `file:line`), else the innermost frame of the user's own code
//! found in the output (Python tracebacks, Go goroutine dumps, Jest and RSpec
//! stacks), with library and runtime frames skipped.
//!
//! Choices worth knowing:
//! - A location keeps its file (the last two path components, so checkouts in
//!   different folders agree) and line, not its column. Editing code above a
//!   failing assertion moves its line and so starts a new cluster; merging
//!   across such edits would need the source, which a history does not have.
//! - Timeouts cluster on the status and location alone: what a test printed
//!   before it was killed is not a message.
//! - All digit runs become `N`, so "expected 4, got 5" and "expected 3, got 5"
//!   at one location are one cluster: the values of a race differ, its cause
//!   does not.
//!
//! No regex: the scanners below are a few byte loops, and the `regex` crate's
//! compile time and size would buy nothing here.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::Serialize;

use crate::model::{AttemptStatus, Failure};

/// A stable identifier of a failure's root cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    /// Eight hex digits: short enough to read aloud, long enough for a history.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", (self.0 >> 32) as u32 ^ self.0 as u32)
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a failure is keyed on, before hashing: useful to show and to test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// `fail`, `timeout`, `crash` or `leak`.
    pub kind: &'static str,
    /// The normalised one-line message (empty for timeouts).
    pub message: String,
    /// `file:line` of the failure or its innermost user frame, when known.
    pub frame: Option<String>,
}

impl Signature {
    /// Computes the signature of one failed attempt.
    pub fn of(status: AttemptStatus, failure: &Failure) -> Signature {
        let kind = match status {
            AttemptStatus::Timeout => "timeout",
            AttemptStatus::Crash => "crash",
            AttemptStatus::Leak => "leak",
            _ => "fail",
        };
        let frame = failure
            .location
            .as_deref()
            .and_then(frame_key)
            .or_else(|| innermost_user_frame(&failure.output));
        let message = if status == AttemptStatus::Timeout {
            String::new()
        } else {
            let m = failure.message.trim();
            let m = if m.is_empty() {
                crate::model::first_failure_line(&failure.output)
            } else {
                m
            };
            normalize(m)
        };
        Signature {
            kind,
            message,
            frame,
        }
    }

    /// The fingerprint of this signature.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut h = Fnv::new();
        h.write(self.kind.as_bytes());
        h.write(&[0]);
        h.write(self.message.as_bytes());
        h.write(&[0]);
        if let Some(f) = &self.frame {
            h.write(f.as_bytes());
        }
        Fingerprint(h.finish())
    }
}

/// The fingerprint of one failed attempt. See the module docs for what it keys on.
///
/// ```
/// use flake_core::cluster::fingerprint;
/// use flake_core::model::{AttemptStatus, Failure};
///
/// let a = Failure::from_output(None, "thread 't' (41) panicked at src/net.rs:9:5:\nconnect to 127.0.0.1:40112 refused after 31ms");
/// let b = Failure::from_output(None, "thread 't' (97) panicked at src/net.rs:9:5:\nconnect to 127.0.0.1:38001 refused after 1204ms");
/// assert_eq!(fingerprint(AttemptStatus::Fail, &a), fingerprint(AttemptStatus::Fail, &b));
/// ```
pub fn fingerprint(status: AttemptStatus, failure: &Failure) -> Fingerprint {
    Signature::of(status, failure).fingerprint()
}

/// Replaces the parts of a failure line that vary between runs of the same
/// cause with placeholders: uuids `<uuid>`, hex addresses `0x<hex>`, long hex
/// digests `<hex>`, temporary paths `<tmp>`, other absolute paths `…/<file>`,
/// digit runs `N`; whitespace runs become one space.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    let mut last_space = true;
    while i < b.len() {
        let c = b[i];
        let at_word_start = i == 0 || !is_word(b[i - 1]);
        if at_word_start {
            if let Some(n) = uuid_len(&b[i..]) {
                out.push_str("<uuid>");
                i += n;
                last_space = false;
                continue;
            }
            if c == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
                let n = b[i + 2..]
                    .iter()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .count();
                if n > 0 {
                    out.push_str("0x<hex>");
                    i += 2 + n;
                    last_space = false;
                    continue;
                }
            }
            let n = b[i..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
            if n >= 8
                && !b.get(i + n).copied().is_some_and(is_word)
                && b[i..i + n].iter().any(u8::is_ascii_digit)
            {
                out.push_str("<hex>");
                i += n;
                last_space = false;
                continue;
            }
            if let Some(n) = abs_path_len(&b[i..]) {
                let path = &text[i..i + n];
                if is_temp_path(path) {
                    out.push_str("<tmp>");
                } else {
                    let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
                    out.push_str("…/");
                    push_digits_normalized(&mut out, file);
                }
                i += n;
                last_space = false;
                continue;
            }
        }
        if c.is_ascii_digit() {
            out.push('N');
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            last_space = false;
            continue;
        }
        if c.is_ascii_whitespace() {
            if !last_space {
                out.push(' ');
                last_space = true;
            }
            i += 1;
            continue;
        }
        // Copy one UTF-8 character.
        let len = utf8_len(c);
        out.push_str(&text[i..(i + len).min(b.len())]);
        i += len;
        last_space = false;
    }
    while out.ends_with(' ') {
        out.pop();
    }
    out
}

fn push_digits_normalized(out: &mut String, s: &str) {
    let mut in_digits = false;
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            out.push(ch);
            in_digits = false;
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// `8-4-4-4-12` hex digits.
fn uuid_len(b: &[u8]) -> Option<usize> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut i = 0;
    for (g, len) in GROUPS.iter().enumerate() {
        if g > 0 {
            if b.get(i) != Some(&b'-') {
                return None;
            }
            i += 1;
        }
        if b.len() < i + len || !b[i..i + len].iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        i += len;
    }
    (!b.get(i).copied().is_some_and(is_word)).then_some(i)
}

/// An absolute path (`/a/b`, `C:\a\b`, `C:/a/b`) with at least two components,
/// ending at whitespace, a quote, a bracket or a `:line` suffix.
fn abs_path_len(b: &[u8]) -> Option<usize> {
    let start = match b {
        [b'/', c, ..] if is_word(*c) || *c == b'.' => 0,
        [d, b':', b'\\' | b'/', ..] if d.is_ascii_alphabetic() => 2,
        _ => return None,
    };
    let mut n = start;
    let mut seps = 0;
    while n < b.len() {
        let c = b[n];
        if c.is_ascii_whitespace()
            || matches!(
                c,
                b'\'' | b'"' | b'`' | b'(' | b')' | b'[' | b']' | b',' | b';' | b'<' | b'>'
            )
        {
            break;
        }
        if c == b':' {
            break;
        }
        if c == b'/' || c == b'\\' {
            seps += 1;
        }
        n += 1;
    }
    // A trailing dot ends a sentence, not a path.
    while n > start && b[n - 1] == b'.' {
        n -= 1;
    }
    (seps >= 2).then_some(n)
}

fn is_temp_path(path: &str) -> bool {
    let p = path.replace('\\', "/").to_ascii_lowercase();
    p.starts_with("/tmp/")
        || p.starts_with("/var/tmp/")
        || p.starts_with("/var/folders/")
        || p.starts_with("/private/var/folders/")
        || p.starts_with("/dev/shm/")
        || p.contains("/appdata/local/temp/")
        || p.contains("/.tmp")
}

/// `file:line` from a location (`src/lib.rs:12:9`, `tests/test_api.py:53`,
/// `./spec/x_spec.rb:10`): the last two path components and the line.
fn frame_key(location: &str) -> Option<String> {
    let location = location.trim();
    let mut parts = location.rsplitn(3, ':');
    let last = parts.next()?;
    let (file, line) = match (parts.next(), parts.next()) {
        (Some(line), Some(file)) if line.parse::<u32>().is_ok() && last.parse::<u32>().is_ok() => {
            (file, line)
        }
        (Some(file_or_more), rest) if last.parse::<u32>().is_ok() => match rest {
            Some(r) => (&location[..r.len() + 1 + file_or_more.len()], last),
            None => (file_or_more, last),
        },
        _ => return None,
    };
    Some(format!("{}:{line}", tail_components(file, 2)))
}

fn tail_components(path: &str, n: usize) -> String {
    let parts: Vec<&str> = path
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    parts[parts.len().saturating_sub(n)..].join("/")
}

/// Frames in these places belong to runtimes, standard libraries and test
/// frameworks: never the root cause a user can act on.
const LIBRARY_MARKERS: &[&str] = &[
    "/rustc/",
    "/library/std/",
    "/library/core/",
    "/.cargo/registry/",
    "/.rustup/",
    "node_modules/",
    "site-packages/",
    "dist-packages/",
    "/lib/python",
    "/goroot/",
    "/go/src/",
    "/usr/local/go/",
    "/src/testing/",
    "/src/runtime/",
    "/gems/",
    "<anonymous>",
    "node:internal",
];

/// The innermost frame of the user's own code named in `output`.
///
/// Python tracebacks list the innermost frame last; Rust backtraces, Go
/// goroutine dumps, Jest and RSpec stacks list it first.
fn innermost_user_frame(output: &str) -> Option<String> {
    let mut frames = output.lines().filter_map(line_frame).peekable();
    let python = frames.peek().is_some_and(|f| {
        f.rsplit_once(':')
            .is_some_and(|(file, _)| file.ends_with(".py"))
    });
    if python { frames.last() } else { frames.next() }
}

/// A `file.ext:line` or Python `File "x.py", line N` frame on one line.
fn line_frame(line: &str) -> Option<String> {
    if LIBRARY_MARKERS.iter().any(|m| line.contains(m)) {
        return None;
    }
    if let Some(rest) = line.trim_start().strip_prefix("File \"") {
        let (file, rest) = rest.split_once('"')?;
        let n: String = rest
            .trim_start_matches(", line ")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        return (!n.is_empty()).then(|| format!("{}:{n}", tail_components(file, 2)));
    }
    // Scan tokens for `path.ext:line`.
    for token in line.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '\'' | '"')) {
        let mut parts = token.splitn(3, ':');
        let (Some(file), Some(line_no)) = (parts.next(), parts.next()) else {
            continue;
        };
        // Windows drive letters: `C:\x\y.rs:3`.
        let (file, line_no) = if file.len() == 1 && line_no.starts_with('\\') {
            let mut p = token[2..].splitn(3, ':');
            let f = p.next().unwrap_or("");
            (f, p.next().unwrap_or(""))
        } else {
            (file, line_no)
        };
        let digits: String = line_no.chars().take_while(char::is_ascii_digit).collect();
        let ext = file.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        if !digits.is_empty()
            && !ext.is_empty()
            && ext.len() <= 5
            && ext.chars().all(|c| c.is_ascii_alphanumeric())
            && !ext.chars().all(|c| c.is_ascii_digit())
        {
            return Some(format!("{}:{digits}", tail_components(file, 2)));
        }
    }
    None
}

/// 64-bit FNV-1a: tiny, stable across platforms and releases (unlike std's
/// `DefaultHasher`), which matters because fingerprints are shown to people.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// One cluster of failures sharing a root cause.
#[derive(Clone, Debug, Serialize)]
pub struct Cluster {
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// `fail`, `timeout`, `crash` or `leak`.
    pub kind: &'static str,
    /// Failed attempts in the cluster.
    pub count: usize,
    /// The most recent failure of the cluster, as recorded (not normalised).
    pub sample: Failure,
    /// Distinct tests that failed this way, sorted.
    pub tests: Vec<String>,
    /// Largest run sequence number seen (to order by recency).
    pub last_run: i64,
}

/// Groups failures into clusters.
#[derive(Debug, Default)]
pub struct Clusterer {
    clusters: HashMap<Fingerprint, Cluster>,
    // Distinct tests per cluster, sorted as they arrive: a sorted `Vec` with
    // inserts in the middle was quadratic when one cause failed thousands of
    // tests (a shared helper panicking for a whole suite).
    members: HashMap<Fingerprint, BTreeSet<String>>,
}

impl Clusterer {
    /// An empty clusterer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one failed attempt of `test` in run `run_seq`; returns its fingerprint.
    pub fn add(
        &mut self,
        test: &str,
        run_seq: i64,
        status: AttemptStatus,
        failure: &Failure,
    ) -> Fingerprint {
        let sig = Signature::of(status, failure);
        let fp = sig.fingerprint();
        let c = self.clusters.entry(fp).or_insert_with(|| Cluster {
            fingerprint: fp,
            kind: sig.kind,
            count: 0,
            sample: failure.clone(),
            tests: Vec::new(),
            last_run: run_seq,
        });
        c.count += 1;
        if run_seq >= c.last_run {
            c.last_run = run_seq;
            // Prefer a sample that says something over a placeholder.
            if !failure.message.is_empty() || c.sample.message.is_empty() {
                c.sample = failure.clone();
            }
        }
        let members = self.members.entry(fp).or_default();
        if !members.contains(test) {
            members.insert(test.to_owned());
        }
        fp
    }

    /// Number of clusters so far.
    pub fn len(&self) -> usize {
        self.clusters.len()
    }

    /// Whether no failure was added.
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }

    /// The clusters, largest first (ties: most recent first, then fingerprint).
    pub fn into_clusters(mut self) -> Vec<Cluster> {
        let mut v: Vec<Cluster> = self
            .clusters
            .into_values()
            .map(|mut c| {
                let members = self.members.remove(&c.fingerprint).unwrap_or_default();
                c.tests = members.into_iter().collect();
                c
            })
            .collect();
        v.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(b.last_run.cmp(&a.last_run))
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        v
    }
}

/// The failure clusters of one test over its statistics window (the runs in
/// `t.samples`), largest first. Empty for tests without failed attempts.
pub fn of_window(
    store: &crate::store::Store,
    stats: &crate::stats::Stats,
    t: &crate::stats::TestStats,
) -> Result<Vec<Cluster>, crate::store::StoreError> {
    let Some((seqs, oldest)) = window_runs(stats, t) else {
        return Ok(Vec::new());
    };
    // By key: a lookup by id would scan the unindexed names once per test.
    let attempts = store.attempts_since(t.key, oldest)?;
    Ok(cluster_window(t, &seqs, attempts))
}

/// Tests whose attempts [`of_windows`] reads at a time: few round trips,
/// and memory bounded by a batch's failure texts, not by every test's.
const WINDOWS_BATCH: usize = 256;

/// [`of_window`] of each of `tests`, in their order: their attempts are
/// read a batch of tests at a time instead of a round trip per test
/// (`flaky-tests` lists thousands).
pub fn of_windows(
    store: &crate::store::Store,
    stats: &crate::stats::Stats,
    tests: &[&crate::stats::TestStats],
) -> Result<Vec<Vec<Cluster>>, crate::store::StoreError> {
    let mut out = Vec::with_capacity(tests.len());
    for batch in tests.chunks(WINDOWS_BATCH) {
        let windows: Vec<_> = batch.iter().map(|t| window_runs(stats, t)).collect();
        let wanted: Vec<(i64, i64)> = batch
            .iter()
            .zip(&windows)
            .filter_map(|(t, w)| w.as_ref().map(|(_, oldest)| (t.key, *oldest)))
            .collect();
        let mut by_test: HashMap<i64, Vec<crate::store::RunAttempt>> = HashMap::new();
        for (test, a) in store.attempts_since_each(&wanted)? {
            by_test.entry(test).or_default().push(a);
        }
        for (t, w) in batch.iter().zip(windows) {
            out.push(match w {
                Some((seqs, _)) => {
                    cluster_window(t, &seqs, by_test.remove(&t.key).unwrap_or_default())
                }
                None => Vec::new(),
            });
        }
    }
    Ok(out)
}

/// The run sequence numbers of `t`'s window and the oldest of them;
/// `None` when it has no failure to cluster.
fn window_runs(
    stats: &crate::stats::Stats,
    t: &crate::stats::TestStats,
) -> Option<(std::collections::HashSet<i64>, i64)> {
    if t.flaky == 0 && t.failed == 0 {
        return None;
    }
    let seqs: std::collections::HashSet<i64> = t
        .samples
        .iter()
        .filter_map(|s| stats.runs.get(s.run as usize).map(|r| r.seq))
        .collect();
    let oldest = seqs.iter().min().copied()?;
    Some((seqs, oldest))
}

/// The clusters of `t`'s failed attempts in its window's runs `seqs`;
/// `attempts` are its stored attempts from the window's oldest run on.
fn cluster_window(
    t: &crate::stats::TestStats,
    seqs: &std::collections::HashSet<i64>,
    attempts: Vec<crate::store::RunAttempt>,
) -> Vec<Cluster> {
    let mut clusterer = Clusterer::new();
    for a in attempts {
        if let (true, Some(f)) = (seqs.contains(&a.run_seq), &a.failure)
            && a.status.is_failure()
        {
            clusterer.add(&t.id, a.run_seq, a.status, f);
        }
    }
    clusterer.into_clusters()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::model::TestResult;

    /// Every failed attempt of a committed fixture report, as `(test, status, failure)`.
    fn fixture(rel: &str) -> Vec<(String, AttemptStatus, Failure)> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/reports")
            .join(rel);
        let mut out = Vec::new();
        let mut sink = |r: TestResult| {
            for a in &r.attempts {
                if let Some(f) = &a.failure {
                    out.push((r.id.clone(), a.status, f.clone()));
                }
            }
            Ok(())
        };
        crate::ingest::read_report(&path, None, &mut sink).unwrap();
        assert!(!out.is_empty(), "{rel} has failures");
        out
    }

    fn find(all: &[(String, AttemptStatus, Failure)], id: &str) -> (AttemptStatus, Failure) {
        let (_, s, f) = all
            .iter()
            .find(|(t, _, _)| t == id)
            .unwrap_or_else(|| panic!("{id} not in fixture"));
        (*s, f.clone())
    }

    /// The same failure text as another run would print it: other thread ids,
    /// ports, addresses, temp dirs, durations and checkout folder.
    fn rerun_variant(text: &str) -> String {
        text.replace("(10198)", "(77)")
            .replace("(10202)", "(31337)")
            .replace("(10234)", "(5)")
            .replace("0x7fae2f0acf10", "0x55d1c0de0010")
            .replace("0x7fae2ee2a2a0", "0x55d1c0de0a30")
            .replace("0xc000007860", "0xc000112000")
            .replace("/work/wt-jsonfmt/", "/home/runner/work/app/app/")
            .replace("/work/wt-junit/", "/builds/group/app/")
            .replace("finished in 0.00s", "finished in 1.37s")
            .replace("attempt 1", "attempt 2")
    }

    fn variant(f: &Failure) -> Failure {
        Failure {
            message: rerun_variant(&f.message),
            location: f.location.clone(),
            output: rerun_variant(&f.output),
        }
    }

    #[test]
    fn normalize_removes_what_varies_between_runs() {
        assert_eq!(
            normalize("connect to 127.0.0.1:40112 refused after 31ms"),
            "connect to N.N.N.N:N refused after Nms"
        );
        assert_eq!(
            normalize("thread 'tokio-runtime-worker' (10202) at 0x7ffd4a1c2b30"),
            "thread 'tokio-runtime-worker' (N) at 0x<hex>"
        );
        assert_eq!(
            normalize("no such file: /tmp/.tmpA1b2C3/db.sqlite"),
            "no such file: <tmp>"
        );
        assert_eq!(
            normalize("cannot open C:\\Users\\ci\\AppData\\Local\\Temp\\x1\\f.txt"),
            "cannot open <tmp>"
        );
        assert_eq!(
            normalize("request 3f2504e0-4f89-11d3-9a0c-0305e82c3301 failed"),
            "request <uuid> failed"
        );
        assert_eq!(
            normalize("digest mismatch: e3b0c44298fc1c149afbf4c8996fb924 vs deadbeef00"),
            "digest mismatch: <hex> vs <hex>"
        );
        assert_eq!(
            normalize("ImportError importing '/work/a/tests/test_x.py'."),
            "ImportError importing '…/test_x.py'."
        );
        // Words are not hex digests, and whitespace collapses.
        assert_eq!(normalize("  deadline   exceeded\n"), "deadline exceeded");
        assert_eq!(normalize("café 12 ünïcode"), "café N ünïcode");
    }

    #[test]
    fn rust_panics_from_nextest_cluster_by_cause() {
        let all = fixture("junit/nextest.xml");
        let (s_always, always) = find(&all, "nextest-junit tests::fails_always");
        let fp = fingerprint(s_always, &always);
        // The rerun of the same assertion (other thread id) is the same cluster.
        let reruns: Vec<_> = all
            .iter()
            .filter(|(t, _, _)| t == "nextest-junit tests::fails_always")
            .map(|(_, s, f)| fingerprint(*s, f))
            .collect();
        assert!(reruns.len() >= 2);
        assert!(reruns.iter().all(|r| *r == fp), "{reruns:?}");
        assert_eq!(fingerprint(s_always, &variant(&always)), fp);
        // attempt 1 / attempt 2 of one panic site are one cause.
        let two: Vec<_> = all
            .iter()
            .filter(|(t, _, _)| t == "nextest-junit tests::flaky_two_attempts")
            .map(|(_, s, f)| fingerprint(*s, f))
            .collect();
        assert_eq!(two.len(), 2);
        assert_eq!(two[0], two[1]);
        // Different panic sites, crash and timeout are different causes.
        let (s, crash) = find(&all, "nextest-junit tests::crashes");
        let (s2, flaky) = find(&all, "nextest-junit tests::flaky_first_attempt");
        let (s3, integ) = find(&all, "nextest-junit::it integration_flaky");
        let distinct = [
            fp,
            fingerprint(s, &crash),
            fingerprint(s2, &flaky),
            two[0],
            fingerprint(s3, &integ),
        ];
        for (i, a) in distinct.iter().enumerate() {
            for b in &distinct[i + 1..] {
                assert_ne!(a, b, "{distinct:?}");
            }
        }
        // A timeout's two attempts printed different things; still one cause.
        let timeouts: Vec<_> = all
            .iter()
            .filter(|(_, s, _)| *s == AttemptStatus::Timeout)
            .map(|(_, s, f)| fingerprint(*s, f))
            .collect();
        assert!(timeouts.len() >= 2);
        assert!(timeouts.iter().all(|t| *t == timeouts[0]));
    }

    #[test]
    fn python_tracebacks_cluster_by_cause() {
        let all = fixture("pytest-json/no-reruns.json");
        let (s, conn) = find(&all, "tests/test_api.py::TestLogin::test_flaky_in_class");
        assert_eq!(fingerprint(s, &conn), fingerprint(s, &variant(&conn)));
        // Without a location the innermost traceback frame stands in for it.
        let no_loc = |f: &Failure| Failure {
            location: None,
            ..f.clone()
        };
        assert_eq!(
            Signature::of(s, &no_loc(&conn)).frame.as_deref(),
            Some("tests/test_api.py:53")
        );
        let (s2, setup) = find(&all, "tests/test_api.py::test_setup_error");
        let (s3, teardown) = find(&all, "tests/test_api.py::test_teardown_error");
        let (s4, always) = find(&all, "tests/test_api.py::test_always_fails");
        let fps = [
            fingerprint(s, &conn),
            fingerprint(s2, &setup),
            fingerprint(s3, &teardown),
            fingerprint(s4, &always),
        ];
        for (i, a) in fps.iter().enumerate() {
            for b in &fps[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The same collection error from another checkout folder.
        let coll = fixture("pytest-json/collection-error.json");
        let (s5, import) = find(&coll, "broken/test_broken.py");
        assert_eq!(fingerprint(s5, &import), fingerprint(s5, &variant(&import)));
        assert_eq!(
            Signature::of(s5, &import).frame.as_deref(),
            Some("broken/test_broken.py:3")
        );
    }

    #[test]
    fn jest_and_go_failures_cluster_by_cause() {
        let jest = fixture("jest/jest.json");
        let logged: Vec<_> = jest
            .iter()
            .filter(|(t, _, _)| t == "__tests__/retry-logged.test.js::flaky with logged reasons")
            .map(|(_, s, f)| fingerprint(*s, f))
            .collect();
        assert_eq!(logged.len(), 2, "attempt 1 and attempt 2 failed");
        assert_eq!(logged[0], logged[1]);
        let (s, basic) = find(&jest, "__tests__/basic.test.js::math > always fails");
        assert_eq!(fingerprint(s, &basic), fingerprint(s, &variant(&basic)));
        assert_ne!(fingerprint(s, &basic), logged[0]);
        // The innermost frame is the test file, not jest-circus.
        let no_loc = Failure {
            location: None,
            ..basic.clone()
        };
        assert_eq!(
            Signature::of(s, &no_loc).frame.as_deref(),
            Some("__tests__/basic.test.js:8")
        );

        let go = fixture("go-test/count1.json");
        let (s, panic) = find(&go, "example.com/flakyfix/panics::TestPanics");
        assert_eq!(
            Signature::of(s, &panic).frame.as_deref(),
            Some("panics/panics_test.go:9"),
            "goroutine dump: first frame outside the Go runtime"
        );
        assert_eq!(fingerprint(s, &panic), fingerprint(s, &variant(&panic)));
        let (s2, always) = find(&go, "example.com/flakyfix/calc::TestAlwaysFails");
        let (s3, once) = find(&go, "example.com/flakyfix/calc::TestFlakyOnce");
        assert_ne!(fingerprint(s2, &always), fingerprint(s3, &once));
        assert_ne!(fingerprint(s, &panic), fingerprint(s2, &always));
        // go test -count=3 repeats the same failures: same fingerprints as -count=1.
        let go3 = fixture("go-test/count3.json");
        let (s4, once3) = find(&go3, "example.com/flakyfix/calc::TestFlakyOnce");
        assert_eq!(fingerprint(s4, &once3), fingerprint(s3, &once));
    }

    #[test]
    fn clusterer_groups_counts_and_keeps_recent_sample() {
        let all = fixture("junit/nextest.xml");
        let mut c = Clusterer::new();
        for (run, (id, s, f)) in all.iter().enumerate() {
            c.add(id, run as i64, *s, f);
            c.add(id, run as i64 + 100, *s, &variant(f));
        }
        let clusters = c.into_clusters();
        // fails_always (3 attempts), flaky_two_attempts (2), flaky_first_attempt,
        // crashes (3), integration_flaky, the timeout: six causes.
        assert_eq!(clusters.len(), 6, "{clusters:#?}");
        assert_eq!(
            clusters.iter().map(|c| c.count).sum::<usize>(),
            all.len() * 2
        );
        assert!(clusters.windows(2).all(|w| w[0].count >= w[1].count));
        let top = &clusters[0];
        assert_eq!(top.count, 6);
        assert_eq!(top.tests.len(), 1);
        assert!(top.last_run >= 100);
    }

    #[test]
    fn one_cause_across_many_tests_lists_each_test_once_sorted() {
        let all = fixture("junit/nextest.xml");
        let (s, f) = find(&all, "nextest-junit tests::fails_always");
        let mut c = Clusterer::new();
        for i in (0..3000).rev() {
            for run in 0..2 {
                c.add(&format!("t{i:04}"), run, s, &f);
            }
        }
        let clusters = c.into_clusters();
        assert_eq!(clusters.len(), 1);
        assert_eq!(clusters[0].count, 6000);
        let expected: Vec<String> = (0..3000).map(|i| format!("t{i:04}")).collect();
        assert_eq!(clusters[0].tests, expected);
    }

    #[test]
    fn frames_and_locations() {
        assert_eq!(
            frame_key("src/lib.rs:24:9").as_deref(),
            Some("src/lib.rs:24")
        );
        assert_eq!(
            frame_key("/home/u/app/tests/test_api.py:53").as_deref(),
            Some("tests/test_api.py:53")
        );
        assert_eq!(
            frame_key("./spec/calculator_spec.rb:10").as_deref(),
            Some("spec/calculator_spec.rb:10")
        );
        assert_eq!(
            frame_key("C:\\src\\lib.rs:3:1").as_deref(),
            Some("src/lib.rs:3")
        );
        assert_eq!(frame_key("nowhere"), None);
        assert_eq!(
            line_frame("   at Object.toBe (/w/app/__tests__/basic.test.js:8:19)").as_deref(),
            Some("__tests__/basic.test.js:8")
        );
        assert_eq!(
            line_frame("    at run (/w/node_modules/jest-circus/build/x.js:1:2)"),
            None
        );
        assert_eq!(line_frame("finished in 0.00s"), None);
        assert_eq!(line_frame("127.0.0.1:8080 refused"), None);
    }
}
