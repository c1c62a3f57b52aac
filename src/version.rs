//! NSX build versions: dotted decimal numbers with any number of parts, where trailing zero
//! parts do not count (`4.1.0` == `4.1.0.0`). Hand-written because general version crates accept
//! input we must refuse (`4.1.O.1` read as `4.1.0.1`).

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone)]
pub struct NsxVersion {
    parts: Vec<Part>,
}

/// One dotted part: its digits without leading zeros (`0` for zero), of any length. Numbers of
/// any size compare as digit strings: a longer one is larger, equal lengths compare by digit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part(String);

impl Part {
    fn is_zero(&self) -> bool {
        self.0 == "0"
    }
}

impl Ord for Part {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Part {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("the version is empty")]
    Empty,
    #[error("part {index} is empty (two dots in a row, or a leading/trailing dot)")]
    EmptyPart { index: usize },
    #[error("part {index} `{part}` is not a decimal number (only digits 0-9 separated by dots are allowed)")]
    NotANumber { index: usize, part: String },
}

impl NsxVersion {
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        let parts = s
            .split('.')
            .enumerate()
            .map(|(i, p)| parse_part(i + 1, p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NsxVersion { parts })
    }

    /// The parts without trailing zeros: the canonical form used for comparison.
    fn significant(&self) -> &[Part] {
        let n = self
            .parts
            .iter()
            .rposition(|p| !p.is_zero())
            .map_or(0, |i| i + 1);
        &self.parts[..n]
    }
}

fn parse_part(index: usize, p: &str) -> Result<Part, VersionError> {
    if p.is_empty() {
        return Err(VersionError::EmptyPart { index });
    }
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VersionError::NotANumber {
            index,
            part: p.to_string(),
        });
    }
    let digits = p.trim_start_matches('0');
    Ok(Part(
        if digits.is_empty() { "0" } else { digits }.to_string(),
    ))
}

impl PartialEq for NsxVersion {
    fn eq(&self, other: &Self) -> bool {
        self.significant() == other.significant()
    }
}

impl Eq for NsxVersion {}

impl Ord for NsxVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        // Slices compare element-wise, then by length: after trimming trailing zeros that is
        // exactly "missing parts count as zero".
        self.significant().cmp(other.significant())
    }
}

impl PartialOrd for NsxVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for NsxVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: Vec<&str> = self.parts.iter().map(|p| p.0.as_str()).collect();
        f.write_str(&s.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> NsxVersion {
        NsxVersion::parse(s).unwrap()
    }

    #[test]
    fn real_versions_order() {
        assert!(v("3.2.1.0.18562871") < v("4.1.0.22016640"));
        assert!(v("4.1.0.22016640") < v("4.1.1"));
        assert!(v("4.1.0") == v("4.1.0.0"));
        assert!(v("4.1") == v("4.1.0.0.0"));
        assert!(v("4.10") > v("4.9"));
        assert_eq!(v("007.1").to_string(), "7.1", "leading zeros are not kept");
    }

    #[test]
    fn bad_versions_are_refused() {
        assert_eq!(NsxVersion::parse(""), Err(VersionError::Empty));
        assert!(matches!(
            NsxVersion::parse("4.1.O.1"),
            Err(VersionError::NotANumber { index: 3, .. })
        ));
        assert!(NsxVersion::parse("4.1.0-rc1").is_err());
        assert!(NsxVersion::parse("4..1").is_err());
        assert!(NsxVersion::parse(".4").is_err());
        assert!(NsxVersion::parse("4.").is_err());
        assert!(NsxVersion::parse(" 4.1").is_err());
        assert!(NsxVersion::parse("+4").is_err());
    }

    #[test]
    fn parts_of_any_length_compare_as_numbers() {
        let big = "99999999999999999999999";
        assert_eq!(v(big).to_string(), big);
        assert!(v(&format!("4.{big}")) > v("4.18446744073709551615"));
        assert!(v("4.100000000000000000000") > v("4.99999999999999999999"));
        assert!(v("4.000000000000000000000000001") == v("4.1"));
        assert!(v("4.1.00000000000000000000000") == v("4.1"));
    }

    fn parts() -> impl Strategy<Value = Vec<u64>> {
        prop::collection::vec(0u64..1000, 1..8)
    }

    fn join(p: &[u64]) -> String {
        p.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
    }

    proptest! {
        #[test]
        fn display_round_trips(p in parts()) {
            let s = join(&p);
            prop_assert_eq!(NsxVersion::parse(&s).unwrap().to_string(), s);
        }

        #[test]
        fn trailing_zeros_do_not_count(p in parts(), zeros in 0usize..4) {
            let mut q = p.clone();
            q.extend(std::iter::repeat_n(0, zeros));
            prop_assert_eq!(v(&join(&p)), v(&join(&q)));
        }

        #[test]
        fn order_matches_zero_padded_numeric_order(a in parts(), b in parts()) {
            let n = a.len().max(b.len());
            let pad = |x: &[u64]| { let mut y = x.to_vec(); y.resize(n, 0); y };
            prop_assert_eq!(v(&join(&a)).cmp(&v(&join(&b))), pad(&a).cmp(&pad(&b)));
        }

        #[test]
        fn order_is_antisymmetric(a in parts(), b in parts()) {
            prop_assert_eq!(v(&join(&a)).cmp(&v(&join(&b))), v(&join(&b)).cmp(&v(&join(&a))).reverse());
        }

        #[test]
        fn any_non_digit_is_refused(p in parts(), at in 0usize..8, c in "[^0-9.]") {
            let mut s = join(&p);
            let at = at.min(s.len());
            s.insert_str(at, &c);
            prop_assert!(NsxVersion::parse(&s).is_err());
        }
    }
}
