//! Commit, branch and tree of the code under test, read with libgit2.

use std::path::{Path, PathBuf};

use crate::ci::CiInfo;

/// What the git repository says about HEAD.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitInfo {
    /// Root of the work tree.
    pub root: PathBuf,
    /// HEAD's commit SHA (`None` in a repository without commits).
    pub commit: Option<String>,
    /// HEAD's tree SHA: identical content across rebases and merges has the same tree.
    pub tree: Option<String>,
    /// The branch HEAD points to; `None` for a detached HEAD.
    pub branch: Option<String>,
    /// Whether tracked files differ from HEAD.
    pub dirty: bool,
}

/// Why git metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The directory is not inside a git work tree.
    #[error("`{}` is not inside a git repository", path.display())]
    NotARepository {
        /// The directory searched from.
        path: PathBuf,
    },
    /// libgit2 failed.
    #[error("failed to read git metadata in `{}`", path.display())]
    Git {
        /// The repository.
        path: PathBuf,
        /// libgit2's error.
        #[source]
        source: git2::Error,
    },
}

/// Reads HEAD of the repository containing `dir`.
pub fn read(dir: &Path) -> Result<GitInfo, GitError> {
    read_with(dir, true)
}

/// [`read`] without the work tree's status when `status` is false (`dirty`
/// is then `false`): a status walks every tracked file, seconds in a large
/// monorepo, and is not needed when the commit is given.
pub fn read_with(dir: &Path, status: bool) -> Result<GitInfo, GitError> {
    let repo = git2::Repository::discover(dir).map_err(|e| {
        if e.code() == git2::ErrorCode::NotFound {
            GitError::NotARepository {
                path: dir.to_owned(),
            }
        } else {
            GitError::Git {
                path: dir.to_owned(),
                source: e,
            }
        }
    })?;
    let root = repo.workdir().unwrap_or_else(|| repo.path()).to_path_buf();
    let err = |source| GitError::Git {
        path: root.clone(),
        source,
    };
    let head = match repo.head() {
        Ok(head) => Some(head),
        // A fresh repository: HEAD names a branch that has no commit yet.
        Err(e)
            if matches!(
                e.code(),
                git2::ErrorCode::UnbornBranch | git2::ErrorCode::NotFound
            ) =>
        {
            None
        }
        Err(e) => return Err(err(e)),
    };
    let branch = match &head {
        Some(h) if h.is_branch() => h.shorthand().ok().map(str::to_owned),
        Some(_) => None,
        None => repo.find_reference("HEAD").ok().and_then(|r| {
            r.symbolic_target()
                .ok()
                .flatten()
                .and_then(|t| t.strip_prefix("refs/heads/"))
                .map(str::to_owned)
        }),
    };
    let commit = match &head {
        Some(h) => Some(h.peel_to_commit().map_err(err)?),
        None => None,
    };
    let mut opts = git2::StatusOptions::new();
    // Untracked files (build outputs, the history database) are not a code change.
    opts.include_untracked(false)
        .include_ignored(false)
        .exclude_submodules(true);
    let dirty = status && !repo.statuses(Some(&mut opts)).map_err(err)?.is_empty();
    Ok(GitInfo {
        root,
        commit: commit.as_ref().map(|c| c.id().to_string()),
        tree: commit.as_ref().map(|c| c.tree_id().to_string()),
        branch,
        dirty,
    })
}

/// Commit, branch and tree of a run after applying the precedence rules:
/// explicit flags, then git, then the CI provider's variables (which matter
/// for detached HEADs in CI).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revision {
    /// Commit SHA.
    pub commit: Option<String>,
    /// Branch name.
    pub branch: Option<String>,
    /// Tree SHA (only from git, and only when the commit is git's).
    pub tree: Option<String>,
    /// Work tree dirty flag.
    pub dirty: Option<bool>,
}

/// Applies the precedence rules: flags win, then git, then CI variables.
pub fn resolve(
    flag_commit: Option<&str>,
    flag_branch: Option<&str>,
    git: Option<&GitInfo>,
    ci: Option<&CiInfo>,
) -> Revision {
    let git_commit = git.and_then(|g| g.commit.clone());
    let commit = flag_commit
        .map(str::to_owned)
        .or_else(|| git_commit.clone())
        .or_else(|| ci.and_then(|c| c.commit.clone()));
    let branch = flag_branch
        .map(str::to_owned)
        .or_else(|| git.and_then(|g| g.branch.clone()))
        .or_else(|| ci.and_then(|c| c.branch.clone()));
    // A tree SHA only describes the commit it was read from.
    let tree = if commit.is_some() && commit == git_commit {
        git.and_then(|g| g.tree.clone())
    } else {
        None
    };
    Revision {
        commit,
        branch,
        tree,
        dirty: git.map(|g| g.dirty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(branch: Option<&str>) -> GitInfo {
        GitInfo {
            root: PathBuf::from("/r"),
            commit: Some("c0ffee".into()),
            tree: Some("7ree".into()),
            branch: branch.map(Into::into),
            dirty: false,
        }
    }

    #[test]
    fn flags_win_over_git_and_ci() {
        let ci = CiInfo {
            provider: "gitlab-ci".into(),
            branch: Some("ci-branch".into()),
            commit: Some("ci-sha".into()),
            ..CiInfo::default()
        };
        let r = resolve(
            Some("flag-sha"),
            Some("flag-br"),
            Some(&git(Some("main"))),
            Some(&ci),
        );
        assert_eq!(r.commit.as_deref(), Some("flag-sha"));
        assert_eq!(r.branch.as_deref(), Some("flag-br"));
        assert_eq!(
            r.tree, None,
            "the tree belongs to git's commit, not the flag's"
        );
    }

    #[test]
    fn detached_head_takes_branch_from_ci() {
        let ci = CiInfo {
            provider: "github-actions".into(),
            branch: Some("feature".into()),
            commit: Some("merge-sha".into()),
            ..CiInfo::default()
        };
        let r = resolve(None, None, Some(&git(None)), Some(&ci));
        assert_eq!(
            r.commit.as_deref(),
            Some("c0ffee"),
            "git's checked-out commit is what ran"
        );
        assert_eq!(r.branch.as_deref(), Some("feature"));
        assert_eq!(r.tree.as_deref(), Some("7ree"));
        assert_eq!(r.dirty, Some(false));
    }

    #[test]
    fn no_git_uses_ci_and_no_ci_leaves_blanks() {
        let ci = CiInfo {
            provider: "circleci".into(),
            branch: Some("b".into()),
            commit: Some("s".into()),
            ..CiInfo::default()
        };
        let r = resolve(None, None, None, Some(&ci));
        assert_eq!(
            (r.commit.as_deref(), r.branch.as_deref()),
            (Some("s"), Some("b"))
        );
        assert_eq!(r.dirty, None);
        assert_eq!(resolve(None, None, None, None), Revision::default());
    }

    #[test]
    fn reads_a_real_repository() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read(dir.path()),
            Err(GitError::NotARepository { .. })
        ));
        let repo = git2::Repository::init(dir.path()).unwrap();
        // Unborn branch: a branch name but no commit.
        let info = read(dir.path()).unwrap();
        assert_eq!(info.commit, None);
        std::fs::write(dir.path().join("a.txt"), "one").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("a.txt")).unwrap();
        index.write().unwrap();
        let tree_id = index.write_tree().unwrap();
        let tree = repo.find_tree(tree_id).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let oid = repo
            .commit(Some("HEAD"), &sig, &sig, "first", &tree, &[])
            .unwrap();
        let info = read(dir.path()).unwrap();
        assert_eq!(info.commit, Some(oid.to_string()));
        assert_eq!(info.tree, Some(tree_id.to_string()));
        assert!(info.branch.is_some());
        assert!(!info.dirty);
        std::fs::write(dir.path().join("a.txt"), "two").unwrap();
        assert!(read(dir.path()).unwrap().dirty);
        // Untracked files do not make it dirty.
        std::fs::write(dir.path().join("a.txt"), "one").unwrap();
        std::fs::write(dir.path().join("new.txt"), "x").unwrap();
        assert!(!read(dir.path()).unwrap().dirty);
        repo.set_head_detached(oid).unwrap();
        let detached = read(dir.path()).unwrap();
        assert_eq!(detached.branch, None);
        assert_eq!(detached.commit, Some(oid.to_string()));
    }
}
