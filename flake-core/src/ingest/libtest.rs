//! Placeholder: this format's parser is being written.

use std::io::BufRead;

use super::{ParseError, Position, ReportMeta, Sink};

/// Parses a report of this format, handing each test to `sink`.
pub fn parse(_input: &mut dyn BufRead, _sink: &mut dyn Sink) -> Result<ReportMeta, ParseError> {
    Err(ParseError::invalid(
        Position::default(),
        "this format is not supported yet",
    ))
}

/// Parses the libtest JSON stream of one test binary; ids are `"{binary_id} {name}"`.
pub fn parse_binary(
    _input: &mut dyn BufRead,
    _binary_id: &str,
    _sink: &mut dyn Sink,
) -> Result<ReportMeta, ParseError> {
    Err(ParseError::invalid(
        Position::default(),
        "this format is not supported yet",
    ))
}
