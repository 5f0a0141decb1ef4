//! Helpers for cargo-flake's end-to-end tests: scratch copies of fixture
//! projects under git, and a command builder that runs the real binary with a
//! scrubbed environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Environment variables that would change cargo-flake's behaviour if they
/// leaked from the developer's shell or CI into a test.
const SCRUBBED: &[&str] = &[
    "CI",
    "CARGO_FLAKE_TOKEN",
    "CARGO_FLAKE_SERVER",
    "CARGO_FLAKE_PROJECT",
    "GITHUB_ACTIONS",
    "GITHUB_HEAD_REF",
    "GITHUB_REF_NAME",
    "GITHUB_SHA",
    "GITHUB_STEP_SUMMARY",
    "GITLAB_CI",
    "BUILDKITE",
    "CIRCLECI",
    "JENKINS_URL",
    "JENKINS_HOME",
    "NO_COLOR",
    "CARGO_TERM_COLOR",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "CARGO_FLAKE_DB",
    "CARGO_FLAKE_QUARANTINE",
    "NEXTEST_PROFILE",
    "NEXTEST_RETRIES",
    "CARGO_TARGET_DIR",
    "FIXTURE_HARD_FAIL",
    "FLAKE_FIXTURE_STATE",
];

/// The cargo-flake binary built for these tests. `CARGO_BIN_EXE_*` exists only
/// when compiling integration tests, not this library, so the path is derived
/// from the running test executable (`target/<profile>/deps/<test>`).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = profile_dir.join(format!("cargo-flake-dup{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests through cargo",
        bin.display()
    );
    bin
}

/// The repository's root (its docs are checked against what runs).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// The fixture folder of this crate.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A scratch copy of a fixture project.
#[derive(Debug)]
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// Copies `tests/fixtures/projects/<name>` into a temporary folder and makes
    /// it a git repository with one commit on branch `main`.
    pub fn new(name: &str) -> Project {
        let p = Project::copy(name);
        p.git(&["init", "-q", "-b", "main"]);
        p.commit("initial");
        p
    }

    /// A copy without git.
    pub fn copy(name: &str) -> Project {
        let dir = tempfile::Builder::new()
            .prefix("flake-e2e-")
            .tempdir()
            .unwrap();
        copy_dir(&fixtures().join("projects").join(name), dir.path());
        Project { dir }
    }

    /// The project root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs git in the project; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=flake",
                "-c",
                "user.email=flake@example.com",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(self.path())
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Commits everything.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// A cargo-flake command in this project.
    pub fn flake(&self, args: &[&str]) -> Flake {
        Flake::new(self.path(), args)
    }
}

/// A command line of the real cargo-flake binary.
#[derive(Debug)]
pub struct Flake {
    cmd: Command,
}

/// What a cargo-flake invocation did.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Outcome {
    /// Parses stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl Flake {
    /// `cargo-flake <args>` in `dir`.
    pub fn new(dir: &Path, args: &[&str]) -> Flake {
        let mut cmd = Command::new(binary());
        cmd.arg("flake").args(args).current_dir(dir);
        for var in SCRUBBED {
            cmd.env_remove(var);
        }
        Flake { cmd }
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Flake {
        self.cmd.env(key, value);
        self
    }

    /// Runs it.
    pub fn run(mut self) -> Outcome {
        let Output {
            status,
            stdout,
            stderr,
        } = self.cmd.output().expect("cargo-flake runs");
        Outcome {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Runs it with `input` on its standard input.
    pub fn run_with_input(mut self, input: &[u8]) -> Outcome {
        use std::io::Write;
        let mut child = self
            .cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cargo-flake starts");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input)
            .expect("stdin takes the input");
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("cargo-flake runs");
        Outcome {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Starts it without waiting.
    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cargo-flake starts")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".flake" || name == "node_modules" || name == ".venv" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

/// The history at `db` as the CLI wrote it, read through the library (never
/// raw SQL, so the checks hold for every backend): the store scoped to its
/// one project.
pub fn history(db: &Path) -> flake_core::store::Store {
    let store = flake_core::store::Store::open_existing(db).expect("a history");
    let projects = store.projects().expect("projects");
    assert!(projects.len() <= 1, "one project expected: {projects:?}");
    let project = projects.into_iter().next().unwrap_or_default();
    store.with_project(project).expect("the project")
}

/// A committed report of a real tool, by its path under `tests/fixtures/reports`.
pub fn report(rel: &str) -> PathBuf {
    fixtures().join("reports").join(rel)
}

/// Runs `cargo flake ARGS` in `dir` and waits for it.
pub fn flake(dir: &Path, args: &[&str]) -> Outcome {
    Flake::new(dir, args).run()
}

/// A `cargo flake serve` process on a free loopback port, over the history
/// named by `db` (`--db PATH` or `--database-url URL`); killed when dropped.
#[derive(Debug)]
pub struct Server {
    /// The process.
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Server {
    /// Starts it and waits for the line that names its address.
    pub fn start(dir: &Path, db: &[&str], extra: &[&str]) -> Server {
        Server::start_with(dir, db, extra, &[])
    }

    /// [`Server::start`] with environment variables set.
    pub fn start_with(dir: &Path, db: &[&str], extra: &[&str], env: &[(&str, &str)]) -> Server {
        use std::io::{BufRead, BufReader};
        let args = [&["serve", "--listen", "127.0.0.1:0"][..], db, extra].concat();
        let mut flake = Flake::new(dir, &args);
        for (k, v) in env {
            flake = flake.env(k, v);
        }
        let mut child = flake.spawn();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        Server {
            child,
            base: format!("http://{addr}"),
        }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
