//! `cargo flake export`: every stored result with its run's metadata, one
//! row each, as CSV (RFC 4180) or JSON Lines, for spreadsheets and notebooks.
//!
//! The columns and their order are [`COLUMNS`], documented in
//! docs/export.md: a public contract, like the JSON output. Columns are only
//! ever added at the end, never removed, renamed or moved. Rows come runs
//! oldest first (in the order they were recorded), then by test id
//! (bytewise), the same on every backend.
//!
//! Rows stream from the store ([`Store::export`]) to the writer: memory
//! stays flat however large the history. A run's part of a row (12 of the 16
//! columns) is formatted once per run and copied into each of its rows, so
//! a row costs a copy, the test id's escaping and two integers.

use std::io::Write;

use crate::meta::RunMeta;
use crate::store::{ExportRow, Store, StoreError};

/// The columns, in order: CSV's header, and the keys of each JSON object.
pub const COLUMNS: [&str; 16] = [
    "project",
    "run_id",
    "commit",
    "branch",
    "started_at",
    "finished_at",
    "host",
    "os",
    "target",
    "ci_provider",
    "ci_job",
    "runner",
    "test_id",
    "outcome",
    "attempts",
    "duration_ms",
];

/// Columns that describe the run (the first ones): formatted once per run.
const RUN_COLUMNS: usize = 12;

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180: a header line, CRLF line ends, fields quoted when they hold
    /// a comma, a quote or a line break; a missing value is an empty field.
    Csv,
    /// One JSON object per line (LF), keys in [`COLUMNS`] order; a missing
    /// value is `null`, numbers are numbers.
    Jsonl,
}

/// What to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The format.
    pub format: Format,
    /// Only runs started at or after this time, Unix ms.
    pub since_ms: Option<i64>,
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the history failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output failed (a closed pipe included: the caller decides
    /// whether that is an error).
    #[error("failed to write the export")]
    Write(#[source] std::io::Error),
}

/// Writes the store's project's results to `out` as `options` say, and
/// returns the number of rows written. `out` need not be buffered: rows go
/// through a buffer of their own.
pub fn export(store: &Store, options: &Options, out: &mut dyn Write) -> Result<u64, ExportError> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut rows = Rows::new(options.format);
    if options.format == Format::Csv {
        let header = COLUMNS.join(",") + "\r\n";
        out.write_all(header.as_bytes())
            .map_err(ExportError::Write)?;
    }
    let mut failed = None;
    let mut count = 0u64;
    store.export(
        options.since_ms,
        &mut |row| match out.write_all(rows.line(row)) {
            Ok(()) => {
                count += 1;
                Ok(true)
            }
            Err(e) => {
                failed = Some(e);
                Ok(false)
            }
        },
    )?;
    if let Some(e) = failed {
        return Err(ExportError::Write(e));
    }
    out.flush().map_err(ExportError::Write)?;
    Ok(count)
}

/// Formats rows, reusing its buffers: no allocation per row.
#[derive(Debug)]
pub struct Rows {
    format: Format,
    // The run's columns of the current run, with the separator (and in
    // JSON the key) of the column after them.
    prefix: Vec<u8>,
    run: Option<i64>,
    line: Vec<u8>,
}

impl Rows {
    /// A formatter for `format`.
    pub fn new(format: Format) -> Rows {
        Rows {
            format,
            prefix: Vec::new(),
            run: None,
            line: Vec::with_capacity(512),
        }
    }

    /// `row` as one line, its line end included.
    pub fn line(&mut self, row: &ExportRow<'_>) -> &[u8] {
        if self.run != Some(row.run_seq) {
            self.prefix = run_prefix(self.format, row.project, row.run);
            self.run = Some(row.run_seq);
        }
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(&self.prefix);
        match self.format {
            Format::Csv => {
                csv_field(line, row.test_id);
                line.push(b',');
                line.extend_from_slice(row.outcome.as_str().as_bytes());
                line.push(b',');
                push_int(line, row.attempts);
                line.push(b',');
                if let Some(d) = row.duration_ms {
                    push_int(line, d);
                }
                line.extend_from_slice(b"\r\n");
            }
            Format::Jsonl => {
                json_str(line, row.test_id);
                line.extend_from_slice(b",\"outcome\":\"");
                line.extend_from_slice(row.outcome.as_str().as_bytes());
                line.extend_from_slice(b"\",\"attempts\":");
                push_int(line, row.attempts);
                line.extend_from_slice(b",\"duration_ms\":");
                match row.duration_ms {
                    Some(d) => push_int(line, d),
                    None => line.extend_from_slice(b"null"),
                }
                line.extend_from_slice(b"}\n");
            }
        }
        &self.line
    }
}

/// The run's columns of a row, up to the test id's value.
fn run_prefix(format: Format, project: &str, run: &RunMeta) -> Vec<u8> {
    let started = time(run.started_at);
    let finished = time(run.finished_at);
    let values: [Option<&str>; RUN_COLUMNS] = [
        Some(project),
        Some(&run.run_id),
        run.commit.as_deref(),
        run.branch.as_deref(),
        Some(&started),
        Some(&finished),
        run.host.as_deref(),
        run.os.as_deref(),
        run.target.as_deref(),
        run.ci_provider.as_deref(),
        run.ci_job.as_deref(),
        run.runner.as_deref(),
    ];
    let mut out = Vec::with_capacity(256);
    match format {
        Format::Csv => {
            for v in values {
                csv_field(&mut out, v.unwrap_or(""));
                out.push(b',');
            }
        }
        Format::Jsonl => {
            for (i, (column, v)) in COLUMNS.iter().zip(values).enumerate() {
                out.push(if i == 0 { b'{' } else { b',' });
                json_str(&mut out, column);
                out.push(b':');
                match v {
                    Some(v) => json_str(&mut out, v),
                    None => out.extend_from_slice(b"null"),
                }
            }
            out.extend_from_slice(b",\"test_id\":");
        }
    }
    out
}

/// RFC 3339 in UTC with milliseconds (`2026-11-21T23:24:00.250Z`): the
/// history keeps milliseconds, and a notebook may want them. A time out of
/// the calendar's range (never written by us) stays a number.
fn time(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => ms.to_string(),
    }
}

fn push_int(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[i..]);
}

/// A CSV field: quoted (quotes doubled) only when it must be.
fn csv_field(out: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    out.push(b'"');
    for part in s.split_inclusive('"') {
        out.extend_from_slice(part.as_bytes());
        if part.ends_with('"') {
            out.push(b'"');
        }
    }
    out.push(b'"');
}

/// A JSON string: quotes, backslashes and control characters escaped,
/// everything else (UTF-8) as is.
fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;

    fn meta() -> RunMeta {
        RunMeta {
            run_id: "r1".into(),
            commit: Some("abc".into()),
            branch: Some("main".into()),
            started_at: 1_795_000_000_250,
            finished_at: 1_795_000_060_000,
            host: Some("ci, \"big\" host".into()),
            os: Some("linux".into()),
            ci_job: Some("line\nbreak".into()),
            runner: Some("nextest".into()),
            source_format: "nextest".into(),
            ..RunMeta::default()
        }
    }

    fn row<'a>(run: &'a RunMeta, id: &'a str) -> ExportRow<'a> {
        ExportRow {
            project: "p",
            run_seq: 1,
            run,
            test_id: id,
            outcome: Outcome::Flaky,
            attempts: 2,
            duration_ms: None,
        }
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let run = meta();
        let mut rows = Rows::new(Format::Csv);
        let line = String::from_utf8(rows.line(&row(&run, "a,\"b\"\r\nc")).to_vec()).unwrap();
        assert_eq!(
            line,
            "p,r1,abc,main,2026-11-18T11:06:40.250Z,2026-11-18T11:07:40.000Z,\"ci, \"\"big\"\" host\",linux,,,\"line\nbreak\",nextest,\"a,\"\"b\"\"\r\nc\",flaky,2,\r\n"
        );
    }

    #[test]
    fn jsonl_has_the_columns_in_order_and_round_trips() {
        let run = meta();
        let mut rows = Rows::new(Format::Jsonl);
        let id = "q\"\\\u{1}\t\u{7f}é,\n";
        let line = rows.line(&row(&run, id)).to_vec();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&line).unwrap();
        // serde_json keeps keys sorted; the order is checked on the text.
        let text = String::from_utf8(line).unwrap();
        let mut at = 0;
        for c in COLUMNS {
            let key = format!("\"{c}\":");
            let found = text[at..]
                .find(&key)
                .unwrap_or_else(|| panic!("{c} after {at}"));
            at += found + key.len();
        }
        assert_eq!(v.len(), COLUMNS.len());
        assert_eq!(v["test_id"], id);
        assert_eq!(v["host"], "ci, \"big\" host");
        assert_eq!(v["target"], serde_json::Value::Null);
        assert_eq!(v["duration_ms"], serde_json::Value::Null);
        assert_eq!(v["attempts"], 2);
        assert_eq!(v["outcome"], "flaky");
        assert_eq!(v["started_at"], "2026-11-18T11:06:40.250Z");
    }

    #[test]
    fn integers_format_like_display() {
        for n in [0, 7, -7, 10, 4_000_000_123, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            push_int(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }

    #[test]
    fn a_new_run_gets_its_own_columns() {
        let (a, mut b) = (meta(), meta());
        b.run_id = "r2".into();
        let mut rows = Rows::new(Format::Csv);
        let first = String::from_utf8(rows.line(&row(&a, "t")).to_vec()).unwrap();
        let mut second = row(&b, "t");
        second.run_seq = 2;
        let second = String::from_utf8(rows.line(&second).to_vec()).unwrap();
        assert!(first.starts_with("p,r1,"), "{first}");
        assert!(second.starts_with("p,r2,"), "{second}");
    }
}
