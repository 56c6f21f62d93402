//! The `store_url` setting every caller of the store shares: one or more
//! store replicas, comma-separated, each either a URL or a DNS name that is
//! resolved again and again (a Kubernetes headless Service):
//!
//! ```text
//! store_url = entry *( "," entry )      ; spaces around entries are ignored
//! entry     = ( "http" / "https" ) "://" host [ ":" port ] [ "/" ]
//!           / "dns:///" name ":" port   ; every address `name` resolves to
//! ```
//!
//! A single URL (`http://127.0.0.1:50051`) means one replica, as it always
//! did.

use std::fmt;

use tonic::codegen::http::Uri;

/// One entry of `store_url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreTarget {
    /// A replica at a fixed address (`http://host:port` or `https://...`).
    Url(Uri),
    /// Every address `name` resolves to, each a replica listening on
    /// `port` (plain HTTP/2), followed as the name's addresses change.
    Dns {
        /// The host name (or an IP literal, IPv6 without brackets).
        name: String,
        port: u16,
    },
}

impl fmt::Display for StoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreTarget::Url(u) => write!(f, "{u}"),
            StoreTarget::Dns { name, port } if name.contains(':') => {
                write!(f, "dns:///[{name}]:{port}")
            }
            StoreTarget::Dns { name, port } => write!(f, "dns:///{name}:{port}"),
        }
    }
}

/// A `store_url` that cannot be used; the message says which entry and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreUrlError {
    #[error(
        "store_url is empty: give http(s)://HOST:PORT or dns:///NAME:PORT entries, \
         comma-separated"
    )]
    Empty,
    #[error("store_url entry {position} is empty (a doubled or trailing comma?)")]
    EmptyEntry {
        /// 1-based.
        position: usize,
    },
    #[error("store_url entry {entry:?}: {reason}")]
    Invalid { entry: String, reason: String },
}

fn invalid(entry: &str, reason: impl Into<String>) -> StoreUrlError {
    StoreUrlError::Invalid {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// Parses `store_url` into its entries, in order, duplicates removed.
pub fn parse_store_url(s: &str) -> Result<Vec<StoreTarget>, StoreUrlError> {
    if s.trim().is_empty() {
        return Err(StoreUrlError::Empty);
    }
    let mut out: Vec<StoreTarget> = Vec::new();
    for (i, raw) in s.split(',').enumerate() {
        let entry = raw.trim();
        if entry.is_empty() {
            return Err(StoreUrlError::EmptyEntry { position: i + 1 });
        }
        let t = parse_entry(entry)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn parse_entry(entry: &str) -> Result<StoreTarget, StoreUrlError> {
    if let Some(rest) = strip_prefix_ignore_case(entry, "dns:") {
        return parse_dns(entry, rest);
    }
    let uri: Uri = entry
        .parse()
        .map_err(|e| invalid(entry, format!("not a URL ({e})")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(invalid(
                entry,
                format!("scheme {other:?}: use http://, https:// or dns:///"),
            ));
        }
        None => {
            return Err(invalid(
                entry,
                "no scheme: write http://HOST:PORT (or dns:///NAME:PORT)",
            ));
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid(entry, "no host"));
    };
    if authority.host().is_empty() {
        return Err(invalid(entry, "no host"));
    }
    if authority.as_str().contains('@') {
        return Err(invalid(entry, "credentials in the URL are not supported"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid(entry, "a store URL has no path or query"));
    }
    Ok(StoreTarget::Url(uri))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `dns:///NAME:PORT` (gRPC's name syntax without a DNS server authority).
fn parse_dns(entry: &str, rest: &str) -> Result<StoreTarget, StoreUrlError> {
    let Some(hostport) = rest.strip_prefix("///") else {
        return Err(if rest.starts_with("//") {
            invalid(
                entry,
                "a DNS server in the URL is not supported: write dns:///NAME:PORT \
                 (three slashes; the system resolver is used)",
            )
        } else {
            invalid(entry, "write dns:///NAME:PORT (three slashes)")
        });
    };
    let (name, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let Some((name, port)) = v6.split_once("]:") else {
            return Err(invalid(entry, "write dns:///[IPV6]:PORT"));
        };
        (name, port)
    } else {
        let Some((name, port)) = hostport.rsplit_once(':') else {
            return Err(invalid(entry, "no port: write dns:///NAME:PORT"));
        };
        if name.contains(':') {
            return Err(invalid(entry, "an IPv6 address goes in brackets: [::1]"));
        }
        (name, port)
    };
    if name.is_empty() {
        return Err(invalid(entry, "no name: write dns:///NAME:PORT"));
    }
    let name_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if !name_ok {
        return Err(invalid(entry, format!("{name:?} is not a host name")));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| invalid(entry, format!("port {port:?} is not a number in 1-65535")))?;
    Ok(StoreTarget::Dns {
        name: name.to_string(),
        port,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn url(s: &str) -> StoreTarget {
        StoreTarget::Url(s.parse().unwrap())
    }

    #[test]
    fn accepts_urls_and_dns_names() {
        let cases: &[(&str, Vec<StoreTarget>)] = &[
            (
                "http://127.0.0.1:50051",
                vec![url("http://127.0.0.1:50051")],
            ),
            (
                " http://a:1 , https://b:2/ ",
                vec![url("http://a:1"), url("https://b:2/")],
            ),
            (
                "dns:///store-headless.mail.svc.cluster.local:50051",
                vec![StoreTarget::Dns {
                    name: "store-headless.mail.svc.cluster.local".into(),
                    port: 50051,
                }],
            ),
            (
                "DNS:///localhost:7,http://[::1]:8",
                vec![
                    StoreTarget::Dns {
                        name: "localhost".into(),
                        port: 7,
                    },
                    url("http://[::1]:8"),
                ],
            ),
            (
                "dns:///[::1]:9",
                vec![StoreTarget::Dns {
                    name: "::1".into(),
                    port: 9,
                }],
            ),
            // Duplicates are one replica.
            ("http://a:1,http://a:1", vec![url("http://a:1")]),
        ];
        for (input, want) in cases {
            assert_eq!(&parse_store_url(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn refuses_bad_input_with_a_clear_error() {
        let cases: &[(&str, &str)] = &[
            ("", "store_url is empty"),
            ("  ", "store_url is empty"),
            ("http://a:1,,http://b:2", "entry 2 is empty"),
            ("http://a:1,", "entry 2 is empty"),
            ("127.0.0.1:50051", "no scheme"),
            ("ftp://a:1", "scheme \"ftp\""),
            ("http://a:1/mailbox", "no path or query"),
            ("http://user:pw@a:1", "credentials"),
            ("http://a b:1", "not a URL"),
            ("dns://8.8.8.8/store:50051", "DNS server"),
            ("dns:store:50051", "three slashes"),
            ("dns:///store", "no port"),
            ("dns:///:50051", "no name"),
            ("dns:///store:http", "not a number"),
            ("dns:///store:0", "not a number"),
            ("dns:///store:70000", "not a number"),
            ("dns:///st/ore:1", "not a host name"),
            ("dns:///::1:5", "brackets"),
        ];
        for (input, want) in cases {
            let e = parse_store_url(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input:?}: {e:?} lacks {want:?}");
        }
    }

    #[test]
    fn displays_as_written() {
        for s in ["http://a:1/", "dns:///store:50051", "dns:///[::1]:9"] {
            let t = parse_store_url(s).unwrap();
            assert_eq!(t[0].to_string(), s);
        }
    }
}
