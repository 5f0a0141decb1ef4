//! Reports over the history: the data model shared by `cargo flake show` and
//! the HTML report, and the HTML renderer.

pub mod html;
mod model;
pub mod rates;
#[cfg(test)]
mod tests;

pub use model::{
    Breakdown, Detail, Model, Options, Point, QuarantineRow, SUITE_TARGET, Story, Suite, TestEntry,
    TimelineRow,
};
