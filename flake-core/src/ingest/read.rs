//! Opening a report file, detecting its format and running its parser.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{Format, ParseError, Position, ReportMeta, Sink, SinkError, detect};
use crate::model::TestResult;

/// Why a report could not be ingested. Always names the file.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be opened or read.
    #[error("failed to read `{}`", path.display())]
    Read {
        /// The report.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("`{}` is empty; expected a test report", path.display())]
    Empty {
        /// The report.
        path: PathBuf,
    },
    /// No known format matched the content.
    #[error(
        "`{}` is not a report format cargo-flake knows (JUnit XML, pytest-json-report, Jest, RSpec, go test -json, libtest JSON, CI payload); pass `--format` if detection is wrong",
        path.display()
    )]
    UnknownFormat {
        /// The report.
        path: PathBuf,
    },
    /// The content is not valid for its format.
    #[error("`{}` is not a valid {format} report: {message} at {position}", path.display())]
    Invalid {
        /// The report.
        path: PathBuf,
        /// The format it was read as.
        format: Format,
        /// Where.
        position: Position,
        /// What was expected.
        message: String,
    },
    /// The report parsed but held no tests; a gate over it must not pass.
    #[error("`{}` holds no tests ({format} report); a report without tests cannot pass a gate", path.display())]
    NoTests {
        /// The report.
        path: PathBuf,
        /// The format it was read as.
        format: Format,
    },
    /// The parser hit a bug of ours on this input (caught, never a crash).
    #[error(
        "failed to read `{}`: the parser failed on it ({message}); nothing from it was stored, please report this with the file",
        path.display()
    )]
    Panicked {
        /// The report.
        path: PathBuf,
        /// The panic's message.
        message: String,
    },
    /// The receiver of the tests failed (e.g. the database).
    #[error("failed to record tests from `{}`", path.display())]
    Sink {
        /// The report.
        path: PathBuf,
        /// The receiver's error.
        #[source]
        source: SinkError,
    },
}

/// What reading one report produced, besides the tests handed to the sink.
#[derive(Clone, Debug)]
pub struct ReportSummary {
    /// The format the file was read as.
    pub format: Format,
    /// Number of test records handed to the sink.
    pub tests: u64,
    /// Metadata the report carried.
    pub meta: ReportMeta,
}

/// Reads the report at `path` (format detected unless `format` is given) and
/// hands every test to `sink`. A report with no tests is an error.
pub fn read_report(
    path: &Path,
    format: Option<Format>,
    sink: &mut dyn Sink,
) -> Result<ReportSummary, IngestError> {
    read_report_with(path, format, sink, parse)
}

/// [`read_report`] that also returns the report's [`digest_file`] digest,
/// computed from the bytes as the parser reads them: one pass over the file
/// instead of two (the separate pass was 4% of a 200,000-test ingest).
pub fn read_report_digesting(
    path: &Path,
    format: Option<Format>,
    sink: &mut dyn Sink,
) -> Result<(ReportSummary, String), IngestError> {
    let read_err = |source| IngestError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut reader = BufReader::with_capacity(
        256 * 1024,
        Digesting {
            inner: file,
            hasher: blake3::Hasher::new(),
        },
    );
    let summary = read_from_with(path, &mut reader, format, sink, parse)?;
    // A parser may stop before the end (trailing whitespace, a format that
    // ends at its closing bracket): the digest covers every byte regardless.
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(read_err)?;
    let digest = crate::meta::hex(reader.get_ref().hasher.finalize().as_bytes());
    Ok((summary, digest))
}

/// Hashes every byte read through it.
struct Digesting<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for Digesting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The parser entry point [`read_report`] calls, replaceable in tests.
type ParseFn = fn(Format, &mut dyn BufRead, &mut dyn Sink) -> Result<ReportMeta, ParseError>;

fn read_report_with(
    path: &Path,
    format: Option<Format>,
    sink: &mut dyn Sink,
    parse: ParseFn,
) -> Result<ReportSummary, IngestError> {
    let file = File::open(path).map_err(|source| IngestError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    read_from_with(path, &mut reader, format, sink, parse)
}

/// [`read_report`] over an already open `reader`; `path` only names the
/// report in errors. Lets in-memory input (the fuzz targets in
/// [`crate::fuzzing`]) take the very path a file takes. The first
/// `fill_buf` is what format detection sees, so give a buffer of a few KiB.
pub fn read_report_from(
    path: &Path,
    reader: &mut dyn BufRead,
    format: Option<Format>,
    sink: &mut dyn Sink,
) -> Result<ReportSummary, IngestError> {
    read_from_with(path, reader, format, sink, parse)
}

fn read_from_with(
    path: &Path,
    reader: &mut dyn BufRead,
    format: Option<Format>,
    sink: &mut dyn Sink,
    parse: ParseFn,
) -> Result<ReportSummary, IngestError> {
    let head = reader.fill_buf().map_err(|source| IngestError::Read {
        path: path.to_owned(),
        source,
    })?;
    if head.iter().all(u8::is_ascii_whitespace) {
        return Err(IngestError::Empty {
            path: path.to_owned(),
        });
    }
    let format = match format.or_else(|| detect(head)) {
        Some(f) => f,
        None => {
            return Err(IngestError::UnknownFormat {
                path: path.to_owned(),
            });
        }
    };
    let mut count = 0u64;
    let mut counting = |result: TestResult| {
        count += 1;
        sink.test(result)
    };
    // A parser bug must not take the process down with a panic (exit 101):
    // it becomes an error naming the file, and the caller stores nothing
    // (the run's transaction is dropped). Unwind safety: every value the
    // closure touches is discarded on this path.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        parse(format, reader, &mut counting)
    }))
    .map_err(|payload| IngestError::Panicked {
        path: path.to_owned(),
        message: panic_message(payload.as_ref()),
    })?;
    let meta = parsed.map_err(|e| match e {
        ParseError::Invalid { position, message } => IngestError::Invalid {
            path: path.to_owned(),
            format,
            position,
            message,
        },
        ParseError::Io(source) => IngestError::Read {
            path: path.to_owned(),
            source,
        },
        ParseError::Sink(source) => IngestError::Sink {
            path: path.to_owned(),
            source,
        },
    })?;
    if count == 0 {
        return Err(IngestError::NoTests {
            path: path.to_owned(),
            format,
        });
    }
    Ok(ReportSummary {
        format,
        tests: count,
        meta,
    })
}

/// The text of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs the parser of `format` over `input`.
pub fn parse(
    format: Format,
    input: &mut dyn BufRead,
    sink: &mut dyn Sink,
) -> Result<ReportMeta, ParseError> {
    match format {
        Format::Junit => super::junit::parse(input, sink),
        Format::PytestJson => super::pytest_json::parse(input, sink),
        Format::Jest => super::jest::parse(input, sink),
        Format::Rspec => super::rspec::parse(input, sink),
        Format::GoTest => super::go_test::parse(input, sink),
        Format::Libtest => super::libtest::parse(input, sink),
        Format::CiPayload => super::payload::parse(input, sink),
    }
}

/// BLAKE3 hash (hex) of a report's bytes: identifies it for idempotent
/// ingest. Hashing first (~4 GB/s) lets a known report be skipped unread.
pub fn digest_file(path: &Path) -> Result<String, IngestError> {
    let read_err = |source| IngestError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).map_err(read_err)?;
    Ok(crate::meta::hex(hasher.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest taken while parsing is the digest of the whole file, also
    /// when the parser stops before its end.
    #[test]
    fn the_digest_taken_while_parsing_is_the_files_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.xml");
        // Trailing whitespace past the root and a body longer than the buffer.
        let mut xml = String::from("<testsuite name=\"s\">");
        for i in 0..20_000 {
            xml.push_str(&format!("<testcase classname=\"c\" name=\"t{i}\"/>"));
        }
        xml.push_str("</testsuite>\n\n   \n");
        std::fs::write(&path, &xml).unwrap();
        let mut n = 0;
        let mut sink = |_: TestResult| {
            n += 1;
            Ok(())
        };
        let (summary, digest) = read_report_digesting(&path, None, &mut sink).unwrap();
        assert_eq!(summary.tests, 20_000);
        assert_eq!(n, 20_000);
        assert_eq!(digest, digest_file(&path).unwrap());
        std::fs::write(&path, xml.replace("t19999", "t19998")).unwrap();
        let (_, other) = read_report_digesting(&path, None, &mut |_| Ok(())).unwrap();
        assert_ne!(other, digest);
    }

    /// Issue 8, item 8: a parser bug on some input is an error naming the
    /// file, and the tests it had already handed over are the caller's to drop.
    #[test]
    fn a_parser_panic_is_an_error_naming_the_file() {
        fn buggy(
            _: Format,
            _: &mut dyn BufRead,
            sink: &mut dyn Sink,
        ) -> Result<ReportMeta, ParseError> {
            sink.test(TestResult::skipped("before the bug"))?;
            let empty: &[u8] = &[];
            // An out-of-bounds index, as a real parser bug would make.
            let _ = empty[usize::from(empty.is_empty())];
            Ok(ReportMeta::default())
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.xml");
        std::fs::write(&path, "<testsuite/>").unwrap();
        let mut seen = 0;
        let mut sink = |_: TestResult| {
            seen += 1;
            Ok(())
        };
        let err = read_report_with(&path, None, &mut sink, buggy).unwrap_err();
        assert!(
            matches!(&err, IngestError::Panicked { path: p, message } if p == &path && message.contains("index out of bounds")),
            "{err:?}"
        );
        assert!(err.to_string().contains("r.xml"), "{err}");
        assert_eq!(seen, 1);
    }
}
