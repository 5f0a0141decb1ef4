//! What CI providers tell us through environment variables.
//!
//! CI checkouts are often a detached HEAD, so the branch must come from the
//! provider. The resolution is a pure function of an environment lookup so it
//! can be tested with plain maps.

/// What the CI environment says about the current job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CiInfo {
    /// Provider name (`github-actions`, `gitlab-ci`, `buildkite`, `circleci`, `jenkins`, or `ci` for an unknown one with `CI=true`).
    pub provider: String,
    /// Branch being tested; for pull/merge requests the source branch.
    pub branch: Option<String>,
    /// Commit SHA the provider says it checked out.
    pub commit: Option<String>,
    /// Identifier of the CI run (workflow run, pipeline, build).
    pub run: Option<String>,
    /// Job name within the run.
    pub job: Option<String>,
    /// The provider's id of this one execution of the job, where it has one
    /// (a retried job gets a new one); tells apart runs that share `run` and `job`.
    pub job_id: Option<String>,
}

/// Detects the CI provider from the environment, `None` outside CI.
pub fn detect(env: &dyn Fn(&str) -> Option<String>) -> Option<CiInfo> {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if get("GITHUB_ACTIONS").as_deref() == Some("true") {
        // On pull_request events GITHUB_REF_NAME is `123/merge`; the head branch is GITHUB_HEAD_REF.
        let branch = get("GITHUB_HEAD_REF").or_else(|| {
            if get("GITHUB_REF_TYPE").as_deref() == Some("tag") {
                None
            } else {
                get("GITHUB_REF_NAME")
            }
        });
        let run = get("GITHUB_RUN_ID").map(|id| match get("GITHUB_RUN_ATTEMPT") {
            Some(attempt) => format!("{id}-{attempt}"),
            None => id,
        });
        let job = match (get("GITHUB_WORKFLOW"), get("GITHUB_JOB")) {
            (Some(w), Some(j)) => Some(format!("{w}/{j}")),
            (w, j) => j.or(w),
        };
        return Some(CiInfo {
            provider: "github-actions".into(),
            branch,
            commit: get("GITHUB_SHA"),
            run,
            job,
            // GitHub exports no id of the job execution; matrix legs differ by host.
            job_id: None,
        });
    }
    if get("GITLAB_CI").is_some() {
        let branch = get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME")
            .or_else(|| get("CI_COMMIT_BRANCH"))
            .or_else(|| {
                if get("CI_COMMIT_TAG").is_some() {
                    None
                } else {
                    get("CI_COMMIT_REF_NAME")
                }
            });
        return Some(CiInfo {
            provider: "gitlab-ci".into(),
            branch,
            commit: get("CI_COMMIT_SHA"),
            run: get("CI_PIPELINE_ID"),
            job: get("CI_JOB_NAME"),
            job_id: get("CI_JOB_ID"),
        });
    }
    if get("BUILDKITE").as_deref() == Some("true") {
        return Some(CiInfo {
            provider: "buildkite".into(),
            branch: get("BUILDKITE_BRANCH"),
            commit: get("BUILDKITE_COMMIT").filter(|c| c != "HEAD"),
            run: get("BUILDKITE_BUILD_ID"),
            job: get("BUILDKITE_STEP_KEY").or_else(|| get("BUILDKITE_LABEL")),
            job_id: get("BUILDKITE_JOB_ID"),
        });
    }
    if get("CIRCLECI").as_deref() == Some("true") {
        return Some(CiInfo {
            provider: "circleci".into(),
            branch: get("CIRCLE_BRANCH"),
            commit: get("CIRCLE_SHA1"),
            run: get("CIRCLE_WORKFLOW_ID").or_else(|| get("CIRCLE_BUILD_NUM")),
            job: get("CIRCLE_JOB"),
            job_id: get("CIRCLE_WORKFLOW_JOB_ID").or_else(|| get("CIRCLE_BUILD_NUM")),
        });
    }
    if get("JENKINS_URL").is_some() || get("JENKINS_HOME").is_some() {
        // Multibranch pipelines set CHANGE_BRANCH for PRs and BRANCH_NAME otherwise;
        // the git plugin's GIT_BRANCH carries the remote name (`origin/main`).
        let branch = get("CHANGE_BRANCH")
            .or_else(|| get("BRANCH_NAME"))
            .or_else(|| {
                get("GIT_BRANCH").map(|b| {
                    b.strip_prefix("origin/")
                        .or_else(|| b.strip_prefix("refs/heads/"))
                        .unwrap_or(&b)
                        .to_owned()
                })
            });
        return Some(CiInfo {
            provider: "jenkins".into(),
            branch,
            commit: get("GIT_COMMIT"),
            run: get("BUILD_TAG").or_else(|| get("BUILD_NUMBER")),
            job: get("JOB_NAME"),
            job_id: get("BUILD_NUMBER"),
        });
    }
    if matches!(get("CI").as_deref(), Some("true" | "1")) {
        return Some(CiInfo {
            provider: "ci".into(),
            ..CiInfo::default()
        });
    }
    None
}

/// [`detect`] over the process environment.
pub fn detect_from_env() -> Option<CiInfo> {
    detect(&|k| std::env::var(k).ok())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn ci(vars: &[(&str, &str)]) -> Option<CiInfo> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        detect(&|k| map.get(k).cloned())
    }

    #[test]
    fn not_ci() {
        assert_eq!(ci(&[("HOME", "/root")]), None);
        assert_eq!(ci(&[("CI", "")]), None);
    }

    #[test]
    fn github_push_and_pull_request() {
        let push = ci(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF_NAME", "main"),
            ("GITHUB_REF_TYPE", "branch"),
            ("GITHUB_SHA", "abc"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_WORKFLOW", "CI"),
            ("GITHUB_JOB", "test"),
        ])
        .unwrap();
        assert_eq!(push.provider, "github-actions");
        assert_eq!(push.branch.as_deref(), Some("main"));
        assert_eq!(push.commit.as_deref(), Some("abc"));
        assert_eq!(push.run.as_deref(), Some("42-2"));
        assert_eq!(push.job.as_deref(), Some("CI/test"));

        let pr = ci(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF_NAME", "17/merge"),
            ("GITHUB_HEAD_REF", "feature/login"),
        ])
        .unwrap();
        assert_eq!(pr.branch.as_deref(), Some("feature/login"));

        let tag = ci(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF_NAME", "v1.0"),
            ("GITHUB_REF_TYPE", "tag"),
        ])
        .unwrap();
        assert_eq!(tag.branch, None);
    }

    #[test]
    fn gitlab_merge_request_prefers_source_branch() {
        let mr = ci(&[
            ("GITLAB_CI", "true"),
            ("CI_COMMIT_REF_NAME", "refs/merge-requests/3/head"),
            ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "fix-db"),
            ("CI_COMMIT_SHA", "def"),
            ("CI_PIPELINE_ID", "900"),
            ("CI_JOB_NAME", "test:linux"),
        ])
        .unwrap();
        assert_eq!(mr.provider, "gitlab-ci");
        assert_eq!(mr.branch.as_deref(), Some("fix-db"));
        assert_eq!(mr.run.as_deref(), Some("900"));
        assert_eq!(mr.job.as_deref(), Some("test:linux"));
        let branch = ci(&[("GITLAB_CI", "true"), ("CI_COMMIT_BRANCH", "main")]).unwrap();
        assert_eq!(branch.branch.as_deref(), Some("main"));
    }

    #[test]
    fn buildkite_circleci_jenkins() {
        let bk = ci(&[
            ("BUILDKITE", "true"),
            ("BUILDKITE_BRANCH", "main"),
            ("BUILDKITE_COMMIT", "HEAD"),
            ("BUILDKITE_BUILD_ID", "b-1"),
            ("BUILDKITE_LABEL", ":rust: test"),
        ])
        .unwrap();
        assert_eq!(bk.branch.as_deref(), Some("main"));
        assert_eq!(bk.commit, None, "`HEAD` is not a SHA");
        assert_eq!(bk.job.as_deref(), Some(":rust: test"));

        let circle = ci(&[
            ("CIRCLECI", "true"),
            ("CIRCLE_BRANCH", "dev"),
            ("CIRCLE_SHA1", "123"),
            ("CIRCLE_WORKFLOW_ID", "wf"),
            ("CIRCLE_JOB", "test"),
        ])
        .unwrap();
        assert_eq!(circle.provider, "circleci");
        assert_eq!(circle.branch.as_deref(), Some("dev"));
        assert_eq!(circle.run.as_deref(), Some("wf"));

        let jenkins = ci(&[
            ("JENKINS_URL", "https://ci.example/"),
            ("GIT_BRANCH", "origin/release"),
            ("GIT_COMMIT", "789"),
            ("BUILD_TAG", "jenkins-app-12"),
        ])
        .unwrap();
        assert_eq!(jenkins.branch.as_deref(), Some("release"));
        assert_eq!(jenkins.commit.as_deref(), Some("789"));
        let jenkins_pr = ci(&[
            ("JENKINS_URL", "x"),
            ("CHANGE_BRANCH", "feature"),
            ("BRANCH_NAME", "PR-4"),
        ])
        .unwrap();
        assert_eq!(jenkins_pr.branch.as_deref(), Some("feature"));
    }

    #[test]
    fn unknown_ci() {
        assert_eq!(ci(&[("CI", "true")]).unwrap().provider, "ci");
    }
}
