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
//!
//! The contract:
//!
//! - **Every shape the schema accepts is edited in place**: entries as
//!   `[[test]]` tables (with sub-tables and dotted keys) or as an inline
//!   `test = [{ id = "..." }, ...]` array on one line or several; a file
//!   without `version`, an empty or comment-only file, CRLF line endings and
//!   a byte order mark. Comments move with their entry: for tables the lines
//!   above the header, for inline elements the lines above and the rest of
//!   the element's own line.
//! - **An edit is proved before it is written**: the new text is read back
//!   and must give the intended entries with every other value unchanged;
//!   if not, the edit is refused ([`QuarantineError::Unsupported`]) and the
//!   file left alone. This costs two more parses of a small file per save.
//! - **A write replaces only what was read**: temp file and rename in the
//!   target's folder (through symlinks), with the file's permissions, and
//!   only if the file on disk still holds the text loaded
//!   ([`QuarantineError::Changed`]).
//! - Dates are UTC calendar dates ([`super::policy::today`]).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml_edit::visit_mut::{self, VisitMut};
use toml_edit::{
    Array, ArrayOfTables, DocumentMut, InlineTable, Item, Key, RawString, Table, Value, value,
};

use super::policy::parse_date;

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
    /// UTC date it was added (`YYYY-MM-DD`).
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
    /// UTC date after which `sync` releases it (`YYYY-MM-DD`).
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
    /// The file is valid, but the edit could not be made without changing
    /// something else in it; it is left untouched.
    #[error("cannot edit `{}` safely ({message}); edit it by hand, it was not modified", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What would have gone wrong.
        message: String,
    },
    /// Someone else changed the file between reading and writing it; their
    /// version is left as it is.
    #[error("`{}` changed on disk since it was read, so it was not modified; run the command again", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be written; it is left as it was.
    #[error("failed to write the quarantine file `{}`; it was not modified", path.display())]
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
    /// The text exactly as read (byte order mark and line endings included),
    /// `None` when the file did not exist: saving replaces only this.
    original: Option<String>,
    /// The original's values, to prove an edit changed nothing but entries.
    original_values: toml::Table,
    /// Byte order marks the file starts with, written back as they were.
    bom: String,
    crlf: bool,
    doc: DocumentMut,
    entries: Vec<Entry>,
    edited: bool,
    /// Ids added or removed since loading: their entries may differ from the original's.
    touched: HashSet<String>,
}

/// A file's text read three ways: for editing, as values, and as entries.
struct Parsed {
    doc: DocumentMut,
    values: toml::Table,
    entries: Vec<Entry>,
}

impl Parsed {
    /// Reads and validates `text` (without a byte order mark).
    fn read(path: &Path, text: &str) -> Result<Parsed, QuarantineError> {
        let invalid =
            |span: Option<Range<usize>>, message: String| invalid_at(path, text, span, message);
        let spanned = toml_edit::Document::parse(text)
            .map_err(|e| invalid(e.span(), e.message().to_owned()))?;
        let values: toml::Table = toml::from_str(text)
            .map_err(|e: toml::de::Error| invalid(e.span(), e.message().to_owned()))?;
        let typed: Typed = toml::from_str(text)
            .map_err(|e: toml::de::Error| invalid(e.span(), e.message().to_owned()))?;
        if let Some(v) = typed.version
            && v != FORMAT_VERSION
        {
            let message = if v > FORMAT_VERSION {
                format!(
                    "format version {v} is newer than this cargo-flake understands ({FORMAT_VERSION})"
                )
            } else {
                format!("format version {v} does not exist; the first version is {FORMAT_VERSION}")
            };
            return Err(invalid(
                spanned.get("version").and_then(Item::span),
                message,
            ));
        }
        let spans: Vec<Option<Range<usize>>> = match spanned.get("test") {
            Some(Item::ArrayOfTables(a)) => a.iter().map(Table::span).collect(),
            Some(Item::Value(Value::Array(a))) => a.iter().map(Value::span).collect(),
            _ => Vec::new(),
        };
        let mut seen = HashSet::new();
        for (i, entry) in typed.test.iter().enumerate() {
            let span = spans.get(i).cloned().flatten();
            if entry.id.trim().is_empty() {
                return Err(invalid(span, "a `test` entry has an empty `id`".into()));
            }
            if !seen.insert(entry.id.as_str()) {
                return Err(invalid(
                    span,
                    format!("test `{}` is listed twice", entry.id),
                ));
            }
            for (field, date) in [("added", &entry.added), ("expires", &entry.expires)] {
                if let Some(d) = date
                    && parse_date(d).is_none()
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
        Ok(Parsed {
            doc: spanned.into_mut(),
            values,
            entries: typed.test,
        })
    }
}

/// An `Invalid` error at the start of `span` in `text`.
fn invalid_at(
    path: &Path,
    text: &str,
    span: Option<Range<usize>>,
    message: String,
) -> QuarantineError {
    let mut offset = span.map_or(0, |s| s.start).min(text.len());
    // Parser offsets fall on characters; stepping back keeps a surprise from panicking.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    QuarantineError::Invalid {
        path: path.to_owned(),
        line,
        column,
        message,
    }
}

/// Where the entries live: `[[test]]` tables or an inline `test = [...]`.
enum Tests<'a> {
    Tables(&'a mut ArrayOfTables),
    Inline(&'a mut Array),
}

impl QuarantineFile {
    /// Loads `path`; a missing file is an empty quarantine.
    pub fn load(path: &Path) -> Result<QuarantineFile, QuarantineError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(QuarantineFile {
                path: path.to_owned(),
                original: None,
                original_values: toml::Table::new(),
                bom: String::new(),
                crlf: false,
                doc: DocumentMut::new(),
                entries: Vec::new(),
                edited: false,
                touched: HashSet::new(),
            }),
            Err(source) => Err(QuarantineError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses `text` as the content of `path`.
    pub fn parse(path: &Path, text: String) -> Result<QuarantineFile, QuarantineError> {
        // The parsers skip a byte order mark but do not write it back.
        let body = text.trim_start_matches('\u{feff}');
        let bom = text.get(..text.len() - body.len()).unwrap_or("").to_owned();
        let crlf = body
            .find('\n')
            .and_then(|i| body.get(..i))
            .is_some_and(|line| line.ends_with('\r'));
        let parsed = Parsed::read(path, body)?;
        Ok(QuarantineFile {
            path: path.to_owned(),
            original: Some(text),
            original_values: parsed.values,
            bom,
            crlf,
            doc: parsed.doc,
            entries: parsed.entries,
            edited: false,
            touched: HashSet::new(),
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
        self.edited = true;
        self.touched.insert(entry.id.clone());
        let mut fields = vec![("id", Value::from(entry.id.as_str()))];
        for (k, v) in [("added", &entry.added), ("reason", &entry.reason)] {
            if let Some(v) = v {
                fields.push((k, Value::from(v.as_str())));
            }
        }
        fields.push(("source", Value::from(entry.source.as_str())));
        if entry.pinned {
            fields.push(("pinned", Value::from(true)));
        }
        for (k, v) in [
            ("owner", &entry.owner),
            ("issue", &entry.issue),
            ("expires", &entry.expires),
        ] {
            if let Some(v) = v {
                fields.push((k, Value::from(v.as_str())));
            }
        }
        match self.tests_mut() {
            Some(Tests::Tables(tables)) => {
                let mut table = Table::new();
                for (k, v) in fields {
                    table.insert(k, Item::Value(v));
                }
                tables.push(table);
            }
            Some(Tests::Inline(array)) => {
                let mut table = InlineTable::new();
                for (k, v) in fields {
                    table.insert(k, v);
                }
                table.fmt();
                rearrange(array, |elements| {
                    elements.push(Element::new(Value::InlineTable(table)));
                });
            }
            // Not reachable for a file that loaded; `check` refuses to save
            // a document whose entries differ from `entries`.
            None => {}
        }
        self.entries.push(entry);
        self.sort();
        true
    }

    /// Removes the entry for `id`; returns it, or `None` if it was not quarantined.
    pub fn remove(&mut self, id: &str) -> Option<Entry> {
        let pos = self.entries.iter().position(|e| e.id == id)?;
        let entry = self.entries.remove(pos);
        self.edited = true;
        self.touched.insert(entry.id.clone());
        match self.tests_mut() {
            Some(Tests::Tables(tables)) => {
                let found = tables.iter().position(|t| table_id(t) == Some(id));
                if let Some(i) = found {
                    tables.remove(i);
                }
            }
            Some(Tests::Inline(array)) => {
                rearrange(array, |elements| {
                    elements.retain(|e| value_id(&e.value) != Some(id));
                });
            }
            None => {}
        }
        Some(entry)
    }

    fn tests_mut(&mut self) -> Option<Tests<'_>> {
        self.ensure_version();
        if !self.doc.contains_key("test") {
            self.doc
                .insert("test", Item::ArrayOfTables(ArrayOfTables::new()));
        }
        match self.doc.get_mut("test")? {
            Item::ArrayOfTables(tables) => Some(Tests::Tables(tables)),
            Item::Value(Value::Array(array)) => Some(Tests::Inline(array)),
            _ => None,
        }
    }

    /// Writes `version` as the first key, under the comment the file starts with.
    fn ensure_version(&mut self) {
        if self.doc.contains_key("version") {
            return;
        }
        let blank = self
            .original
            .as_deref()
            .is_none_or(|t| t.trim_start_matches('\u{feff}').trim().is_empty());
        let header = if blank {
            self.doc.set_trailing("");
            Some(RawString::from(HEADER))
        } else {
            take_header(&mut self.doc)
        };
        // Re-inserting every root item behind `version` keeps their order
        // and their decor; tables keep their place by their positions.
        let root = self.doc.as_table_mut();
        let keys: Vec<String> = root.iter().map(|(k, _)| k.to_owned()).collect();
        let moved: Vec<(Key, Item)> = keys.iter().filter_map(|k| root.remove_entry(k)).collect();
        root.insert("version", value(FORMAT_VERSION));
        for (key, item) in moved {
            root.insert_formatted(&key, item);
        }
        if let (Some(h), Some(mut key)) = (header, root.key_mut("version")) {
            key.leaf_decor_mut().set_prefix(h);
        }
    }

    /// Keeps entries ordered by id in both views, so output is deterministic
    /// and diffs are minimal. Each entry's comments move with it.
    fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.id.cmp(&b.id));
        let mut tables_moved = false;
        match self.tests_mut() {
            Some(Tests::Tables(tables)) => {
                let mut all: Vec<Table> = tables.iter().cloned().collect();
                all.sort_by(|a, b| table_id(a).cmp(&table_id(b)));
                tables.clear();
                for (i, mut t) in all.into_iter().enumerate() {
                    if i > 0 && t.decor().prefix().is_none() {
                        t.decor_mut().set_prefix("\n");
                    }
                    tables.push(t);
                }
                tables_moved = true;
            }
            Some(Tests::Inline(array)) => rearrange(array, |elements| {
                elements.sort_by(|a, b| value_id(&a.value).cmp(&value_id(&b.value)));
            }),
            None => {}
        }
        if tables_moved {
            place_tests(&mut self.doc);
        }
    }

    /// The file's content as loaded; `None` when the file did not exist.
    pub fn original(&self) -> Option<&str> {
        self.original.as_deref()
    }

    /// The file's content as it would be written.
    pub fn render(&self) -> String {
        if !self.edited
            && let Some(original) = &self.original
        {
            return original.clone();
        }
        let mut text = self.doc.to_string();
        if self.crlf {
            text = text.replace("\r\n", "\n").replace('\n', "\r\n");
        }
        text.insert_str(0, &self.bom);
        text
    }

    /// Checks that the edits can be written: the text they render reads back
    /// as these entries, with everything else in the file as it was.
    pub fn check(&self) -> Result<(), QuarantineError> {
        if self.edited {
            self.check_text(&self.render())?;
        }
        Ok(())
    }

    fn check_text(&self, text: &str) -> Result<(), QuarantineError> {
        let unsupported = |message: String| QuarantineError::Unsupported {
            path: self.path.clone(),
            message,
        };
        let body = text.trim_start_matches('\u{feff}');
        let back = Parsed::read(&self.path, body).map_err(|e| match e {
            QuarantineError::Invalid {
                line,
                column,
                message,
                ..
            } => unsupported(format!(
                "the edited text would be invalid at line {line}, column {column}: {message}"
            )),
            other => other,
        })?;
        if back.entries != self.entries {
            return Err(unsupported(
                "the edited text would not read back as the intended entries".into(),
            ));
        }
        let mut before = self.original_values.clone();
        let mut after = back.values;
        let (before_tests, after_tests) = (take_tests(&mut before), take_tests(&mut after));
        before.remove("version");
        after.remove("version");
        // Debug text compares NaN equal to itself, where `==` would refuse
        // every edit of a file that holds a `nan`.
        if format!("{before:?}") != format!("{after:?}") {
            return Err(unsupported("keys outside the entries would change".into()));
        }
        for (id, table) in &after_tests {
            if let Some(old) = before_tests.get(id)
                && !self.touched.contains(id)
                && format!("{old:?}") != format!("{table:?}")
            {
                return Err(unsupported(format!("the entry of `{id}` would change")));
            }
        }
        Ok(())
    }

    /// Writes the file atomically (temp file + rename) if its content changed.
    /// Returns whether it wrote.
    ///
    /// A symlink is written through (the link stays, its target is
    /// replaced), the file's permissions are kept, and a file that changed
    /// on disk since it was loaded is not replaced ([`QuarantineError::Changed`]).
    pub fn save(&self) -> Result<bool, QuarantineError> {
        let text = self.render();
        if self.original.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        self.check_text(&text)?;
        self.write_text(&text)
    }

    /// Writes `text`, a whole quarantine file made elsewhere (the team
    /// service's proposal), in place of this one, with the guarantees of
    /// [`QuarantineFile::save`]. `text` must itself read as a quarantine
    /// file: a broken proposal is refused, the file left as it was.
    pub fn save_text(&self, text: &str) -> Result<bool, QuarantineError> {
        if self.original.as_deref() == Some(text) {
            return Ok(false);
        }
        QuarantineFile::parse(&self.path, text.to_owned())?;
        self.write_text(text)
    }

    fn write_text(&self, text: &str) -> Result<bool, QuarantineError> {
        let write_error = |source| QuarantineError::Write {
            path: self.path.clone(),
            source,
        };
        let target = resolve_links(&self.path).map_err(write_error)?;
        match write_atomic(
            &target,
            text.as_bytes(),
            self.original.as_deref().map(str::as_bytes),
        ) {
            Ok(()) => Ok(true),
            Err(WriteError::Changed) => Err(QuarantineError::Changed {
                path: self.path.clone(),
            }),
            Err(WriteError::Io(source)) => Err(write_error(source)),
        }
    }
}

fn table_id(t: &Table) -> Option<&str> {
    t.get("id").and_then(Item::as_str)
}

fn value_id(v: &Value) -> Option<&str> {
    v.as_inline_table()
        .and_then(|t| t.get("id"))
        .and_then(Value::as_str)
}

/// Removes `test` from `values` and returns its tables by id.
fn take_tests(values: &mut toml::Table) -> BTreeMap<String, toml::Value> {
    let Some(toml::Value::Array(tests)) = values.remove("test") else {
        return BTreeMap::new();
    };
    tests
        .into_iter()
        .filter_map(|t| {
            let id = t.get("id")?.as_str()?.to_owned();
            Some((id, t))
        })
        .collect()
}

/// Takes the comment block the document starts with (the decor in front of
/// its first item), so it can stay on top when `version` is put first.
fn take_header(doc: &mut DocumentMut) -> Option<RawString> {
    // Key-values of the root table are written before any table.
    let first_value = doc
        .as_table()
        .iter()
        .find(|(_, item)| item.is_value())
        .map(|(k, _)| k.to_owned());
    if let Some(k) = first_value {
        let mut key = doc.as_table_mut().key_mut(&k)?;
        let decor = key.leaf_decor_mut();
        let prefix = decor.prefix().cloned();
        decor.set_prefix("");
        return prefix;
    }
    let mut first = FirstTable::default();
    for (_, item) in doc.as_table_mut().iter_mut() {
        visit_mut::visit_item_mut(&mut first, item);
    }
    if first.position.is_some() {
        first.take = true;
        for (_, item) in doc.as_table_mut().iter_mut() {
            visit_mut::visit_item_mut(&mut first, item);
        }
        return first.prefix;
    }
    // Only comments: they are the header.
    let trailing = doc.trailing().clone();
    doc.set_trailing("");
    Some(trailing)
}

/// Finds the table written first, then takes its leading comment.
#[derive(Default)]
struct FirstTable {
    position: Option<isize>,
    take: bool,
    prefix: Option<RawString>,
}

impl VisitMut for FirstTable {
    fn visit_table_mut(&mut self, table: &mut Table) {
        if let Some(p) = table.position().filter(|_| !table.is_implicit()) {
            if !self.take && self.position.is_none_or(|q| p < q) {
                self.position = Some(p);
            } else if self.take && self.position == Some(p) && self.prefix.is_none() {
                self.prefix = table.decor().prefix().cloned();
                table.decor_mut().set_prefix("\n");
            }
        }
        visit_mut::visit_table_mut(self, table);
    }
}

/// Gives the `[[test]]` tables, and the tables nested in them, consecutive
/// positions in array order where the first of them was written, so the
/// sorted order is the written order and a `[test.x]` sub-table stays under
/// its own entry. Positions only order tables: every other table's is
/// scaled to make room between them.
fn place_tests(doc: &mut DocumentMut) {
    let mut count = Count::default();
    visit_mut::visit_document_mut(&mut count, doc);
    let scale = count.tables.saturating_add(1);
    let mut scaled = Scale(scale);
    visit_mut::visit_document_mut(&mut scaled, doc);
    let Some(Item::ArrayOfTables(tests)) = doc.get_mut("test") else {
        return;
    };
    let first = tests.iter().filter_map(Table::position).min();
    let slot = first.unwrap_or_else(|| count.max.saturating_add(1).saturating_mul(scale));
    let mut renumber = Renumber(slot);
    for table in tests.iter_mut() {
        renumber.visit_table_mut(table);
    }
}

#[derive(Default)]
struct Count {
    tables: isize,
    max: isize,
}

impl VisitMut for Count {
    fn visit_table_mut(&mut self, table: &mut Table) {
        self.tables = self.tables.saturating_add(1);
        self.max = self.max.max(table.position().unwrap_or(0));
        visit_mut::visit_table_mut(self, table);
    }
}

struct Scale(isize);

impl VisitMut for Scale {
    fn visit_table_mut(&mut self, table: &mut Table) {
        if let Some(p) = table.position() {
            table.set_position(Some(p.saturating_mul(self.0)));
        }
        visit_mut::visit_table_mut(self, table);
    }
}

struct Renumber(isize);

impl VisitMut for Renumber {
    fn visit_table_mut(&mut self, table: &mut Table) {
        self.0 = self.0.saturating_add(1);
        table.set_position(Some(self.0));
        visit_mut::visit_table_mut(self, table);
    }
}

/// An element of an inline `test = [...]` array with the text that is its
/// own: the lines above it (`lead`, `None` for a new element) and, on a
/// multi-line array, the rest of its line after the comma (`tail`, a comment
/// about it), which toml_edit keeps in front of the *next* element.
struct Element {
    value: Value,
    lead: Option<String>,
    suffix: String,
    tail: String,
}

impl Element {
    fn new(value: Value) -> Element {
        Element {
            value,
            lead: None,
            suffix: String::new(),
            tail: String::new(),
        }
    }
}

/// Splits at the first line break: the rest of a line, and the lines after.
fn split_line(s: &str) -> (&str, &str) {
    s.find('\n')
        .and_then(|i| s.split_at_checked(i))
        .unwrap_or((s, ""))
}

/// Takes `array` apart into elements that carry their own comments, lets
/// `edit` add, remove or reorder them, and puts it back together.
fn rearrange(array: &mut Array, edit: impl FnOnce(&mut Vec<Element>)) {
    let raw = |r: Option<&RawString>| r.and_then(RawString::as_str).unwrap_or("").to_owned();
    let trailing = array.trailing().as_str().unwrap_or("").to_owned();
    let mut comma = array.trailing_comma();
    let values: Vec<Value> = array.iter().cloned().collect();
    let multi_line = trailing.contains('\n')
        || values.iter().any(|v| {
            raw(v.decor().prefix()).contains('\n') || raw(v.decor().suffix()).contains('\n')
        });
    let was_empty = values.is_empty();
    let mut opening = String::new();
    let mut closing = trailing.clone();
    let mut indent: Option<String> = None;
    let mut elements: Vec<Element> = Vec::with_capacity(values.len() + 1);
    for mut v in values {
        let prefix = raw(v.decor().prefix());
        let suffix = raw(v.decor().suffix());
        v.decor_mut().clear();
        let (head, lead) = if multi_line {
            split_line(&prefix)
        } else {
            (prefix.as_str(), "")
        };
        match elements.last_mut() {
            Some(prev) => prev.tail = head.to_owned(),
            None => opening = head.to_owned(),
        }
        if indent.is_none() && lead.contains('\n') {
            indent = lead.rsplit('\n').next().map(str::to_owned);
        }
        elements.push(Element {
            value: v,
            lead: Some(lead.to_owned()),
            suffix,
            tail: String::new(),
        });
    }
    if let Some(last) = elements.last_mut() {
        let after = if comma {
            trailing
        } else {
            std::mem::take(&mut last.suffix)
        };
        let (tail, rest) = if multi_line {
            split_line(&after)
        } else {
            ("", after.as_str())
        };
        last.tail = tail.to_owned();
        closing = rest.to_owned();
    }
    edit(&mut elements);

    if was_empty && multi_line {
        comma = true;
    }
    let new_lead = format!("\n{}", indent.as_deref().unwrap_or("    "));
    array.clear();
    array.set_trailing_comma(comma);
    let count = elements.len();
    if count == 0 {
        array.set_trailing(format!("{opening}{closing}"));
        return;
    }
    let mut prev_tail = opening.clone();
    for (k, e) in elements.into_iter().enumerate() {
        let lead = e.lead.unwrap_or_else(|| {
            if multi_line {
                new_lead.clone()
            } else {
                String::new()
            }
        });
        let prefix = match (multi_line, k) {
            (true, _) => format!("{prev_tail}{lead}"),
            (false, 0) => opening.clone(),
            (false, _) => " ".to_owned(),
        };
        let mut v = e.value;
        v.decor_mut().set_prefix(prefix);
        if k + 1 == count && !comma {
            let tail = if multi_line { e.tail.as_str() } else { "" };
            v.decor_mut()
                .set_suffix(format!("{}{tail}{closing}", e.suffix));
            array.set_trailing("");
        } else {
            v.decor_mut().set_suffix(e.suffix);
        }
        prev_tail = e.tail;
        array.push_formatted(v);
    }
    if comma {
        let tail = if multi_line { prev_tail.as_str() } else { "" };
        array.set_trailing(format!("{tail}{closing}"));
    }
}

enum WriteError {
    Changed,
    Io(std::io::Error),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> WriteError {
        WriteError::Io(e)
    }
}

/// The file `path` names once every symlink is followed (even to a target
/// that does not exist yet), so a write replaces the target and keeps the link.
fn resolve_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut current = path.to_owned();
    // The kernel's own limit on symlinks followed in one lookup.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current)?;
                current = match current.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "too many levels of symbolic links from `{}`",
        path.display()
    )))
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a
/// rename, so readers see the old or the new file, never half of one.
///
/// `expected` is the content the caller read (`None`: there was no file);
/// if the file on disk is no longer that, nothing is written. The check runs
/// right before the rename, which leaves a window of microseconds between
/// two writers, not the minutes between one's read and its write.
fn write_atomic(path: &Path, bytes: &[u8], expected: Option<&[u8]>) -> Result<(), WriteError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mode = match std::fs::metadata(path) {
        Ok(meta) => Some(meta.permissions()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    // A new file gets the mode any editor would give it (0666 less the umask),
    // not the 0600 of a temporary file.
    let mut builder = tempfile::Builder::new();
    builder.prefix(".flake-tmp-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    if let Some(mode) = mode {
        tmp.as_file().set_permissions(mode)?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    match expected {
        Some(expected) => {
            match std::fs::read(path) {
                Ok(now) if now == expected => {}
                Ok(_) => return Err(WriteError::Changed),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(WriteError::Changed);
                }
                Err(e) => return Err(e.into()),
            }
            tmp.persist(path).map_err(|e| WriteError::Io(e.error))?;
        }
        None => {
            tmp.persist_noclobber(path).map_err(|e| {
                if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                    WriteError::Changed
                } else {
                    WriteError::Io(e.error)
                }
            })?;
        }
    }
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
            ("version = 0\n", 1, "does not exist"),
            ("test = 3\n", 1, "invalid type"),
            (
                "version = 1\ntest = [\n  { id = \"a\" },\n  { id = \"a\" },\n]\n",
                4,
                "listed twice",
            ),
            (
                "version = 1\n\n[[test]]\nid = \"a\"\nadded = \"2026-11-21T10:00:00+14:00\"\n",
                3,
                "expected a date",
            ),
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

    /// The file after adding `n`, and after removing it again.
    fn add_then_remove(original: &str) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.toml");
        std::fs::write(&path, original).unwrap();
        let mut q = QuarantineFile::load(&path).unwrap();
        assert!(q.add(Entry {
            id: "n".into(),
            ..Entry::default()
        }));
        assert!(q.save().unwrap(), "{original:?}");
        let added = std::fs::read_to_string(&path).unwrap();
        let mut q = QuarantineFile::load(&path).unwrap();
        assert!(q.remove("n").is_some());
        q.save().unwrap();
        (added, std::fs::read_to_string(&path).unwrap())
    }

    #[test]
    fn every_shape_the_schema_accepts_is_edited_in_place() {
        let n = "[[test]]\nid = \"n\"\nsource = \"manual\"\n";
        // The file, after adding `n`, after removing it (`None`: the file again).
        let cases: Vec<(&str, String, Option<String>)> = vec![
            (
                "",
                format!("{HEADER}version = 1\n\n{n}"),
                Some(format!("{HEADER}version = 1\n")),
            ),
            (
                "# only a comment\n",
                format!("# only a comment\nversion = 1\n\n{n}"),
                Some("# only a comment\nversion = 1\n".into()),
            ),
            (
                "test = []\n",
                "version = 1\ntest = [{ id = \"n\", source = \"manual\" }]\n".into(),
                Some("version = 1\ntest = []\n".into()),
            ),
            (
                "# header\ntest = [{ id = \"m\" }, { id = \"z\" }]\n",
                "# header\nversion = 1\ntest = [{ id = \"m\" }, { id = \"n\", source = \"manual\" }, { id = \"z\" }]\n".into(),
                Some("# header\nversion = 1\ntest = [{ id = \"m\" }, { id = \"z\" }]\n".into()),
            ),
            (
                "\"test\" = [{ id = 'm', meta.k = 1 }]\nversion = 1\n",
                "\"test\" = [{ id = 'm', meta.k = 1 }, { id = \"n\", source = \"manual\" }]\nversion = 1\n".into(),
                None,
            ),
            // Same-line comments stay with their element, with or without a
            // trailing comma.
            (
                "version = 1\ntest = [\n  { id = \"m\" },  # M\n  { id = \"z\" }  # Z\n]\n",
                "version = 1\ntest = [\n  { id = \"m\" },  # M\n  { id = \"n\", source = \"manual\" },\n  { id = \"z\" }  # Z\n]\n".into(),
                None,
            ),
            (
                "version = 1\ntest = [\n]\n",
                "version = 1\ntest = [\n    { id = \"n\", source = \"manual\" },\n]\n".into(),
                None,
            ),
            // TOML 1.1: an inline table over several lines, with comments.
            (
                "test = [\n    {\n        id = \"m\", # why\n        reason = \"r\",\n    },\n]\nversion = 1\n",
                "test = [\n    {\n        id = \"m\", # why\n        reason = \"r\",\n    },\n    { id = \"n\", source = \"manual\" },\n]\nversion = 1\n".into(),
                None,
            ),
            // Sub-tables stay under their own entry when entries move.
            (
                "version = 1\n\n[[test]]\nid = \"z\"\n[test.meta]\nk = \"z\"\n\n[[test]]\nid = \"m\"\n[test.meta]\nk = \"m\"\n",
                format!("version = 1\n\n[[test]]\nid = \"m\"\n[test.meta]\nk = \"m\"\n\n{n}\n[[test]]\nid = \"z\"\n[test.meta]\nk = \"z\"\n"),
                Some("version = 1\n\n[[test]]\nid = \"m\"\n[test.meta]\nk = \"m\"\n\n[[test]]\nid = \"z\"\n[test.meta]\nk = \"z\"\n".into()),
            ),
            // Another table between entries keeps its content; the entries
            // are written together where the first one was.
            (
                "version = 1\n\n[[test]]\nid = \"m\"\nmeta.k = 1\n\n[other]\nx = 1\n\n[[test]]\nid = \"z\"\n",
                format!("version = 1\n\n[[test]]\nid = \"m\"\nmeta.k = 1\n\n{n}\n[[test]]\nid = \"z\"\n\n[other]\nx = 1\n"),
                Some("version = 1\n\n[[test]]\nid = \"m\"\nmeta.k = 1\n\n[[test]]\nid = \"z\"\n\n[other]\nx = 1\n".into()),
            ),
            (
                "\u{feff}\u{feff}version = 1\r\n",
                format!("\u{feff}\u{feff}version = 1\r\n\r\n{}", n.replace('\n', "\r\n")),
                None,
            ),
        ];
        for (original, added, removed) in cases {
            let (a, r) = add_then_remove(original);
            assert_eq!(a, added, "adding to {original:?}");
            assert_eq!(
                r,
                removed.as_deref().unwrap_or(original),
                "removing from {original:?}"
            );
        }
    }

    #[test]
    fn an_edit_that_would_change_anything_else_is_refused_and_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.toml");
        let original = "version = 1\n[[test]]\nid = \"a\"\n";
        std::fs::write(&path, original).unwrap();
        // Edits of the document behind the file's back stand for a bug in
        // the editor: `check` and `save` must notice.
        let mut q = QuarantineFile::load(&path).unwrap();
        q.add(entry("b"));
        q.doc.insert("other", value(1));
        let err = q.save().unwrap_err();
        assert!(
            matches!(err, QuarantineError::Unsupported { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("not modified"), "{err}");
        assert!(q.check().is_err());
        let mut q = QuarantineFile::load(&path).unwrap();
        q.add(entry("b"));
        if let Some(Item::ArrayOfTables(tests)) = q.doc.get_mut("test") {
            tests.remove(0);
        }
        assert!(matches!(q.save(), Err(QuarantineError::Unsupported { .. })));
        let mut q = QuarantineFile::load(&path).unwrap();
        q.remove("a");
        if let Some(Item::ArrayOfTables(tests)) = q.doc.get_mut("test") {
            let mut t = Table::new();
            t.insert("id", value("a"));
            t.insert("reason", value("changed"));
            tests.push(t);
        }
        q.entries.push(entry("a"));
        assert!(matches!(q.save(), Err(QuarantineError::Unsupported { .. })));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    }

    #[test]
    fn dates_are_utc_calendar_dates_and_nothing_longer() {
        use crate::quarantine::policy::{date_of, parse_date, today};
        assert_eq!(
            parse_date("2026-11-21"),
            Some(jiff::civil::date(2026, 11, 21))
        );
        for bad in [
            "2026-11-21T23:00:00-05:00",
            "2026-11-21 ",
            "2026-1-21",
            "20261121",
            "2026-02-30",
            "２０２６-11-21",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        let now = jiff::Timestamp::now();
        let day = today();
        assert!(
            [
                date_of(now.as_millisecond()),
                date_of(jiff::Timestamp::now().as_millisecond())
            ]
            .contains(&day)
        );
        // 23:30 on 2026-11-21 in New York is already the 22nd in UTC.
        let late: jiff::Timestamp = "2026-11-21T23:30:00-05:00".parse().unwrap();
        assert_eq!(
            date_of(late.as_millisecond()),
            jiff::civil::date(2026, 11, 22)
        );
    }

    mod proptests {
        use proptest::prelude::*;

        use super::super::*;

        const PIECES: &[&str] = &[
            "version = 1\n",
            "version = 0\n",
            "[[test]]\n",
            "id = \"a\"\n",
            "id = \"m\"\n",
            "id = 'z'\n",
            "reason = \"r\" # why\n",
            "added = \"2026-11-21\"\n",
            "pinned = true\n",
            "[test.meta]\n",
            "k = 1\n",
            "meta.k = 2\n",
            "[other]\n",
            "x = nan\n",
            "# comment\n",
            "\n",
            "\r\n",
            "\u{feff}",
            "test = [",
            "]\n",
            "{ id = \"b\" }",
            "{ id = \"y\", reason = \"r\" }",
            ", ",
            ",\n",
            " # c\n",
            "\n    ",
            "{\n id = \"c\",\n}",
            "test = []\n",
            "[test]\n",
            "3",
        ];

        /// A file of a shape the schema accepts: `[[test]]` tables or an
        /// inline array on one line or several, entries with comments
        /// above and beside them, sub-tables, dotted keys, another table in
        /// between, a header, CRLF line endings and a byte order mark.
        fn accepted_file() -> impl Strategy<Value = String> {
            (
                (any::<bool>(), 0..3usize, any::<bool>()),
                proptest::sample::subsequence(vec!["a", "m", "z", "n", "b"], 0..5).prop_shuffle(),
                proptest::collection::vec(0..16u8, 5),
                (any::<bool>(), any::<bool>(), any::<bool>(), 0..3usize),
            )
                .prop_map(
                    |((version, layout, comma), ids, bits, (crlf, bom, header, other))| {
                        let mut out = String::new();
                        if header {
                            out.push_str("# header\n");
                        }
                        if version {
                            out.push_str("version = 1\n");
                        }
                        let other_table = "\n[other]\nx = 1\n";
                        match layout {
                            0 => {
                                for (i, (id, b)) in ids.iter().zip(&bits).enumerate() {
                                    out.push('\n');
                                    if b & 1 != 0 {
                                        out.push_str(&format!("# about {id}\n"));
                                    }
                                    out.push_str(&format!("[[test]]\nid = \"{id}\""));
                                    out.push_str(if b & 2 != 0 { " # beside\n" } else { "\n" });
                                    if b & 8 != 0 {
                                        out.push_str("reason = \"r\"\nmeta.k = 1\n");
                                    }
                                    if b & 4 != 0 {
                                        out.push_str(&format!("[test.sub]\nk = \"{id}\"\n"));
                                    }
                                    if other == 1 && i == 0 {
                                        out.push_str(other_table);
                                    }
                                }
                            }
                            _ => {
                                let multi = layout == 2;
                                out.push_str("test = [");
                                for (i, (id, b)) in ids.iter().zip(&bits).enumerate() {
                                    if i > 0 {
                                        out.push_str(if multi && b & 2 != 0 {
                                            ", # beside\n"
                                        } else {
                                            ","
                                        });
                                    }
                                    if multi {
                                        out.push('\n');
                                        if b & 1 != 0 {
                                            out.push_str(&format!("    # about {id}\n"));
                                        }
                                        out.push_str("    ");
                                    } else if i > 0 {
                                        out.push(' ');
                                    }
                                    out.push_str(&format!("{{ id = \"{id}\""));
                                    if b & 8 != 0 {
                                        out.push_str(", reason = \"r\", meta.k = 1");
                                    }
                                    out.push_str(" }");
                                }
                                if comma && !ids.is_empty() {
                                    out.push(',');
                                }
                                if multi {
                                    out.push('\n');
                                }
                                out.push_str("]\n");
                            }
                        }
                        if other == 2 {
                            out.push_str(other_table);
                        }
                        if crlf {
                            out = out.replace('\n', "\r\n");
                        }
                        if bom {
                            out.insert(0, '\u{feff}');
                        }
                        out
                    },
                )
        }

        proptest! {
            /// Every file of an accepted shape can be edited, and the edit
            /// reads back as the entries it meant with everything else kept.
            #[test]
            fn accepted_shapes_are_always_edited(
                text in accepted_file(),
                removes in proptest::collection::vec(any::<bool>(), 5),
            ) {
                let path = Path::new("q.toml");
                let parsed = QuarantineFile::parse(path, text.clone());
                prop_assert!(parsed.is_ok(), "{:?}: {:?}", text, parsed.err());
                let Ok(mut q) = parsed else { return Ok(()) };
                let ids: Vec<String> = q.entries().iter().map(|e| e.id.clone()).collect();
                for (id, remove) in ids.iter().zip(&removes) {
                    if *remove {
                        q.remove(id);
                    }
                }
                for id in ["n", "c", "0"] {
                    q.add(Entry { id: id.into(), ..Entry::default() });
                }
                let checked = q.check();
                prop_assert!(checked.is_ok(), "{:?} -> {:?}: {:?}", text, q.render(), checked);
                let back = QuarantineFile::parse(path, q.render());
                prop_assert!(back.is_ok(), "{:?} -> {:?}", text, q.render());
                if let Ok(back) = back {
                    prop_assert_eq!(back.entries(), q.entries());
                }
                prop_assert_eq!(q.render().contains('\r'), text.contains('\r'));
                prop_assert_eq!(q.render().starts_with('\u{feff}'), text.starts_with('\u{feff}'));
                for kept in ["# header", "# about", "# beside", "[other]"] {
                    if text.contains(kept) && !q.render().contains(kept) {
                        // Comments of removed entries go with them.
                        prop_assert!(kept != "# header" && kept != "[other]", "{:?} -> {:?}", text, q.render());
                    }
                }
            }
        }

        proptest! {
            /// Any text: load, edit and check never panic, and an edit that
            /// passes the check reads back as the entries it meant.
            #[test]
            fn edits_never_panic_and_what_passes_the_check_reads_back(
                picks in proptest::collection::vec(0..PIECES.len(), 0..16),
                removes in proptest::collection::vec(any::<bool>(), 4),
            ) {
                let text: String = picks.iter().map(|&i| PIECES[i]).collect();
                let path = Path::new("q.toml");
                let Ok(mut q) = QuarantineFile::parse(path, text.clone()) else {
                    return Ok(());
                };

                let ids: Vec<String> = q.entries().iter().map(|e| e.id.clone()).collect();
                for (id, remove) in ids.iter().zip(&removes) {
                    if *remove {
                        q.remove(id);
                    }
                }
                for id in ["n", "a", "0"] {
                    q.add(Entry { id: id.into(), ..Entry::default() });
                }
                if q.check().is_ok() {
                    let back = QuarantineFile::parse(path, q.render());
                    prop_assert!(back.is_ok(), "{text:?} -> {:?}", q.render());
                    if let Ok(back) = back {
                        prop_assert_eq!(back.entries(), q.entries(), "{:?} -> {:?}", text, q.render());
                    }
                }
            }
        }
    }
}
