//! The significance tests `why` weighs its hypotheses with: small, exact
//! where the counts are small, and checked against SciPy's values.

/// `ln(n!)`, exactly summed for small `n` and by Stirling's series beyond.
fn ln_factorial(n: u64) -> f64 {
    if n < 256 {
        (2..=n).map(|k| (k as f64).ln()).sum()
    } else {
        let x = n as f64 + 1.0;
        // ln Γ(x) by Stirling's series: ample for p-values.
        (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + 1.0 / (12.0 * x)
            - 1.0 / (360.0 * x * x * x)
    }
}

/// The hypergeometric probability of a 2x2 table with `a` in the top-left
/// cell and these margins.
fn table_probability(a: u64, row1: u64, row2: u64, col1: u64) -> f64 {
    let n = row1 + row2;
    let (b, c) = (row1 - a, col1 - a);
    let d = row2 - c;
    (ln_factorial(row1) + ln_factorial(row2) + ln_factorial(col1) + ln_factorial(n - col1)
        - ln_factorial(n)
        - ln_factorial(a)
        - ln_factorial(b)
        - ln_factorial(c)
        - ln_factorial(d))
    .exp()
}

/// Fisher's exact test, one-sided: the probability of a top-left cell at
/// least `a` in the table `[[a, b], [c, d]]` with its margins fixed. Here:
/// `a` failing runs in a group, `b` clean runs in it, `c` and `d` outside.
pub fn fisher_greater(a: u64, b: u64, c: u64, d: u64) -> f64 {
    let (row1, row2, col1) = (a + b, c + d, a + c);
    let most = row1.min(col1);
    let p: f64 = (a..=most)
        .filter(|&x| col1 - x <= row2)
        .map(|x| table_probability(x, row1, row2, col1))
        .sum();
    p.min(1.0)
}

/// The standard normal's upper tail, `P(Z > z)` (Abramowitz and Stegun
/// 7.1.26 through erfc; absolute error below 1.5e-7).
pub fn normal_upper(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    (erfc / 2.0).clamp(0.0, 1.0)
}

/// The Mann-Whitney U test that `x` tends to be larger than `y`: `U` of `x`
/// and the one-sided p-value by the normal approximation with the tie and
/// continuity corrections (as SciPy's `method="asymptotic"`). `None` with
/// fewer than two values on a side.
pub fn mann_whitney_greater(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let (n1, n2) = (x.len(), y.len());
    if n1 < 2 || n2 < 2 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let (mut rank_x, mut tie_term) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let rank = (i + j + 2) as f64 / 2.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        rank_x += rank * all[i..=j].iter().filter(|v| v.1).count() as f64;
        i = j + 1;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_x - n1f * (n1f + 1.0) / 2.0;
    let mean = n1f * n2f / 2.0;
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    if var <= 0.0 {
        return Some((u, 1.0));
    }
    let z = (u - mean - 0.5) / var.sqrt();
    Some((u, normal_upper(z)))
}

/// The median of `v` (sorted here), `None` when empty.
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 + 1e-4 * b.abs()
    }

    // Reference values: scipy.stats.fisher_exact(..., alternative="greater")
    // and mannwhitneyu(..., method="asymptotic") of SciPy 1.14.
    #[test]
    fn fisher_matches_scipy() {
        assert!(close(fisher_greater(8, 2, 1, 5), 0.024_475_524_475_524_483));
        assert!(close(
            fisher_greater(3, 17, 2, 178),
            0.007_592_926_348_779_58
        ));
        assert!(close(fisher_greater(0, 10, 5, 5), 1.0));
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        let (u, p) = mann_whitney_greater(
            &[5.1, 5.3, 5.2, 5.4, 5.0],
            &[1.0, 1.2, 0.9, 1.1, 1.3, 1.0, 1.05],
        )
        .unwrap();
        assert_eq!(u, 35.0);
        assert!(close(p, 0.002_840_628_065_341_244_6), "{p}");
        // Ties: SciPy's two-sided p is 0.028410955971066798, so the lower
        // one-sided tail of x is half of it.
        let (u, p_greater) =
            mann_whitney_greater(&[1., 2., 2., 3., 3., 3.], &[2., 3., 4., 4., 5., 5., 6.]).unwrap();
        assert_eq!(u, 5.5);
        let (_, p_less) =
            mann_whitney_greater(&[2., 3., 4., 4., 5., 5., 6.], &[1., 2., 2., 3., 3., 3.]).unwrap();
        assert!(close(p_less, 0.028_410_955_971_066_798 / 2.0), "{p_less}");
        assert!(p_greater > 0.9);
        assert!(mann_whitney_greater(&[1.0], &[2.0, 3.0]).is_none());
    }

    #[test]
    fn large_counts_stay_finite() {
        let p = fisher_greater(40, 960, 10, 3_990);
        assert!(p > 0.0 && p < 1e-10, "{p}");
        assert!(close(ln_factorial(300), 1_414.905_849_945_068));
    }
}
