//! The Wilson score interval: how sure a flake rate is.
//!
//! A rate of 1/10 and one of 100/1000 are both 10%, but the first could well
//! be 1% or 40%. The Wilson interval stays inside [0, 1] and behaves at 0 and
//! n successes, unlike the normal approximation, which is why flake-rate tools
//! (and the quarantine reasons we write) quote it.

/// z for a two-sided 95% interval.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// The 95% Wilson score interval of `successes` out of `n` trials, as
/// `(low, high)` fractions in `[0, 1]`.
///
/// With no trials nothing is known, so the interval is the whole `[0, 1]`.
/// `successes` above `n` is clamped to `n`.
///
/// ```
/// let (low, high) = flake_core::stats::wilson(6, 50);
/// assert_eq!((format!("{:.1}", low * 100.0), format!("{:.1}", high * 100.0)), ("5.6".into(), "23.8".into()));
/// ```
pub fn wilson(successes: u64, n: u64) -> (f64, f64) {
    wilson_z(successes, n, Z_95)
}

/// The Wilson score interval for an arbitrary `z` (e.g. 2.576 for 99%).
pub fn wilson_z(successes: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n_f = n as f64;
    let p = successes.min(n) as f64 / n_f;
    let z2 = z * z;
    let denom = 1.0 + z2 / n_f;
    let center = (p + z2 / (2.0 * n_f)) / denom;
    let margin = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt() / denom;
    // At p = 0 or 1 the bound is exactly 0 or 1; clamp rounding noise.
    let low = if successes == 0 {
        0.0
    } else {
        (center - margin).max(0.0)
    };
    let high = if successes >= n {
        1.0
    } else {
        (center + margin).min(1.0)
    };
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn matches_published_values() {
        // Reference values from a separate Python implementation of the
        // textbook formula; 6/50 is the issue's "5.6–23.8%".
        let cases = [
            (6, 50, 0.056_18, 0.238_05),
            (0, 10, 0.0, 0.277_53),
            (10, 10, 0.722_47, 1.0),
            (1, 20, 0.008_88, 0.236_13),
            (50, 1000, 0.038_13, 0.065_31),
            (81, 263, 0.255_29, 0.366_21),
        ];
        for (k, n, low, high) in cases {
            let (l, h) = wilson(k, n);
            assert!(
                close(l, low) && close(h, high),
                "{k}/{n}: got {l:.5}..{h:.5}, want {low}..{high}"
            );
        }
    }

    #[test]
    fn no_trials_is_total_uncertainty_and_bounds_are_ordered() {
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        for n in 1..60 {
            for k in 0..=n {
                let (l, h) = wilson(k, n);
                let p = k as f64 / n as f64;
                assert!(
                    (0.0..=p).contains(&l) && (p..=1.0).contains(&h),
                    "{k}/{n}: {l}..{h}"
                );
            }
        }
    }

    #[test]
    fn interval_narrows_with_more_evidence() {
        let (l1, h1) = wilson(1, 10);
        let (l2, h2) = wilson(100, 1000);
        assert!(h2 - l2 < (h1 - l1) / 2.0);
    }
}
