//! JUnit XML in its real dialects: nextest, Maven Surefire / Gradle, pytest
//! `--junitxml` (xunit1 and xunit2, with pytest-rerunfailures), gotestsum,
//! jest-junit, and any generic `<testsuites>` / `<testsuite>` report.
//!
//! The parser streams: every `<testcase>` is handed to the [`Sink`] as soon as
//! it closes, so memory is bounded by the largest single test's output (and
//! even that is capped while reading, see [`MAX_OUTPUT_BYTES`]), never by the
//! size of the report. The totals attributes (`tests=`, `failures=`, ...) are
//! never trusted: Surefire counts rerun attempts in them and nextest leaves
//! ignored tests out.
//!
//! # Test ids
//!
//! | Dialect (how it is recognised) | Id | Example |
//! |---|---|---|
//! | nextest (root `<testsuites name="nextest-run">`) | `<binary-id> <test-name>`: the `<testsuite name>` (the binary id), a space, the `<testcase name>`, exactly as nextest prints it | `my-crate::it tests::parse` |
//! | pytest (`<testsuite name="pytest">`) | the pytest node id, rebuilt from `file` (xunit1) or from the dotted `classname` (xunit2): dotted module path to `path/to/module.py`, trailing CamelCase components are classes | `tests/test_api.py::TestLogin::test_ok[param]` |
//! | gotestsum (`go.version` property) | `<import/path>::<TestName/sub>` (the generic rule: classname is the package) | `example.com/m/pkg::TestX/sub` |
//! | jest-junit (root `<testsuites name="jest tests">`) | with jest-junit's default templates `classname` and `name` are both `"{describe blocks} {title}"`, jest's full test name (what `jest -t` matches): the id is that name, prefixed with `<file>::` when jest-junit writes `file` (`addFileAttribute`, recommended: without it two files can share a name); other templates get the generic rule | `__tests__/math.test.js::math adds` |
//! | Surefire, Gradle, generic | `<classname>::<name>`, or just `<name>` when `classname` is empty or missing | `com.example.FooTest::testBar` |
//!
//! Reconstructing a pytest node id from a dotted classname is ambiguous
//! (`a.b.C` may be module `a/b.py` class `C` or module `a/b/C.py`): the `file`
//! attribute wins when present; otherwise components after the first one that
//! starts with an ASCII capital letter are classes. Report `file` (pytest's
//! `junit_family=xunit1`) to remove the guess.
//!
//! # Attempts
//!
//! - Primary result: `<failure>` or `<error>` is a failed attempt, `<skipped>`
//!   a skip, no child a pass. Its duration is the `<testcase time>`.
//! - `<flakyFailure>` / `<flakyError>` (nextest, Surefire) are failed attempts
//!   *before* a final pass; `<rerunFailure>` / `<rerunError>` are failed
//!   attempts *after* the primary failure. Attempts are ordered failures
//!   first, final attempt last.
//! - pytest: adjacent `<testcase>`s with one id are merged. Real pytest (6.2
//!   to 8.4, pytest-rerunfailures 9 to 15) writes them in two cases: an
//!   attempt rerun after a teardown error is closed as a childless testcase
//!   and the rerun opens another (so an earlier childless one is a failed
//!   attempt, without details), and a failed call followed by a teardown
//!   error is split into a `<failure>` and an `<error>` testcase (one
//!   attempt). Reruns of a failed *call* are not written at all: pytest's
//!   JUnit XML shows a test that failed then passed as passed. Use
//!   pytest-json-report to see those.
//! - jest-junit drops retry information: a retried test only says passed.
//! - Timeouts and crashes: a `type` mentioning a timeout (nextest `test
//!   timeout`, JUnit `TestTimedOutException`) is [`AttemptStatus::Timeout`]; a
//!   `type` mentioning an abort or signal (nextest `test abort`) or a message
//!   naming a fatal signal (`SIGSEGV`, ...) is [`AttemptStatus::Crash`]; a
//!   `type` mentioning a leak is [`AttemptStatus::Leak`].
//!
//! # Input
//!
//! UTF-8 (with or without a BOM) and UTF-16 LE/BE are read. Any `<!DOCTYPE>`
//! that declares entities is rejected instead of expanded, which rules out
//! entity bombs and external entities; only the five predefined entities and
//! character references are resolved. Positions in errors are 1-based lines
//! and 0-based byte offsets (for UTF-16 input, offsets into the UTF-8 decoded
//! text), except that malformed UTF-16 is reported by its offset in the file
//! (see `utf16.rs`).

use std::borrow::Cow;
use std::io::BufRead;

use quick_xml::XmlVersion;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::{ParseError, Position, ReportMeta, Sink};
use crate::model::{
    Attempt, AttemptStatus, Failure, MAX_OUTPUT_BYTES, TestResult, first_failure_line,
};

/// Deepest element nesting accepted. Real reports nest three or four levels;
/// the limit keeps the element stack small on hostile input.
const MAX_DEPTH: usize = 256;

/// Parses a JUnit XML report, handing each test to `sink` as soon as its
/// `<testcase>` closes.
///
/// ```
/// use flake_core::ingest::junit;
/// use flake_core::model::{Outcome, TestResult};
///
/// let xml = r#"<testsuites name="nextest-run">
///   <testsuite name="my-crate">
///     <testcase name="tests::works" classname="my-crate" time="0.01"/>
///     <testcase name="tests::flaky" classname="my-crate" time="0.01">
///       <flakyFailure message="boom" type="test failure"/>
///     </testcase>
///   </testsuite>
/// </testsuites>"#;
/// let mut tests = Vec::new();
/// let mut sink = |t: TestResult| {
///     tests.push(t);
///     Ok(())
/// };
/// let meta = junit::parse(&mut xml.as_bytes(), &mut sink).unwrap();
/// assert_eq!(meta.runner.as_deref(), Some("nextest"));
/// assert_eq!(tests[0].id, "my-crate tests::works");
/// assert_eq!(tests[1].outcome, Outcome::Flaky);
/// ```
pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<ReportMeta, ParseError> {
    let head = input.fill_buf()?;
    let utf16 = head.starts_with(&[0xFF, 0xFE])
        || head.starts_with(&[0xFE, 0xFF])
        || head.starts_with(&[b'<', 0, b'?', 0])
        || head.starts_with(&[0, b'<', 0, b'?']);
    if utf16 {
        // quick-xml parses ASCII-compatible bytes only.
        let decoded = super::utf16::Utf16Reader::new(input)?;
        run(Reader::from_reader(decoded), sink, |r| {
            r.get_ref().malformed_at()
        })
    } else {
        // quick-xml strips a UTF-8 BOM and validates UTF-8 as it reads.
        run(Reader::from_reader(input), sink, |_| None)
    }
}

/// `malformed_at` gives the byte in the file of malformed UTF-16, which the
/// parser's own position does not know.
fn run<R: BufRead>(
    mut reader: Reader<R>,
    sink: &mut dyn Sink,
    malformed_at: impl Fn(&Reader<R>) -> Option<u64>,
) -> Result<ReportMeta, ParseError> {
    let config = reader.config_mut();
    config.trim_text(false);
    config.check_end_names = true;
    config.expand_empty_elements = false;
    let mut parser = Parser::new(sink);
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        let start = reader.buffer_position();
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(err) => return Err(parser.xml_error(&reader, err, malformed_at(&reader))),
        };
        let pos = Position {
            line: Some(parser.line),
            column: None,
            byte: Some(start),
        };
        // Every newline of the document is inside some event's content (the
        // delimiters `<`, `>`, `<!--` never contain one), so counting them per
        // event keeps an exact line number without a second pass.
        parser.line += newlines(&event);
        match event {
            Event::Start(e) => parser.open(&e, false, pos)?,
            Event::Empty(e) => parser.open(&e, true, pos)?,
            Event::End(_) => parser.close(pos)?,
            Event::Text(e) => parser.text(&e.xml10_content(), pos)?,
            Event::CData(e) => parser.text(&e.xml10_content(), pos)?,
            Event::GeneralRef(e) => {
                let resolved = match e.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => predefined_entity(&e),
                    Err(_) => None,
                };
                match resolved {
                    Some(c) => parser.text(c.encode_utf8(&mut [0; 4]), pos)?,
                    None => {
                        return Err(ParseError::invalid(
                            pos,
                            format!(
                                "undefined entity `&{};`; expected one of the predefined XML entities or a character reference",
                                &*e
                            ),
                        ));
                    }
                }
            }
            Event::DocType(e) => {
                if contains_ignore_case(&e, "<!ENTITY") {
                    return Err(ParseError::invalid(
                        pos,
                        "`<!DOCTYPE>` declares entities, which are never expanded (entity bombs, external entities); expected a plain JUnit report",
                    ));
                }
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => return parser.finish(pos),
        }
    }
}

/// Number of `\n` in an event's content.
fn newlines(event: &Event<'_>) -> u64 {
    let s: &str = match event {
        Event::Start(e) | Event::Empty(e) => e,
        Event::Text(e) | Event::Comment(e) | Event::DocType(e) => e,
        Event::CData(e) => e,
        Event::PI(e) => e,
        Event::Decl(e) => e,
        Event::End(_) | Event::GeneralRef(_) | Event::Eof => return 0,
    };
    // memchr skips ahead by vector; a byte-by-byte count was 5% of a large ingest.
    memchr::memchr_iter(b'\n', s.as_bytes()).count() as u64
}

fn predefined_entity(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// What an open element is, as far as the parser cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    Suites,
    Suite,
    Case,
    /// `<failure>`, `<skipped>`, `<flakyFailure>`, ... inside a testcase.
    Outcome,
    /// `<system-out>` / `<system-err>`; `true` for stderr.
    Output(bool),
    /// Surefire's `<stackTrace>` inside a flaky or rerun element.
    StackTrace,
    /// `<properties>` of a suite.
    Properties,
    /// Anything else: its content is skipped.
    Other,
}

/// Which dialect decides ids and rerun handling inside a suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Generic,
    Nextest,
    Pytest,
    Jest,
}

/// The role of an outcome element inside a testcase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutcomeKind {
    /// `<failure>` / `<error>`: the test's own result.
    Primary,
    Skipped,
    /// `<flakyFailure>` / `<flakyError>`: a failed attempt before a final pass.
    Flaky,
    /// `<rerunFailure>` / `<rerunError>`: a failed retry after the primary failure.
    Rerun,
}

/// A text buffer that keeps the head and the tail of what is pushed into it,
/// so a test that writes gigabytes costs a few KiB of memory.
#[derive(Debug, Default)]
struct Capped {
    buf: String,
    /// Where the kept head ends once something was cut.
    head_end: Option<usize>,
    cut: usize,
}

impl Capped {
    const HALF: usize = MAX_OUTPUT_BYTES / 2;

    fn push(&mut self, s: &str) {
        self.buf.push_str(s);
        if self.buf.len() > 4 * MAX_OUTPUT_BYTES {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let head_end = *self.head_end.get_or_insert_with(|| {
            let mut end = Self::HALF;
            while !self.buf.is_char_boundary(end) {
                end -= 1;
            }
            end
        });
        let mut tail_start = self.buf.len() - Self::HALF;
        while !self.buf.is_char_boundary(tail_start) {
            tail_start += 1;
        }
        self.cut += tail_start - head_end;
        self.buf.drain(head_end..tail_start);
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.head_end = None;
        self.cut = 0;
    }

    fn is_blank(&self) -> bool {
        self.buf.trim().is_empty()
    }

    /// Appends the kept text to `out`, marking what was cut.
    fn write_to(&self, out: &mut String) {
        match self.head_end {
            Some(head_end) if self.cut > 0 => {
                out.push_str(&self.buf[..head_end]);
                out.push_str(&format!(
                    "\n[... {} bytes cut by cargo-flake ...]\n",
                    self.cut
                ));
                out.push_str(&self.buf[head_end..]);
            }
            _ => out.push_str(&self.buf),
        }
    }
}

/// A failure-like element being read.
#[derive(Debug)]
struct OutcomeElem {
    kind: OutcomeKind,
    status: AttemptStatus,
    message: Option<String>,
    ty: Option<String>,
    duration_ms: Option<u64>,
    text: Capped,
    stack: Capped,
    out: Capped,
    err: Capped,
}

impl OutcomeElem {
    fn new() -> Self {
        OutcomeElem {
            kind: OutcomeKind::Primary,
            status: AttemptStatus::Fail,
            message: None,
            ty: None,
            duration_ms: None,
            text: Capped::default(),
            stack: Capped::default(),
            out: Capped::default(),
            err: Capped::default(),
        }
    }

    fn reset(&mut self, kind: OutcomeKind) {
        self.kind = kind;
        self.status = AttemptStatus::Fail;
        self.message = None;
        self.ty = None;
        self.duration_ms = None;
        self.text.clear();
        self.stack.clear();
        self.out.clear();
        self.err.clear();
    }
}

/// The primary `<failure>` / `<error>` of a testcase, kept until the testcase
/// closes because nextest and Surefire write its output as testcase-level
/// `<system-out>` / `<system-err>` after it.
#[derive(Debug)]
struct PrimaryFailure {
    status: AttemptStatus,
    message: String,
    body: String,
}

/// The testcase being read.
#[derive(Debug, Default)]
struct Case {
    id: String,
    duration_ms: Option<u64>,
    primary: Option<PrimaryFailure>,
    skipped: bool,
    flaky: Vec<Attempt>,
    reruns: Vec<Attempt>,
    out: Capped,
    err: Capped,
}

/// A pytest testcase held back to see whether the next one is its rerun.
#[derive(Debug)]
struct Held {
    result: TestResult,
    /// It had no child element: if a rerun follows, this attempt failed.
    plain: bool,
}

/// An open `<testsuite>`.
#[derive(Debug)]
struct SuiteFrame {
    name: String,
    dialect: Dialect,
    /// Which `<testsuite>` of the file this is, counting from 0.
    ordinal: u32,
}

struct Parser<'s> {
    sink: &'s mut dyn Sink,
    meta: ReportMeta,
    /// 1-based line of the next event.
    line: u64,
    stack: Vec<(Elem, u64)>,
    suites: Vec<SuiteFrame>,
    root_dialect: Dialect,
    root_closed: bool,
    /// Runner named by a dialect marker (nextest, pytest, ...).
    runner: Option<&'static str>,
    case: Case,
    outcome: OutcomeElem,
    held: Option<Held>,
    /// Suites opened so far.
    suites_opened: u32,
    /// The suite in which each test id (by 128-bit hash, to bound memory)
    /// last appeared: a repeat in the same suite is a retry, in another an
    /// independent execution.
    last_suite: rustc_hash::FxHashMap<u64, u32>,
    // Reused scratch buffers, so attributes cost no allocation per testcase.
    classname: String,
    name: String,
    file: String,
    has_file: bool,
}

impl<'s> Parser<'s> {
    fn new(sink: &'s mut dyn Sink) -> Self {
        Parser {
            sink,
            meta: ReportMeta::default(),
            line: 1,
            stack: Vec::new(),
            suites: Vec::new(),
            root_dialect: Dialect::Generic,
            root_closed: false,
            runner: None,
            case: Case::default(),
            outcome: OutcomeElem::new(),
            held: None,
            suites_opened: 0,
            last_suite: rustc_hash::FxHashMap::default(),
            classname: String::new(),
            name: String::new(),
            file: String::new(),
            has_file: false,
        }
    }

    fn xml_error<R>(
        &self,
        reader: &Reader<R>,
        err: quick_xml::Error,
        malformed_at: Option<u64>,
    ) -> ParseError {
        let pos = Position {
            line: Some(self.line),
            column: None,
            byte: Some(reader.error_position()),
        };
        match err {
            quick_xml::Error::Io(io) if io.kind() != std::io::ErrorKind::InvalidData => {
                ParseError::Io(std::io::Error::new(io.kind(), io.to_string()))
            }
            quick_xml::Error::Io(io) => ParseError::invalid(
                malformed_at.map_or(pos, Position::byte),
                format!("invalid text encoding ({io})"),
            ),
            quick_xml::Error::Encoding(e) => ParseError::invalid(
                malformed_at.map_or(pos, Position::byte),
                format!("invalid text encoding ({e})"),
            ),
            other => ParseError::invalid(pos, format!("malformed XML: {other}")),
        }
    }

    fn open(&mut self, e: &BytesStart<'_>, empty: bool, pos: Position) -> Result<(), ParseError> {
        let name = e.local_name();
        let name = name.as_ref();
        let parent = self.stack.last().map(|&(elem, _)| elem);
        let elem = match parent {
            None => {
                if self.root_closed {
                    return Err(ParseError::invalid(
                        pos,
                        format!(
                            "expected end of input after the root element, found `<{}>`",
                            tag_name(e)
                        ),
                    ));
                }
                match name {
                    "testsuites" => {
                        self.open_suites(e, pos)?;
                        Elem::Suites
                    }
                    "testsuite" => {
                        self.open_suite(e, pos)?;
                        Elem::Suite
                    }
                    _ => {
                        return Err(ParseError::invalid(
                            pos,
                            format!(
                                "expected `<testsuites>` or `<testsuite>`, found `<{}>`",
                                tag_name(e)
                            ),
                        ));
                    }
                }
            }
            Some(Elem::Suites | Elem::Suite) => match name {
                "testsuite" => {
                    self.open_suite(e, pos)?;
                    Elem::Suite
                }
                "testcase" => {
                    self.open_case(e, pos)?;
                    Elem::Case
                }
                "properties" => Elem::Properties,
                // Suite-level output and anything else is not about one test.
                _ => Elem::Other,
            },
            Some(Elem::Properties) => match name {
                "property" => {
                    self.property(e, pos)?;
                    Elem::Other
                }
                _ => Elem::Other,
            },
            Some(Elem::Case) => match name {
                "failure" | "error" => self.open_outcome(e, OutcomeKind::Primary, pos)?,
                "skipped" => self.open_outcome(e, OutcomeKind::Skipped, pos)?,
                "flakyFailure" | "flakyError" => self.open_outcome(e, OutcomeKind::Flaky, pos)?,
                "rerunFailure" | "rerunError" => self.open_outcome(e, OutcomeKind::Rerun, pos)?,
                "system-out" => Elem::Output(false),
                "system-err" => Elem::Output(true),
                "testcase" | "testsuite" => {
                    return Err(ParseError::invalid(
                        pos,
                        format!("unexpected `<{}>` inside `<testcase>`", tag_name(e)),
                    ));
                }
                _ => Elem::Other,
            },
            Some(Elem::Outcome) => match name {
                "stackTrace" => Elem::StackTrace,
                "system-out" => Elem::Output(false),
                "system-err" => Elem::Output(true),
                _ => Elem::Other,
            },
            Some(Elem::Output(_) | Elem::StackTrace | Elem::Other) => Elem::Other,
        };
        if empty {
            self.end_elem(elem)
        } else {
            if self.stack.len() >= MAX_DEPTH {
                return Err(ParseError::invalid(
                    pos,
                    format!("elements nested deeper than {MAX_DEPTH} levels"),
                ));
            }
            self.stack.push((elem, pos.line.unwrap_or(0)));
            Ok(())
        }
    }

    fn close(&mut self, _pos: Position) -> Result<(), ParseError> {
        // quick-xml checks that end tags match their start tags.
        match self.stack.pop() {
            Some((elem, _)) => self.end_elem(elem),
            None => Ok(()),
        }
    }

    fn end_elem(&mut self, elem: Elem) -> Result<(), ParseError> {
        match elem {
            Elem::Suites => {
                self.flush_held()?;
                self.root_closed = true;
            }
            Elem::Suite => {
                self.flush_held()?;
                self.suites.pop();
                if self.stack.is_empty() {
                    self.root_closed = true;
                }
            }
            Elem::Case => self.close_case()?,
            Elem::Outcome => self.close_outcome(),
            Elem::Output(_) | Elem::StackTrace | Elem::Properties | Elem::Other => {}
        }
        Ok(())
    }

    fn text(&mut self, text: &str, pos: Position) -> Result<(), ParseError> {
        let Some(&(top, _)) = self.stack.last() else {
            if text.trim().is_empty() {
                return Ok(());
            }
            let what = if self.root_closed {
                "expected end of input after the root element, found text"
            } else {
                "expected `<testsuites>` or `<testsuite>`, found text"
            };
            return Err(ParseError::invalid(pos, what));
        };
        let parent = self.stack.len().checked_sub(2).map(|i| self.stack[i].0);
        // nextest writes these placeholders when output was captured as one
        // stream or not at all (`--no-capture`); they are not test output.
        if matches!(top, Elem::Output(_))
            && matches!(
                text.trim(),
                "(stdout and stderr are combined)"
                    | "(stdout not captured)"
                    | "(stderr not captured)"
            )
        {
            return Ok(());
        }
        match (top, parent) {
            (Elem::Outcome, _) => self.outcome.text.push(text),
            (Elem::StackTrace, _) => self.outcome.stack.push(text),
            (Elem::Output(err), Some(Elem::Outcome)) => {
                if err {
                    self.outcome.err.push(text)
                } else {
                    self.outcome.out.push(text)
                }
            }
            (Elem::Output(err), Some(Elem::Case)) => {
                if err {
                    self.case.err.push(text)
                } else {
                    self.case.out.push(text)
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(mut self, pos: Position) -> Result<ReportMeta, ParseError> {
        if let Some(&(elem, line)) = self.stack.last() {
            return Err(ParseError::invalid(
                pos,
                format!(
                    "unexpected end of input: `<{}>` opened at line {line} is not closed (truncated file?)",
                    elem_name(elem)
                ),
            ));
        }
        if !self.root_closed {
            return Err(ParseError::invalid(
                pos,
                "expected `<testsuites>` or `<testsuite>`, found end of input",
            ));
        }
        self.flush_held()?;
        self.meta.runner = Some(self.runner.unwrap_or("junit").to_owned());
        Ok(self.meta)
    }

    fn open_suites(&mut self, e: &BytesStart<'_>, pos: Position) -> Result<(), ParseError> {
        let mut timestamp = None;
        let mut time = None;
        for attr in e.attributes().with_checks(false) {
            let attr = attr_ok(attr, pos)?;
            match attr.key.as_ref() {
                "name" => {
                    let v = value(&attr, pos)?;
                    if v == "nextest-run" {
                        self.root_dialect = Dialect::Nextest;
                        self.runner.get_or_insert("nextest");
                    } else if v == "jest tests" {
                        self.root_dialect = Dialect::Jest;
                        self.runner.get_or_insert("jest-junit");
                    }
                }
                "timestamp" => timestamp = parse_timestamp(&value(&attr, pos)?),
                "time" => time = parse_seconds(&value(&attr, pos)?),
                _ => {}
            }
        }
        self.note_times(timestamp, time);
        Ok(())
    }

    fn open_suite(&mut self, e: &BytesStart<'_>, pos: Position) -> Result<(), ParseError> {
        let mut name = String::new();
        let mut timestamp = None;
        let mut time = None;
        for attr in e.attributes().with_checks(false) {
            let attr = attr_ok(attr, pos)?;
            match attr.key.as_ref() {
                "name" => name = value(&attr, pos)?.into_owned(),
                "timestamp" => timestamp = parse_timestamp(&value(&attr, pos)?),
                "time" => time = parse_seconds(&value(&attr, pos)?),
                "hostname" if self.meta.host.is_none() => {
                    let v = value(&attr, pos)?;
                    if !v.is_empty() && v != "localhost" {
                        self.meta.host = Some(v.into_owned());
                    }
                }
                key if key.ends_with("noNamespaceSchemaLocation")
                    && value(&attr, pos)?.contains("surefire") =>
                {
                    self.runner.get_or_insert("surefire");
                }
                _ => {}
            }
        }
        self.note_times(timestamp, time);
        let inherited = self.suites.last().map_or(self.root_dialect, |s| s.dialect);
        let dialect = if inherited == Dialect::Generic && name == "pytest" {
            self.runner.get_or_insert("pytest");
            Dialect::Pytest
        } else {
            inherited
        };
        let ordinal = self.suites_opened;
        self.suites_opened = self.suites_opened.saturating_add(1);
        self.suites.push(SuiteFrame {
            name,
            dialect,
            ordinal,
        });
        Ok(())
    }

    fn note_times(&mut self, start: Option<i64>, secs: Option<f64>) {
        let Some(start) = start else { return };
        self.meta.started_at = Some(self.meta.started_at.map_or(start, |s| s.min(start)));
        // A `time` no clock produces (`1e300`) says nothing about the end.
        if let Some(ms) = secs.and_then(super::lines::seconds_to_ms) {
            let end = start.saturating_add_unsigned(ms);
            self.meta.finished_at = Some(self.meta.finished_at.map_or(end, |f| f.max(end)));
        }
    }

    fn property(&mut self, e: &BytesStart<'_>, pos: Position) -> Result<(), ParseError> {
        for attr in e.attributes().with_checks(false) {
            let attr = attr_ok(attr, pos)?;
            if attr.key.as_ref() == "name" {
                let v = value(&attr, pos)?;
                if v == "go.version" {
                    self.runner.get_or_insert("gotestsum");
                } else if v.starts_with("surefire.") {
                    self.runner.get_or_insert("surefire");
                }
            }
        }
        Ok(())
    }

    fn open_case(&mut self, e: &BytesStart<'_>, pos: Position) -> Result<(), ParseError> {
        self.classname.clear();
        self.name.clear();
        self.file.clear();
        self.has_file = false;
        let mut duration_ms = None;
        for attr in e.attributes().with_checks(false) {
            let attr = attr_ok(attr, pos)?;
            match attr.key.as_ref() {
                "name" => self.name.push_str(&value(&attr, pos)?),
                "classname" => self.classname.push_str(&value(&attr, pos)?),
                "file" => {
                    self.file.push_str(&value(&attr, pos)?);
                    self.has_file = !self.file.is_empty();
                }
                "time" => duration_ms = parse_seconds(&value(&attr, pos)?).map(seconds_to_ms),
                _ => {}
            }
        }
        if self.name.is_empty() {
            return Err(ParseError::invalid(
                pos,
                "`<testcase>` without a `name` attribute; expected `<testcase name=\"...\">`",
            ));
        }
        let id = self.build_id();
        let case = &mut self.case;
        case.id = id;
        case.duration_ms = duration_ms;
        case.primary = None;
        case.skipped = false;
        case.flaky.clear();
        case.reruns.clear();
        case.out.clear();
        case.err.clear();
        Ok(())
    }

    fn dialect(&self) -> Dialect {
        self.suites.last().map_or(self.root_dialect, |s| s.dialect)
    }

    fn build_id(&self) -> String {
        let (classname, name) = (self.classname.as_str(), self.name.as_str());
        match self.dialect() {
            Dialect::Nextest => {
                let binary = self
                    .suites
                    .last()
                    .map(|s| s.name.as_str())
                    .filter(|s| !s.is_empty())
                    .unwrap_or(classname);
                if binary.is_empty() {
                    name.to_owned()
                } else {
                    join(binary, " ", name)
                }
            }
            Dialect::Pytest => {
                pytest_node_id(classname, name, self.has_file.then_some(&*self.file))
            }
            // jest-junit's default templates make classname and name both
            // "{describe blocks} {title}", which is jest's full test name (what
            // `jest -t` matches); `file` is there with `addFileAttribute`.
            Dialect::Jest if classname == name || classname.is_empty() => {
                let name = name.trim();
                if self.has_file {
                    format!("{}::{name}", self.file)
                } else {
                    name.to_owned()
                }
            }
            Dialect::Generic | Dialect::Jest => {
                if classname.is_empty() {
                    name.to_owned()
                } else {
                    join(classname, "::", name)
                }
            }
        }
    }

    fn open_outcome(
        &mut self,
        e: &BytesStart<'_>,
        kind: OutcomeKind,
        pos: Position,
    ) -> Result<Elem, ParseError> {
        let o = &mut self.outcome;
        o.reset(kind);
        for attr in e.attributes().with_checks(false) {
            let attr = attr_ok(attr, pos)?;
            match attr.key.as_ref() {
                "message" => o.message = Some(value(&attr, pos)?.into_owned()),
                "type" => o.ty = Some(value(&attr, pos)?.into_owned()),
                "time" => o.duration_ms = parse_seconds(&value(&attr, pos)?).map(seconds_to_ms),
                _ => {}
            }
        }
        o.status = failure_status(
            o.ty.as_deref().unwrap_or(""),
            o.message.as_deref().unwrap_or(""),
        );
        Ok(Elem::Outcome)
    }

    fn close_outcome(&mut self) {
        let o = &mut self.outcome;
        match o.kind {
            OutcomeKind::Skipped => self.case.skipped = true,
            OutcomeKind::Primary => {
                let mut body = String::new();
                compose(&mut body, [&o.text, &o.stack, &o.err, &o.out]);
                match &mut self.case.primary {
                    // pytest writes a `<failure>` and then an `<error>` when a
                    // failing test also errors in teardown: one attempt.
                    Some(primary) => {
                        if !body.is_empty() {
                            primary.body.push_str("\n\n");
                            primary.body.push_str(&body);
                        }
                    }
                    None => {
                        self.case.primary = Some(PrimaryFailure {
                            status: o.status,
                            message: failure_message(o, &body),
                            body,
                        });
                    }
                }
            }
            OutcomeKind::Flaky | OutcomeKind::Rerun => {
                let mut body = String::new();
                compose(&mut body, [&o.text, &o.stack, &o.err, &o.out]);
                let message = failure_message(o, &body);
                let attempt = Attempt::failed(
                    o.status,
                    o.duration_ms,
                    Failure::from_output(Some(&message), &body),
                );
                if o.kind == OutcomeKind::Flaky {
                    self.case.flaky.push(attempt);
                } else {
                    self.case.reruns.push(attempt);
                }
            }
        }
    }

    fn close_case(&mut self) -> Result<(), ParseError> {
        let case = &mut self.case;
        let mut attempts = Vec::with_capacity(1 + case.flaky.len() + case.reruns.len());
        attempts.append(&mut case.flaky);
        let plain = attempts.is_empty() && case.primary.is_none() && !case.skipped;
        match case.primary.take() {
            Some(primary) => {
                let mut output = primary.body;
                // Testcase-level output belongs to the primary attempt.
                compose(&mut output, [&case.err, &case.out]);
                attempts.push(Attempt::failed(
                    primary.status,
                    case.duration_ms,
                    Failure::from_output(Some(&primary.message), &output),
                ));
            }
            None if case.skipped && attempts.is_empty() => attempts.push(Attempt::skip()),
            None => attempts.push(Attempt::pass(case.duration_ms)),
        }
        attempts.append(&mut case.reruns);
        let mut result = TestResult::new(std::mem::take(&mut case.id), attempts);
        result.independent = self.seen_in_other_suite(&result.id);
        if self.dialect() == Dialect::Pytest {
            self.hold(result, plain)
        } else {
            self.sink.test(result)?;
            Ok(())
        }
    }

    /// Whether this testcase starts an independent execution of `id`: its
    /// previous testcase was in another `<testsuite>` of this file. Only
    /// repeats inside one suite are retries (pytest-rerunfailures and
    /// gotestsum write them so); across suites they are separate executions:
    /// matrix jobs merged into one file, two Gradle modules.
    ///
    /// nextest's ids start with their suite's name (the binary id), so they
    /// cannot repeat across suites and cost nothing here. Elsewhere ids are
    /// remembered by a 64-bit FxHash: a collision (odds ~1e-9 at 200,000
    /// ids) could only mark one repeat independent, and this runs per
    /// testcase, where a cryptographic hash cost 15% of a large ingest.
    fn seen_in_other_suite(&mut self, id: &str) -> bool {
        if self.dialect() == Dialect::Nextest {
            return false;
        }
        let suite = self.suites.last().map_or(u32::MAX, |s| s.ordinal);
        let key = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = rustc_hash::FxBuildHasher.build_hasher();
            h.write(id.as_bytes());
            h.finish()
        };
        self.last_suite
            .insert(key, suite)
            .is_some_and(|previous| previous != suite)
    }

    /// Merges adjacent pytest testcases with one id, which real pytest writes
    /// in two cases (seen with pytest 6.2 to 8.4 and pytest-rerunfailures 9 to
    /// 15):
    ///
    /// - an attempt that pytest-rerunfailures reruns after its teardown failed
    ///   is closed as a testcase with no child, and the rerun opens another
    ///   one: an earlier childless testcase is a failed attempt;
    /// - a test whose call failed and whose teardown then errored is split
    ///   into a `<failure>` testcase and an `<error>` testcase: one attempt.
    fn hold(&mut self, mut result: TestResult, plain: bool) -> Result<(), ParseError> {
        if let Some(held) = self.held.take() {
            if held.result.id != result.id {
                self.sink.test(held.result)?;
            } else if held.plain {
                let mut attempts = held.result.attempts;
                if let Some(last) = attempts.last_mut() {
                    *last = Attempt::failed(
                        AttemptStatus::Fail,
                        last.duration_ms,
                        Failure::from_output(
                            Some(
                                "failed (pytest wrote this attempt without details; it was rerun, e.g. after a teardown error)",
                            ),
                            "",
                        ),
                    );
                }
                attempts.append(&mut result.attempts);
                result = TestResult::new(result.id, attempts);
            } else {
                // The teardown error of a failed call: the same attempt.
                let mut first = held.result;
                if let (Some(Some(into)), Some(Some(from))) = (
                    first.attempts.last_mut().map(|a| a.failure.as_mut()),
                    result.attempts.last().map(|a| a.failure.as_ref()),
                ) {
                    let mut output = std::mem::take(&mut into.output);
                    output.push_str("\n\n");
                    output.push_str(&from.output);
                    into.output = crate::model::cap_output(&output);
                }
                self.held = Some(Held {
                    result: first,
                    plain: false,
                });
                return Ok(());
            }
        }
        self.held = Some(Held { result, plain });
        Ok(())
    }

    fn flush_held(&mut self) -> Result<(), ParseError> {
        if let Some(held) = self.held.take() {
            self.sink.test(held.result)?;
        }
        Ok(())
    }
}

/// Appends non-blank sections to `out`, separated by a blank line. Sections
/// that another one already contains are left out: nextest repeats the
/// panic message of stderr as the failure text.
fn compose<const N: usize>(out: &mut String, sections: [&Capped; N]) {
    for (i, section) in sections.iter().enumerate() {
        if section.is_blank() {
            continue;
        }
        let trimmed = section.buf.trim();
        let repeated = sections.iter().enumerate().any(|(j, other)| {
            j != i && other.buf.len() > section.buf.len() && other.buf.contains(trimmed)
        });
        if repeated {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        let start = out.len();
        section.write_to(out);
        let end = out.trim_end().len().max(start);
        out.truncate(end);
    }
}

/// The one-line summary of a failure: the `message` attribute, unless it
/// says nothing (a Rust panic location from nextest, gotestsum's constant
/// `Failed`), then the first meaningful line of the output, then the `type`.
fn failure_message(o: &OutcomeElem, body: &str) -> String {
    if let Some(m) = o.message.as_deref() {
        let m = m.trim();
        if !m.is_empty() && !m.contains("panicked at ") && m != "Failed" {
            return m.lines().next().unwrap_or(m).trim().to_owned();
        }
    }
    if let Some(line) = go_failure_line(body) {
        return line.to_owned();
    }
    let line = first_failure_line(body);
    if !line.is_empty() {
        return line.to_owned();
    }
    // Without captured output, nextest's `panicked at <location>` message is
    // still the best summary there is.
    if let Some(m) = o
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        return m.lines().next().unwrap_or(m).trim().to_owned();
    }
    if let Some(ty) = o.ty.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        return ty.to_owned();
    }
    match o.status {
        AttemptStatus::Timeout => "timed out",
        AttemptStatus::Crash => "crashed",
        _ => "failed",
    }
    .to_owned()
}

/// The first line a Go test logged (`    file_test.go:12: message`), skipping
/// the `=== RUN` / `--- FAIL` framing `go test -v` output has.
fn go_failure_line(body: &str) -> Option<&str> {
    if !body.starts_with("=== RUN") {
        return None;
    }
    body.lines().map(str::trim).find(|l| {
        !l.is_empty()
            && !l.starts_with("=== ")
            && !l.starts_with("--- FAIL")
            && !l.starts_with("--- PASS")
    })
}

/// Maps a failure's `type` and `message` to how the attempt ended.
fn failure_status(ty: &str, message: &str) -> AttemptStatus {
    if contains_ignore_case(ty, "timeout")
        || contains_ignore_case(ty, "timedout")
        || contains_ignore_case(ty, "timed out")
    {
        AttemptStatus::Timeout
    } else if contains_ignore_case(ty, "abort")
        || contains_ignore_case(ty, "signal")
        || contains_ignore_case(ty, "crash")
        || [
            "SIGSEGV", "SIGABRT", "SIGBUS", "SIGILL", "SIGFPE", "SIGKILL", "SIGTRAP",
        ]
        .iter()
        .any(|s| message.contains(s))
    {
        AttemptStatus::Crash
    } else if contains_ignore_case(ty, "leak") {
        AttemptStatus::Leak
    } else {
        AttemptStatus::Fail
    }
}

/// Rebuilds a pytest node id. See the module docs for the rules.
fn pytest_node_id(classname: &str, name: &str, file: Option<&str>) -> String {
    if classname.is_empty() {
        return match file {
            Some(f) => format!("{f}::{name}"),
            None => name.to_owned(),
        };
    }
    let parts: Vec<&str> = classname.split('.').collect();
    let (path, classes): (Cow<'_, str>, &[&str]) = match file {
        Some(file) => {
            // The module's dotted form is the file without `.py`, `/` -> `.`.
            let module = file
                .strip_suffix(".py")
                .unwrap_or(file)
                .replace(['/', '\\'], ".");
            let module_parts = module.split('.').count();
            let classes = if classname == module {
                &parts[parts.len()..]
            } else if classname.starts_with(&module)
                && classname.as_bytes().get(module.len()) == Some(&b'.')
            {
                &parts[module_parts.min(parts.len())..]
            } else {
                trailing_classes(&parts)
            };
            (Cow::Borrowed(file), classes)
        }
        None => {
            let classes = trailing_classes(&parts);
            let module = &parts[..parts.len() - classes.len()];
            (Cow::Owned(format!("{}.py", module.join("/"))), classes)
        }
    };
    let mut id = path.into_owned();
    for class in classes {
        id.push_str("::");
        id.push_str(class);
    }
    id.push_str("::");
    id.push_str(name);
    id
}

/// The trailing components that name classes: everything after the first
/// component starting with an ASCII capital, always leaving one module.
fn trailing_classes<'a, 'b>(parts: &'b [&'a str]) -> &'b [&'a str] {
    let first_class = parts
        .iter()
        .skip(1)
        .position(|p| p.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(|i| i + 1);
    match first_class {
        Some(i) => &parts[i..],
        None => &parts[parts.len()..],
    }
}

fn attr_ok<'a>(
    attr: Result<Attribute<'a>, quick_xml::events::attributes::AttrError>,
    pos: Position,
) -> Result<Attribute<'a>, ParseError> {
    attr.map_err(|e| ParseError::invalid(pos, format!("malformed attribute: {e}")))
}

fn value<'a>(attr: &Attribute<'a>, pos: Position) -> Result<Cow<'a, str>, ParseError> {
    // Most values need neither entity resolution nor whitespace normalization.
    // A byte test, not `str::contains` with chars (which decodes UTF-8 and
    // was 7% of a large ingest); other control bytes take the slow path too,
    // where normalization leaves them as they are.
    if !attr.value.bytes().any(|b| b == b'&' || b < b' ') {
        return Ok(attr.value.clone());
    }
    attr.normalized_value(XmlVersion::Implicit1_0).map_err(|e| {
        ParseError::invalid(
            pos,
            format!("bad value of attribute `{}`: {e}", attr.key.as_ref()),
        )
    })
}

/// `a + sep + b` in one allocation.
fn join(a: &str, sep: &str, b: &str) -> String {
    let mut id = String::with_capacity(a.len() + sep.len() + b.len());
    id.push_str(a);
    id.push_str(sep);
    id.push_str(b);
    id
}

fn tag_name<'a>(e: &'a BytesStart<'_>) -> &'a str {
    let name = e.name();
    let len = name.as_ref().len();
    &e[..len]
}

fn elem_name(elem: Elem) -> &'static str {
    match elem {
        Elem::Suites => "testsuites",
        Elem::Suite => "testsuite",
        Elem::Case => "testcase",
        Elem::Outcome => "failure",
        Elem::Output(false) => "system-out",
        Elem::Output(true) => "system-err",
        Elem::StackTrace => "stackTrace",
        Elem::Properties => "properties",
        Elem::Other => "element",
    }
}

/// Parses a `time` attribute in seconds. Some Surefire versions write a
/// thousands separator (`1,234.5`).
fn parse_seconds(s: &str) -> Option<f64> {
    let s = s.trim();
    let secs: f64 = if s.contains(',') {
        s.replace(',', "").parse().ok()?
    } else {
        s.parse().ok()?
    };
    (secs.is_finite() && secs >= 0.0).then_some(secs)
}

fn seconds_to_ms(secs: f64) -> u64 {
    (secs * 1000.0).round() as u64
}

/// Parses a `timestamp` attribute to Unix milliseconds. Timestamps without an
/// offset (Surefire, Ant, older pytest) are taken as UTC.
fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Some(ts.as_millisecond());
    }
    let civil: jiff::civil::DateTime = s.parse().ok()?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;

    fn parse_str(xml: &str) -> Result<(ReportMeta, Vec<TestResult>), ParseError> {
        parse_bytes(xml.as_bytes())
    }

    fn parse_bytes(bytes: &[u8]) -> Result<(ReportMeta, Vec<TestResult>), ParseError> {
        crate::ingest::collect_parse(parse, bytes).map(|(tests, meta)| (meta, tests))
    }

    fn ok(xml: &str) -> (ReportMeta, Vec<TestResult>) {
        parse_str(xml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(xml: &[u8]) -> (Position, String) {
        match parse_bytes(xml) {
            Ok((_, tests)) => panic!("parsed fine: {tests:?}"),
            Err(ParseError::Invalid { position, message }) => (position, message),
            Err(e) => panic!("unexpected error kind: {e:?}"),
        }
    }

    fn statuses(t: &TestResult) -> Vec<AttemptStatus> {
        t.attempts.iter().map(|a| a.status).collect()
    }

    /// Shapes copied from real `cargo nextest run --retries 2` output (0.9.143).
    const NEXTEST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="4" skipped="0" failures="3" errors="0" uuid="47c88bed" timestamp="2026-11-21T23:31:30.264+00:00" time="3.686">
    <testsuite name="nextest-junit" tests="3" skipped="0" errors="0" failures="2">
        <testcase name="tests::crashes" classname="nextest-junit" timestamp="2026-11-21T23:31:30.265+00:00" time="0.005">
            <failure message="process aborted with signal 6 (SIGABRT)" type="test abort">process aborted with signal 6 (SIGABRT)</failure>
            <rerunFailure timestamp="2026-11-21T23:31:30.271+00:00" time="0.012" message="process aborted with signal 6 (SIGABRT)" type="test abort">process aborted with signal 6 (SIGABRT)
                <system-out>
running 1 test
</system-out>
                <system-err></system-err>
            </rerunFailure>
            <system-out>
running 1 test
</system-out>
            <system-err></system-err>
        </testcase>
        <testcase name="tests::flaky_first_attempt" classname="nextest-junit" timestamp="2026-11-21T23:31:30.499+00:00" time="0.013">
            <flakyFailure timestamp="2026-11-21T23:31:30.295+00:00" time="0.202" message="thread &apos;tests::flaky_first_attempt&apos; (8483) panicked at src/lib.rs:34:9" type="test failure with exit code 101">thread &apos;tests::flaky_first_attempt&apos; (8483) panicked at src/lib.rs:34:9:
attempt 1 failed on purpose
                <system-out>
running 1 test
test tests::flaky_first_attempt ... FAILED
</system-out>
                <system-err>
thread &apos;tests::flaky_first_attempt&apos; (8483) panicked at src/lib.rs:34:9:
attempt 1 failed on purpose
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
</system-err>
            </flakyFailure>
        </testcase>
        <testcase name="tests::fails_always" classname="nextest-junit" timestamp="2026-11-21T23:31:30.264+00:00" time="0.152">
            <failure message="thread &apos;tests::fails_always&apos; (8479) panicked at src/lib.rs:24:9" type="test failure with exit code 101">thread &apos;tests::fails_always&apos; (8479) panicked at src/lib.rs:24:9:
assertion `left == right` failed: markup in a message: &lt;tag&gt; &amp; &apos;quotes&apos;</failure>
            <rerunFailure time="0.196" message="thread &apos;tests::fails_always&apos; (8485) panicked at src/lib.rs:24:9" type="test failure with exit code 101">thread &apos;tests::fails_always&apos; (8485) panicked at src/lib.rs:24:9:
assertion `left == right` failed: markup in a message: &lt;tag&gt; &amp; &apos;quotes&apos;</rerunFailure>
            <system-out>
running 1 test
</system-out>
            <system-err>
thread &apos;tests::fails_always&apos; (8479) panicked at src/lib.rs:24:9:
assertion `left == right` failed: markup in a message: &lt;tag&gt; &amp; &apos;quotes&apos;
</system-err>
        </testcase>
    </testsuite>
    <testsuite name="nextest-junit::it" tests="1" skipped="0" errors="0" failures="1">
        <testcase name="integration_times_out" classname="nextest-junit::it" timestamp="2026-11-21T23:31:30.942+00:00" time="1.002">
            <failure type="test timeout"/>
            <rerunFailure timestamp="2026-11-21T23:31:31.946+00:00" time="1.001" type="test timeout">
                <system-out>
running 1 test
</system-out>
                <system-err></system-err>
            </rerunFailure>
        </testcase>
        <testcase name="integration_passes" classname="nextest-junit::it" time="0.005"/>
    </testsuite>
</testsuites>
"#;

    #[test]
    fn nextest_ids_attempts_and_statuses() {
        let (meta, tests) = ok(NEXTEST);
        assert_eq!(meta.runner.as_deref(), Some("nextest"));
        assert_eq!(meta.started_at, Some(1_795_303_890_264));
        assert_eq!(meta.finished_at, Some(1_795_303_890_264 + 3_686));
        let ids: Vec<_> = tests.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "nextest-junit tests::crashes",
                "nextest-junit tests::flaky_first_attempt",
                "nextest-junit tests::fails_always",
                "nextest-junit::it integration_times_out",
                "nextest-junit::it integration_passes",
            ]
        );

        let crash = &tests[0];
        assert_eq!(crash.outcome, Outcome::Failed);
        assert_eq!(
            statuses(crash),
            [AttemptStatus::Crash, AttemptStatus::Crash]
        );
        assert_eq!(crash.attempts[0].duration_ms, Some(5));
        assert_eq!(crash.attempts[1].duration_ms, Some(12));
        let f = crash.first_failure().unwrap();
        assert_eq!(f.message, "process aborted with signal 6 (SIGABRT)");

        let flaky = &tests[1];
        assert_eq!(flaky.outcome, Outcome::Flaky);
        assert_eq!(statuses(flaky), [AttemptStatus::Fail, AttemptStatus::Pass]);
        // The failed attempt's own time, then the final (passing) attempt's.
        assert_eq!(flaky.attempts[0].duration_ms, Some(202));
        assert_eq!(flaky.attempts[1].duration_ms, Some(13));
        let f = flaky.first_failure().unwrap();
        assert_eq!(f.message, "attempt 1 failed on purpose");
        assert_eq!(f.location.as_deref(), Some("src/lib.rs:34:9"));
        assert!(
            f.output
                .contains("test tests::flaky_first_attempt ... FAILED")
        );
        // The failure text repeats stderr; it is kept once.
        assert_eq!(f.output.matches("attempt 1 failed on purpose").count(), 1);

        let failed = &tests[2];
        assert_eq!(failed.outcome, Outcome::Failed);
        assert_eq!(statuses(failed), [AttemptStatus::Fail, AttemptStatus::Fail]);
        let f = failed.first_failure().unwrap();
        assert_eq!(
            f.message,
            "assertion `left == right` failed: markup in a message: <tag> & 'quotes'"
        );
        assert!(f.output.contains("running 1 test"), "{}", f.output);

        let timeout = &tests[3];
        assert_eq!(timeout.outcome, Outcome::Failed);
        assert_eq!(
            statuses(timeout),
            [AttemptStatus::Timeout, AttemptStatus::Timeout]
        );
        assert_eq!(timeout.first_failure().unwrap().message, "test timeout");

        assert_eq!(tests[4].outcome, Outcome::Passed);
        assert_eq!(tests[4].attempts, [Attempt::pass(Some(5))]);
    }

    #[test]
    fn nextest_flaky_attempts_come_before_the_final_pass() {
        let xml = r#"<testsuites name="nextest-run"><testsuite name="my-app::bin/cli">
            <testcase name="tests::two" classname="my-app::bin/cli" time="0.3">
              <flakyFailure time="0.1" type="test failure">one</flakyFailure>
              <flakyFailure time="0.2" type="test failure with exit code 101">two</flakyFailure>
            </testcase></testsuite></testsuites>"#;
        let (_, tests) = ok(xml);
        assert_eq!(tests[0].id, "my-app::bin/cli tests::two");
        assert_eq!(
            statuses(&tests[0]),
            [
                AttemptStatus::Fail,
                AttemptStatus::Fail,
                AttemptStatus::Pass
            ]
        );
        let durations: Vec<_> = tests[0].attempts.iter().map(|a| a.duration_ms).collect();
        assert_eq!(durations, [Some(100), Some(200), Some(300)]);
        assert_eq!(tests[0].first_failure().unwrap().message, "one");
    }

    #[test]
    fn truncated_file_names_the_open_element() {
        let cut = &NEXTEST[..NEXTEST
            .find("<testcase name=\"integration_passes\"")
            .unwrap()];
        let (pos, msg) = err(cut.as_bytes());
        assert!(msg.contains("unexpected end of input"), "{msg}");
        assert!(msg.contains("`<testsuite>` opened at line 45"), "{msg}");
        assert!(pos.line.is_some() && pos.byte.is_some());
        // Cut inside a tag.
        let (pos, msg) = err(b"<testsuites>\n<testsuite name=\"a\">\n<testcase name=\"x");
        assert!(msg.contains("malformed XML"), "{msg}");
        assert_eq!(pos.line, Some(3));
    }

    #[test]
    fn wrong_root_and_not_xml_are_errors_with_positions() {
        let (pos, msg) = err(b"<?xml version=\"1.0\"?>\n<html><body/></html>");
        assert_eq!(
            msg,
            "expected `<testsuites>` or `<testsuite>`, found `<html>`"
        );
        assert_eq!(pos.line, Some(2));
        assert_eq!(pos.byte, Some(22));
        let (_, msg) = err(b"hello, world");
        assert!(msg.contains("found text"), "{msg}");
        let (_, msg) = err(b"<?xml version=\"1.0\"?>\n");
        assert!(msg.contains("found end of input"), "{msg}");
        let (_, msg) = err(b"<testsuite name=\"a\"/><testsuite name=\"b\"/>");
        assert!(
            msg.contains("expected end of input after the root element"),
            "{msg}"
        );
    }

    #[test]
    fn binary_garbage_and_invalid_utf8_are_rejected() {
        let (_, msg) = err(&[0x00, 0x9f, 0x92, 0x96, 0xff, 0x00, 0x13]);
        assert!(!msg.is_empty());
        let mut bad = b"<testsuite name=\"a\"><testcase name=\"".to_vec();
        bad.extend_from_slice(&[0xC3, 0x28]);
        bad.extend_from_slice(b"\"/></testsuite>");
        let (pos, msg) = err(&bad);
        assert!(msg.contains("encoding") || msg.contains("UTF-8"), "{msg}");
        assert!(pos.byte.is_some());
    }

    #[test]
    fn entity_declarations_are_rejected_not_expanded() {
        let bomb = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<testsuite name="x"><testcase name="&lol3;"/></testsuite>"#;
        let (pos, msg) = err(bomb);
        assert!(msg.contains("declares entities"), "{msg}");
        assert_eq!(pos.line, Some(2));
        let xxe = br#"<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<testsuite name="x"><testcase name="a"><failure>&xxe;</failure></testcase></testsuite>"#;
        let (_, msg) = err(xxe);
        assert!(msg.contains("declares entities"), "{msg}");
        // Without a declaration an unknown entity is simply undefined.
        let (_, msg) =
            err(br#"<testsuite name="x"><testcase name="a"><failure>&xxe;</failure></testcase></testsuite>"#);
        assert!(msg.contains("undefined entity `&xxe;`"), "{msg}");
        let (_, msg) = err(br#"<testsuite name="x"><testcase name="&xxe;"/></testsuite>"#);
        assert!(msg.contains("bad value of attribute `name`"), "{msg}");
        // A DOCTYPE without entities is harmless.
        let (_, tests) = ok(
            "<!DOCTYPE testsuite SYSTEM \"junit.dtd\">\n<testsuite><testcase name=\"a\"/></testsuite>",
        );
        assert_eq!(tests.len(), 1);
    }

    #[test]
    fn empty_reports_parse_with_no_tests() {
        assert!(ok("<testsuites/>").1.is_empty());
        assert!(ok("<testsuites>\n</testsuites>\n").1.is_empty());
        assert!(
            ok("<testsuite name=\"x\" tests=\"0\"></testsuite>")
                .1
                .is_empty()
        );
    }

    #[test]
    fn testcase_without_name_is_an_error() {
        let (pos, msg) = err(b"<testsuite>\n<testcase classname=\"a\"/></testsuite>");
        assert!(msg.contains("without a `name`"), "{msg}");
        assert_eq!(pos.line, Some(2));
    }

    #[test]
    fn pytest_node_ids_from_classname_and_file() {
        assert_eq!(
            pytest_node_id("tests.test_api.TestLogin", "test_ok[param]", None),
            "tests/test_api.py::TestLogin::test_ok[param]"
        );
        assert_eq!(
            pytest_node_id(
                "tests.pkg.test_nested.TestOuter.TestInner",
                "test_deep",
                None
            ),
            "tests/pkg/test_nested.py::TestOuter::TestInner::test_deep"
        );
        assert_eq!(
            pytest_node_id("test_top", "test_a[x.y::z]", None),
            "test_top.py::test_a[x.y::z]"
        );
        // `file` (xunit1) removes the guess: a module with a capital letter.
        assert_eq!(
            pytest_node_id(
                "tests.Test_Caps.TestX",
                "test_a",
                Some("tests/Test_Caps.py")
            ),
            "tests/Test_Caps.py::TestX::test_a"
        );
        assert_eq!(
            pytest_node_id("tests.test_api", "test_a", Some("tests/test_api.py")),
            "tests/test_api.py::test_a"
        );
        assert_eq!(pytest_node_id("", "test_a", None), "test_a");
    }

    #[test]
    fn pytest_repeated_testcases_are_attempts() {
        // Real pytest 8.4 + pytest-rerunfailures 15.1 shapes.
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="7" time="0.161" timestamp="2026-11-21T23:38:13.275314+00:00" hostname="vm">
<testcase classname="tests.test_api" name="test_passes_but_teardown_errors" time="0.001" />
<testcase classname="tests.test_api" name="test_passes_but_teardown_errors" time="0.001" />
<testcase classname="tests.test_api" name="test_passes_but_teardown_errors" time="0.002"><error message="failed on teardown with &quot;RuntimeError: teardown exploded&quot;">E       RuntimeError: teardown exploded</error></testcase>
<testcase classname="tests.test_api" name="test_fails_and_teardown_errors" time="0.002"><failure message="AssertionError: call failed&#10;assert False">E       AssertionError: call failed</failure></testcase>
<testcase classname="tests.test_api" name="test_fails_and_teardown_errors" time="0.000"><error message="failed on teardown with &quot;RuntimeError: teardown exploded&quot;">E       RuntimeError: teardown exploded</error></testcase>
<testcase classname="tests.test_api" name="test_skipped" time="0.000"><skipped type="pytest.skip" message="not today">test_api.py:12: not today</skipped></testcase>
<testcase classname="tests.test_api" name="test_passes" time="0.000" />
<testcase classname="tests.test_api" name="test_rerun_then_pass" time="0.001" />
<testcase classname="tests.test_api" name="test_rerun_then_pass" time="0.001" />
</testsuite></testsuites>"#;
        let (meta, tests) = ok(xml);
        assert_eq!(meta.runner.as_deref(), Some("pytest"));
        assert_eq!(meta.host.as_deref(), Some("vm"));
        let summary: Vec<_> = tests
            .iter()
            .map(|t| (t.id.as_str(), t.outcome, t.attempts_run()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "tests/test_api.py::test_passes_but_teardown_errors",
                    Outcome::Failed,
                    3
                ),
                (
                    "tests/test_api.py::test_fails_and_teardown_errors",
                    Outcome::Failed,
                    1
                ),
                ("tests/test_api.py::test_skipped", Outcome::Skipped, 0),
                ("tests/test_api.py::test_passes", Outcome::Passed, 1),
                ("tests/test_api.py::test_rerun_then_pass", Outcome::Flaky, 2),
            ]
        );
        let split = tests[1].first_failure().unwrap();
        assert_eq!(split.message, "AssertionError: call failed");
        assert!(
            split.output.contains("teardown exploded"),
            "{}",
            split.output
        );
    }

    #[test]
    fn gotestsum_ids_and_messages() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3" failures="1" errors="0" time="8.176564">
	<testsuite tests="3" failures="1" time="0.007000" name="example.com/m/flaky" timestamp="2026-11-21T23:40:21Z">
		<properties>
			<property name="go.version" value="go1.19.8 linux/amd64"></property>
		</properties>
		<testcase classname="example.com/m/flaky" name="TestFlakyOnce" time="0.000000">
			<failure message="Failed" type="">=== RUN   TestFlakyOnce&#xA;    flaky_test.go:7: attempt 1 failed on purpose&#xA;--- FAIL: TestFlakyOnce (0.00s)&#xA;</failure>
		</testcase>
		<testcase classname="example.com/m/flaky" name="TestSubtests/&lt;&amp;&gt;" time="0.000000"></testcase>
		<testcase classname="example.com/m/flaky" name="TestFlakyOnce" time="0.001000"></testcase>
	</testsuite>
</testsuites>"#;
        let (meta, tests) = ok(xml);
        assert_eq!(meta.runner.as_deref(), Some("gotestsum"));
        assert_eq!(meta.started_at, Some(1_795_304_421_000));
        assert_eq!(meta.finished_at, Some(1_795_304_421_007));
        let ids: Vec<_> = tests.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "example.com/m/flaky::TestFlakyOnce",
                "example.com/m/flaky::TestSubtests/<&>",
                "example.com/m/flaky::TestFlakyOnce",
            ]
        );
        let f = tests[0].first_failure().unwrap();
        assert_eq!(f.message, "flaky_test.go:7: attempt 1 failed on purpose");
        // Reruns are separate records; the sink merges them.
        let mut merged = tests[0].clone();
        merged.absorb(tests[2].clone());
        assert_eq!(merged.outcome, Outcome::Flaky);
    }

    #[test]
    fn surefire_reruns_and_generic_nesting() {
        let xml = r#"<testsuites><testsuite name="outer"><testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="https://maven.apache.org/surefire/maven-surefire-plugin/xsd/surefire-test-report-3.0.xsd" name="com.example.T" tests="9" timestamp="2024-01-02T03:04:05">
  <testcase name="flaky" classname="com.example.T" time="1,234.5">
    <flakyError message="Connection refused" type="java.net.ConnectException"><stackTrace>java.net.ConnectException: Connection refused</stackTrace><system-out>out 1</system-out></flakyError>
  </testcase>
  <testcase name="slow" classname="com.example.T"><error type="org.junit.runners.model.TestTimedOutException">timed out</error><rerunError type="org.junit.runners.model.TestTimedOutException"/></testcase>
  <testcase name="bare" classname=""><skipped/></testcase>
</testsuite></testsuite></testsuites>"#;
        let (meta, tests) = ok(xml);
        assert_eq!(meta.runner.as_deref(), Some("surefire"));
        assert_eq!(meta.started_at, Some(1_704_164_645_000));
        assert_eq!(tests[0].id, "com.example.T::flaky");
        assert_eq!(
            statuses(&tests[0]),
            [AttemptStatus::Fail, AttemptStatus::Pass]
        );
        assert_eq!(tests[0].attempts[1].duration_ms, Some(1_234_500));
        let f = tests[0].first_failure().unwrap();
        assert_eq!(f.message, "Connection refused");
        assert!(f.output.contains("out 1"));
        assert_eq!(
            statuses(&tests[1]),
            [AttemptStatus::Timeout, AttemptStatus::Timeout]
        );
        assert_eq!(tests[2].id, "bare");
        assert_eq!(tests[2].outcome, Outcome::Skipped);
    }

    #[test]
    fn huge_output_is_capped_while_reading() {
        let big = "x".repeat(10 * MAX_OUTPUT_BYTES);
        let xml = format!(
            "<testsuite><testcase name=\"a\"><failure message=\"m\">HEAD{big}TAIL</failure><system-out>{big}</system-out></testcase></testsuite>"
        );
        let (_, tests) = ok(&xml);
        let f = tests[0].first_failure().unwrap();
        assert!(
            f.output.len() <= MAX_OUTPUT_BYTES + 128,
            "{}",
            f.output.len()
        );
        assert!(f.output.starts_with("HEAD"));
        assert!(f.output.contains("bytes cut by cargo-flake"));
    }

    #[test]
    fn utf16_with_bom_is_decoded() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n<testsuite name=\"s\"><testcase classname=\"c\" name=\"ünï &amp; 😀\"/></testsuite>";
        for le in [true, false] {
            let mut bytes = if le {
                vec![0xFF, 0xFE]
            } else {
                vec![0xFE, 0xFF]
            };
            for unit in xml.encode_utf16() {
                bytes.extend(if le {
                    unit.to_le_bytes()
                } else {
                    unit.to_be_bytes()
                });
            }
            let (_, tests) = parse_bytes(&bytes).unwrap();
            assert_eq!(tests[0].id, "c::ünï & 😀");
        }
        let mut bom8 = vec![0xEF, 0xBB, 0xBF];
        bom8.extend_from_slice(b"<testsuite><testcase name=\"a\"/></testsuite>");
        assert_eq!(parse_bytes(&bom8).unwrap().1.len(), 1);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn check(bytes: &[u8]) {
            match parse_bytes(bytes) {
                Ok(_) => {}
                Err(ParseError::Invalid { position, .. }) => {
                    assert!(
                        position.line.is_some() || position.byte.is_some(),
                        "error without a position"
                    );
                }
                Err(ParseError::Io(_)) => {}
                Err(ParseError::Sink(e)) => panic!("sink error from nowhere: {e}"),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                check(&bytes);
            }

            #[test]
            fn mutated_reports_never_panic(
                edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
                cut in any::<proptest::sample::Index>(),
            ) {
                let mut bytes = NEXTEST.as_bytes().to_vec();
                for (at, byte, op) in edits {
                    let i = at.index(bytes.len());
                    match op {
                        0 => bytes[i] = byte,
                        1 => bytes.insert(i, byte),
                        _ => { bytes.remove(i); }
                    }
                }
                check(&bytes);
                // Truncations of a valid report must all be errors.
                let end = cut.index(NEXTEST.len());
                let truncated = NEXTEST.as_bytes()[..end].to_vec();
                if !NEXTEST[..end].contains("</testsuites>") {
                    prop_assert!(parse_bytes(&truncated).is_err());
                }
            }

            #[test]
            fn mutated_utf16_never_panics(
                edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8),
            ) {
                let mut bytes = vec![0xFF, 0xFE];
                for unit in NEXTEST.encode_utf16() {
                    bytes.extend(unit.to_le_bytes());
                }
                for (at, byte) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                check(&bytes);
            }
        }
    }
}
