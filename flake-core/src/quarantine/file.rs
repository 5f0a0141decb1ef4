//! Reading, editing and atomically writing `flake-quarantine.toml`.
//!
//! ```toml
//! # Quarantined tests: their failures do not fail the gate.
//! version = 1
//!
//! [[test]]
//! id = "my-crate tests::flaky_login"     # the test id, as `cargo flake` prints it
//! added = "2026-11-21"                     # when it entered quarantine
//! reason = "tracked in #123"               # why (sync writes rate, runs and window)
//! source = "manual"                        # "manual" (a human) or "auto" (sync)
//! pinned = true                            # optional: sync never releases it
//! owner = "@alice"                         # optional
//! issue = "https://example.com/issues/123" # optional
//! expires = "2026-12-31"                   # optional: sync releases it after this date
//! ```

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

/// The file format version this build writes.
const FORMAT_VERSION: i64 = 1;

const HEADER: &str = "\
# Quarantined tests: they still run, but their failures do not fail the
# `cargo flake` gate. Written by `cargo flake quarantine add|remove|sync` and
# by hand: comments and unknown keys are kept. Commit this file.
";

/// Who put a test in quarantine; decides how `sync` may release it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntrySource {
    /// A human, with `quarantine add` or an editor.
    #[default]
    Manual,
    /// `quarantine sync`, from the flake-rate policy.
    Auto,
}

impl EntrySource {
    /// The name written to the file.
    pub fn as_str(self) -> &'static str {
        match self {
            EntrySource::Manual => "manual",
            EntrySource::Auto => "auto",
        }
    }
}

/// One quarantined test.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The test id.
    pub id: String,
    /// Date it was added (`YYYY-MM-DD`).
    #[serde(default)]
    pub added: Option<String>,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who added it.
    #[serde(default)]
    pub source: EntrySource,
    /// Never released automatically.
    #[serde(default)]
    pub pinned: bool,
    /// Owner (person or team).
    #[serde(default)]
    pub owner: Option<String>,
    /// Issue link.
    #[serde(default)]
    pub issue: Option<String>,
    /// Date after which `sync` releases it (`YYYY-MM-DD`).
    #[serde(default)]
    pub expires: Option<String>,
}

/// Why the quarantine file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// The file could not be read.
    #[error("failed to read the quarantine file `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid; it is left untouched.
    #[error("`{}` is not a valid quarantine file (line {line}, column {column}): {message}; fix it by hand, it was not modified", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The file could not be written.
    #[error("failed to write the quarantine file `{}`", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
struct Typed {
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    test: Vec<Entry>,
}

/// A loaded quarantine file (or an empty one, when it does not exist yet).
#[derive(Debug, Clone)]
pub struct QuarantineFile {
    path: PathBuf,
    original: Option<String>,
    doc: DocumentMut,
    entries: Vec<Entry>,
}

impl QuarantineFile {
    /// Loads `path`; a missing file is an empty quarantine.
    pub fn load(path: &Path) -> Result<QuarantineFile, QuarantineError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(QuarantineError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        match text {
            Some(text) => Self::parse(path, text),
            None => Ok(QuarantineFile {
                path: path.to_owned(),
                original: None,
                doc: DocumentMut::new(),
                entries: Vec::new(),
            }),
        }
    }

    /// Parses `text` as the content of `path`.
    pub fn parse(path: &Path, text: String) -> Result<QuarantineFile, QuarantineError> {
        let invalid = |span: Option<std::ops::Range<usize>>, message: String| {
            let offset = span.map(|s| s.start).unwrap_or(0).min(text.len());
            let before = &text[..offset];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            QuarantineError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let doc: DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| invalid(e.span(), e.message().to_owned()))?;
        let typed: Typed = toml::from_str(&text)
            .map_err(|e: toml::de::Error| invalid(e.span(), e.message().to_owned()))?;
        if let Some(v) = typed.version
            && v > FORMAT_VERSION
        {
            return Err(invalid(
                None,
                format!(
                    "format version {v} is newer than this cargo-flake understands ({FORMAT_VERSION})"
                ),
            ));
        }
        // Byte offset of the i-th `[[test]]` header, for errors about an entry.
        let entry_offset = |i: usize| {
            let mut offset = 0;
            let mut n = 0;
            for line in text.split_inclusive('\n') {
                if line.trim_start().starts_with("[[test]]") {
                    if n == i {
                        return Some(offset..offset);
                    }
                    n += 1;
                }
                offset += line.len();
            }
            None
        };
        let mut seen = HashSet::new();
        for (i, entry) in typed.test.iter().enumerate() {
            let span = entry_offset(i);
            if entry.id.trim().is_empty() {
                return Err(invalid(span, "a `[[test]]` entry has an empty `id`".into()));
            }
            if !seen.insert(entry.id.as_str()) {
                return Err(invalid(
                    span,
                    format!("test `{}` is listed twice", entry.id),
                ));
            }
            for (field, date) in [("added", &entry.added), ("expires", &entry.expires)] {
                if let Some(d) = date
                    && d.parse::<jiff::civil::Date>().is_err()
                {
                    return Err(invalid(
                        span,
                        format!(
                            "`{field}` of `{}` is `{d}`, expected a date like 2026-11-21",
                            entry.id
                        ),
                    ));
                }
            }
        }
        Ok(QuarantineFile {
            path: path.to_owned(),
            doc,
            entries: typed.test,
            original: Some(text),
        })
    }

    /// Where the file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entries, sorted by id as written.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry for `id`, if quarantined.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Whether `id` is quarantined.
    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Adds an entry; returns `false` (and changes nothing) when the test is already quarantined.
    pub fn add(&mut self, entry: Entry) -> bool {
        if self.contains(&entry.id) {
            return false;
        }
        let mut table = Table::new();
        table.insert("id", value(&entry.id));
        if let Some(a) = &entry.added {
            table.insert("added", value(a));
        }
        if let Some(r) = &entry.reason {
            table.insert("reason", value(r));
        }
        table.insert("source", value(entry.source.as_str()));
        if entry.pinned {
            table.insert("pinned", value(true));
        }
        for (k, v) in [
            ("owner", &entry.owner),
            ("issue", &entry.issue),
            ("expires", &entry.expires),
        ] {
            if let Some(v) = v {
                table.insert(k, value(v));
            }
        }
        self.tests_mut().push(table);
        self.entries.push(entry);
        self.sort();
        true
    }

    /// Removes the entry for `id`; returns it, or `None` if it was not quarantined.
    pub fn remove(&mut self, id: &str) -> Option<Entry> {
        let pos = self.entries.iter().position(|e| e.id == id)?;
        let entry = self.entries.remove(pos);
        let tests = self.tests_mut();
        let found = tests
            .iter()
            .position(|t| t.get("id").and_then(Item::as_str) == Some(id));
        if let Some(i) = found {
            tests.remove(i);
        }
        Some(entry)
    }

    fn tests_mut(&mut self) -> &mut ArrayOfTables {
        // `test = [{ id = "a" }]` loads like `[[test]]` tables; an edit
        // rewrites it as such, the one form entries can be added to.
        if let Some(item) = self.doc.get_mut("test")
            && !item.is_array_of_tables()
        {
            *item = match std::mem::take(item) {
                // toml_edit refuses to convert an empty array.
                Item::Value(toml_edit::Value::Array(a)) if a.is_empty() => {
                    Item::ArrayOfTables(ArrayOfTables::new())
                }
                other => other
                    .into_array_of_tables()
                    .map_or_else(|other| other, Item::ArrayOfTables),
            };
        }
        if self.doc.get("version").is_none() {
            self.doc.insert("version", value(FORMAT_VERSION));
            // A comment above the first entry of a file without `version` is
            // the file's header: keep it at the top, above `version`.
            let header = match self.original {
                None => Some(toml_edit::RawString::from(HEADER)),
                Some(_) => self
                    .doc
                    .get_mut("test")
                    .and_then(Item::as_array_of_tables_mut)
                    .and_then(|a| a.get_mut(0))
                    .and_then(|t| {
                        let prefix = t.decor().prefix().cloned();
                        t.decor_mut().set_prefix("\n");
                        prefix
                    }),
            };
            if let (Some(h), Some(mut key)) = (header, self.doc.key_mut("version")) {
                key.leaf_decor_mut().set_prefix(h);
            }
        }
        if !self.doc.contains_key("test") {
            self.doc
                .insert("test", Item::ArrayOfTables(ArrayOfTables::new()));
        }
        self.doc["test"]
            .as_array_of_tables_mut()
            .expect("validated as an array of tables on load")
    }

    /// Keeps entries ordered by id in both views, so output is deterministic
    /// and diffs are minimal. Each entry's comments move with it.
    fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.id.cmp(&b.id));
        let tests = self.tests_mut();
        let mut tables: Vec<Table> = tests.iter().cloned().collect();
        let key = |t: &Table| t.get("id").and_then(Item::as_str).unwrap_or("").to_owned();
        tables.sort_by_key(key);
        tests.clear();
        for (i, mut t) in tables.into_iter().enumerate() {
            // Let toml_edit place tables in array order after the other content.
            t.set_position(None);
            if i > 0 && t.decor().prefix().is_none() {
                t.decor_mut().set_prefix("\n");
            }
            tests.push(t);
        }
    }

    /// The file's content as loaded; `None` when the file did not exist.
    pub fn original(&self) -> Option<&str> {
        self.original.as_deref()
    }

    /// The file's content as it would be written.
    pub fn render(&self) -> String {
        self.doc.to_string()
    }

    /// Writes the file atomically (temp file + rename) if its content changed.
    /// Returns whether it wrote.
    pub fn save(&self) -> Result<bool, QuarantineError> {
        let text = self.render();
        if self.original.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        write_atomic(&self.path, text.as_bytes()).map_err(|source| QuarantineError::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok(true)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a
/// rename, so readers see the old or the new file, never half of one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".flake-tmp-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        Entry {
            id: id.into(),
            added: Some("2026-11-21".into()),
            reason: Some("tracked in #1".into()),
            ..Entry::default()
        }
    }

    #[test]
    fn new_file_gets_header_version_and_sorted_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flake-quarantine.toml");
        let mut q = QuarantineFile::load(&path).unwrap();
        assert!(q.entries().is_empty());
        assert!(q.add(entry("b::two")));
        assert!(q.add(entry("a::one")));
        assert!(!q.add(entry("a::one")), "duplicates are refused");
        assert!(q.save().unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "{HEADER}version = 1\n\n[[test]]\nid = \"a::one\"\nadded = \"2026-11-21\"\nreason = \"tracked in #1\"\nsource = \"manual\"\n\n[[test]]\nid = \"b::two\"\nadded = \"2026-11-21\"\nreason = \"tracked in #1\"\nsource = \"manual\"\n"
            )
        );
        let again = QuarantineFile::load(&path).unwrap();
        assert_eq!(again.entries().len(), 2);
        assert!(!again.save().unwrap(), "unchanged content is not rewritten");
    }

    #[test]
    fn comments_and_unknown_keys_survive_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.toml");
        let original = "# Team rule: every entry needs an owner.\nversion = 1\n\n# flaky since the TLS upgrade\n[[test]]\nid = \"net::tls\"\nowner = \"@net\" # ask in #net\nticket-system = \"jira\"\nsource = \"manual\"\n";
        std::fs::write(&path, original).unwrap();
        let mut q = QuarantineFile::load(&path).unwrap();
        assert_eq!(q.get("net::tls").unwrap().owner.as_deref(), Some("@net"));
        q.add(entry("api::login"));
        q.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# Team rule: every entry needs an owner.\nversion = 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# flaky since the TLS upgrade\n[[test]]\nid = \"net::tls\""),
            "{text}"
        );
        assert!(text.contains("owner = \"@net\" # ask in #net"), "{text}");
        assert!(text.contains("ticket-system = \"jira\""), "{text}");
        assert!(
            text.find("api::login").unwrap() < text.find("net::tls").unwrap(),
            "sorted: {text}"
        );
        let mut q = QuarantineFile::load(&path).unwrap();
        assert!(q.remove("api::login").is_some());
        assert!(q.remove("api::login").is_none());
        q.save().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    }

    #[test]
    fn header_comment_stays_on_top_when_a_smaller_id_is_added() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.toml");
        std::fs::write(&path, "# header\n[[test]]\nid = \"m\"\n").unwrap();
        let mut q = QuarantineFile::load(&path).unwrap();
        q.add(entry("a"));
        let text = q.render();
        assert!(text.starts_with("# header\nversion = 1\n\n[[test]]\nid = \"a\""),);
    }

    #[test]
    fn broken_files_name_the_line_and_are_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.toml");
        let cases = [
            (
                "version = 1\n\n[[test]]\nid = \"a\"\nid = \"b\"\n",
                5,
                "duplicate",
            ),
            (
                "version = 1\n[[test]]\nid = \"a\"\n[[test]]\nid = \"a\"\n",
                4,
                "listed twice",
            ),
            ("version = 1\n[[test]]\nadded = \"2026-01-01\"\n", 2, "id"),
            (
                "[[test]]\nid = \"a\"\nexpires = \"soon\"\n",
                1,
                "expected a date",
            ),
            ("version = 9\n", 1, "newer"),
            ("test = 3\n", 1, "invalid type"),
        ];
        for (text, line, needle) in cases {
            std::fs::write(&path, text).unwrap();
            let err = QuarantineFile::load(&path).unwrap_err();
            let msg = err.to_string();
            match &err {
                QuarantineError::Invalid { line: l, .. } => assert_eq!(*l, line, "{msg}"),
                other => panic!("{other:?}"),
            }
            assert!(msg.contains(needle), "{msg}");
            assert!(msg.contains("q.toml"), "{msg}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
    }
}
