//! The library behind `cargo flake`: the outcome model, the runners, report
//! ingest, the history store, quarantine and statistics.
//!
//! Nothing in this crate prints; every operation is a library call returning
//! data, so the CLI, a server or another front end can share it.

pub mod ci;
pub mod cluster;
pub mod config;
pub mod env_vars;
pub mod export;
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod git;
pub mod github;
pub mod hunt;
pub mod ingest;
pub mod isolate;
pub mod junit_writer;
pub mod meta;
pub mod model;
pub mod output;
pub mod project;
pub mod quarantine;
pub mod report;
pub mod retention;
pub mod run;
pub mod runner;
pub mod stats;
pub mod store;
pub mod tokens;
pub mod webhooks;
pub mod why;
pub mod wilson;
pub mod workspace;

/// An error and its causes on one line (`outer: cause: root cause`), for
/// messages that embed another error.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
