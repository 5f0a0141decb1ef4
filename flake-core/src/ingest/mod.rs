//! Reading test reports: every supported format, detected from content.
//!
//! Each format lives in its own module and exposes one streaming function,
//! `parse(input, sink) -> Result<ReportMeta, ParseError>`, that hands every
//! test to the [`Sink`] as soon as it is complete. Nothing here touches the
//! database: the caller decides whether results go to the store (inside one
//! transaction, rolled back on any error) or only to the gate.

mod detect;
mod error;
pub mod go_test;
pub mod jest;
mod json_stream;
pub mod junit;
pub mod libtest;
mod lines;
pub mod payload;
pub mod pytest_json;
mod read;
mod record;
pub mod rspec;
mod upload;
mod utf16;

pub use detect::{Format, detect};
pub use error::{ParseError, Position, SinkError};
pub use read::{
    IngestError, ReportSummary, digest_file, parse, read_report, read_report_digesting,
    read_report_from,
};
pub use record::{
    FileSummary, IngestOptions, IngestOutcome, RecordError, ci_run_key, collect, content_run_key,
    ingest,
};
pub use upload::{
    Counts, Parsed, TestOutcome, UploadFile, UploadMeta, UploadOutcome, parse_upload, record_upload,
};

use crate::model::TestResult;

/// Receives tests from a parser, one at a time.
///
/// A test may be handed over more than once within one report (reruns written
/// as separate records); implementations merge such repeats into one result.
pub trait Sink {
    /// Accepts one test.
    fn test(&mut self, result: TestResult) -> Result<(), SinkError>;
}

impl<F> Sink for F
where
    F: FnMut(TestResult) -> Result<(), SinkError>,
{
    fn test(&mut self, result: TestResult) -> Result<(), SinkError> {
        self(result)
    }
}

/// What a report says about the run that produced it, beyond its tests.
///
/// Every field is optional: most formats carry little. The structured CI
/// payload fills most of it. Flags given on the command line win over these.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportMeta {
    /// The tool that wrote the report (`pytest`, `jest`, `go test`, ...).
    pub runner: Option<String>,
    /// Its version, when the report says.
    pub runner_version: Option<String>,
    /// Commit SHA the report was produced on.
    pub commit: Option<String>,
    /// Branch name.
    pub branch: Option<String>,
    /// The CI run id (groups shards).
    pub run_id: Option<String>,
    /// Repository name or URL.
    pub repository: Option<String>,
    /// Start of the run, Unix milliseconds.
    pub started_at: Option<i64>,
    /// End of the run, Unix milliseconds.
    pub finished_at: Option<i64>,
    /// Host or CI runner name.
    pub host: Option<String>,
    /// Operating system.
    pub os: Option<String>,
    /// CI provider.
    pub ci_provider: Option<String>,
    /// CI job or workflow name.
    pub ci_job: Option<String>,
    /// Problems with single records that did not stop the parse (e.g. one
    /// malformed line in a JSON-lines stream), each with its position.
    pub warnings: Vec<(Position, String)>,
}

/// Runs a parser over `bytes` and collects every test it hands over (tests only).
#[cfg(test)]
pub(crate) fn collect_parse(
    parse: fn(&mut dyn std::io::BufRead, &mut dyn Sink) -> Result<ReportMeta, ParseError>,
    bytes: &[u8],
) -> Result<(Vec<TestResult>, ReportMeta), ParseError> {
    let mut tests = Vec::new();
    let mut sink = |t: TestResult| {
        tests.push(t);
        Ok(())
    };
    let meta = parse(&mut &bytes[..], &mut sink)?;
    Ok((tests, meta))
}
