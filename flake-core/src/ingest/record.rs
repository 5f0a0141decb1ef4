//! `cargo flake ingest` and `cargo flake gate` over report files, as library calls.

use std::path::{Path, PathBuf};

use super::{
    Format, IngestError, ReportMeta, ReportSummary, SinkError, digest_file, read_report,
    read_report_digesting,
};
use crate::ci;
use crate::git;
use crate::meta::{self, RunMeta};
use crate::model::{Outcome, RunMerge, TestResult};
use crate::store::{RunWrite, Store, StoreError, WriteSummary, name_key};

/// Options of one ingest.
#[derive(Clone, Debug, Default)]
pub struct IngestOptions {
    /// Reports; together they form one logical run.
    pub files: Vec<PathBuf>,
    /// Format of all files, or `None` to detect each.
    pub format: Option<Format>,
    /// `--commit`.
    pub commit: Option<String>,
    /// `--branch`.
    pub branch: Option<String>,
    /// `--run-id`.
    pub run_id: Option<String>,
    /// Directory whose git repository describes the reports (usually the current one).
    pub cwd: PathBuf,
}

/// What one file contributed.
#[derive(Clone, Debug)]
pub struct FileSummary {
    /// The file.
    pub path: PathBuf,
    /// Its format (`None` when it was skipped as already recorded).
    pub format: Option<Format>,
    /// Test records read.
    pub tests: u64,
    /// Whether its content had been recorded before (so it was not read again).
    pub duplicate: bool,
    /// Per-record warnings with positions.
    pub warnings: Vec<String>,
}

/// The result of an ingest.
#[derive(Clone, Debug)]
pub struct IngestOutcome {
    /// The run as recorded.
    pub meta: RunMeta,
    /// Per file.
    pub files: Vec<FileSummary>,
    /// What the store did.
    pub write: WriteSummary,
    /// Notes (git unavailable, ...).
    pub warnings: Vec<String>,
}

/// Why an ingest failed; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A report could not be read.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads every report into one run of `store`, in one transaction: any error
/// stores nothing.
///
/// Which run the reports belong to (and so what counts as "already recorded"):
/// - `--run-id`: that run; a report already recorded in it is skipped (a
///   retried upload), any other report is added to it (shards of one run).
/// - else, in CI: the CI job's identity (provider, run and attempt, job, job
///   execution id, host), with the same rule: a retried step adds nothing,
///   another report of the same job joins its run.
/// - else: the reports' content together with the commit and branch, so
///   ingesting the same files again for the same commit adds nothing, while
///   identical bytes for another commit are another run.
///
/// Byte-identical reports of two different runs are always two runs.
/// Merging into a recorded run of another commit or branch is an error.
pub fn ingest(store: &mut Store, opts: &IngestOptions) -> Result<IngestOutcome, RecordError> {
    let ci = ci::detect_from_env();
    // With `--commit` the work tree's state says nothing about the reports.
    let git = git::read_with(&opts.cwd, opts.commit.is_none()).ok();
    let host = meta::host_name();
    let known = opts
        .run_id
        .clone()
        .or_else(|| ci.as_ref().and_then(|c| ci_run_key(c, host.as_deref())));
    // Digests come first when they decide what to read: a run that may hold
    // some of these reports already, or two files that may be one. A single
    // report for a new run is digested while it is parsed.
    let digests = if known.is_some() || opts.files.len() > 1 {
        let all = opts.files.iter().map(|p| digest_file(p));
        Some(all.collect::<Result<Vec<_>, _>>()?)
    } else {
        None
    };
    let ctx = Context {
        opts,
        ci: ci.as_ref(),
        git: git.as_ref(),
        host,
    };
    match record(store, &ctx, known, digests)? {
        Recorded::Done(outcome) => Ok(*outcome),
        // The content-derived run exists, so these very reports were
        // recorded for this commit and branch: recording into it skips them
        // all, reading nothing. The first pass's parse is the waste, rare
        // enough (a local re-ingest of the same files) to beat deriving the
        // key before parsing, which reports that carry their own commit
        // (the CI payload) would get wrong.
        Recorded::Exists(key, digests) => match record(store, &ctx, Some(key), Some(digests))? {
            Recorded::Done(outcome) => Ok(*outcome),
            Recorded::Exists(key, _) => {
                unreachable!("a known key `{key}` is never derived again")
            }
        },
    }
}

/// What one ingest works from.
struct Context<'a> {
    opts: &'a IngestOptions,
    ci: Option<&'a ci::CiInfo>,
    git: Option<&'a git::GitInfo>,
    host: Option<String>,
}

enum Recorded {
    Done(Box<IngestOutcome>),
    /// The run key derived from the content is taken: record into that run
    /// (the reports' digests, now known, come along).
    Exists(String, Vec<String>),
}

/// The run key of a CI job execution, when the provider names its run
/// (`ingest` and `upload` name a job's run alike).
pub fn ci_run_key(ci: &ci::CiInfo, host: Option<&str>) -> Option<String> {
    let run = ci.run.as_deref()?;
    let parts = [
        Some(ci.provider.as_str()),
        Some(run),
        ci.job.as_deref(),
        ci.job_id.as_deref(),
        host,
    ];
    Some(meta::derived_id("ci-", parts.map(|p| p.unwrap_or(""))))
}

/// The run key of reports recorded without a run identity: `prefix`, then
/// 128 bits of BLAKE3 over their content digests (in any order, repeats
/// once), commit and branch.
pub fn content_run_key<'a>(
    prefix: &str,
    digests: impl IntoIterator<Item = &'a str>,
    commit: Option<&str>,
    branch: Option<&str>,
) -> String {
    let mut sorted: Vec<&str> = digests.into_iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let revision = [commit.unwrap_or(""), branch.unwrap_or("")];
    meta::derived_id(prefix, revision.into_iter().chain(sorted))
}

/// One attempt at recording: into run `key`, or, without one, into a new run
/// whose key is derived once the reports are read. `digests` are the
/// reports' digests, or `None` to take them while parsing.
fn record(
    store: &mut Store,
    ctx: &Context<'_>,
    key: Option<String>,
    digests: Option<Vec<String>>,
) -> Result<Recorded, RecordError> {
    let opts = ctx.opts;
    let mut warnings = Vec::new();
    let started = meta::now_ms();
    let provisional = RunMeta {
        run_id: key
            .clone()
            .unwrap_or_else(|| format!("pending-{}", meta::generate_run_id())),
        // Explicit flags are final, so a run id reused for another commit or
        // branch is refused before any report is read.
        commit: opts.commit.clone(),
        branch: opts.branch.clone(),
        started_at: started,
        finished_at: started,
        source_format: "ingest".into(),
        ..RunMeta::default()
    };
    let mut writer = store.begin_run(&provisional)?;
    let mut files = Vec::new();
    let mut report_meta = ReportMeta::default();
    let mut seen_digests = Vec::with_capacity(opts.files.len());
    for (i, path) in opts.files.iter().enumerate() {
        let known = digests.as_ref().map(|d| d[i].as_str());
        if let Some(digest) = known
            && writer.source_recorded(digest)?
        {
            seen_digests.push(digest.to_owned());
            files.push(FileSummary {
                path: path.clone(),
                format: None,
                tests: 0,
                duplicate: true,
                warnings: Vec::new(),
            });
            continue;
        }
        let (summary, digest) = read_into(path, opts.format, known, writer.as_mut())?;
        writer.add_source(&digest)?;
        seen_digests.push(digest);
        let file_warnings = summary
            .meta
            .warnings
            .iter()
            .map(|(pos, w)| format!("{}: {w} at {pos}", path.display()))
            .collect();
        merge_meta(&mut report_meta, summary.meta);
        files.push(FileSummary {
            path: path.clone(),
            format: Some(summary.format),
            tests: summary.tests,
            duplicate: false,
            warnings: file_warnings,
        });
    }
    let rev = git::resolve(
        opts.commit.as_deref().or(report_meta.commit.as_deref()),
        opts.branch.as_deref().or(report_meta.branch.as_deref()),
        ctx.git,
        ctx.ci,
    );
    if rev.commit.is_none() {
        warnings.push("no commit known (no --commit, none in the report, not a git repository): recorded without".into());
    }
    let formats: Vec<&str> = {
        let mut f: Vec<&str> = files
            .iter()
            .filter_map(|f| f.format.map(Format::name))
            .collect();
        f.dedup();
        f
    };
    let derived = key.is_none().then(|| {
        report_meta.run_id.clone().unwrap_or_else(|| {
            content_run_key(
                "ingest-",
                seen_digests.iter().map(String::as_str),
                rev.commit.as_deref(),
                rev.branch.as_deref(),
            )
        })
    });
    let run_meta = RunMeta {
        run_id: key.clone().or(derived.clone()).unwrap_or_default(),
        commit: rev.commit,
        branch: rev.branch,
        tree: rev.tree,
        dirty: if opts.commit.is_some() || report_meta.commit.is_some() {
            None
        } else {
            rev.dirty
        },
        started_at: report_meta.started_at.unwrap_or(started),
        finished_at: report_meta.finished_at.unwrap_or_else(meta::now_ms),
        host: report_meta.host.clone().or_else(|| ctx.host.clone()),
        os: report_meta
            .os
            .clone()
            .or_else(|| Some(meta::host_os().to_owned())),
        target: None,
        ci_provider: report_meta
            .ci_provider
            .clone()
            .or_else(|| ctx.ci.map(|c| c.provider.clone())),
        ci_job: report_meta
            .ci_job
            .clone()
            .or_else(|| ctx.ci.and_then(|c| c.job.clone())),
        ci_run: ctx.ci.and_then(|c| c.run.clone()),
        runner: report_meta.runner.clone(),
        runner_version: report_meta.runner_version.clone(),
        source_format: formats.join("+"),
    };
    if let Some(derived) = derived
        && !writer.set_run_id(&derived)?
    {
        // Dropping the writer rolls this attempt back.
        return Ok(Recorded::Exists(derived, seen_digests));
    }
    writer.update_meta(&run_meta)?;
    let write = writer.commit()?;
    let mut meta = run_meta;
    meta.run_id = write.run_id.clone();
    Ok(Recorded::Done(Box::new(IngestOutcome {
        meta,
        files,
        write,
        warnings,
    })))
}

/// Tests handed from the parsing thread to the writing thread at a time.
const BATCH: usize = 512;

/// Parses `path` on a second thread while this one writes to the database:
/// on two cores the parse and the SQLite inserts overlap. The bounded channel
/// keeps memory bounded by a few batches, not by the report. Returns the
/// report's digest: `digest` if given, else taken while parsing.
fn read_into(
    path: &Path,
    format: Option<Format>,
    digest: Option<&str>,
    writer: &mut dyn RunWrite,
) -> Result<(ReportSummary, String), RecordError> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(u128, TestResult)>>(8);
        let parser = scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let stopped = || SinkError("the database writer stopped".into());
            let mut sink = |r: TestResult| {
                // Hash the id here, off the writing thread.
                batch.push((name_key(&r.id), r));
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    tx.send(full).map_err(|_| stopped())?;
                }
                Ok(())
            };
            let result = match digest {
                Some(d) => read_report(path, format, &mut sink).map(|s| (s, d.to_owned())),
                None => read_report_digesting(path, format, &mut sink),
            };
            if result.is_ok() && !batch.is_empty() && tx.send(batch).is_err() {
                return Err(IngestError::Sink {
                    path: path.to_owned(),
                    source: stopped(),
                });
            }
            result
        });
        let mut failed = None;
        for batch in rx.iter() {
            if let Some(e) = batch
                .iter()
                .find_map(|(key, r)| writer.add_keyed(*key, r).err())
            {
                failed = Some(e);
                // Dropping the receiver makes the parser's next send fail, so it stops.
                break;
            }
        }
        drop(rx);
        // `read_report` catches parser panics; this covers the batching code around it.
        let parsed = parser.join().unwrap_or_else(|_| {
            Err(IngestError::Panicked {
                path: path.to_owned(),
                message: "the parsing thread panicked".into(),
            })
        });
        match failed {
            Some(e) => Err(RecordError::Store(e)),
            None => parsed.map_err(RecordError::Ingest),
        }
    })
}

fn merge_meta(into: &mut ReportMeta, from: ReportMeta) {
    macro_rules! first {
        ($($f:ident),*) => { $( if into.$f.is_none() { into.$f = from.$f; } )* };
    }
    first!(
        runner,
        runner_version,
        commit,
        branch,
        run_id,
        repository,
        host,
        os,
        ci_provider,
        ci_job
    );
    into.started_at = match (into.started_at, from.started_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    into.finished_at = match (into.finished_at, from.finished_at) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
}

/// Reads reports for the gate only: one outcome per test id, merged across
/// files (a failure in one file and a pass in a rerun file is flaky).
pub fn collect(
    files: &[PathBuf],
    format: Option<Format>,
) -> Result<Vec<(String, Outcome)>, IngestError> {
    // FxHash: SipHash was a tenth of a large gate's time, and ids are not
    // chosen by an attacker who could aim collisions at a CI job.
    let mut outcomes: rustc_hash::FxHashMap<String, Outcome> = Default::default();
    let mut merger = RunMerge::default();
    for path in files {
        let mut sink = |r: TestResult| {
            match outcomes.get_mut(&r.id) {
                Some(earlier) => *earlier = merger.merge(r.id.clone(), *earlier, &r),
                None => {
                    outcomes.insert(r.id, r.outcome);
                }
            }
            Ok(())
        };
        read_report(Path::new(path), format, &mut sink)?;
    }
    let mut v: Vec<_> = outcomes.into_iter().collect();
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}
