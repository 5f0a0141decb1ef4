//! Every YAML block of the docs (the workflows of docs/ci.md) is YAML a CI
//! would load. It lives here rather than beside the command checks in
//! src/cli/docs_tests.rs because tests/ builds cargo-flake's main.rs a second
//! time as its own binary, without cargo-flake's dev-dependencies, so src
//! cannot name the YAML crate.

#[expect(
    dead_code,
    reason = "the inline-code reader serves the command checks in src, not this test"
)]
#[path = "../src/cli/docs_tests/markdown.rs"]
mod markdown;

use markdown::{Doc, docs, report, split_markdown};

/// Problems with the YAML blocks of one document, as `file:line: what`.
fn check_yaml(doc: &Doc) -> Vec<String> {
    let (blocks, _) = split_markdown(&doc.text);
    let mut problems = Vec::new();
    for block in blocks.iter().filter(|b| matches!(b.info, "yaml" | "yml")) {
        let body = block.lines.join("\n");
        match yaml_rust2::YamlLoader::load_from_str(&body) {
            Ok(documents) if documents.is_empty() => {
                problems.push(format!(
                    "{}:{}: empty YAML block",
                    doc.name, block.first_line
                ));
            }
            Ok(_) => {}
            // yaml-rust2 counts lines from 1 within the block.
            Err(e) => problems.push(format!(
                "{}:{}: not YAML: {}",
                doc.name,
                block.first_line + e.marker().line() - 1,
                e.info()
            )),
        }
    }
    problems
}

#[test]
fn every_yaml_block_of_the_docs_is_yaml() {
    let docs = docs();
    let guide = docs
        .iter()
        .find(|d| d.name == "docs/ci.md")
        .expect("docs/ci.md exists");
    assert!(
        split_markdown(&guide.text)
            .0
            .iter()
            .any(|b| b.info == "yaml"),
        "docs/ci.md has no YAML block: did the fence language change?"
    );
    let problems: Vec<String> = docs.iter().flat_map(check_yaml).collect();
    report(&problems);
}

#[test]
fn yaml_errors_name_the_line_in_the_markdown_file() {
    let bad = Doc {
        name: "t.md".into(),
        text: "text\n\n```yaml\njobs:\n  a: [1,\n  b: 2\n```\n".into(),
    };
    let problems = check_yaml(&bad);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("t.md:"), "{problems:?}");
    let good = Doc {
        name: "t.md".into(),
        text: "```yaml\n      - run: cargo flake test\n```\n".into(),
    };
    assert_eq!(check_yaml(&good), Vec::<String>::new());
}
