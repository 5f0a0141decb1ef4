//! Building blocks of the JSON-lines parsers (`go test -json`, libtest JSON):
//! a line reader whose memory is bounded by the longest line it keeps, and an
//! output buffer that keeps the head and tail of a test's output.
//!
//! Both exist so that memory stays bounded by the largest single test's output
//! however large the report is.

use std::io::{self, BufRead};

use crate::model::{MAX_OUTPUT_BYTES, cap_output};

/// Longest line kept. One line of these formats is one event, and one event
/// holds at most one test's output; a longer "line" is binary garbage or a
/// runaway test, and is skipped (with a warning) instead of being slurped.
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// One line of input, without its line terminator.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    /// 1-based line number.
    pub(crate) number: u64,
    /// 0-based byte offset of the line's first byte.
    pub(crate) byte: u64,
    /// The line's bytes (empty when `too_long`).
    pub(crate) bytes: &'a [u8],
    /// The line exceeded [`MAX_LINE_BYTES`] and was skipped unread.
    pub(crate) too_long: bool,
    /// The line ended at end of input without a newline (a cut-off file ends so).
    pub(crate) unterminated: bool,
}

/// Reads lines from a [`BufRead`] without ever holding more than one line.
pub(crate) struct Lines<'r> {
    input: &'r mut dyn BufRead,
    buf: Vec<u8>,
    number: u64,
    byte: u64,
}

impl<'r> Lines<'r> {
    pub(crate) fn new(input: &'r mut dyn BufRead) -> Self {
        Lines {
            input,
            buf: Vec::new(),
            number: 0,
            byte: 0,
        }
    }

    /// The next line, or `None` at end of input.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let start = self.byte;
        let mut too_long = false;
        let mut saw_newline = false;
        let mut read_any = false;
        loop {
            let available = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            read_any = true;
            let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            if !too_long {
                if self.buf.len() + chunk.len() > MAX_LINE_BYTES {
                    too_long = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            self.input.consume(used);
            self.byte += used as u64;
            if done {
                saw_newline = true;
                break;
            }
        }
        if !read_any {
            return Ok(None);
        }
        self.number += 1;
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(Line {
            number: self.number,
            byte: start,
            bytes: &self.buf,
            too_long,
            unterminated: !saw_newline,
        }))
    }
}

/// A test's captured output, capped at [`MAX_OUTPUT_BYTES`] while it is being
/// collected: the head and the tail are kept (a panic message comes first, a
/// backtrace or summary last) and the middle is counted, not stored.
#[derive(Debug, Default)]
pub(crate) struct OutputBuf {
    head: String,
    tail: String,
    cut: usize,
    overflowed: bool,
}

impl OutputBuf {
    pub(crate) fn push(&mut self, text: &str) {
        if !self.overflowed {
            self.head.push_str(text);
            if self.head.len() <= MAX_OUTPUT_BYTES {
                return;
            }
            self.overflowed = true;
            let split = floor_char_boundary(&self.head, MAX_OUTPUT_BYTES / 2);
            self.tail = self.head.split_off(split);
        } else {
            self.tail.push_str(text);
        }
        // Keep only the last half of the cap in the tail; count what goes.
        if self.tail.len() > MAX_OUTPUT_BYTES {
            let keep_from = ceil_char_boundary(&self.tail, self.tail.len() - MAX_OUTPUT_BYTES / 2);
            self.cut += keep_from;
            self.tail.drain(..keep_from);
        }
    }

    /// The collected output, at most about [`MAX_OUTPUT_BYTES`].
    pub(crate) fn finish(self) -> String {
        if !self.overflowed {
            return self.head;
        }
        if self.cut == 0 {
            return cap_output(&(self.head + &self.tail));
        }
        let tail_from = ceil_char_boundary(
            &self.tail,
            self.tail.len().saturating_sub(MAX_OUTPUT_BYTES / 2),
        );
        let cut = self.cut + tail_from;
        format!(
            "{}\n[... {cut} bytes cut by cargo-flake ...]\n{}",
            self.head,
            &self.tail[tail_from..]
        )
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// A short, printable excerpt of a line for a warning message.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let end = floor_char_boundary(text, MAX);
    let mut out: String = text[..end]
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if end < text.len() {
        out.push('…');
    }
    out
}

/// Seconds (as reported by the tools) to whole milliseconds; `None` for
/// values no clock produces.
pub(crate) fn seconds_to_ms(seconds: f64) -> Option<u64> {
    if (0.0..1e12).contains(&seconds) {
        Some((seconds * 1000.0).round() as u64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8]) -> Vec<(u64, u64, String, bool, bool)> {
        let mut reader = input;
        let mut lines = Lines::new(&mut reader);
        let mut out = Vec::new();
        while let Some(l) = lines.next_line().unwrap() {
            out.push((
                l.number,
                l.byte,
                String::from_utf8_lossy(l.bytes).into_owned(),
                l.too_long,
                l.unterminated,
            ));
        }
        out
    }

    #[test]
    fn lines_carry_numbers_offsets_and_termination() {
        let got = collect(b"a\r\n\nbc");
        assert_eq!(
            got,
            vec![
                (1, 0, "a".into(), false, false),
                (2, 3, "".into(), false, false),
                (3, 4, "bc".into(), false, true),
            ]
        );
        assert!(collect(b"").is_empty());
    }

    #[test]
    fn output_buffer_keeps_head_and_tail_within_the_cap() {
        let mut buf = OutputBuf::default();
        buf.push("HEAD\n");
        for _ in 0..10_000 {
            buf.push("é middle line of a chatty test\n");
        }
        buf.push("TAIL\n");
        let out = buf.finish();
        assert!(out.starts_with("HEAD\n"));
        assert!(out.ends_with("TAIL\n"));
        assert!(out.contains("bytes cut by cargo-flake"));
        assert!(out.len() <= MAX_OUTPUT_BYTES + 64, "{}", out.len());

        let mut small = OutputBuf::default();
        small.push("a");
        small.push("b");
        assert_eq!(small.finish(), "ab");
    }

    #[test]
    fn seconds_convert_to_milliseconds() {
        assert_eq!(seconds_to_ms(0.0015), Some(2));
        assert_eq!(seconds_to_ms(-1.0), None);
        assert_eq!(seconds_to_ms(f64::NAN), None);
    }
}

/// Property tests of every streaming parser in this family: random and
/// mutated input never panics, and is either parsed or rejected with a position.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use crate::ingest::{ParseError, ReportMeta, go_test, libtest, payload};
    use crate::model::TestResult;

    const GO: &str = "{\"Action\":\"run\",\"Package\":\"m/p\",\"Test\":\"TestA\"}\n{\"Action\":\"output\",\"Package\":\"m/p\",\"Test\":\"TestA\",\"Output\":\"    a_test.go:3: boom\\n\"}\n{\"Action\":\"fail\",\"Package\":\"m/p\",\"Test\":\"TestA\",\"Elapsed\":0.1}\n{\"Action\":\"fail\",\"Package\":\"m/p\",\"Elapsed\":0.1}\n";
    const LIBTEST: &str = "{\"type\":\"suite\",\"event\":\"started\",\"test_count\":1}\n{\"type\":\"test\",\"event\":\"started\",\"name\":\"c::c$a \"q\"\"}\n{\"type\":\"test\",\"event\":\"failed\",\"name\":\"c::c$a \"q\"#2\",\"exec_time\":0.1,\"stdout\":\"x\"}\n";
    const PAYLOAD: &str = "{\"commit_sha\":\"a\",\"test_results\":{\"tests\":[{\"id\":\"a\",\"status\":\"flaky\",\"attempts\":[{\"status\":\"failed\"},{\"status\":\"passed\"}]}]}}";

    type Parser = fn(
        &mut dyn std::io::BufRead,
        &mut dyn crate::ingest::Sink,
    ) -> Result<ReportMeta, ParseError>;

    fn check(parser: Parser, bytes: &[u8]) {
        let mut sink = |_: TestResult| Ok(());
        match parser(&mut &bytes[..], &mut sink) {
            Ok(_) => {}
            Err(ParseError::Invalid { position, message }) => {
                assert!(!message.is_empty());
                // A position is required except for "nothing found at all".
                assert!(
                    position.line.is_some() || position.byte.is_some() || message.contains("no "),
                    "{message}"
                );
            }
            Err(e) => panic!("unexpected error kind: {e:?}"),
        }
    }

    fn binary(
        input: &mut dyn std::io::BufRead,
        sink: &mut dyn crate::ingest::Sink,
    ) -> Result<ReportMeta, ParseError> {
        libtest::parse_binary(input, "b", sink)
    }

    fn mutate(seed: &str, edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
        let mut bytes = seed.as_bytes().to_vec();
        for &(at, byte) in edits {
            let i = at % bytes.len();
            bytes[i] = byte;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        bytes
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for parser in [go_test::parse as Parser, libtest::parse, binary, payload::parse] {
                check(parser, &bytes);
            }
        }

        #[test]
        fn mutated_reports_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
        ) {
            check(go_test::parse, &mutate(GO, &edits, cut));
            check(libtest::parse, &mutate(LIBTEST, &edits, cut));
            check(binary, &mutate(LIBTEST, &edits, cut));
            check(payload::parse, &mutate(PAYLOAD, &edits, cut));
        }
    }
}
