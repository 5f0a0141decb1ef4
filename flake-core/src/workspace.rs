//! Where a project's files live: the workspace root and the default paths of
//! the history database and the quarantine file.

use std::path::{Path, PathBuf};

use crate::env_vars;

/// The project cargo-flake works on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    /// The cargo workspace root, else the git work tree root, else the directory itself.
    pub root: PathBuf,
    /// Whether `root` is a cargo workspace.
    pub is_cargo: bool,
}

impl Workspace {
    /// Finds the project containing `dir`: the nearest `Cargo.toml` with a
    /// `[workspace]` table, else the nearest `Cargo.toml`, else the git work
    /// tree root (foreign-language repositories), else `dir`. Reads files
    /// instead of running `cargo metadata`, which keeps every command fast.
    pub fn discover(dir: &Path) -> Workspace {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        let mut nearest = None;
        let mut workspace = None;
        for d in dir.ancestors() {
            let manifest = d.join("Cargo.toml");
            if let Ok(text) = std::fs::read_to_string(&manifest) {
                if nearest.is_none() {
                    nearest = Some(d.to_owned());
                }
                if text
                    .parse::<toml::Table>()
                    .is_ok_and(|t| t.contains_key("workspace"))
                {
                    workspace = Some(d.to_owned());
                    break;
                }
            }
        }
        if let Some(root) = workspace.or(nearest) {
            return Workspace {
                root,
                is_cargo: true,
            };
        }
        let root = git2::Repository::discover(&dir)
            .ok()
            .and_then(|r| r.workdir().map(Path::to_owned))
            .unwrap_or(dir);
        Workspace {
            root,
            is_cargo: false,
        }
    }

    /// The history database: `flag`, else `$CARGO_FLAKE_DB`, else `<root>/.flake/history.db`.
    pub fn db_path(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_owned)
            .or_else(|| env_path(env_vars::CARGO_FLAKE_DB))
            .unwrap_or_else(|| self.root.join(".flake").join("history.db"))
    }

    /// Where the history lives. Flags first (`--database-url`, then `--db`;
    /// the CLI makes them exclusive), then `$CARGO_FLAKE_DATABASE_URL`, then
    /// `$CARGO_FLAKE_DB`, then `<root>/.flake/history.db`.
    pub fn location(
        &self,
        url: Option<&str>,
        db: Option<&Path>,
    ) -> Result<crate::store::Location, crate::store::LocationError> {
        use crate::store::Location;
        if let Some(url) = url {
            return Location::parse(url);
        }
        if let Some(db) = db {
            return Ok(Location::Sqlite(db.to_owned()));
        }
        if let Some(url) = std::env::var(env_vars::CARGO_FLAKE_DATABASE_URL)
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            return Location::parse(&url);
        }
        Ok(Location::Sqlite(self.db_path(None)))
    }

    /// The project runs are recorded under and read from: `flag`, else
    /// `$CARGO_FLAKE_PROJECT`, else the normalised git remote, else the root
    /// folder's name ([`crate::project::default_project`]).
    pub fn project(&self, flag: Option<&str>) -> String {
        flag.map(str::to_owned)
            .or_else(|| std::env::var(env_vars::CARGO_FLAKE_PROJECT).ok())
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| crate::project::default_project(&self.root))
    }

    /// The quarantine file: `flag`, else `$CARGO_FLAKE_QUARANTINE`, else `<root>/flake-quarantine.toml`.
    pub fn quarantine_path(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_owned)
            .or_else(|| env_path(env_vars::CARGO_FLAKE_QUARANTINE))
            .unwrap_or_else(|| self.root.join("flake-quarantine.toml"))
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_enclosing_workspace_and_falls_back_to_git() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = [\"a\"]\n").unwrap();
        std::fs::create_dir_all(root.join("a/src")).unwrap();
        std::fs::write(root.join("a/Cargo.toml"), "[package]\nname = \"a\"\n").unwrap();
        let ws = Workspace::discover(&root.join("a/src"));
        assert_eq!(
            ws,
            Workspace {
                root: root.clone(),
                is_cargo: true
            }
        );
        assert_eq!(ws.db_path(Some(Path::new("x.db"))), PathBuf::from("x.db"));
        assert_eq!(
            ws.quarantine_path(Some(Path::new("q.toml"))),
            PathBuf::from("q.toml")
        );

        let other = tempfile::tempdir().unwrap();
        let other_root = other.path().canonicalize().unwrap();
        git2::Repository::init(&other_root).unwrap();
        std::fs::create_dir_all(other_root.join("py/tests")).unwrap();
        let ws = Workspace::discover(&other_root.join("py/tests"));
        assert!(!ws.is_cargo);
        assert_eq!(ws.root.canonicalize().unwrap(), other_root);
    }
}
