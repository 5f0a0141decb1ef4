//! Keeps README.md and docs/ honest: every `cargo flake …` command they show
//! parses with the real [`Cargo`] definition, every `cargo install` installs
//! this project (never the unrelated `cargo-flake` on the crate registry),
//! every YAML block of docs/ci.md is YAML (cargo-flake/tests/docs_yaml.rs,
//! which can use dev-dependencies), and every `CARGO_FLAKE_*` variable
//! they name is one cargo-flake reads.
//!
//! Commands are taken from fenced code blocks (one logical line at a time,
//! with `\` continuations joined and shell comments dropped) and from inline
//! code spans. They are split into words the way a POSIX shell would (quotes,
//! `#` comments, `;` `&&` `||` `|` `>` ending a command), so what is checked is
//! what a user who pastes the line runs. Three kinds of text are not literal
//! commands, and each is handled explicitly rather than guessed:
//!
//! - usage synopses with `[optional]` groups and `a|b` alternatives, listed in
//!   [`SYNOPSES`] and expanded to their shortest and longest forms, each of
//!   which must parse;
//! - placeholders that stand for a value of a type ([`PLACEHOLDERS`]; `"<id>"`
//!   or `PATH` need none, any string is an id or a path);
//! - in prose, a span naming a command (`` `cargo flake gate` ``) rather than
//!   running it: it must name a real subcommand, but its required arguments may
//!   be left out.
//!
//! A span that shows no single command at all is listed in [`NOT_COMMANDS`].
//! Entries of both lists that the docs no longer show are errors, so the lists
//! cannot go stale.
//!
//! Known limit: a command inside a YAML scalar that is quoted or folded over
//! several lines is not seen; the workflows write commands as plain `run:`
//! values and list items.

use std::path::Path;

use clap::{CommandFactory, Parser};

use super::Cargo;

#[expect(
    dead_code,
    reason = "the fence language serves the YAML check in tests/docs_yaml.rs"
)]
mod markdown;

use markdown::{Doc, code_spans, docs, repo_root, report, split_markdown};

/// A usage synopsis shown in the docs: not pasteable as is, so it is expanded.
struct Synopsis {
    file: &'static str,
    /// The command as the file writes it, from `cargo flake` to before its comment.
    text: &'static str,
}

/// Synopses with `[optional]` groups, `a|b` alternatives and `word...`
/// repetition: README's command list documents flags this way.
const SYNOPSES: &[Synopsis] = &[
    Synopsis {
        file: "README.md",
        text: r#"cargo flake quarantine add "<id>" --reason "tracked in #123" [--pin] [--owner @me] [--expires 2026-12-31]"#,
    },
    Synopsis {
        file: "README.md",
        text: "cargo flake quarantine list [--format json]",
    },
    Synopsis {
        file: "README.md",
        text: "cargo flake quarantine sync [--check] [--dry-run]",
    },
    Synopsis {
        file: "README.md",
        text: "cargo flake stats [--branch main] [--format human|json|markdown]",
    },
    Synopsis {
        file: "README.md",
        text: "cargo flake ingest report.json [more reports...] [--run-id ID] [--commit SHA] [--branch NAME]",
    },
    Synopsis {
        file: "README.md",
        text: r#"cargo flake hunt --isolate "<id>" [--runs 20] [--format json]"#,
    },
];

/// Spans that are neither commands nor synopses of one command, with why.
const NOT_COMMANDS: &[(&str, &str)] = &[(
    "README.md",
    // Names the JSON summary of two subcommands; their report files are beside the point there.
    "cargo flake ingest|gate --message-format json",
)];

/// Words that stand for a typed value, and the value they are checked with.
const PLACEHOLDERS: &[(&str, &str)] = &[
    // `--retries N`, `--runs N`: a count.
    ("N", "3"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// A logical line of a fenced code block.
    Block,
    /// An inline code span in prose.
    Inline,
}

/// Text that may hold commands, with the 1-based line it starts on.
#[derive(Debug)]
struct Snippet {
    line: usize,
    text: String,
    origin: Origin,
}

/// Every logical line of every code block and every inline code span.
fn snippets(text: &str) -> Vec<Snippet> {
    let (blocks, prose) = split_markdown(text);
    let mut out = Vec::new();
    for block in &blocks {
        let mut pending: Option<(usize, String)> = None;
        for (k, line) in block.lines.iter().enumerate() {
            let number = block.first_line + k;
            let (start, mut joined) = pending.take().unwrap_or((number, String::new()));
            match line.strip_suffix('\\') {
                Some(head) => {
                    joined.push_str(head);
                    pending = Some((start, joined));
                }
                None => {
                    joined.push_str(line);
                    out.push(Snippet {
                        line: start,
                        text: joined,
                        origin: Origin::Block,
                    });
                }
            }
        }
        if let Some((line, text)) = pending {
            out.push(Snippet {
                line,
                text,
                origin: Origin::Block,
            });
        }
    }
    for (first_line, lines) in &prose {
        let paragraph = lines.join("\n");
        for (offset, span) in code_spans(&paragraph) {
            out.push(Snippet {
                line: first_line + paragraph[..offset].matches('\n').count(),
                text: span,
                origin: Origin::Inline,
            });
        }
    }
    out.sort_by_key(|s| s.line);
    out
}

/// Splits shell text into simple commands: quotes and escapes resolved,
/// comments dropped, and `;` `&` `|` `<` `>` `(` `)` ending a command.
/// Variables and globs stay literal, which is what a parser check needs.
fn shell_commands(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut commands = vec![Vec::new()];
    let mut word: Option<String> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated `'`".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if chars.peek().is_some_and(|n| "\"\\$`".contains(*n)) => {
                            w.push(chars.next().expect("peeked"));
                        }
                        Some(c) => w.push(c),
                        None => return Err("unterminated `\"`".into()),
                    }
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    word.get_or_insert_with(String::new).push(n);
                }
            }
            '#' if word.is_none() => break,
            c if c.is_whitespace() => {
                commands.last_mut().expect("one").extend(word.take());
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                commands.last_mut().expect("one").extend(word.take());
                if !commands.last().expect("one").is_empty() {
                    commands.push(Vec::new());
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    commands.last_mut().expect("one").extend(word);
    commands.retain(|c| !c.is_empty());
    Ok(commands)
}

/// The `prefix…` part of each simple command that runs `prefix` (after
/// whatever precedes it on the line, such as `- run:` or `VAR=x`).
fn commands_of(commands: &[Vec<String>], prefix: [&str; 2]) -> Vec<Vec<String>> {
    commands
        .iter()
        .filter_map(|words| {
            let at = words
                .windows(2)
                .position(|w| w[0] == prefix[0] && w[1] == prefix[1])?;
            Some(words[at..].to_vec())
        })
        .collect()
}

/// One element of a synopsis.
#[derive(Debug)]
enum Part {
    /// A word, with its `a|b` alternatives.
    Word(Vec<String>),
    /// A `[...]` group.
    Optional(Vec<Part>),
}

/// Reads a synopsis into parts: shell quoting still applies, `[` `]` group,
/// `|` separates alternatives, a trailing `...` is dropped.
fn synopsis_parts(text: &str) -> Vec<Part> {
    fn finish(word: &mut Option<Vec<String>>, into: &mut Vec<Part>) {
        if let Some(mut alternatives) = word.take() {
            for a in &mut alternatives {
                if let Some(stem) = a.strip_suffix("...") {
                    *a = stem.to_string();
                }
            }
            alternatives.retain(|a| !a.is_empty());
            if !alternatives.is_empty() {
                into.push(Part::Word(alternatives));
            }
        }
    }
    let mut stack: Vec<Vec<Part>> = vec![Vec::new()];
    let mut word: Option<Vec<String>> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                let w = word.get_or_insert_with(|| vec![String::new()]);
                let w = w.last_mut().expect("one alternative");
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    w.push(q);
                }
            }
            '|' => word
                .get_or_insert_with(|| vec![String::new()])
                .push(String::new()),
            '[' => {
                finish(&mut word, stack.last_mut().expect("root"));
                stack.push(Vec::new());
            }
            ']' => {
                let top = stack.last_mut().expect("root");
                finish(&mut word, top);
                let group = stack.pop().expect("opened");
                stack
                    .last_mut()
                    .expect("synopsis brackets balance")
                    .push(Part::Optional(group));
            }
            c if c.is_whitespace() => finish(&mut word, stack.last_mut().expect("root")),
            c => word
                .get_or_insert_with(|| vec![String::new()])
                .last_mut()
                .expect("one alternative")
                .push(c),
        }
    }
    finish(&mut word, stack.last_mut().expect("root"));
    assert_eq!(stack.len(), 1, "unbalanced `[` in synopsis {text:?}");
    stack.pop().expect("root")
}

/// The shortest form (no optional group, first alternatives) and, for each
/// alternative position, the longest form (every group).
fn expand_synopsis(text: &str) -> Vec<Vec<String>> {
    fn widest(parts: &[Part]) -> usize {
        parts
            .iter()
            .map(|p| match p {
                Part::Word(a) => a.len(),
                Part::Optional(g) => widest(g),
            })
            .max()
            .unwrap_or(1)
    }
    fn render(parts: &[Part], with_optional: bool, k: usize, out: &mut Vec<String>) {
        for p in parts {
            match p {
                Part::Word(a) => out.push(a[k % a.len()].clone()),
                Part::Optional(g) if with_optional => render(g, true, k, out),
                Part::Optional(_) => {}
            }
        }
    }
    let parts = synopsis_parts(text);
    let mut forms = Vec::new();
    let mut shortest = Vec::new();
    render(&parts, false, 0, &mut shortest);
    forms.push(shortest);
    for k in 0..widest(&parts) {
        let mut longest = Vec::new();
        render(&parts, true, k, &mut longest);
        forms.push(longest);
    }
    forms
}

fn parse(words: &[String]) -> Result<Cargo, clap::Error> {
    let substituted = words.iter().map(|w| {
        PLACEHOLDERS
            .iter()
            .find(|(p, _)| p == w)
            .map_or(w.as_str(), |(_, v)| v)
    });
    Cargo::try_parse_from(substituted)
}

/// Whether `words` (`cargo flake …`) only name a subcommand, as prose does.
fn names_a_subcommand(words: &[String]) -> bool {
    let cargo = Cargo::command();
    let Some(mut cmd) = cargo.find_subcommand("flake") else {
        return false;
    };
    for w in &words[2..] {
        match cmd.find_subcommand(w) {
            Some(sub) => cmd = sub,
            None => return false,
        }
    }
    true
}

/// The first line of clap's message, which names the offending argument.
fn first_line(e: &clap::Error) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

/// What a check of `cargo flake` commands met, so that stale allow-list
/// entries and a check that silently found nothing both fail.
struct Seen {
    synopses: Vec<bool>,
    not_commands: Vec<bool>,
    /// Command lines parsed, synopsis forms included.
    commands: usize,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            synopses: vec![false; SYNOPSES.len()],
            not_commands: vec![false; NOT_COMMANDS.len()],
            commands: 0,
        }
    }
}

/// Problems with the `cargo flake` commands of one document, as `file:line: …`.
fn check_flake_commands(doc: &Doc, seen: &mut Seen) -> Vec<String> {
    let mut problems = Vec::new();
    for snippet in snippets(&doc.text) {
        let at = format!("{}:{}", doc.name, snippet.line);
        if let Some(i) = NOT_COMMANDS
            .iter()
            .position(|(f, t)| *f == doc.name && snippet.text.contains(t))
        {
            seen.not_commands[i] = true;
            continue;
        }
        if let Some(i) = SYNOPSES
            .iter()
            .position(|s| s.file == doc.name && snippet.text.contains(s.text))
        {
            seen.synopses[i] = true;
            for form in expand_synopsis(SYNOPSES[i].text) {
                seen.commands += 1;
                if let Err(e) = parse(&form) {
                    problems.push(format!(
                        "{at}: synopsis form `{}` does not parse: {}",
                        form.join(" "),
                        first_line(&e)
                    ));
                }
            }
            continue;
        }
        if !snippet.text.contains("cargo flake") {
            continue;
        }
        let commands = match shell_commands(&snippet.text) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("{at}: {e} in `{}`", snippet.text.trim()));
                continue;
            }
        };
        for words in commands_of(&commands, ["cargo", "flake"]) {
            seen.commands += 1;
            if let Err(e) = parse(&words) {
                let whole_span = commands.len() == 1 && commands[0] == words;
                if snippet.origin == Origin::Inline && whole_span && names_a_subcommand(&words) {
                    continue;
                }
                problems.push(format!(
                    "{at}: `{}` does not parse: {}",
                    words.join(" "),
                    first_line(&e)
                ));
            }
        }
    }
    problems
}

/// Option names of `cargo install` that take a value.
const INSTALL_VALUE_OPTIONS: &[&str] = &[
    "--version",
    "--vers",
    "--git",
    "--branch",
    "--tag",
    "--rev",
    "--path",
    "--root",
    "--index",
    "--registry",
    "--features",
    "-F",
    "--target",
    "--target-dir",
    "--profile",
    "--config",
    "--jobs",
    "-j",
    "--message-format",
    "--bin",
    "--example",
    "--color",
    "-Z",
];

/// What is wrong with one `cargo install …` command, if anything: it must
/// install cargo-flake from this repository (its git URL, or a path to the
/// package inside it) with `--locked`, never the registry's `cargo-flake`.
fn install_problem(words: &[String], repository: &str, root: &Path) -> Option<String> {
    let mut crates = Vec::new();
    let (mut git, mut path, mut locked) = (None, None, false);
    let mut args = words[2..].iter();
    while let Some(a) = args.next() {
        let (name, inline_value) = match a.split_once('=') {
            Some((n, v)) if n.starts_with('-') => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        if INSTALL_VALUE_OPTIONS.contains(&name) {
            let value = inline_value.or_else(|| args.next().cloned());
            match name {
                "--git" => git = value,
                "--path" => path = value,
                _ => {}
            }
        } else if name == "--locked" {
            locked = true;
        } else if !name.starts_with('-') {
            crates.push(a.as_str());
        }
    }
    if let Some(url) = git {
        if url.trim_end_matches(".git") != repository {
            return Some(format!(
                "installs from `{url}`, not this project's `{repository}`"
            ));
        }
        if crates != ["cargo-flake"] {
            return Some("`--git` of this repository must name the package: `cargo-flake` (the workspace has more than one binary)".into());
        }
    } else if let Some(p) = path {
        let manifest =
            std::fs::read_to_string(root.join(&p).join("Cargo.toml")).unwrap_or_default();
        if !manifest.contains("name = \"cargo-flake\"") {
            return Some(format!(
                "`--path {p}` is not the cargo-flake package of this repository"
            ));
        }
    } else if crates.contains(&"cargo-flake") {
        return Some(format!(
            "`cargo-flake` on the crate registry is an unrelated crate; install this project with `cargo install --locked --git {repository} cargo-flake`"
        ));
    } else {
        return None;
    }
    (!locked).then(|| {
        "installs cargo-flake without `--locked`: builds must use the tested Cargo.lock".to_string()
    })
}

/// Problems with the `cargo install` commands of one document.
fn check_installs(doc: &Doc, repository: &str, root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut checked = 0;
    for snippet in snippets(&doc.text) {
        if !snippet.text.contains("cargo install") {
            continue;
        }
        let at = format!("{}:{}", doc.name, snippet.line);
        let commands = match shell_commands(&snippet.text) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("{at}: {e} in `{}`", snippet.text.trim()));
                continue;
            }
        };
        for words in commands_of(&commands, ["cargo", "install"]) {
            checked += 1;
            if let Some(p) = install_problem(&words, repository, root) {
                problems.push(format!("{at}: `{}`: {p}", words.join(" ")));
            }
        }
    }
    // An install line in plain prose escapes the check above; refuse it.
    let anywhere = doc.text.matches("cargo install").count();
    if anywhere > checked {
        problems.push(format!(
            "{}: {} mention(s) of `cargo install` outside code, or in a comment, were not checked; put commands in code",
            doc.name,
            anywhere - checked
        ));
    }
    problems
}

#[test]
fn every_cargo_flake_command_in_the_docs_parses() {
    let mut seen = Seen::new();
    let mut problems = Vec::new();
    for doc in docs() {
        problems.extend(check_flake_commands(&doc, &mut seen));
    }
    for (s, seen) in SYNOPSES.iter().zip(&seen.synopses) {
        if !seen {
            problems.push(format!(
                "SYNOPSES lists `{}` but {} no longer shows it",
                s.text, s.file
            ));
        }
    }
    for ((file, text), seen) in NOT_COMMANDS.iter().zip(&seen.not_commands) {
        if !seen {
            problems.push(format!(
                "NOT_COMMANDS lists `{text}` but {file} no longer shows it"
            ));
        }
    }
    // README and docs/ci.md show about fifty; far fewer means the extraction broke.
    assert!(seen.commands >= 40, "only {} commands found", seen.commands);
    report(&problems);
}

#[test]
fn every_cargo_install_in_the_docs_installs_this_project() {
    let root = repo_root();
    let problems: Vec<String> = docs()
        .iter()
        .flat_map(|doc| check_installs(doc, env!("CARGO_PKG_REPOSITORY"), &root))
        .collect();
    report(&problems);
}

#[test]
fn every_cargo_flake_variable_in_the_docs_exists() {
    let declared: Vec<&str> = flake_core::env_vars::ALL
        .iter()
        .flat_map(|(names, _)| names.split(", "))
        .collect();
    let mut problems = Vec::new();
    for doc in docs() {
        for (i, line) in doc.text.lines().enumerate() {
            for (at, _) in line.match_indices("CARGO_FLAKE_") {
                let name: String = line[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                // A variable cargo-flake does not read (or reads but does not list) misleads.
                if !declared.contains(&name.as_str()) {
                    problems.push(format!(
                        "{}:{}: `{name}` is not in flake_core::env_vars::ALL",
                        doc.name,
                        i + 1
                    ));
                }
            }
        }
    }
    report(&problems);
}

fn doc(text: &str) -> Doc {
    Doc {
        name: "t.md".into(),
        text: text.into(),
    }
}

#[test]
fn a_registry_install_of_cargo_flake_is_refused() {
    let root = repo_root();
    let repo = "https://github.com/cargo-flake/cargo-flake";
    let bad = doc(
        "```yaml\n      - run: cargo install cargo-flake --locked\n```\n\nor `cargo install cargo-nextest cargo-flake`\n",
    );
    let problems = check_installs(&bad, repo, &root);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("t.md:2: "), "{problems:?}");
    assert!(problems[1].starts_with("t.md:5: "), "{problems:?}");
    let good = doc(&format!(
        "```sh\ncargo install --locked --git {repo} cargo-flake\ncargo install --locked --path cargo-flake && cargo flake test\ncargo install cargo-nextest --locked\n```\n"
    ));
    assert_eq!(check_installs(&good, repo, &root), Vec::<String>::new());
    for (line, why) in [
        (
            "cargo install --git https://example.com/fork cargo-flake --locked",
            "not this project",
        ),
        (
            &format!("cargo install --locked --git {repo}") as &str,
            "must name the package",
        ),
        (
            &format!("cargo install --git {repo} cargo-flake") as &str,
            "--locked",
        ),
        (
            "cargo install --locked --path flake-core",
            "not the cargo-flake package",
        ),
    ] {
        let problems = check_installs(&doc(&format!("`{line}`")), repo, &root);
        assert!(
            problems.len() == 1 && problems[0].contains(why),
            "{line}: {problems:?}"
        );
    }
    let prose = doc("Run cargo install cargo-flake to get it.");
    assert_eq!(check_installs(&prose, repo, &root).len(), 1);
}

#[test]
fn commands_are_read_as_a_shell_reads_them() {
    let words = |s: &str| shell_commands(s).unwrap();
    assert_eq!(
        words(r#"cargo flake add "a b" --reason 'it''s #1' # comment"#),
        [["cargo", "flake", "add", "a b", "--reason", "its #1"]]
    );
    assert_eq!(
        words("go test -json ./... > go.json ; cargo flake ingest go.json && echo ok"),
        [
            vec!["go", "test", "-json", "./..."],
            vec!["go.json"],
            vec!["cargo", "flake", "ingest", "go.json"],
            vec!["echo", "ok"]
        ]
    );
    assert!(shell_commands("cargo flake show \"x").is_err());
    let block = doc("```sh\ncargo flake test \\\n  --retries 3   # a comment\n```\n");
    let s = snippets(&block.text);
    assert_eq!((s.len(), s[0].line, s[0].origin), (1, 2, Origin::Block));
    let prose = doc("Run `cargo flake\nstats` or ``cargo `x` y``.\n");
    let s = snippets(&prose.text);
    assert_eq!(
        s.iter()
            .map(|s| (s.line, s.text.as_str()))
            .collect::<Vec<_>>(),
        [(1, "cargo flake stats"), (2, "cargo `x` y")]
    );
}

#[test]
fn wrong_commands_are_reported_with_file_and_line() {
    let mut seen = Seen::new();
    let text = "Prose naming `cargo flake gate` is fine.\n\n```sh\ncargo flake test --retries 3\ncargo flake test --retry 3\n- run: cargo flake stats --format xml\n```\n\nBut `cargo flake gate --pin x` is not.\n";
    let problems = check_flake_commands(&doc(text), &mut seen);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].starts_with("t.md:5: `cargo flake test --retry 3`"));
    assert!(problems[1].starts_with("t.md:6: "));
    assert!(problems[2].starts_with("t.md:9: "));
    let block_names_only = doc("```sh\ncargo flake gate\n```\n");
    assert_eq!(
        check_flake_commands(&block_names_only, &mut seen).len(),
        1,
        "a bare subcommand in a code block is a command, and gate needs files"
    );
}

#[test]
fn synopses_expand_to_their_shortest_and_longest_forms() {
    let forms = expand_synopsis(r#"cargo flake x "<id>" [--a] [--f h|j] [more files...]"#);
    let forms: Vec<String> = forms.iter().map(|f| f.join(" ")).collect();
    assert_eq!(
        forms,
        [
            "cargo flake x <id>",
            "cargo flake x <id> --a --f h more files",
            "cargo flake x <id> --a --f j more files"
        ]
    );
}
