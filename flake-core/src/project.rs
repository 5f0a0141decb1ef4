//! Which project a run belongs to, so one database can hold many repositories.
//!
//! The default name is the repository's remote normalised to
//! `host/owner/repo` (`github.com/org/repo`), whatever the clone used: https,
//! ssh (`ssh://git@host:22/org/repo.git`) or scp-style (`git@host:org/repo`).
//! Two clones of one repository, one by https and one by ssh, are then one
//! project. Without a remote the name is the root folder's name; `--project`
//! overrides both.

use std::path::Path;

/// The normalised form of a git remote URL (`github.com/org/repo`), or `None`
/// when `url` is not a remote we can name (a local path, `file://`).
///
/// Lowercases the host only (paths are case-sensitive on most forges), drops
/// credentials, ports, a trailing `.git` and slashes.
///
/// ```
/// use flake_core::project::normalise_remote;
/// for url in [
///     "https://github.com/org/repo.git",
///     "git@github.com:org/repo.git",
///     "ssh://git@GitHub.com:22/org/repo",
///     "https://user:secret@github.com/org/repo/",
/// ] {
///     assert_eq!(normalise_remote(url).as_deref(), Some("github.com/org/repo"));
/// }
/// assert_eq!(normalise_remote("/srv/git/repo.git"), None);
/// ```
pub fn normalise_remote(url: &str) -> Option<String> {
    let url = url.trim();
    let (host, path) = if let Some((scheme, rest)) = url.split_once("://") {
        if !matches!(
            scheme.to_ascii_lowercase().as_str(),
            "https" | "http" | "ssh" | "git" | "git+ssh" | "ssh+git"
        ) {
            return None;
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        // A port, or an IPv6 literal's brackets with a port after them.
        let host = match host.rfind(']') {
            Some(end) => &host[..=end],
            None => host.split_once(':').map_or(host, |(h, _)| h),
        };
        (host, path)
    } else {
        // scp-style `[user@]host:path`; a colon after a slash is a local path.
        let (before, path) = url.split_once(':')?;
        // As git does: a colon after a slash, or after a one-letter drive
        // name (`C:/repos/x`), is a local path.
        if before.contains('/') || before.len() < 2 {
            return None;
        }
        let host = before.rsplit_once('@').map_or(before, |(_, h)| h);
        (host, path)
    };
    let path = path.trim_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some(format!("{}/{path}", host.to_ascii_lowercase()))
}

/// The default project of the repository or folder at `root`: its `origin`
/// remote (else the first remote with a URL) normalised, else the folder's name.
pub fn default_project(root: &Path) -> String {
    from_remotes(root).unwrap_or_else(|| folder_name(root))
}

fn from_remotes(root: &Path) -> Option<String> {
    let repo = git2::Repository::discover(root).ok()?;
    let url_of = |name: &str| {
        repo.find_remote(name)
            .ok()
            .and_then(|r| r.url().ok().and_then(normalise_remote))
    };
    if let Some(origin) = url_of("origin") {
        return Some(origin);
    }
    let names = repo.remotes().ok()?;
    let mut names: Vec<&str> = names.iter().flatten().flatten().collect();
    names.sort_unstable();
    names.into_iter().find_map(url_of)
}

fn folder_name(root: &Path) -> String {
    let canonical = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_of_every_shape_name_one_project() {
        let cases = [
            (
                "https://github.com/org/repo.git",
                Some("github.com/org/repo"),
            ),
            (
                "http://gitlab.example.com/group/sub/repo",
                Some("gitlab.example.com/group/sub/repo"),
            ),
            ("git@github.com:org/repo.git", Some("github.com/org/repo")),
            ("github.com:org/repo", Some("github.com/org/repo")),
            (
                "ssh://git@github.com/org/repo.git",
                Some("github.com/org/repo"),
            ),
            (
                "ssh://git@github.com:2222/org/repo.git/",
                Some("github.com/org/repo"),
            ),
            (
                "https://token:x-oauth@GITHUB.com/Org/Repo.git",
                Some("github.com/Org/Repo"),
            ),
            ("git://[::1]:9418/org/repo", Some("[::1]/org/repo")),
            ("/srv/git/repo.git", None),
            ("./relative/repo", None),
            ("file:///srv/git/repo.git", None),
            ("C:/repos/x", None),
            ("https://github.com/", None),
            ("", None),
        ];
        for (url, want) in cases {
            assert_eq!(normalise_remote(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn a_repository_is_named_by_origin_and_a_folder_by_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("my-app");
        std::fs::create_dir(&root).unwrap();
        assert_eq!(default_project(&root), "my-app");
        let repo = git2::Repository::init(&root).unwrap();
        assert_eq!(default_project(&root), "my-app", "no remote yet");
        repo.remote("upstream", "git@github.com:up/app.git")
            .unwrap();
        assert_eq!(default_project(&root), "github.com/up/app");
        repo.remote("origin", "https://github.com/me/app.git")
            .unwrap();
        assert_eq!(default_project(&root), "github.com/me/app");
    }
}
