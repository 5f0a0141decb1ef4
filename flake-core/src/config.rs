//! Project configuration: the flake-rate and quarantine policy.
//!
//! Read from `[workspace.metadata.flake]` of the workspace root `Cargo.toml`
//! (or `[package.metadata.flake]` of a single-crate root), or from `flake.toml`
//! at the repository root for projects in other languages:
//!
//! ```toml
//! [workspace.metadata.flake]
//! window = 50                 # runs per test that flake rates are computed over
//! min-runs = 10               # fewer runs than this: "insufficient history"
//! add-threshold = 0.05        # quarantine at a flake rate >= 5%
//! release-clean-runs = 20     # release after this many clean runs since added
//! release-after-days = 14     # optional: or after this many days without flaky evidence
//! release-manual = true       # hand-added entries are released when recovered too
//! branches = ["main"]         # branches whose runs feed decisions (default: all)
//! storm-guard = true          # keep runs where most tests failed out of decisions
//! storm-threshold = 0.8       # ... "most" = this share of the run's tests
//! storm-min-tests = 20        # ... in runs of at least this many tests
//! flip-match = "commit"       # same-code flips: "commit", or "tree" (also same git tree)
//! stale-after-days = 30       # entries of tests unseen this long are released
//! suite-target = 0.005        # target share of runs with any flaky test
//!
//! [workspace.metadata.flake.retention]   # `cargo flake db prune` (no limit by default)
//! keep-days = 90              # runs that started within this many days stay
//! keep-runs = 1000            # the newest this many runs stay
//! max-size = "1GB"            # oldest runs go until the database fits (bytes or a unit)
//! ```
//!
//! Pruning never removes what the settings above read for a decision (see
//! [`crate::retention`]).
//!
//! The file is read with `toml` rather than through `cargo metadata`: the
//! workspace root is already known (see [`crate::workspace`]), `[workspace.metadata]`
//! is only valid in that one manifest, and spawning cargo costs 100+ ms and may
//! need the network or a lock file, which `stats` and `sync` (0.5 s budgets,
//! offline CI gates) cannot afford. Unknown keys are an error with a
//! suggestion: a typo in a policy must not silently fall back to a default.

use std::path::{Path, PathBuf};

use crate::workspace::Workspace;

/// Which runs count as "the same code" for flip detection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlipMatch {
    /// Runs of the same commit SHA.
    #[default]
    Commit,
    /// Runs of the same commit, or of commits with the same git tree SHA
    /// (rebases and merge commits with identical content).
    Tree,
}

/// The policy and statistics settings; [`Config::default`] holds the agreed defaults
/// (ARCHITECTURE.md, "Contracts and targets").
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Runs per test that rates are computed over (newest first).
    pub window: usize,
    /// Below this many runs a test has "insufficient history" and no decision is made.
    pub min_runs: usize,
    /// Quarantine when the flake rate is at least this fraction.
    pub add_threshold: f64,
    /// Release when this many most recent runs since the entry was added are all clean passes.
    pub release_clean_runs: usize,
    /// Also release after this many days without flaky evidence (off when `None`).
    pub release_after_days: Option<u32>,
    /// Whether hand-added (`source = "manual"`) entries are released when they recover.
    pub release_manual: bool,
    /// Branches whose runs feed decisions; empty means all.
    pub branches: Vec<String>,
    /// Whether infrastructure storms are kept out of decisions.
    pub storm_guard: bool,
    /// A run is a storm when at least this fraction of its tests failed.
    pub storm_threshold: f64,
    /// Runs with fewer tests are never storms (too small to tell); see
    /// [`Config::default`] for why 20.
    pub storm_min_tests: usize,
    /// What "the same code" means for flip detection.
    pub flip_match: FlipMatch,
    /// Entries whose test has not been seen for this many days are stale.
    pub stale_after_days: u32,
    /// Target share of runs with any flaky test, for the suite-wide line.
    pub suite_target: f64,
    /// Limits of `cargo flake db prune` (none by default).
    pub retention: crate::retention::Retention,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: 50,
            min_runs: 10,
            add_threshold: 0.05,
            release_clean_runs: 20,
            release_after_days: None,
            release_manual: true,
            branches: Vec::new(),
            storm_guard: true,
            storm_threshold: 0.8,
            // The guard is for the machine, not the code: in a run of a few
            // tests, one broken commit or shared fixture fails 80% of them
            // (4 of 5 is a single bad module), and dropping such a run hides
            // real failures. From 20 tests on, 80% means 16 or more failing
            // at once, which in practice is a dead runner, network or
            // service. Small suites lose the guard, not their history.
            storm_min_tests: 20,
            flip_match: FlipMatch::Commit,
            stale_after_days: 30,
            suite_target: 0.005,
            retention: crate::retention::Retention::default(),
        }
    }
}

/// Largest `window` (and so `min-runs`, `release-clean-runs`): the stats
/// preallocate a window per test, so a typo of a few digits must be an error,
/// not an allocation of terabytes.
const MAX_WINDOW: i64 = 100_000;

/// Largest day count: a century, well inside the date arithmetic's range
/// (day spans beyond about 7.3 million panic).
const MAX_DAYS: i64 = 36_525;

/// Every key, for validation and suggestions.
pub const KEYS: &[&str] = &[
    "window",
    "min-runs",
    "add-threshold",
    "release-clean-runs",
    "release-after-days",
    "release-manual",
    "branches",
    "storm-guard",
    "storm-threshold",
    "storm-min-tests",
    "flip-match",
    "stale-after-days",
    "suite-target",
    "retention",
];

/// Keys of the `retention` table.
pub const RETENTION_KEYS: &[&str] = &["keep-days", "keep-runs", "max-size"];

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read the configuration `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("`{}` is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key is unknown or its value is invalid.
    #[error("invalid configuration in `{}`: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the table and key.
        message: String,
    },
    /// Both `Cargo.toml` and `flake.toml` configure cargo-flake.
    #[error("cargo-flake is configured twice, in `{}` and `{}`; keep one", cargo.display(), flake.display())]
    Twice {
        /// The manifest.
        cargo: PathBuf,
        /// The flake.toml.
        flake: PathBuf,
    },
}

impl Config {
    /// Loads the configuration of the project rooted at `ws.root`; defaults
    /// when none is written. Returns the file it came from, if any.
    pub fn load(ws: &Workspace) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let manifest = ws.root.join("Cargo.toml");
        let flake_toml = ws.root.join("flake.toml");
        let from_manifest = match read_optional(&manifest)? {
            Some(text) => manifest_section(&manifest, &text)?,
            None => None,
        };
        let from_flake = match read_optional(&flake_toml)? {
            Some(text) => Some(parse_toml(&flake_toml, &text)?),
            None => None,
        };
        match (from_manifest, from_flake) {
            (Some(_), Some(_)) => Err(ConfigError::Twice {
                cargo: manifest,
                flake: flake_toml,
            }),
            (Some((name, value)), None) => Ok((
                Config::from_section(&manifest, &name, &value)?,
                Some(manifest),
            )),
            (None, Some(table)) => Ok((
                Config::from_table(&flake_toml, "", &table)?,
                Some(flake_toml),
            )),
            (None, None) => Ok((Config::default(), None)),
        }
    }

    /// Reads the manifest section `value` found by [`manifest_section`].
    pub(crate) fn from_section(
        path: &Path,
        name: &str,
        value: &toml::Value,
    ) -> Result<Config, ConfigError> {
        let table = value.as_table().ok_or_else(|| ConfigError::Invalid {
            path: path.to_owned(),
            message: format!("`{name}` must be a table"),
        })?;
        Config::from_table(path, name, table)
    }

    /// Reads the settings in `table` (named `section` in messages) over the defaults.
    pub fn from_table(
        path: &Path,
        section: &str,
        table: &toml::Table,
    ) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let name = |key: &str| {
            if section.is_empty() {
                format!("`{key}`")
            } else {
                format!("`{section}.{key}`")
            }
        };
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        for (key, value) in table {
            let count = |min: i64, max: i64| -> Result<i64, ConfigError> {
                match value.as_integer() {
                    Some(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(invalid(format!(
                        "{} must be an integer from {min} to {max}, found `{value}`",
                        name(key)
                    ))),
                }
            };
            let fraction = || -> Result<f64, ConfigError> {
                let f = value
                    .as_float()
                    .or_else(|| value.as_integer().map(|i| i as f64));
                match f {
                    Some(f) if f > 0.0 && f <= 1.0 => Ok(f),
                    _ => Err(invalid(format!(
                        "{} must be a fraction in (0, 1] such as 0.05 (= 5%), found `{value}`",
                        name(key)
                    ))),
                }
            };
            let boolean = || -> Result<bool, ConfigError> {
                value.as_bool().ok_or_else(|| {
                    invalid(format!(
                        "{} must be true or false, found `{value}`",
                        name(key)
                    ))
                })
            };
            match key.as_str() {
                "window" => c.window = count(1, MAX_WINDOW)? as usize,
                "min-runs" => c.min_runs = count(1, MAX_WINDOW)? as usize,
                "add-threshold" => c.add_threshold = fraction()?,
                "release-clean-runs" => c.release_clean_runs = count(1, MAX_WINDOW)? as usize,
                "release-after-days" => c.release_after_days = Some(count(1, MAX_DAYS)? as u32),
                "release-manual" => c.release_manual = boolean()?,
                "branches" => {
                    let list = value.as_array().and_then(|a| {
                        a.iter()
                            .map(|v| v.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                    });
                    c.branches = list.ok_or_else(|| {
                        invalid(format!(
                            "{} must be a list of branch names, found `{value}`",
                            name(key)
                        ))
                    })?;
                }
                "storm-guard" => c.storm_guard = boolean()?,
                "storm-threshold" => c.storm_threshold = fraction()?,
                "storm-min-tests" => c.storm_min_tests = count(1, i64::from(u32::MAX))? as usize,
                "flip-match" => {
                    c.flip_match = match value.as_str() {
                        Some("commit") => FlipMatch::Commit,
                        Some("tree") => FlipMatch::Tree,
                        _ => {
                            return Err(invalid(format!(
                                "{} must be \"commit\" or \"tree\", found `{value}`",
                                name(key)
                            )));
                        }
                    }
                }
                "stale-after-days" => c.stale_after_days = count(1, MAX_DAYS)? as u32,
                "suite-target" => c.suite_target = fraction()?,
                "retention" => {
                    let table = value
                        .as_table()
                        .ok_or_else(|| invalid(format!("{} must be a table", name(key))))?;
                    let section = if section.is_empty() {
                        "retention".to_owned()
                    } else {
                        format!("{section}.retention")
                    };
                    c.retention = retention_from_table(path, &section, table)?;
                }
                other => {
                    let hint = suggest(other, KEYS.iter().copied())
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_else(|| format!("; known keys: {}", KEYS.join(", ")));
                    return Err(invalid(format!("unknown key {}{hint}", name(other))));
                }
            }
        }
        if c.release_clean_runs > c.window {
            return Err(invalid(format!(
                "{} ({}) cannot exceed {} ({}): recovery is judged inside the window",
                name("release-clean-runs"),
                c.release_clean_runs,
                name("window"),
                c.window
            )));
        }
        if c.min_runs > c.window {
            return Err(invalid(format!(
                "{} ({}) cannot exceed {} ({}): no test could ever have enough history",
                name("min-runs"),
                c.min_runs,
                name("window"),
                c.window
            )));
        }
        Ok(c)
    }
}

/// Reads `[….retention]` (named `section` in messages).
fn retention_from_table(
    path: &Path,
    section: &str,
    table: &toml::Table,
) -> Result<crate::retention::Retention, ConfigError> {
    let mut r = crate::retention::Retention::default();
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    for (key, value) in table {
        let name = format!("`{section}.{key}`");
        let count = |max: i64| -> Result<i64, ConfigError> {
            match value.as_integer() {
                Some(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(invalid(format!(
                    "{name} must be an integer from 1 to {max}, found `{value}`"
                ))),
            }
        };
        match key.as_str() {
            "keep-days" => r.keep_days = Some(count(MAX_DAYS)? as u32),
            "keep-runs" => r.keep_runs = Some(count(i64::from(u32::MAX))? as usize),
            "max-size" => {
                let size = match value {
                    toml::Value::Integer(n) if *n > 0 => Some(*n as u64),
                    toml::Value::String(s) => crate::retention::parse_size(s),
                    _ => None,
                };
                r.max_size = Some(size.ok_or_else(|| {
                    invalid(format!(
                        "{name} must be a size such as \"500MB\" or \"2GiB\" (or bytes), found `{value}`"
                    ))
                })?);
            }
            other => {
                let hint = suggest(other, RETENTION_KEYS.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("; known keys: {}", RETENTION_KEYS.join(", ")));
                return Err(invalid(format!("unknown key `{section}.{other}`{hint}")));
            }
        }
    }
    Ok(r)
}

fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The `[workspace.metadata.flake]` (else `[package.metadata.flake]`) of the
/// manifest `text` and its name, or `None` when the manifest has neither.
pub(crate) fn manifest_section(
    path: &Path,
    text: &str,
) -> Result<Option<(String, toml::Value)>, ConfigError> {
    let doc = parse_toml(path, text)?;
    Ok(["workspace", "package"].iter().find_map(|section| {
        doc.get(*section)?
            .get("metadata")?
            .get("flake")
            .map(|t| (format!("{section}.metadata.flake"), t.clone()))
    }))
}

pub(crate) fn parse_toml(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })
}

/// The candidate closest to `target` by edit distance, if plausibly a typo of it.
pub fn suggest<'a>(target: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (levenshtein(target, c), c))
        .filter(|(d, c)| *d <= (c.len().max(target.len()) / 3).max(2))
        .min()
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(files: &[(&str, &str)]) -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let ws = Workspace {
            root: dir.path().to_owned(),
            is_cargo: true,
        };
        (dir, ws)
    }

    #[test]
    fn defaults_without_configuration() {
        let (_d, w) = ws(&[("Cargo.toml", "[workspace]\nmembers = []\n")]);
        let (c, from) = Config::load(&w).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(from, None);
        assert_eq!((c.window, c.min_runs, c.release_clean_runs), (50, 10, 20));
        assert_eq!((c.storm_threshold, c.storm_min_tests), (0.8, 20));
    }

    #[test]
    fn reads_retention_limits_and_refuses_bad_ones_with_a_hint() {
        let (_d, w) = ws(&[(
            "Cargo.toml",
            "[workspace]\n[workspace.metadata.flake.retention]\nkeep-days = 90\nkeep-runs = 500\nmax-size = \"1.5GiB\"\n",
        )]);
        let (c, _) = Config::load(&w).unwrap();
        assert_eq!(c.retention.keep_days, Some(90));
        assert_eq!(c.retention.keep_runs, Some(500));
        assert_eq!(c.retention.max_size, Some(1_610_612_736));
        for (body, expect) in [
            ("keep-dayz = 3", "did you mean `keep-days`?"),
            ("max-size = \"lots\"", "must be a size"),
            ("keep-runs = 0", "must be an integer from 1"),
        ] {
            let (_d, w) = ws(&[("flake.toml", &format!("[retention]\n{body}\n"))]);
            let err = Config::load(&w).unwrap_err().to_string();
            assert!(
                err.contains(expect) && err.contains("flake.toml"),
                "{body}: {err}"
            );
            assert!(err.contains("`retention."), "{err}");
        }
    }

    #[test]
    fn reads_workspace_metadata_and_flake_toml() {
        let (_d, w) = ws(&[(
            "Cargo.toml",
            "[workspace]\n[workspace.metadata.flake]\nwindow = 30\nbranches = [\"main\"]\nflip-match = \"tree\"\nrelease-after-days = 14\nadd-threshold = 0.1\n",
        )]);
        let (c, from) = Config::load(&w).unwrap();
        assert_eq!(c.window, 30);
        assert_eq!(c.branches, vec!["main"]);
        assert_eq!(c.flip_match, FlipMatch::Tree);
        assert_eq!(c.release_after_days, Some(14));
        assert_eq!(c.add_threshold, 0.1);
        assert!(from.unwrap().ends_with("Cargo.toml"));

        let (_d, w) = ws(&[(
            "flake.toml",
            "min-runs = 5\nstorm-guard = false\nstorm-min-tests = 5\n",
        )]);
        let (c, from) = Config::load(&w).unwrap();
        assert_eq!(
            (c.min_runs, c.storm_guard, c.storm_min_tests),
            (5, false, 5)
        );
        assert!(from.unwrap().ends_with("flake.toml"));

        let (_d, w) = ws(&[(
            "Cargo.toml",
            "[package]\nname = \"x\"\n[package.metadata.flake]\nwindow = 40\n",
        )]);
        assert_eq!(Config::load(&w).unwrap().0.window, 40);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_with_suggestions() {
        let cases = [
            (
                "min_runs = 5\n",
                "unknown key `workspace.metadata.flake.min_runs`; did you mean `min-runs`?",
            ),
            ("windw = 5\n", "did you mean `window`?"),
            ("colour = 1\n", "known keys: window, min-runs"),
            ("add-threshold = 5\n", "must be a fraction in (0, 1]"),
            ("window = 0\n", "must be an integer from 1 to 100000"),
            // Would preallocate a window of terabytes in the stats.
            (
                "window = 100000000000\n",
                "must be an integer from 1 to 100000",
            ),
            // Would wrap to 1 day through `as u32`, and panic in date arithmetic before that.
            (
                "release-after-days = 4294967297\n",
                "must be an integer from 1 to 36525",
            ),
            (
                "stale-after-days = 10000000\n",
                "must be an integer from 1 to 36525",
            ),
            ("flip-match = \"branch\"\n", "\"commit\" or \"tree\""),
            ("branches = \"main\"\n", "list of branch names"),
            ("window = 10\nrelease-clean-runs = 20\n", "cannot exceed"),
        ];
        for (body, needle) in cases {
            let (_d, w) = ws(&[(
                "Cargo.toml",
                &format!("[workspace]\n[workspace.metadata.flake]\n{body}"),
            )]);
            let msg = Config::load(&w).unwrap_err().to_string();
            assert!(msg.contains(needle), "{body}: {msg}");
            assert!(msg.contains("Cargo.toml"), "{msg}");
        }
    }

    #[test]
    fn configuring_twice_is_an_error() {
        let (_d, w) = ws(&[
            (
                "Cargo.toml",
                "[workspace]\n[workspace.metadata.flake]\nwindow = 30\n",
            ),
            ("flake.toml", "window = 20\n"),
        ]);
        assert!(matches!(Config::load(&w), Err(ConfigError::Twice { .. })));
    }
}
