//! Comparators (RFC 4790: `i;octet`, `i;ascii-casemap`; RFC 2244
//! `i;ascii-numeric`) and match types (RFC 5228 section 2.7.1, relational
//! RFC 5231).
//!
//! `:matches` runs without backtracking across stars: the pattern is split
//! at each `*` into segments; the first is anchored at the start, the last at
//! the end, and each middle one is taken at its leftmost place. That is
//! exact for glob patterns and costs at most (value length x pattern
//! length) character comparisons, whatever the number of stars.

use std::cmp::Ordering;

use crate::ir::{Comparator, MatchType, RelOp};

fn fold(c: Comparator, ch: char) -> char {
    match c {
        Comparator::AsciiCasemap => ch.to_ascii_lowercase(),
        _ => ch,
    }
}

fn char_eq(c: Comparator, a: char, b: char) -> bool {
    fold(c, a) == fold(c, b)
}

/// The leading number of an `i;ascii-numeric` value, or `None` (positive
/// infinity) when it does not start with a digit. Leading zeros stripped.
fn numeric(s: &str) -> Option<&str> {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    let d = s[..digits].trim_start_matches('0');
    Some(if d.is_empty() { "0" } else { d })
}

/// Orders two values under the comparator.
pub(crate) fn compare(c: Comparator, a: &str, b: &str) -> Ordering {
    match c {
        Comparator::Octet => a.as_bytes().cmp(b.as_bytes()),
        Comparator::AsciiCasemap => {
            let x = a.bytes().map(|b| b.to_ascii_uppercase());
            let y = b.bytes().map(|b| b.to_ascii_uppercase());
            x.cmp(y)
        }
        Comparator::AsciiNumeric => match (numeric(a), numeric(b)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
        },
    }
}

pub(crate) fn rel(op: RelOp, o: Ordering) -> bool {
    match op {
        RelOp::Gt => o == Ordering::Greater,
        RelOp::Ge => o != Ordering::Less,
        RelOp::Lt => o == Ordering::Less,
        RelOp::Le => o != Ordering::Greater,
        RelOp::Eq => o == Ordering::Equal,
        RelOp::Ne => o != Ordering::Equal,
    }
}

fn contains(c: Comparator, hay: &str, needle: &str) -> bool {
    match c {
        Comparator::AsciiCasemap => {
            let h = hay.to_ascii_lowercase();
            let n = needle.to_ascii_lowercase();
            memchr::memmem::find(h.as_bytes(), n.as_bytes()).is_some()
        }
        _ => memchr::memmem::find(hay.as_bytes(), needle.as_bytes()).is_some(),
    }
}

/// Matches one value against one key with match types other than `:count`.
/// On a `:matches` success `captures` gets `${0}` and one entry per
/// wildcard.
pub(crate) fn match_value(
    c: Comparator,
    kind: MatchType,
    value: &str,
    key: &str,
    captures: Option<&mut Vec<String>>,
) -> bool {
    match kind {
        MatchType::Is => compare_eq(c, value, key),
        MatchType::Contains => contains(c, value, key),
        MatchType::Matches => wildcard(c, value, key, captures),
        MatchType::Value(op) => rel(op, compare(c, value, key)),
        MatchType::Count(_) => false,
    }
}

fn compare_eq(c: Comparator, a: &str, b: &str) -> bool {
    match c {
        Comparator::Octet => a == b,
        Comparator::AsciiCasemap => a.eq_ignore_ascii_case(b),
        Comparator::AsciiNumeric => compare(c, a, b) == Ordering::Equal,
    }
}

#[derive(Debug, Clone, Copy)]
enum P {
    Any,
    Ch(char),
}

/// `:matches`: `*` is any run, `?` any one character, `\` quotes the next.
pub(crate) fn wildcard(
    c: Comparator,
    value: &str,
    pattern: &str,
    captures: Option<&mut Vec<String>>,
) -> bool {
    // Segments between stars.
    let mut segs: Vec<Vec<P>> = Vec::new();
    let mut cur: Vec<P> = Vec::new();
    let mut it = pattern.chars();
    while let Some(ch) = it.next() {
        match ch {
            '*' => segs.push(std::mem::take(&mut cur)),
            '?' => cur.push(P::Any),
            '\\' => {
                if let Some(n) = it.next() {
                    cur.push(P::Ch(n));
                }
            }
            _ => cur.push(P::Ch(ch)),
        }
    }
    segs.push(cur);
    let v: Vec<char> = value.chars().collect();
    let seg_at = |seg: &[P], at: usize| -> bool {
        at + seg.len() <= v.len()
            && seg.iter().zip(&v[at..]).all(|(p, &ch)| match p {
                P::Any => true,
                P::Ch(x) => char_eq(c, *x, ch),
            })
    };
    let n = segs.len();
    let mut starts = vec![0usize; n];
    if n == 1 {
        if segs[0].len() != v.len() || !seg_at(&segs[0], 0) {
            return false;
        }
    } else {
        let first = &segs[0];
        let last = &segs[n - 1];
        if first.len() + last.len() > v.len() || !seg_at(first, 0) {
            return false;
        }
        let last_start = v.len() - last.len();
        if !seg_at(last, last_start) {
            return false;
        }
        starts[n - 1] = last_start;
        let mut pos = first.len();
        for k in 1..n - 1 {
            let seg = &segs[k];
            let mut found = None;
            let mut at = pos;
            while at + seg.len() <= last_start {
                if seg_at(seg, at) {
                    found = Some(at);
                    break;
                }
                at += 1;
            }
            let Some(f) = found else {
                return false;
            };
            starts[k] = f;
            pos = f + seg.len();
        }
    }
    if let Some(caps) = captures {
        caps.clear();
        caps.push(value.to_string());
        for k in 0..n {
            if k > 0 {
                let from = starts[k - 1] + segs[k - 1].len();
                caps.push(v[from..starts[k]].iter().collect());
            }
            for (i, p) in segs[k].iter().enumerate() {
                if let P::Any = p {
                    caps.push(v[starts[k] + i].to_string());
                }
            }
        }
    }
    true
}

/// `:count`: the number of values against each key, as a number.
pub(crate) fn count_matches(c: Comparator, op: RelOp, count: usize, key: &str) -> bool {
    rel(op, compare(c, &count.to_string(), key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(v: &str, p: &str) -> Option<Vec<String>> {
        let mut caps = Vec::new();
        wildcard(Comparator::AsciiCasemap, v, p, Some(&mut caps)).then_some(caps)
    }

    #[test]
    fn wildcards() {
        assert_eq!(m("a@b@c", "*@*").unwrap(), ["a@b@c", "a", "b@c"]);
        assert!(m("hello", "h?llo").is_some());
        assert!(m("hello", "h*o").is_some());
        assert!(m("hello", "h*x").is_none());
        assert!(m("", "*").is_some());
        assert!(m("abc", "a*b*c").is_some());
        assert!(m("ac", "a*b*c").is_none());
        assert!(m("a*c", "a\\*c").is_some());
        assert!(m("abc", "a\\*c").is_none());
        assert_eq!(m("xyz", "?*?").unwrap(), ["xyz", "x", "y", "z"]);
        assert!(m("aa", "a*a*a").is_none());
    }

    #[test]
    fn hostile_pattern_is_bounded() {
        // Exponential with a backtracking matcher; quadratic at most here.
        let value = "a".repeat(20_000);
        let pattern = format!("{}b", "*a".repeat(500));
        assert!(m(&value, &pattern).is_none());
        let pattern = format!("{}*", "a*".repeat(2000));
        assert!(m(&value, &pattern).is_some());
    }

    #[test]
    fn numeric() {
        use Comparator::AsciiNumeric as N;
        assert_eq!(compare(N, "10", "9"), Ordering::Greater);
        assert_eq!(compare(N, "007", "7"), Ordering::Equal);
        assert_eq!(compare(N, "abc", "7"), Ordering::Greater);
        assert_eq!(compare(N, "abc", "x"), Ordering::Equal);
    }
}
