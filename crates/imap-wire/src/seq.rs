//! Resolving sequence sets (RFC 9051 9: `sequence-set`) against the
//! current mailbox: "*" is the largest number in use, ranges may be given
//! backwards, and numbers outside the mailbox are ignored for UIDs and an
//! error for message sequence numbers.

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

/// The ranges of a set, with "*" replaced by `largest`, each ordered.
pub fn ranges(set: &SequenceSet, largest: u32) -> Vec<(u32, u32)> {
    let val = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0
        .as_ref()
        .iter()
        .map(|s| match s {
            Sequence::Single(x) => (val(x), val(x)),
            Sequence::Range(a, b) => {
                let (a, b) = (val(a), val(b));
                (a.min(b), a.max(b))
            }
        })
        .collect()
}

/// Message sequence numbers of a set, ascending and de-duplicated, or
/// `None` if it names a number beyond the mailbox (RFC 9051: BAD).
pub fn message_numbers(set: &SequenceSet, exists: u32) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for (a, b) in ranges(set, exists) {
        if b > exists || a == 0 {
            return None;
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// Positions (0-based) of the UIDs of `uids` (ascending) that fall in the
/// set. A UID set's "*" is the largest UID in the mailbox.
pub fn uid_positions(set: &SequenceSet, uids: &[u32]) -> Vec<usize> {
    let largest = uids.last().copied().unwrap_or(0);
    let mut rs = ranges(set, largest);
    // RFC 9051 6.4.8: "n:*" matches the largest UID even when n is larger.
    if let Some(last) = uids.last() {
        for r in &mut rs {
            if r.1 == largest && r.0 > largest {
                *r = (*last, *last);
            }
        }
    }
    let mut out = Vec::new();
    for (a, b) in rs {
        let start = uids.partition_point(|&u| u < a);
        let end = uids.partition_point(|&u| u <= b);
        out.extend(start..end);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The largest number a set names explicitly, ranges with "*" left out:
/// a UID a client can only have learned elsewhere (APPENDUID, COPYUID)
/// when it is at or above the UIDNEXT it was told.
pub fn largest_explicit(set: &SequenceSet) -> Option<u32> {
    set.0
        .as_ref()
        .iter()
        .filter_map(|s| match s {
            Sequence::Single(SeqOrUid::Value(v)) => Some(v.get()),
            Sequence::Range(SeqOrUid::Value(a), SeqOrUid::Value(b)) => Some(a.get().max(b.get())),
            _ => None,
        })
        .max()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set(s: &str) -> SequenceSet {
        s.parse().unwrap()
    }

    #[test]
    fn largest_explicit_leaves_out_asterisks() {
        assert_eq!(largest_explicit(&set("1:*")), None);
        assert_eq!(largest_explicit(&set("*")), None);
        assert_eq!(largest_explicit(&set("7")), Some(7));
        assert_eq!(largest_explicit(&set("9:3,12,20:*")), Some(12));
    }

    #[test]
    fn message_numbers_resolve() {
        assert_eq!(message_numbers(&set("1:*"), 3), Some(vec![1, 2, 3]));
        assert_eq!(message_numbers(&set("3:1,2"), 3), Some(vec![1, 2, 3]));
        assert_eq!(message_numbers(&set("*"), 3), Some(vec![3]));
        assert_eq!(message_numbers(&set("4"), 3), None);
        assert_eq!(message_numbers(&set("1:*"), 0), None);
    }

    #[test]
    fn uids_resolve() {
        let uids = [2, 5, 9, 10];
        assert_eq!(uid_positions(&set("1:*"), &uids), vec![0, 1, 2, 3]);
        assert_eq!(uid_positions(&set("3:9"), &uids), vec![1, 2]);
        assert_eq!(uid_positions(&set("20:*"), &uids), vec![3]);
        assert_eq!(uid_positions(&set("11"), &uids), Vec::<usize>::new());
        assert_eq!(uid_positions(&set("*"), &[]), Vec::<usize>::new());
    }
}
