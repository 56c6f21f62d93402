//! IMAP URLs (RFC 5092) naming a message or part of one, and their
//! URLAUTH-authorized form (RFC 4467 2, RFC 5092 3): shared by the IMAP
//! gateway (CATENATE, GENURLAUTH, URLFETCH) and the store, which checks a
//! URLAUTH against the mailbox's access key on its own reading of the URL.

/// Who may fetch a URLAUTH-authorized URL (RFC 4467 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `anonymous`: anyone, logged in or not.
    Anonymous,
    /// `authuser`: any user logged in to this server.
    AuthUser,
    /// `user+name`: only that user.
    User(String),
    /// `submit+name`: only a submission server acting for that user.
    Submit(String),
}

/// The URLAUTH part of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlAuth {
    /// `;EXPIRE=` as Unix seconds.
    pub expire: Option<i64>,
    pub access: Access,
    /// Bytes of the URL up to and including the access identifier: the
    /// URL "rump" the verifier is computed over (RFC 4467 2.1).
    pub rump_len: usize,
    /// `:mechanism:token`, absent in a rump.
    pub verifier: Option<(String, String)>,
}

/// What an IMAP URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapUrl {
    /// The user of `imap://user@host/`, percent-decoded; `None` in a
    /// relative URL (`/mailbox/;UID=n`).
    pub user: Option<String>,
    /// The host of `imap://user@host[:port]/`, without the port;
    /// `None` in a relative URL.
    pub host: Option<String>,
    /// The mailbox name, percent-decoded (UTF-8 per RFC 5092 9, or
    /// modified UTF-7 from older clients).
    pub mailbox: Vec<u8>,
    pub uid_validity: Option<u32>,
    pub uid: u32,
    pub section: Option<String>,
    pub partial: Option<(u32, Option<u32>)>,
    pub urlauth: Option<UrlAuth>,
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn decoded_user(s: &str) -> Option<String> {
    String::from_utf8(percent_decode(s)?)
        .ok()
        .filter(|u| !u.is_empty())
}

/// Finds `key` (ASCII, compared without case) in `s`, the last one.
fn rfind_ci(s: &str, key: &str) -> Option<usize> {
    s.to_ascii_lowercase().rfind(&key.to_ascii_lowercase())
}

fn parse_access(a: &str) -> Option<Access> {
    let lower = a.to_ascii_lowercase();
    if lower == "anonymous" {
        Some(Access::Anonymous)
    } else if lower == "authuser" {
        Some(Access::AuthUser)
    } else if lower.starts_with("user+") {
        decoded_user(&a[5..]).map(Access::User)
    } else if lower.starts_with("submit+") {
        decoded_user(&a[7..]).map(Access::Submit)
    } else {
        None
    }
}

/// Parses an absolute (`imap://user@host/...`) or relative (`/...`) IMAP
/// URL naming a message or a part of one; `None` for anything else.
///
/// ```text
/// imap://user@host/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=o[.l]]
///     [;EXPIRE=date-time;URLAUTH=access[:mechanism:token]]
/// ```
pub fn parse(url: &str) -> Option<ImapUrl> {
    if url.len() > 8192 || !url.is_ascii() {
        return None;
    }
    let (user, host, path) = match url.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("imap://") => {
            let (authority, path) = url[7..].split_once('/')?;
            let (user, host) = match authority.rsplit_once('@') {
                // `;AUTH=` after the user is not ours to check.
                Some((userinfo, host)) => (Some(decoded_user(userinfo.split(';').next()?)?), host),
                None => (None, authority),
            };
            (user, Some(without_port(host).to_string()), path)
        }
        _ => (None, None, url.strip_prefix('/')?),
    };
    let path_start = url.len() - path.len();
    // The URLAUTH part, then EXPIRE before it, end the last component.
    let (path, urlauth) = match rfind_ci(path, ";URLAUTH=") {
        Some(i) => {
            let auth = &path[i + 9..];
            let (access, verifier) = match auth.split_once(':') {
                Some((a, v)) => {
                    let (mech, token) = v.split_once(':')?;
                    let ok = !mech.is_empty()
                        && token.len() >= 32
                        && token.bytes().all(|b| b.is_ascii_hexdigit());
                    if !ok {
                        return None;
                    }
                    (a, Some((mech.to_string(), token.to_string())))
                }
                None => (auth, None),
            };
            let access = parse_access(access)?;
            let rump_len = path_start + i + 9 + auth.len()
                - verifier.as_ref().map_or(0, |(m, t)| m.len() + t.len() + 2);
            let mut rest = &path[..i];
            let expire = match rfind_ci(rest, ";EXPIRE=") {
                Some(j) => {
                    let when = chrono::DateTime::parse_from_rfc3339(&rest[j + 8..]).ok()?;
                    rest = &rest[..j];
                    Some(when.timestamp())
                }
                None => None,
            };
            (
                rest,
                Some(UrlAuth {
                    expire,
                    access,
                    rump_len,
                    verifier,
                }),
            )
        }
        None => (path, None),
    };
    // An authorized URL names its owner (RFC 5092 authimapurl).
    if urlauth.is_some() && user.is_none() {
        return None;
    }
    let mut pieces = path.split("/;");
    let first = pieces.next()?;
    let (mbox, validity) = match rfind_ci(first, ";UIDVALIDITY=") {
        Some(i) => (
            &first[..i],
            Some(first[i + 13..].parse::<u32>().ok().filter(|&v| v > 0)?),
        ),
        None => (first, None),
    };
    if mbox.is_empty() || mbox.contains(';') {
        return None;
    }
    let mut u = ImapUrl {
        user,
        host,
        mailbox: percent_decode(mbox)?,
        uid_validity: validity,
        uid: 0,
        section: None,
        partial: None,
        urlauth,
    };
    for p in pieces {
        let (k, v) = p.split_once('=')?;
        match k.to_ascii_uppercase().as_str() {
            "UID" if u.uid == 0 => u.uid = v.parse().ok().filter(|&n| n > 0)?,
            "SECTION" if u.section.is_none() && u.uid != 0 => {
                u.section = Some(String::from_utf8(percent_decode(v)?).ok()?);
            }
            "PARTIAL" if u.partial.is_none() && u.uid != 0 => {
                u.partial = Some(match v.split_once('.') {
                    Some((o, l)) => (o.parse().ok()?, Some(l.parse().ok().filter(|&l| l > 0)?)),
                    None => (v.parse().ok()?, None),
                });
            }
            _ => return None,
        }
    }
    (u.uid != 0).then_some(u)
}

/// `host[:port]` without the port (`[v6]:port` keeps its brackets).
fn without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']')) =>
        {
            h
        }
        _ => host,
    }
}

/// `name` as a full address: as it is when it has an `@`, else with
/// `@domain` added; `None` when that gives no `local@domain`.
fn qualified(name: &str, domain: Option<&str>) -> Option<String> {
    let full = if name.contains('@') {
        name.to_string()
    } else {
        format!("{name}@{}", domain.filter(|d| !d.is_empty())?)
    };
    let (local, domain) = full.rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then_some(full)
}

impl ImapUrl {
    /// The account (its full address) the URL's user names, for a server
    /// whose accounts are `local@domain` (virtual domains). RFC 5092's
    /// `iuserinfo` cannot hold a bare `@`, so a user writes either:
    ///
    /// * the whole address percent-encoded, on any host:
    ///   `imap://joe%40example.com@imap.example.net/...` (an unencoded
    ///   `joe@example.com@host` is read the same way);
    /// * the local part, with the account's own domain as the host:
    ///   `imap://joe@example.com/...`.
    ///
    /// `None` for a relative URL, or one with neither form. The caller
    /// compares the result with the account's address without case.
    pub fn owner(&self) -> Option<String> {
        qualified(self.user.as_deref()?, self.host.as_deref())
    }

    /// The account an access identifier's user (`user+name`,
    /// `submit+name`, RFC 4467 3) names, by the same rule: `name` when it
    /// is a full address (`user+joe@example.com`,
    /// `user+joe%40example.com`), else `name` in the domain of the URL's
    /// owner (`user+joe` in a URL of `ann@example.com`'s is
    /// `joe@example.com`).
    pub fn access_user(&self, name: &str) -> Option<String> {
        let owner = self.owner();
        let domain = owner
            .as_deref()
            .and_then(|o| o.rsplit_once('@'))
            .map(|(_, d)| d);
        qualified(name, domain)
    }

    /// The mailbox as a name: UTF-8, with INBOX in any case as `INBOX`.
    pub fn mailbox_name(&self) -> Option<String> {
        let name = String::from_utf8(self.mailbox.clone()).ok()?;
        Some(if name.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_string()
        } else {
            name
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls() {
        let u = parse("/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=1.2/;PARTIAL=0.10").unwrap();
        assert_eq!(
            (
                u.user,
                u.mailbox,
                u.uid_validity,
                u.uid,
                u.section,
                u.partial
            ),
            (
                None,
                b"INBOX".to_vec(),
                Some(7),
                20,
                Some("1.2".into()),
                Some((0, Some(10)))
            )
        );
        let u = parse("imap://a%40x@mail.example/My%20Box/;uid=3").unwrap();
        assert_eq!(
            (u.user.as_deref(), u.mailbox, u.uid),
            (Some("a@x"), b"My Box".to_vec(), 3)
        );
        for bad in [
            "/INBOX",
            "/INBOX/;UID=0",
            "/INBOX;UIDVALIDITY=x/;UID=3",
            "INBOX/;UID=3",
            "/INBOX/;SECTION=1",
            "/INBOX/;UID=3/;UID=4",
            "/IN%zzBOX/;UID=3",
            "/INBOX/;UID=3;URLAUTH=anonymous",
            "imap://a@h/INBOX/;UID=3;URLAUTH=nobody",
            "imap://a@h/INBOX/;UID=3;URLAUTH=anonymous:internal:abc",
            "imap://a@h/INBOX/;UID=3;EXPIRE=yesterday;URLAUTH=anonymous",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    /// RFC 5092 3.2 (iuserinfo and host) for accounts named
    /// `local@domain`: the percent-encoded address on any host, or the
    /// local part on the account's own domain; the same for RFC 4467 3's
    /// `user+name` access identifiers.
    #[test]
    fn owners_of_virtual_domain_urls() {
        for (url, owner) in [
            (
                "imap://testuser1@example.test/imaptest/;uid=1",
                Some("testuser1@example.test"),
            ),
            (
                "imap://testuser1@example.test:143/imaptest/;uid=1",
                Some("testuser1@example.test"),
            ),
            (
                "imap://joe%40example.com@imap.example.net/INBOX/;uid=1",
                Some("joe@example.com"),
            ),
            (
                "imap://joe%40example.com@[::1]:993/INBOX/;uid=1",
                Some("joe@example.com"),
            ),
            (
                "imap://joe@example.com@imap.example.net/INBOX/;uid=1",
                Some("joe@example.com"),
            ),
            (
                "imap://joe;AUTH=*@example.com/INBOX/;uid=1",
                Some("joe@example.com"),
            ),
            ("imap://example.com/INBOX/;uid=1", None),
            ("/INBOX/;uid=1", None),
        ] {
            let u = parse(url).unwrap();
            assert_eq!(u.owner().as_deref(), owner, "{url}");
        }
        assert_eq!(
            parse("imap://joe@[::1]:143/INBOX/;uid=1")
                .unwrap()
                .host
                .as_deref(),
            Some("[::1]")
        );
        let u = parse(
            "imap://testuser1@example.test/imaptest/;uid=1;urlauth=user+testuser1@example.test",
        )
        .unwrap();
        let Some(UrlAuth {
            access: Access::User(who),
            ..
        }) = &u.urlauth
        else {
            panic!("{u:?}");
        };
        assert_eq!(
            u.access_user(who).as_deref(),
            Some("testuser1@example.test")
        );
        assert_eq!(u.access_user("bob").as_deref(), Some("bob@example.test"));
        assert_eq!(u.access_user("bob@x.org").as_deref(), Some("bob@x.org"));
        assert_eq!(u.access_user("@x.org"), None);
        let r = parse("/INBOX/;uid=1").unwrap();
        assert_eq!(r.access_user("bob"), None);
    }

    /// RFC 4467 2.1's example, and the rump the verifier covers.
    #[test]
    fn urlauth_urls() {
        let rump = "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred";
        let full = format!("{rump}:internal:91354a473744909de610943775f92038");
        let u = parse(&full).unwrap();
        let a = u.urlauth.clone().unwrap();
        assert_eq!(&full[..a.rump_len], rump);
        assert_eq!(a.access, Access::Submit("fred".into()));
        assert_eq!(
            a.verifier,
            Some(("internal".into(), "91354a473744909de610943775f92038".into()))
        );
        assert_eq!((u.uid, u.section.as_deref()), (20, Some("1.2")));
        let r = parse(rump).unwrap();
        assert_eq!(r.urlauth.unwrap().rump_len, rump.len());
        let e = parse(
            "imap://joe@h/INBOX;UIDVALIDITY=9/;UID=1;EXPIRE=2026-01-01T00:00:00Z;URLAUTH=user+ann%40x",
        )
        .unwrap();
        let a = e.urlauth.unwrap();
        assert_eq!(a.expire, Some(1_767_225_600));
        assert_eq!(a.access, Access::User("ann@x".into()));
        assert_eq!((e.uid_validity, e.uid), (Some(9), 1));
        assert_eq!(
            parse("imap://joe@h/INBOX/;UID=1;URLAUTH=AUTHUSER")
                .unwrap()
                .urlauth
                .unwrap()
                .access,
            Access::AuthUser
        );
    }
}
