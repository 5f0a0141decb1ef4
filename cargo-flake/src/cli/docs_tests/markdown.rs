//! README.md and docs/ read as Markdown: fenced code blocks and inline code
//! spans, with their line numbers, for the docs tests. Shared by
//! src/cli/docs_tests.rs and tests/docs_yaml.rs (through `#[path]`) so both
//! read the docs the same way.

use std::path::{Path, PathBuf};

/// The repository root: the docs live there, one level above this crate.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cargo-flake lives inside the workspace")
        .to_path_buf()
}

/// One Markdown file, named relative to the repository root.
pub struct Doc {
    pub name: String,
    pub text: String,
}

/// README.md and every Markdown file under docs/, in a fixed order.
pub fn docs() -> Vec<Doc> {
    let root = repo_root();
    let mut paths = vec![root.join("README.md")];
    let mut guides: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("docs/ is readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    guides.sort();
    paths.extend(guides);
    paths
        .into_iter()
        .map(|p| Doc {
            name: p
                .strip_prefix(&root)
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/"),
            text: std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display())),
        })
        .collect()
}

/// A fenced code block: its info string, the line of its first body line, its body lines.
pub struct Block<'a> {
    pub info: &'a str,
    pub first_line: usize,
    pub lines: Vec<&'a str>,
}

/// Splits a Markdown file into fenced blocks and the prose around them (as
/// `(first line, lines)` runs separated by blank lines).
pub fn split_markdown(text: &str) -> (Vec<Block<'_>>, Vec<(usize, Vec<&str>)>) {
    let mut blocks = Vec::new();
    let mut prose = Vec::new();
    let mut paragraph: Option<(usize, Vec<&str>)> = None;
    let mut open: Option<(&str, Block<'_>)> = None;
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let trimmed = line.trim_start();
        if let Some((fence, block)) = &mut open {
            if trimmed.starts_with(*fence)
                && trimmed.trim_start_matches(['`', '~']).trim().is_empty()
            {
                blocks.push(open.take().expect("open").1);
            } else {
                block.lines.push(line);
            }
            continue;
        }
        let fence = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f));
        if let Some(fence) = fence {
            prose.extend(paragraph.take());
            open = Some((
                fence,
                Block {
                    info: trimmed.trim_start_matches(['`', '~']).trim(),
                    first_line: number + 1,
                    lines: Vec::new(),
                },
            ));
        } else if line.trim().is_empty() {
            prose.extend(paragraph.take());
        } else {
            paragraph.get_or_insert((number, Vec::new())).1.push(line);
        }
    }
    prose.extend(paragraph);
    if let Some((_, block)) = open {
        // An unclosed fence runs to the end of the file in CommonMark.
        blocks.push(block);
    }
    (blocks, prose)
}

/// CommonMark code spans of one paragraph: `(byte offset, content)`; a span
/// closes at the next backtick run of the same length, and its line breaks
/// are spaces.
pub fn code_spans(paragraph: &str) -> Vec<(usize, String)> {
    let bytes = paragraph.as_bytes();
    let run_at = |i: usize| bytes[i..].iter().take_while(|b| **b == b'`').count();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let n = run_at(i);
        let body = i + n;
        let mut j = body;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                let content = paragraph[body..j].replace('\n', " ");
                let content = match content.strip_prefix(' ').and_then(|c| c.strip_suffix(' ')) {
                    Some(inner) if !inner.trim().is_empty() => inner.to_string(),
                    _ => content,
                };
                spans.push((i, content));
                i = j + n;
            }
            // An unmatched run is literal text.
            None => i = body,
        }
    }
    spans
}

/// Fails with every problem, one `file:line: what` per line.
pub fn report(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problem(s) in the docs:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
