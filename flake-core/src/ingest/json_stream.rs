//! Streaming over single-document JSON reports (pytest-json-report, Jest,
//! RSpec) without building the whole document in memory.
//!
//! A report is one JSON object whose interesting part is a large array. The
//! helpers here drive serde_json's streaming deserializer: an [`ObjectVisitor`]
//! sees each key of an object in turn and decides how to consume its value;
//! [`EachElement`] deserialises an array one element at a time into a small
//! typed struct and hands it over at once. Memory is thus bounded by the
//! largest element, not by the report.
//!
//! When the receiver of an element fails (the sink refused a test), the error
//! is kept in a [`Stash`] and the visit is aborted with a marker error; the
//! caller gets the stashed error back from [`parse_document`], never the
//! marker.

use std::fmt;
use std::io::BufRead;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{ParseError, Position};

/// Holds the first error raised by a callback while serde drives the parse.
#[derive(Debug, Default)]
pub(crate) struct Stash(Option<ParseError>);

impl Stash {
    /// Keeps `err` and returns the serde error that aborts the visit.
    pub(crate) fn abort<E: de::Error>(&mut self, err: ParseError) -> E {
        if self.0.is_none() {
            self.0 = Some(err);
        }
        E::custom("parse stopped by its receiver")
    }

    /// Like [`Stash::abort`], but an invalid-input error that does not know
    /// where it happened goes back to serde, which adds the line and column.
    fn abort_at_here<E: de::Error>(&mut self, err: ParseError) -> E {
        match err {
            ParseError::Invalid { position, message } if position == Position::default() => {
                E::custom(message)
            }
            other => self.abort(other),
        }
    }
}

/// Receives the keys of one JSON object, each with the means to consume its
/// value.
pub(crate) trait ObjectVisitor {
    /// Handles the value of `key`. Must consume exactly one value from `map`
    /// (`map.next_value::<IgnoredAny>()` skips it).
    fn field<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;

    /// Called at the object's closing brace, to reject an object that lacks
    /// a required key; serde gives the error the brace's line and column.
    fn finish<E: de::Error>(&mut self) -> Result<(), E> {
        Ok(())
    }

    /// Where callbacks keep the error that aborted the visit.
    fn stash(&mut self) -> &mut Stash;
}

/// Deserialises an object by handing each of its keys to an [`ObjectVisitor`].
pub(crate) struct Object<'v, V> {
    visitor: &'v mut V,
    expected: &'static str,
}

impl<'v, V> Object<'v, V> {
    /// `expected` describes the object for serde's "invalid type" messages.
    pub(crate) fn new(visitor: &'v mut V, expected: &'static str) -> Self {
        Object { visitor, expected }
    }
}

impl<'de, V: ObjectVisitor> DeserializeSeed<'de> for Object<'_, V> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, V: ObjectVisitor> Visitor<'de> for Object<'_, V> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Keys are owned: an io reader cannot lend borrowed strings.
        while let Some(key) = map.next_key::<String>()? {
            self.visitor.field(&key, &mut map)?;
        }
        self.visitor.finish()
    }
}

/// Deserialises an array element by element into `T`, calling `f` on each.
/// `null` counts as an empty array, as some tools write it for "none",
/// unless [`EachElement::rejecting_null`] says otherwise.
pub(crate) struct EachElement<'s, T, F> {
    stash: &'s mut Stash,
    f: F,
    expected: &'static str,
    null_is_empty: bool,
    _element: PhantomData<fn() -> T>,
}

impl<'s, T, F> EachElement<'s, T, F>
where
    F: FnMut(T) -> Result<(), ParseError>,
{
    /// `expected` describes the array for serde's "invalid type" messages.
    pub(crate) fn new(stash: &'s mut Stash, expected: &'static str, f: F) -> Self {
        EachElement {
            stash,
            f,
            expected,
            null_is_empty: true,
            _element: PhantomData,
        }
    }

    /// Makes `null` a type error, for formats that promise an array.
    pub(crate) fn rejecting_null(self) -> Self {
        EachElement {
            null_is_empty: false,
            ..self
        }
    }
}

impl<'de, T, F> DeserializeSeed<'de> for EachElement<'_, T, F>
where
    T: Deserialize<'de>,
    F: FnMut(T) -> Result<(), ParseError>,
{
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.null_is_empty {
            deserializer.deserialize_option(self)
        } else {
            deserializer.deserialize_seq(self)
        }
    }
}

impl<'de, T, F> Visitor<'de> for EachElement<'_, T, F>
where
    T: Deserialize<'de>,
    F: FnMut(T) -> Result<(), ParseError>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(element) = seq.next_element::<T>()? {
            if let Err(e) = (self.f)(element) {
                return Err(self.stash.abort_at_here(e));
            }
        }
        Ok(())
    }
}

/// Deserialises an array of objects, each through a fresh [`ObjectVisitor`]
/// made by `new`; `f` receives each visitor once its object is complete.
/// `null` counts as an empty array.
pub(crate) struct EachObject<'s, V, N, F> {
    stash: &'s mut Stash,
    new: N,
    f: F,
    expected: &'static str,
    _visitor: PhantomData<fn() -> V>,
}

impl<'s, V, N, F> EachObject<'s, V, N, F>
where
    V: ObjectVisitor,
    N: FnMut() -> V,
    F: FnMut(V) -> Result<(), ParseError>,
{
    /// `expected` describes one element for serde's "invalid type" messages.
    pub(crate) fn new(stash: &'s mut Stash, expected: &'static str, new: N, f: F) -> Self {
        EachObject {
            stash,
            new,
            f,
            expected,
            _visitor: PhantomData,
        }
    }
}

impl<'de, V, N, F> DeserializeSeed<'de> for EachObject<'_, V, N, F>
where
    V: ObjectVisitor,
    N: FnMut() -> V,
    F: FnMut(V) -> Result<(), ParseError>,
{
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, V, N, F> Visitor<'de> for EachObject<'_, V, N, F>
where
    V: ObjectVisitor,
    N: FnMut() -> V,
    F: FnMut(V) -> Result<(), ParseError>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {}", self.expected)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let mut visitor = (self.new)();
            match seq.next_element_seed(Object::new(&mut visitor, self.expected)) {
                Ok(Some(())) => {}
                Ok(None) => return Ok(()),
                Err(e) => {
                    // An error stashed by a nested visitor wins over serde's marker.
                    if let Some(inner) = visitor.stash().0.take() {
                        return Err(self.stash.abort(inner));
                    }
                    return Err(e);
                }
            }
            if let Err(e) = (self.f)(visitor) {
                return Err(self.stash.abort_at_here(e));
            }
        }
    }
}

/// Skips the value of the current key.
pub(crate) fn skip_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(|_| ())
}

/// Parses one JSON document from `input` whose top level is an object handed
/// to `visitor`, then checks that nothing but whitespace follows. Returns the
/// position of the end of the document, for errors about what it lacked.
///
/// `expected` names what the document should be ("a pytest-json-report object
/// with a `tests` array"); it prefixes every syntax or shape error, with
/// serde's own detail and the line and column where it happened.
pub(crate) fn parse_document<V: ObjectVisitor>(
    input: &mut dyn BufRead,
    expected: &'static str,
    visitor: &mut V,
) -> Result<Position, ParseError> {
    let mut counting = Counting {
        inner: input,
        bytes: 0,
        lines: 1,
    };
    let mut de = serde_json::Deserializer::from_reader(&mut counting);
    let result = Object::new(visitor, expected)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match result {
        Ok(()) => Ok(Position {
            line: Some(counting.lines),
            column: None,
            byte: Some(counting.bytes),
        }),
        Err(e) => Err(match visitor.stash().0.take() {
            Some(stashed) => stashed,
            None => from_json_error(&e, expected),
        }),
    }
}

/// Counts the bytes and lines serde_json consumed.
struct Counting<'r> {
    inner: &'r mut dyn BufRead,
    bytes: u64,
    lines: u64,
}

impl std::io::Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        self.lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(n)
    }
}

/// Maps a serde_json error to a positioned [`ParseError`] saying what was
/// expected.
pub(crate) fn from_json_error(e: &serde_json::Error, expected: &str) -> ParseError {
    if e.is_io() {
        // The only way to get the io::Error out of serde_json is by value;
        // rebuild one of the same kind with the same text.
        let kind = e.io_error_kind().unwrap_or(std::io::ErrorKind::Other);
        return ParseError::Io(std::io::Error::new(kind, e.to_string()));
    }
    let position = if e.line() == 0 {
        Position::default()
    } else {
        Position {
            line: Some(e.line() as u64),
            column: Some(e.column() as u64),
            byte: None,
        }
    };
    // serde_json appends " at line L column C"; the position says it already.
    let text = e.to_string();
    let detail = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    };
    let detail = match e.classify() {
        serde_json::error::Category::Eof => {
            format!("the document ends early (truncated file?): {detail}")
        }
        _ => detail.to_owned(),
    };
    ParseError::invalid(position, format!("expected {expected}: {detail}"))
}

/// Seconds (as JSON reports write durations) to whole milliseconds: the one
/// conversion all parsers share, so absurd values are rejected alike.
pub(crate) use super::lines::seconds_to_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        stash: Stash,
        items: Vec<u32>,
        stop_at: Option<u32>,
        saw_items: bool,
        require_items: bool,
    }

    impl ObjectVisitor for Collect {
        fn field<'de, A: MapAccess<'de>>(
            &mut self,
            key: &str,
            map: &mut A,
        ) -> Result<(), A::Error> {
            if key != "items" {
                return skip_value(map);
            }
            self.saw_items = true;
            let Collect {
                stash,
                items,
                stop_at,
                ..
            } = self;
            map.next_value_seed(EachElement::new(stash, "an array of numbers", |n: u32| {
                if Some(n) == *stop_at {
                    return Err(ParseError::invalid(Position::line(99), "stopped"));
                }
                items.push(n);
                Ok(())
            }))
        }

        fn finish<E: de::Error>(&mut self) -> Result<(), E> {
            if self.require_items && !self.saw_items {
                return Err(E::custom("missing `items`"));
            }
            Ok(())
        }

        fn stash(&mut self) -> &mut Stash {
            &mut self.stash
        }
    }

    fn run(doc: &str, c: &mut Collect) -> Result<(), ParseError> {
        parse_document(&mut doc.as_bytes(), "a test object", c).map(|_| ())
    }

    #[test]
    fn streams_elements_and_skips_other_keys() {
        let mut c = Collect::default();
        run(
            r#"{"a": {"deep": [1, {"x": null}]}, "items": [1, 2, 3], "z": "s"}"#,
            &mut c,
        )
        .unwrap();
        assert_eq!(c.items, [1, 2, 3]);
        let mut c = Collect::default();
        run(r#"{"items": null}"#, &mut c).unwrap();
        assert!(c.saw_items && c.items.is_empty());
    }

    #[test]
    fn receiver_errors_stop_the_parse_and_come_back_unchanged() {
        let mut c = Collect {
            stop_at: Some(2),
            ..Collect::default()
        };
        let err = run(r#"{"items": [1, 2, 3]}"#, &mut c).unwrap_err();
        assert_eq!(err.to_string(), "stopped at line 99");
        assert_eq!(c.items, [1]);
    }

    #[test]
    fn syntax_errors_say_what_was_expected_and_where() {
        let mut c = Collect::default();
        let err = run("{\n  \"items\": [1, 2,", &mut c).unwrap_err();
        let ParseError::Invalid { position, message } = err else {
            panic!("{err:?}")
        };
        assert_eq!(position.line, Some(2));
        assert!(message.starts_with("expected a test object: the document ends early"));
        let err = run("[1, 2]", &mut Collect::default()).unwrap_err();
        assert!(err.to_string().contains("expected a test object"), "{err}");
        let err = run("{} trailing", &mut Collect::default()).unwrap_err();
        assert!(err.to_string().contains("trailing characters"), "{err}");
        let err = run(r#"{"items": ["x"]}"#, &mut Collect::default()).unwrap_err();
        assert!(err.to_string().contains("line 1, column"), "{err}");
    }

    #[test]
    fn finish_rejects_a_missing_key_at_the_closing_brace() {
        let mut c = Collect {
            require_items: true,
            ..Collect::default()
        };
        let err = run("{\n  \"a\": 1\n}", &mut c).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected a test object: missing `items` at line 3, column 1"
        );
    }

    #[test]
    fn durations_in_seconds() {
        assert_eq!(seconds_to_ms(0.0123), Some(12));
        assert_eq!(seconds_to_ms(-1.0), None);
        assert_eq!(seconds_to_ms(f64::NAN), None);
        assert_eq!(
            seconds_to_ms(1e13),
            None,
            "absurd durations are not believed"
        );
    }
}

/// Random and mutated bytes through every JSON-document parser: never a
/// panic; either tests or an error that says where.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use crate::ingest::{ParseError, ReportMeta, Sink, jest, pytest_json, rspec};
    use crate::model::TestResult;

    type Parser = fn(&mut dyn std::io::BufRead, &mut dyn Sink) -> Result<ReportMeta, ParseError>;

    const PARSERS: [(Parser, &str); 3] = [
        (
            pytest_json::parse,
            r#"{"created": 1.0, "duration": 0.5, "root": "/r", "collectors": [{"nodeid": "t.py", "outcome": "failed", "longrepr": "E x"}], "tests": [{"nodeid": "t.py::a[1]", "outcome": "rerun", "setup": {"outcome": "passed"}, "call": {"duration": 0.1, "outcome": "failed", "crash": {"path": "/r/t.py", "lineno": 2, "message": "E"}, "longrepr": "x"}}]}"#,
        ),
        (
            jest::parse,
            r#"{"numTotalTests": 2, "startTime": 5, "testResults": [{"assertionResults": [{"ancestorTitles": ["a"], "title": "b", "status": "failed", "duration": 1, "invocations": 2, "retryReasons": ["Error: r"], "failureMessages": ["Error: f\n at (/p/x.test.js:1:2)"]}], "message": "m", "name": "/p/x.test.js", "status": "failed"}]}"#,
        ),
        (
            rspec::parse,
            r#"{"version": "3.12.0", "messages": ["An error occurred while loading ./spec/b_spec.rb.\nLoadError:\n  x"], "examples": [{"id": "./spec/a_spec.rb[1:1]", "status": "failed", "file_path": "./spec/a_spec.rb", "line_number": 1, "run_time": 0.1, "exception": {"class": "E", "message": "m", "backtrace": ["./spec/a_spec.rb:3"]}}], "summary": {"errors_outside_of_examples_count": 2}}"#,
        ),
    ];

    fn check(parser: Parser, bytes: &[u8]) -> Result<(), TestCaseError> {
        let mut count = 0usize;
        let mut sink = |_t: TestResult| {
            count += 1;
            Ok(())
        };
        match parser(&mut &bytes[..], &mut sink) {
            Ok(_) => {}
            Err(ParseError::Invalid { position, message }) => {
                prop_assert!(!message.is_empty());
                prop_assert!(position.line.is_some(), "{message}");
            }
            Err(e) => prop_assert!(false, "unexpected error kind: {e:?}"),
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for (parser, _) in PARSERS {
                check(parser, &bytes)?;
            }
        }

        #[test]
        fn mutated_reports_never_panic(
            which in 0..PARSERS.len(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let (parser, seed) = PARSERS[which];
            let mut bytes = seed.as_bytes().to_vec();
            for (at, byte, op) in edits {
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => { bytes.remove(i); }
                }
                if bytes.is_empty() {
                    break;
                }
            }
            if truncate && !bytes.is_empty() {
                bytes.truncate(cut.index(bytes.len()));
            }
            check(parser, &bytes)?;
        }

        #[test]
        fn unmutated_seeds_parse(which in 0..PARSERS.len()) {
            let (parser, seed) = PARSERS[which];
            let mut count = 0usize;
            let mut sink = |_t: TestResult| { count += 1; Ok(()) };
            prop_assert!(parser(&mut seed.as_bytes(), &mut sink).is_ok());
            prop_assert!(count >= 1);
        }
    }
}
