//! `cargo flake export`: every stored result with its run, as CSV or JSON
//! Lines, streamed to stdout or a file.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use flake_core::export::{self, ExportError, Format, Options};
use flake_core::store::Store;

use super::{Error, print_stderr, show_path, workspace};
use crate::EXIT_OK;
use crate::cli::{ExportArgs, ExportFormat};

pub fn run(args: ExportArgs) -> Result<u8, Error> {
    let (_, ws) = workspace()?;
    let since_ms = args
        .since
        .as_deref()
        .map(super::stats::parse_since)
        .transpose()?;
    let options = Options {
        format: match args.format {
            ExportFormat::Csv => Format::Csv,
            ExportFormat::Jsonl => Format::Jsonl,
        },
        since_ms,
    };
    let store = super::open_existing_history(&ws, &args.db)?;
    match &args.output {
        None => match export::export(&store, &options, &mut std::io::stdout().lock()) {
            Ok(_) => Ok(EXIT_OK),
            // `| head` has what it wanted: not an error.
            Err(ExportError::Write(e)) if e.kind() == ErrorKind::BrokenPipe => Ok(EXIT_OK),
            Err(e) => Err(e.into()),
        },
        Some(path) => {
            let rows = to_file(&store, &options, path)?;
            print_stderr(&format!("exported {rows} rows to {}\n", show_path(path)));
            Ok(EXIT_OK)
        }
    }
}

/// Writes the export beside `path` and renames it into place once complete,
/// so a failed export never leaves half a file or clobbers the last one.
fn to_file(store: &Store, options: &Options, path: &Path) -> Result<u64, Error> {
    let name = path
        .file_name()
        .ok_or_else(|| super::Usage(format!("--output `{}` is not a file", path.display())))?;
    let mut partial = PathBuf::from(path);
    partial.set_file_name(format!(
        ".{}.{}.partial",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> Result<u64, Error> {
        let mut file = std::fs::File::create(&partial)
            .map_err(|e| format!("cannot create `{}`: {e}", partial.display()))?;
        let rows = export::export(store, options, &mut file)?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        Ok(rows)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}
