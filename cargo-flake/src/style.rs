//! Colours: plain unless the stream is a terminal and the user allows it
//! (`--color`, `CARGO_TERM_COLOR`, `NO_COLOR`).

use std::io::IsTerminal;

use owo_colors::{OwoColorize, Style};

use crate::cli::ColorChoice;

/// Styles for human output; all plain when colour is off.
#[derive(Clone, Copy, Debug, Default)]
pub struct Styles {
    pub pass: Style,
    pub flaky: Style,
    pub fail: Style,
    pub skip: Style,
    pub dim: Style,
    pub bold: Style,
    pub id: Style,
}

impl Styles {
    /// Decides whether to colour a stream.
    pub fn for_stream(choice: ColorChoice, is_terminal: bool) -> Styles {
        let env_choice = std::env::var(flake_core::env_vars::CARGO_TERM_COLOR).ok();
        let no_color =
            std::env::var_os(flake_core::env_vars::NO_COLOR).is_some_and(|v| !v.is_empty());
        let on = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => match env_choice.as_deref() {
                Some("always") => true,
                Some("never") => false,
                _ => is_terminal && !no_color,
            },
        };
        if !on {
            return Styles::default();
        }
        Styles {
            pass: Style::new().green().bold(),
            flaky: Style::new().yellow().bold(),
            fail: Style::new().red().bold(),
            skip: Style::new().dimmed(),
            dim: Style::new().dimmed(),
            bold: Style::new().bold(),
            id: Style::new().cyan(),
        }
    }

    /// Styles for stderr.
    pub fn stderr(choice: ColorChoice) -> Styles {
        Styles::for_stream(choice, std::io::stderr().is_terminal())
    }

    /// Styles for stdout.
    pub fn stdout(choice: ColorChoice) -> Styles {
        Styles::for_stream(choice, std::io::stdout().is_terminal())
    }
}

/// Applies a style to text.
pub fn paint(style: Style, text: impl std::fmt::Display) -> String {
    text.style(style).to_string()
}
