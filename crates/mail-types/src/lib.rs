//! Validated domain newtypes shared by every service.
//!
//! Pure: no I/O, no async, no protocol framing. A value of these types has
//! been validated once, at the edge, so the code behind never re-checks it.

use std::fmt;

pub mod imap_url;

/// A mail address `local@domain` as used for accounts and envelope
/// recipients (RFC 5321 4.1.2 `Mailbox`). The domain is stored lower-case;
/// the local part keeps its case but compares case-insensitively for
/// account lookup (as every common server does).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address is longer than 254 octets")]
    TooLong,
    #[error("address needs exactly one '@' between a local part and a domain")]
    Shape,
    #[error("local part is longer than 64 octets")]
    LocalTooLong,
    #[error("address contains a control character, space or angle bracket")]
    BadCharacter,
    #[error("domain is not a valid host name")]
    BadDomain,
}

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if s.len() > 254 {
            return Err(AddressError::TooLong);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(AddressError::Shape)?;
        if local.is_empty() || domain.is_empty() {
            return Err(AddressError::Shape);
        }
        if local.len() > 64 {
            return Err(AddressError::LocalTooLong);
        }
        if s.chars()
            .any(|c| c.is_control() || c == ' ' || c == '<' || c == '>')
        {
            return Err(AddressError::BadCharacter);
        }
        let domain = Domain::parse(domain).map_err(|_| AddressError::BadDomain)?;
        Ok(Self(format!(
            "{}@{}",
            local.to_lowercase(),
            domain.as_str()
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or("")
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A DNS domain we host mail for, lower-case, without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid domain name: {0:?}")]
pub struct DomainError(pub String);

impl Domain {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let d = s.trim().trim_end_matches('.').to_lowercase();
        let ok = !d.is_empty()
            && d.len() <= 253
            && d.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
            });
        if ok {
            Ok(Self(d))
        } else {
            Err(DomainError(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mailbox (folder) name: UTF-8, hierarchy separator `/`, `INBOX`
/// case-insensitive and always spelled `INBOX`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxName(String);

/// The hierarchy separator of mailbox names.
pub const HIERARCHY_SEPARATOR: char = '/';
/// Longest mailbox name accepted, in octets.
pub const MAX_MAILBOX_NAME: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxNameError {
    #[error("mailbox name is empty")]
    Empty,
    #[error("mailbox name is longer than {MAX_MAILBOX_NAME} octets")]
    TooLong,
    #[error("mailbox name has an empty hierarchy level")]
    EmptyLevel,
    #[error("mailbox name contains a control character")]
    Control,
    #[error("mailbox name contains a wildcard (* or %)")]
    Wildcard,
}

impl MailboxName {
    pub fn parse(s: &str) -> Result<Self, MailboxNameError> {
        if s.is_empty() {
            return Err(MailboxNameError::Empty);
        }
        if s.len() > MAX_MAILBOX_NAME {
            return Err(MailboxNameError::TooLong);
        }
        if s.chars().any(char::is_control) {
            return Err(MailboxNameError::Control);
        }
        if s.contains(['*', '%']) {
            return Err(MailboxNameError::Wildcard);
        }
        if s.split(HIERARCHY_SEPARATOR).any(str::is_empty) {
            return Err(MailboxNameError::EmptyLevel);
        }
        // RFC 9051 5.1: INBOX is case-insensitive, also as a parent.
        let mut levels = s.split(HIERARCHY_SEPARATOR);
        let first = levels.next().unwrap_or("");
        if first.eq_ignore_ascii_case("INBOX") {
            let rest: Vec<&str> = levels.collect();
            let mut name = String::from("INBOX");
            for l in rest {
                name.push(HIERARCHY_SEPARATOR);
                name.push_str(l);
            }
            return Ok(Self(name));
        }
        Ok(Self(s.to_string()))
    }

    pub fn inbox() -> Self {
        Self("INBOX".to_string())
    }

    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent names, outermost first (`a/b/c` -> `a`, `a/b`).
    pub fn ancestors(&self) -> Vec<MailboxName> {
        self.0
            .char_indices()
            .filter(|&(_, c)| c == HIERARCHY_SEPARATOR)
            .map(|(i, _)| MailboxName(self.0[..i].to_string()))
            .collect()
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The five permanent system flags of RFC 9051 2.3.2 (`\Recent` is
/// per-session and never stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SystemFlag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
}

impl SystemFlag {
    pub const ALL: [SystemFlag; 5] = [
        SystemFlag::Seen,
        SystemFlag::Answered,
        SystemFlag::Flagged,
        SystemFlag::Deleted,
        SystemFlag::Draft,
    ];

    /// The bit this flag occupies in the stored flag set.
    pub const fn bit(self) -> i64 {
        match self {
            SystemFlag::Seen => 1,
            SystemFlag::Answered => 2,
            SystemFlag::Flagged => 4,
            SystemFlag::Deleted => 8,
            SystemFlag::Draft => 16,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            SystemFlag::Seen => "\\Seen",
            SystemFlag::Answered => "\\Answered",
            SystemFlag::Flagged => "\\Flagged",
            SystemFlag::Deleted => "\\Deleted",
            SystemFlag::Draft => "\\Draft",
        }
    }

    /// Case-insensitive, with the backslash.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
    }
}

/// Longest keyword accepted, in octets.
pub const MAX_KEYWORD: usize = 128;

/// Validates an IMAP keyword (an `atom`, RFC 9051 `flag-keyword`).
pub fn is_valid_keyword(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_KEYWORD
        && s.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        })
}

/// A set of UIDs as sorted, non-overlapping inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UidSetRanges(Vec<(u32, u32)>);

impl UidSetRanges {
    /// Normalises any ranges (reversed bounds allowed) into sorted, merged form.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let mut v: Vec<(u32, u32)> = ranges
            .into_iter()
            .map(|(a, b)| if a <= b { (a, b) } else { (b, a) })
            .collect();
        v.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Self(out)
    }

    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, uid: u32) -> bool {
        self.0
            .binary_search_by(|&(a, b)| {
                if uid < a {
                    std::cmp::Ordering::Greater
                } else if uid > b {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = EmailAddress::parse(" Alice@Example.COM ").unwrap();
        assert_eq!(a.as_str(), "alice@example.com");
        assert_eq!(a.local_part(), "alice");
        assert_eq!(a.domain(), "example.com");
        assert_eq!(
            EmailAddress::parse("a@b@c.org").unwrap().local_part(),
            "a@b"
        );
        assert_eq!(EmailAddress::parse("nope"), Err(AddressError::Shape));
        assert_eq!(EmailAddress::parse("@x.org"), Err(AddressError::Shape));
        assert_eq!(
            EmailAddress::parse("a b@x.org"),
            Err(AddressError::BadCharacter)
        );
        assert_eq!(
            EmailAddress::parse("a@-x.org"),
            Err(AddressError::BadDomain)
        );
        assert_eq!(
            EmailAddress::parse("a@x..org"),
            Err(AddressError::BadDomain)
        );
    }

    #[test]
    fn mailbox_names() {
        assert_eq!(MailboxName::parse("inbox").unwrap().as_str(), "INBOX");
        assert_eq!(MailboxName::parse("InBox/x").unwrap().as_str(), "INBOX/x");
        assert_eq!(MailboxName::parse("INBOXES").unwrap().as_str(), "INBOXES");
        assert_eq!(
            MailboxName::parse("a//b"),
            Err(MailboxNameError::EmptyLevel)
        );
        assert_eq!(MailboxName::parse("/a"), Err(MailboxNameError::EmptyLevel));
        assert_eq!(MailboxName::parse("a*"), Err(MailboxNameError::Wildcard));
        assert_eq!(MailboxName::parse("a\u{0}"), Err(MailboxNameError::Control));
        let anc: Vec<String> = MailboxName::parse("a/b/c")
            .unwrap()
            .ancestors()
            .into_iter()
            .map(|m| m.to_string())
            .collect();
        assert_eq!(anc, ["a", "a/b"]);
        assert_eq!(MailboxName::parse("Entwürfe").unwrap().as_str(), "Entwürfe");
    }

    #[test]
    fn flags_and_keywords() {
        assert_eq!(SystemFlag::parse("\\seen"), Some(SystemFlag::Seen));
        assert_eq!(SystemFlag::parse("\\Recent"), None);
        assert!(is_valid_keyword("$Forwarded"));
        assert!(!is_valid_keyword("a b"));
        assert!(!is_valid_keyword("\\Seen"));
    }

    #[test]
    fn uid_sets_merge_and_search() {
        let s = UidSetRanges::from_ranges([(5, 3), (7, 9), (6, 6), (20, 20)]);
        assert_eq!(s.ranges(), &[(3, 9), (20, 20)]);
        assert!(s.contains(3) && s.contains(9) && s.contains(20));
        assert!(!s.contains(2) && !s.contains(10) && !s.contains(21));
        let full = UidSetRanges::from_ranges([(1, u32::MAX), (5, 6)]);
        assert_eq!(full.ranges(), &[(1, u32::MAX)]);
    }
}
