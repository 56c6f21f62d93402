//! Conversions between protobuf messages and `mail-types`.

use mail_types::{SystemFlag, UidSetRanges};

use crate::pb;

impl pb::Flags {
    /// Whether a system flag is set.
    pub fn has(&self, flag: SystemFlag) -> bool {
        match flag {
            SystemFlag::Seen => self.seen,
            SystemFlag::Answered => self.answered,
            SystemFlag::Flagged => self.flagged,
            SystemFlag::Deleted => self.deleted,
            SystemFlag::Draft => self.draft,
        }
    }

    pub fn set(&mut self, flag: SystemFlag, on: bool) {
        match flag {
            SystemFlag::Seen => self.seen = on,
            SystemFlag::Answered => self.answered = on,
            SystemFlag::Flagged => self.flagged = on,
            SystemFlag::Deleted => self.deleted = on,
            SystemFlag::Draft => self.draft = on,
        }
    }

    /// The system flags as the bit set of [`SystemFlag::bit`].
    pub fn bits(&self) -> i64 {
        SystemFlag::ALL
            .iter()
            .filter(|f| self.has(**f))
            .fold(0, |acc, f| acc | f.bit())
    }

    pub fn from_bits(bits: i64, keywords: Vec<String>) -> Self {
        let mut flags = pb::Flags {
            keywords,
            ..Default::default()
        };
        for f in SystemFlag::ALL {
            flags.set(f, bits & f.bit() != 0);
        }
        flags
    }
}

impl From<&UidSetRanges> for pb::UidSet {
    fn from(set: &UidSetRanges) -> Self {
        pb::UidSet {
            ranges: set
                .ranges()
                .iter()
                .map(|&(first, last)| pb::UidRange { first, last })
                .collect(),
        }
    }
}

impl From<&pb::UidSet> for UidSetRanges {
    fn from(set: &pb::UidSet) -> Self {
        UidSetRanges::from_ranges(set.ranges.iter().map(|r| (r.first, r.last)))
    }
}

impl pb::UidSet {
    /// A set holding exactly these UIDs.
    pub fn of(uids: impl IntoIterator<Item = u32>) -> Self {
        (&UidSetRanges::from_ranges(uids.into_iter().map(|u| (u, u)))).into()
    }
}
