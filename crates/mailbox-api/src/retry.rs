//! When a call that failed on one store replica may be sent to another:
//! what each RPC of `proto/mailbox/v1` is (one request message or a
//! client stream; safe to send twice or not), and what a transport error
//! tells about whether the request reached the replica at all.

use std::error::Error as StdError;

use prost::Message as _;

use crate::pb;

/// How one RPC may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The request is one message (unary or server streaming), buffered so
    /// it can be sent again. A client stream is never buffered.
    pub single: bool,
    /// Whether sending it twice does what sending it once does.
    pub safe: Safety,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Safety {
    /// Reads, and writes whose second application changes nothing.
    Safe,
    /// `StoreFlags`: safe unless CONDSTORE UNCHANGEDSINCE is set (a second
    /// try would report the first one's change as a conflict).
    StoreFlags,
    /// `AcquireMaildrop`: safe when the caller chose the lease id (taking
    /// a lease one holds again succeeds); a lease the store names is not.
    AcquireMaildrop,
    /// Creates, deletes, copies, moves, appends, leases: sent again only
    /// when it provably never left.
    Unsafe,
}

/// The RPCs whose request is a client stream: never buffered. Every RPC
/// not in another list is handled as one; a test checks against the proto
/// that these are exactly the client streams.
#[cfg(test)]
const CLIENT_STREAMING: &[&str] = &["/mailbox.v1.Delivery/Deliver", "/mailbox.v1.Mailbox/Append"];

/// RPCs that may be sent again after a connection broke mid-call: reads,
/// and writes that leave the same state however often they run (setting a
/// value, renewing or releasing a lease by id). `Deliver` is idempotent by
/// its delivery id too, but as a client stream it is retried only when
/// never sent.
///
/// `Select` and `Changes` may claim \Recent (RFC 3501 2.3.2): a second try
/// after a first that committed its claim shows those messages without
/// \Recent, which the RFC allows of a session that loses the race.
const SAFE: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/mailbox.v1.Delivery/CheckRecipient",
    "/mailbox.v1.Mailbox/Authenticate",
    "/mailbox.v1.Mailbox/AuthenticateToken",
    "/mailbox.v1.Mailbox/ScramBegin",
    "/mailbox.v1.Mailbox/ScramFinish",
    "/mailbox.v1.Mailbox/Logout",
    "/mailbox.v1.Mailbox/ListMailboxes",
    "/mailbox.v1.Mailbox/SetSubscribed",
    "/mailbox.v1.Mailbox/MailboxStatus",
    "/mailbox.v1.Mailbox/Select",
    "/mailbox.v1.Mailbox/Fetch",
    "/mailbox.v1.Mailbox/FetchBody",
    "/mailbox.v1.Mailbox/Search",
    "/mailbox.v1.Mailbox/Sort",
    "/mailbox.v1.Mailbox/Thread",
    "/mailbox.v1.Mailbox/MultiSearch",
    "/mailbox.v1.Mailbox/GetQuota",
    "/mailbox.v1.Mailbox/RenewMaildrop",
    "/mailbox.v1.Mailbox/ReleaseMaildrop",
    "/mailbox.v1.Mailbox/Changes",
    "/mailbox.v1.Mailbox/Watch",
    "/mailbox.v1.Mailbox/UrlFetch",
    "/mailbox.v1.Mailbox/WatchMailboxList",
    "/mailbox.v1.Mailbox/GetMetadata",
    "/mailbox.v1.Mailbox/SetMetadata",
    "/mailbox.v1.Admin/ListDomains",
    "/mailbox.v1.Admin/ListAccounts",
    "/mailbox.v1.Admin/SetPassword",
    "/mailbox.v1.Admin/SetQuota",
    "/mailbox.v1.Admin/SetAccountDisabled",
    "/mailbox.v1.Admin/ListAppPasswords",
    "/mailbox.v1.Admin/ListAliases",
    "/mailbox.v1.Admin/Stats",
    "/mailbox.v1.Admin/SetDomainOidc",
    "/mailbox.v1.Admin/GetDomainOidc",
    // The full-text index's progress, and marking every body for indexing
    // again (twice is once).
    "/mailbox.v1.Admin/FtsStatus",
    "/mailbox.v1.Admin/FtsRebuild",
    // Sieve: a script put or activated twice is the same script (its
    // version moves on, which only costs a cache a recompile).
    "/mailbox.v1.Sieve/PutScript",
    "/mailbox.v1.Sieve/GetScript",
    "/mailbox.v1.Sieve/ListScripts",
    "/mailbox.v1.Sieve/SetActive",
    "/mailbox.v1.Sieve/HaveSpace",
    "/mailbox.v1.Sieve/CheckScript",
    "/mailbox.v1.Sieve/GetActiveScript",
    // The outbox: completing or failing a row is done by its lease's
    // owner, once; done again, it changes nothing more.
    "/mailbox.v1.Delivery/CompleteOutbox",
    "/mailbox.v1.Delivery/FailOutbox",
];

/// The RPCs of the contract that are neither safe nor client streams
/// (listed so that an RPC added to the proto without a decision here is
/// caught by a test, and treated as a client stream until then).
const UNSAFE_SINGLE: &[&str] = &[
    "/mailbox.v1.Mailbox/CreateMailbox",
    "/mailbox.v1.Mailbox/DeleteMailbox",
    "/mailbox.v1.Mailbox/RenameMailbox",
    "/mailbox.v1.Mailbox/Copy",
    "/mailbox.v1.Mailbox/Move",
    "/mailbox.v1.Mailbox/Expunge",
    "/mailbox.v1.Mailbox/GenUrlAuth",
    "/mailbox.v1.Mailbox/ResetUrlAuthKeys",
    "/mailbox.v1.Admin/AddDomain",
    "/mailbox.v1.Admin/DeleteDomain",
    "/mailbox.v1.Admin/AddAccount",
    "/mailbox.v1.Admin/DeleteAccount",
    "/mailbox.v1.Admin/AddAppPassword",
    "/mailbox.v1.Admin/RevokeAppPassword",
    "/mailbox.v1.Admin/AddAlias",
    "/mailbox.v1.Admin/DeleteAlias",
    "/mailbox.v1.Admin/OpenSession",
    "/mailbox.v1.Admin/CollectGarbage",
    "/mailbox.v1.Sieve/DeleteScript",
    "/mailbox.v1.Sieve/RenameScript",
    // A claim whose answer is lost leases rows nobody sends until the
    // lease runs out; sent again, it would lease more.
    "/mailbox.v1.Delivery/ClaimOutbox",
];

const STORE_FLAGS: &str = "/mailbox.v1.Mailbox/StoreFlags";
const ACQUIRE_MAILDROP: &str = "/mailbox.v1.Mailbox/AcquireMaildrop";

/// The retry policy of the RPC at `path`. An unknown path is handled as a
/// client stream that is not safe: sent again only if it never left.
pub(crate) fn policy(path: &str) -> Policy {
    if path == STORE_FLAGS {
        Policy {
            single: true,
            safe: Safety::StoreFlags,
        }
    } else if path == ACQUIRE_MAILDROP {
        Policy {
            single: true,
            safe: Safety::AcquireMaildrop,
        }
    } else if SAFE.contains(&path) {
        Policy {
            single: true,
            safe: Safety::Safe,
        }
    } else if UNSAFE_SINGLE.contains(&path) {
        Policy {
            single: true,
            safe: Safety::Unsafe,
        }
    } else {
        Policy {
            single: false,
            safe: Safety::Unsafe,
        }
    }
}

impl Safety {
    /// Whether the buffered request (one gRPC length-prefixed message) may
    /// be sent again after it may have been processed.
    pub(crate) fn allows_resend(self, framed: &[u8]) -> bool {
        match self {
            Safety::Safe => true,
            Safety::Unsafe => false,
            Safety::StoreFlags => match framed {
                // Uncompressed flag, 4-byte length, the message.
                [0, _, _, _, _, msg @ ..] => {
                    pb::StoreFlagsRequest::decode(msg).is_ok_and(|r| r.unchanged_since == 0)
                }
                _ => false,
            },
            Safety::AcquireMaildrop => match framed {
                [0, _, _, _, _, msg @ ..] => {
                    pb::AcquireMaildropRequest::decode(msg).is_ok_and(|r| !r.lease_id.is_empty())
                }
                _ => false,
            },
        }
    }
}

/// What a failed call tells about its replica and its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The request never reached the replica (no connection, refused
    /// stream, or a stream the server's GOAWAY said it did not process).
    NotSent { replica_down: bool },
    /// The connection broke after the request may have been sent.
    MaybeSent,
    /// The caller's own deadline: not the replica's fault, never retried.
    Deadline,
}

/// Reads a transport error's chain of causes.
pub(crate) fn classify(err: &(dyn StdError + 'static)) -> Failure {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return Failure::NotSent { replica_down: true };
        }
        if e.is::<tonic::TimeoutExpired>() {
            return Failure::Deadline;
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && h.is_canceled()
        {
            // hyper gives the request back unsent: the connection was
            // closed or not ready when it was dispatched.
            return Failure::NotSent { replica_down: true };
        }
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            if h2.is_remote() && h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                // RFC 9113 8.7: no application processing happened.
                return Failure::NotSent {
                    replica_down: false,
                };
            }
            if h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR) {
                // A graceful GOAWAY fails only the streams above the last
                // one it will process (RFC 9113 6.8).
                return Failure::NotSent { replica_down: true };
            }
        }
        source = e.source();
    }
    Failure::MaybeSent
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every RPC of the contract has a decision; a new one fails here
    /// until it is put in one of the lists.
    #[test]
    fn every_rpc_of_the_proto_has_a_policy() {
        let proto = include_str!("../../../proto/mailbox/v1/mailbox.proto");
        let mut service = "";
        let mut n = 0;
        for line in proto.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix("service ") {
                service = s.trim_end_matches('{').trim();
            } else if let Some(rpc) = line.strip_prefix("rpc ") {
                let name = &rpc[..rpc.find('(').unwrap()];
                let path = format!("/mailbox.v1.{service}/{name}");
                let streaming_in = rpc.split(" returns").next().unwrap().contains("(stream ");
                let listed = [
                    SAFE,
                    UNSAFE_SINGLE,
                    CLIENT_STREAMING,
                    &[STORE_FLAGS],
                    &[ACQUIRE_MAILDROP],
                ]
                .iter()
                .filter(|l| l.contains(&path.as_str()))
                .count();
                assert_eq!(listed, 1, "{path} must be in exactly one list");
                assert_eq!(
                    CLIENT_STREAMING.contains(&path.as_str()),
                    streaming_in,
                    "{path}: client streaming is {streaming_in}"
                );
                n += 1;
            }
        }
        assert!(n > 50, "only {n} RPCs read from the proto");
    }

    #[test]
    fn store_flags_is_safe_only_without_unchanged_since() {
        let frame = |r: pb::StoreFlagsRequest| {
            let msg = r.encode_to_vec();
            let mut f = vec![0];
            f.extend((msg.len() as u32).to_be_bytes());
            f.extend(msg);
            f
        };
        let plain = frame(pb::StoreFlagsRequest {
            mailbox: "INBOX".into(),
            ..Default::default()
        });
        let conditional = frame(pb::StoreFlagsRequest {
            mailbox: "INBOX".into(),
            unchanged_since: 7,
            ..Default::default()
        });
        let p = policy(STORE_FLAGS);
        assert!(p.single);
        assert!(p.safe.allows_resend(&plain));
        assert!(!p.safe.allows_resend(&conditional));
        // Compressed or cut short: not decoded, not resent.
        let mut compressed = plain.clone();
        compressed[0] = 1;
        assert!(!p.safe.allows_resend(&compressed));
        assert!(!p.safe.allows_resend(&plain[..3]));
    }

    #[test]
    fn acquire_maildrop_is_safe_only_with_the_callers_lease_id() {
        let frame = |r: pb::AcquireMaildropRequest| {
            let msg = r.encode_to_vec();
            let mut f = vec![0];
            f.extend((msg.len() as u32).to_be_bytes());
            f.extend(msg);
            f
        };
        let named = frame(pb::AcquireMaildropRequest {
            lease_id: "0f6c1b1e-8c53-4b7e-9a55-0c2b6f3e9d11".into(),
            ..Default::default()
        });
        let unnamed = frame(pb::AcquireMaildropRequest::default());
        let p = policy(ACQUIRE_MAILDROP);
        assert!(p.single);
        assert!(p.safe.allows_resend(&named));
        assert!(!p.safe.allows_resend(&unnamed));
    }

    #[test]
    fn connect_errors_were_never_sent_and_deadlines_never_retried() {
        let e = tonic::ConnectError(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(classify(&e), Failure::NotSent { replica_down: true });
        assert_eq!(classify(&tonic::TimeoutExpired(())), Failure::Deadline);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&reset), Failure::MaybeSent);
        let refused = h2::Error::from(h2::Reason::REFUSED_STREAM);
        // A locally made reason is not the server's refusal.
        assert_eq!(classify(&refused), Failure::MaybeSent);
    }
}
