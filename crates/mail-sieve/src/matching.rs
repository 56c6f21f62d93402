//! Comparators (RFC 4790: `i;octet`, `i;ascii-casemap`; RFC 2244
//! `i;ascii-numeric`) and match types (RFC 5228 section 2.7.1, relational
//! RFC 5231).
//!
//! `:matches` runs without backtracking across stars: the pattern is split
//! at each `*` into segments; the first is anchored at the start, the last at
//! the end, and each middle one is taken at its leftmost place. That is
//! exact for glob patterns (and gives RFC 5229's match variables: each star
//! as short as it can be, left to right). A segment of literal characters is
//! found by a linear substring search, so the cost is linear in the value
//! for any number of stars; only segments that hold a `?` are tried place by
//! place, and those stop after [`MAX_MATCH_STEPS`] comparisons (a run-time
//! error: the message is kept).

use std::cmp::Ordering;

use crate::ir::{Comparator, MatchType, RelOp};

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
) -> Result<bool, TooCostly> {
    Ok(match kind {
        MatchType::Is => compare_eq(c, value, key),
        MatchType::Contains => contains(c, value, key),
        MatchType::Matches => return wildcard(c, value, key, captures),
        MatchType::Value(op) => rel(op, compare(c, value, key)),
        MatchType::Count(_) => false,
    })
}

fn compare_eq(c: Comparator, a: &str, b: &str) -> bool {
    match c {
        Comparator::Octet => a == b,
        Comparator::AsciiCasemap => a.eq_ignore_ascii_case(b),
        Comparator::AsciiNumeric => compare(c, a, b) == Ordering::Equal,
    }
}

/// Most byte comparisons one `:matches` may make before it gives up; the
/// run then fails (implicit keep). Only segments with `?` can need many:
/// literal segments are found with a linear substring search.
pub const MAX_MATCH_STEPS: u64 = 20_000_000;

/// A `:matches` that would cost more than [`MAX_MATCH_STEPS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooCostly;

/// One piece of a segment between stars.
#[derive(Debug, Clone)]
enum P {
    /// `?`: one character (one to four bytes of UTF-8).
    Any,
    /// Literal bytes (folded for i;ascii-casemap).
    Lit(Vec<u8>),
}

fn char_len(b: u8) -> usize {
    match b {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Where `seg` ends when it matches `v` at `at`, counting the steps.
fn seg_at(seg: &[P], v: &[u8], at: usize, steps: &mut u64) -> Option<usize> {
    let mut i = at;
    for p in seg {
        match p {
            P::Any => {
                let b = *v.get(i)?;
                i += char_len(b);
                if i > v.len() {
                    return None;
                }
                *steps += 1;
            }
            P::Lit(l) => {
                *steps += l.len() as u64;
                if !v.get(i..)?.starts_with(l) {
                    return None;
                }
                i += l.len();
            }
        }
    }
    Some(i)
}

/// Where `seg` starts when it matches `v` exactly up to its end.
fn seg_back(seg: &[P], v: &[u8], end: usize) -> Option<usize> {
    let mut i = end;
    for p in seg.iter().rev() {
        match p {
            P::Any => {
                if i == 0 {
                    return None;
                }
                i -= 1;
                while i > 0 && (v[i] & 0xC0) == 0x80 {
                    i -= 1;
                }
            }
            P::Lit(l) => {
                if i < l.len() || !v[..i].ends_with(l) {
                    return None;
                }
                i -= l.len();
            }
        }
    }
    Some(i)
}

/// `:matches`: `*` is any run, `?` any one character, `\` quotes the next.
///
/// Returns `Err` when the match would cost more than [`MAX_MATCH_STEPS`].
pub(crate) fn wildcard(
    c: Comparator,
    value: &str,
    pattern: &str,
    captures: Option<&mut Vec<String>>,
) -> Result<bool, TooCostly> {
    let fold = |s: &str| -> Vec<u8> {
        match c {
            Comparator::AsciiCasemap => s.as_bytes().to_ascii_lowercase(),
            _ => s.as_bytes().to_vec(),
        }
    };
    // Segments between stars.
    let mut segs: Vec<Vec<P>> = Vec::new();
    let mut cur: Vec<P> = Vec::new();
    let mut lit = String::new();
    let mut it = pattern.chars();
    let flush = |cur: &mut Vec<P>, lit: &mut String| {
        if !lit.is_empty() {
            cur.push(P::Lit(fold(lit)));
            lit.clear();
        }
    };
    while let Some(ch) = it.next() {
        match ch {
            '*' => {
                flush(&mut cur, &mut lit);
                segs.push(std::mem::take(&mut cur));
            }
            '?' => {
                flush(&mut cur, &mut lit);
                cur.push(P::Any);
            }
            '\\' => {
                if let Some(n) = it.next() {
                    lit.push(n);
                }
            }
            _ => lit.push(ch),
        }
    }
    flush(&mut cur, &mut lit);
    segs.push(cur);
    let v = fold(value);
    let mut steps: u64 = 0;
    let n = segs.len();
    // Byte ranges of each segment's match.
    let mut spans = vec![(0usize, 0usize); n];
    if n == 1 {
        match seg_at(&segs[0], &v, 0, &mut steps) {
            Some(e) if e == v.len() => spans[0] = (0, e),
            _ => return Ok(false),
        }
    } else {
        let Some(first_end) = seg_at(&segs[0], &v, 0, &mut steps) else {
            return Ok(false);
        };
        spans[0] = (0, first_end);
        let Some(last_start) = seg_back(&segs[n - 1], &v, v.len()) else {
            return Ok(false);
        };
        if last_start < first_end {
            return Ok(false);
        }
        spans[n - 1] = (last_start, v.len());
        let mut pos = first_end;
        for k in 1..n - 1 {
            let seg = &segs[k];
            let found = match seg.as_slice() {
                [] => Some((pos, pos)),
                [P::Lit(l)] => {
                    steps += (last_start - pos) as u64;
                    memchr::memmem::find(&v[pos..last_start], l)
                        .map(|i| (pos + i, pos + i + l.len()))
                }
                _ => {
                    let mut at = pos;
                    let mut hit = None;
                    while at < last_start {
                        if steps > MAX_MATCH_STEPS {
                            return Err(TooCostly);
                        }
                        if (v[at] & 0xC0) != 0x80
                            && let Some(e) = seg_at(seg, &v, at, &mut steps)
                            && e <= last_start
                        {
                            hit = Some((at, e));
                            break;
                        }
                        at += 1;
                    }
                    hit
                }
            };
            let Some(span) = found else {
                return Ok(false);
            };
            spans[k] = span;
            pos = span.1;
        }
    }
    if let Some(caps) = captures {
        // Offsets are the same in the folded and the original value (only
        // ASCII letters change), and fall on character boundaries.
        let text = |a: usize, b: usize| value.get(a..b).unwrap_or("").to_string();
        caps.clear();
        caps.push(value.to_string());
        for k in 0..n {
            if k > 0 {
                caps.push(text(spans[k - 1].1, spans[k].0));
            }
            let mut i = spans[k].0;
            for p in &segs[k] {
                match p {
                    P::Any => {
                        let l = char_len(v[i]);
                        caps.push(text(i, i + l));
                        i += l;
                    }
                    P::Lit(l) => i += l.len(),
                }
            }
        }
    }
    Ok(true)
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
        wildcard(Comparator::AsciiCasemap, v, p, Some(&mut caps))
            .unwrap()
            .then_some(caps)
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
        // Long literal segments: linear search, not value x segment.
        let seg = format!("{}b", "a".repeat(100_000));
        let value = "a".repeat(1_000_000);
        assert!(m(&value, &format!("*{seg}*")).is_none());
        // A segment with "?" that would need value x segment steps stops.
        let seg = format!("?{}b", "a".repeat(100_000));
        let r = wildcard(Comparator::Octet, &value, &format!("*{seg}*"), None);
        assert_eq!(r, Err(TooCostly));
    }

    #[test]
    fn multibyte() {
        assert_eq!(m("Réunion", "??*").unwrap(), ["Réunion", "R", "é", "union"]);
        assert_eq!(m("Réunion", "*?n").unwrap(), ["Réunion", "Réuni", "o"]);
        assert_eq!(m("日本語", "?本?").unwrap(), ["日本語", "日", "語"]);
        assert!(m("ÉCOLE", "é*").is_none());
        assert!(m("ECOLE", "e*").is_some());
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
