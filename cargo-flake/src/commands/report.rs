//! `cargo flake report --html PATH`.

use std::path::Path;

use flake_core::config::Config;
use flake_core::quarantine::QuarantineFile;
use flake_core::report::{Model, Options, html};
use flake_core::stats::StatsOptions;
use flake_core::workspace::Workspace;

use super::{Error, Usage, print_stderr, show_path, workspace};
use crate::EXIT_OK;
use crate::cli::{ReportArgs, WindowArgs};

pub fn run(args: ReportArgs) -> Result<u8, Error> {
    let (_, ws) = workspace()?;
    let store = super::open_existing_history(&ws, &args.db)?;
    let quarantine = QuarantineFile::load(&ws.quarantine_path(args.quarantine.path.as_deref()))?;
    let model = Model::build(&store, &quarantine, &options(&ws, &args.window)?)?;
    write_html(&args.html, &model)?;
    print_stderr(&format!(
        "wrote {} ({} tests, {} flaky, {} runs)\n",
        show_path(&args.html),
        model.suite.tests,
        model.suite.flaky_tests,
        model.runs
    ));
    Ok(EXIT_OK)
}

/// Report options: the configured stats policy, with the window flags applied.
pub fn options(ws: &Workspace, w: &WindowArgs) -> Result<Options, Error> {
    let (config, _) = Config::load(ws)?;
    let mut stats = StatsOptions::from_config(&config);
    if let Some(n) = w.window {
        stats.window = n as usize;
    }
    if let Some(n) = w.min_runs {
        stats.min_runs = n as usize;
    }
    Ok(Options {
        stats,
        ..Options::default()
    })
}

/// Renders and writes the report atomically (a reader never sees half a file).
pub fn write_html(path: &Path, model: &Model) -> Result<(), Error> {
    let text = html::render(model);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| Usage(format!("cannot create `{}`: {e}", show_path(dir))))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = std::fs::write(&tmp, text.as_bytes()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Usage(format!("cannot write `{}`: {e}", show_path(path))).into());
    }
    Ok(())
}
