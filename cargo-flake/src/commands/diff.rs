//! A small unified diff of two texts, for `quarantine sync --check`.
//!
//! Quarantine files are at most a few hundred lines, so the quadratic
//! longest-common-subsequence table is cheap and keeps this dependency-free.

use std::fmt::Write;

/// Lines of context around each change.
const CONTEXT: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Same,
    Del,
    Add,
}

/// `old` vs `new` in unified format with `--- old_name` / `+++ new_name`
/// headers; empty when the texts are equal.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // lcs[i][j] = length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // The edit script: (op, line in a, line in b, text).
    let mut script = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            script.push((Op::Same, i, j, a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Deletions first, as diff(1) prints them.
            script.push((Op::Del, i, j, a[i]));
            i += 1;
        } else {
            script.push((Op::Add, i, j, b[j]));
            j += 1;
        }
    }
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    let changes: Vec<usize> = (0..script.len())
        .filter(|&k| script[k].0 != Op::Same)
        .collect();
    let mut k = 0;
    while k < changes.len() {
        let start = changes[k].saturating_sub(CONTEXT);
        let mut end = changes[k];
        // Merge changes whose context overlaps into one hunk.
        while k < changes.len() && changes[k] <= end + 2 * CONTEXT {
            end = changes[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(script.len());
        let hunk = &script[start..end];
        let old_len = hunk.iter().filter(|s| s.0 != Op::Add).count();
        let new_len = hunk.iter().filter(|s| s.0 != Op::Del).count();
        let old_start = hunk[0].1 + usize::from(old_len > 0);
        let new_start = hunk[0].2 + usize::from(new_len > 0);
        let _ = writeln!(out, "@@ -{old_start},{old_len} +{new_start},{new_len} @@");
        for (op, _, _, text) in hunk {
            let sign = match op {
                Op::Same => ' ',
                Op::Del => '-',
                Op::Add => '+',
            };
            let _ = writeln!(out, "{sign}{text}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y"), "");
    }

    #[test]
    fn hunks_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\n";
        assert_eq!(
            unified(old, new, "a", "b"),
            "--- a\n+++ b\n@@ -2,9 +2,10 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n 9\n 10\n+11\n"
        );
        let far = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n";
        let far_new = "x\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\ny\n";
        assert_eq!(
            unified(far, far_new, "a", "b"),
            "--- a\n+++ b\n@@ -1,4 +1,4 @@\n-1\n+x\n 2\n 3\n 4\n@@ -9,4 +9,4 @@\n 9\n 10\n 11\n-12\n+y\n"
        );
        assert_eq!(
            unified("", "a\n", "a", "b"),
            "--- a\n+++ b\n@@ -0,0 +1,1 @@\n+a\n"
        );
    }
}
