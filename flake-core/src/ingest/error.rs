//! Errors of the report parsers.

use std::fmt;

/// Where in a report a problem is. Parsers fill what they know; a line is
/// 1-based, a byte offset 0-based from the start of the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// 1-based line number.
    pub line: Option<u64>,
    /// 1-based column.
    pub column: Option<u64>,
    /// 0-based byte offset.
    pub byte: Option<u64>,
}

impl Position {
    /// A position known only by line.
    pub fn line(line: u64) -> Self {
        Position {
            line: Some(line),
            ..Position::default()
        }
    }

    /// A position known only by byte offset.
    pub fn byte(byte: u64) -> Self {
        Position {
            byte: Some(byte),
            ..Position::default()
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column, self.byte) {
            (Some(l), Some(c), _) => write!(f, "line {l}, column {c}"),
            (Some(l), None, _) => write!(f, "line {l}"),
            (None, _, Some(b)) => write!(f, "byte {b}"),
            (None, _, None) => f.write_str("unknown position"),
        }
    }
}

/// A sink refused a test (usually a database error); the parse stops.
#[derive(Debug)]
pub struct SinkError(pub Box<dyn std::error::Error + Send + Sync>);

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The input is not valid for the format: says where and what was expected.
    #[error("{message} at {position}")]
    Invalid {
        /// Where.
        position: Position,
        /// What was found and what was expected, e.g. "expected `<testcase>`, found `<foo>`".
        message: String,
    },
    /// The input could not be read.
    #[error("read error")]
    Io(#[from] std::io::Error),
    /// The sink refused a test.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl ParseError {
    /// An invalid-input error.
    pub fn invalid(position: Position, message: impl Into<String>) -> Self {
        ParseError::Invalid {
            position,
            message: message.into(),
        }
    }
}
