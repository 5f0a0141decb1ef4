//! The few runner arguments cargo-flake must understand to do its job.

/// What cargo-flake reads from the arguments it passes through to the runner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunnerArgs {
    /// `--profile` / `-P` (nextest).
    pub profile: Option<String>,
    /// `--retries` given to the runner directly.
    pub retries: Option<String>,
    /// `--message-format` given to the runner directly.
    pub message_format: Option<String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--fail-fast`, `--no-fail-fast` or `--max-fail` given explicitly.
    pub fail_fast_set: bool,
    /// Arguments after a second `--` (test binary arguments for `cargo test`).
    pub test_binary_args: Vec<String>,
}

impl RunnerArgs {
    /// Reads the interesting flags out of `args`, in both `--flag value` and
    /// `--flag=value` forms.
    pub fn parse(args: &[String]) -> RunnerArgs {
        let mut out = RunnerArgs::default();
        let mut i = 0;
        while i < args.len() {
            let arg = args[i].as_str();
            if arg == "--" {
                out.test_binary_args = args[i + 1..].to_vec();
                break;
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
                _ => (arg, None),
            };
            let take = |i: &mut usize| {
                inline.clone().or_else(|| {
                    *i += 1;
                    args.get(*i).cloned()
                })
            };
            match flag {
                "--profile" | "-P" => out.profile = take(&mut i),
                "--retries" => out.retries = take(&mut i),
                "--message-format" => out.message_format = take(&mut i),
                "--target" => out.target = take(&mut i),
                "--fail-fast" | "--no-fail-fast" => out.fail_fast_set = true,
                "--max-fail" => {
                    out.fail_fast_set = true;
                    take(&mut i);
                }
                _ => {}
            }
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> RunnerArgs {
        RunnerArgs::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn reads_flags_in_both_forms() {
        let a = parse(&[
            "-p",
            "x",
            "--profile",
            "ci",
            "--retries=3",
            "--target",
            "x86_64-unknown-linux-musl",
        ]);
        assert_eq!(a.profile.as_deref(), Some("ci"));
        assert_eq!(a.retries.as_deref(), Some("3"));
        assert_eq!(a.target.as_deref(), Some("x86_64-unknown-linux-musl"));
        assert!(!a.fail_fast_set);
        let b = parse(&["-P", "default", "--max-fail", "2", "-E", "test(/x/)"]);
        assert_eq!(b.profile.as_deref(), Some("default"));
        assert!(b.fail_fast_set);
        assert_eq!(
            parse(&["--message-format=libtest-json"])
                .message_format
                .as_deref(),
            Some("libtest-json")
        );
    }

    #[test]
    fn stops_at_a_second_double_dash() {
        let a = parse(&["-p", "x", "--", "--profile", "not-ours", "--exact"]);
        assert_eq!(a.profile, None);
        assert_eq!(a.test_binary_args, vec!["--profile", "not-ours", "--exact"]);
    }
}
