//! Sieve mail filtering (RFC 5228) with the extensions mail clients use.
//!
//! Pure: no I/O, no async. A script is parsed and validated once by
//! [`compile`] (errors name line and column), and the compiled [`Script`]
//! is run against each message with [`Script::run`], which returns the
//! actions to take ([`Outcome`]). Everything the interpreter needs from the
//! outside world (the time, whether a mailbox exists, whether a message was
//! seen before for `duplicate`) comes through [`RunContext`].
//!
//! ```
//! use mail_sieve::{Action, Envelope, NoHost, NoIncludes, RunContext};
//!
//! let script = mail_sieve::compile(
//!     r#"require ["fileinto", "variables"];
//!        if header :matches "List-Id" "*<*.*>*" { fileinto "Lists/${2}"; }"#,
//!     &NoIncludes,
//! )?;
//! let message = b"List-Id: Dev <dev.lists.example.com>\r\nSubject: hi\r\n\r\nbody\r\n";
//! let envelope = Envelope { from: "a@example.com".into(), to: "b@example.org".into() };
//! let mut ctx = RunContext { now: 0, utc_offset: 0, host: &NoHost };
//! let outcome = script.run(message, &envelope, &mut ctx);
//! assert_eq!(
//!     outcome.actions,
//!     [Action::FileInto { mailbox: "Lists/dev".into(), flags: vec![], create: false }]
//! );
//! # Ok::<(), mail_sieve::CompileError>(())
//! ```
//!
//! Bounds: scripts of at most [`MAX_SCRIPT_SIZE`] bytes, nesting of blocks
//! and tests to 64 levels, [`MAX_INCLUDE_DEPTH`] levels of `include` and
//! [`MAX_INCLUDED_SCRIPTS`] scripts, [`MAX_ACTIONS`] actions and
//! [`MAX_REDIRECTS`] redirects per run, variables cut at
//! [`MAX_VARIABLE_SIZE`] bytes, and `:matches` linear in the value for any
//! number of `*` (segments with `?` stop after [`MAX_MATCH_STEPS`]).
//! Exceeding a compile-time bound is a [`CompileError`]; a run-time bound, a
//! [`RuntimeError`] with the implicit keep.

use std::fmt;

mod compile;
mod date;
mod ir;
mod matching;
mod message;
mod parse;
mod rfc2047;
mod run;

pub use compile::{MAX_INCLUDE_DEPTH, MAX_INCLUDED_SCRIPTS, MAX_SCRIPT_SIZE};
pub use matching::MAX_MATCH_STEPS;
pub use run::{MAX_ACTIONS, MAX_REDIRECTS, MAX_VARIABLE_SIZE};

/// Where an `include` looks for a script (RFC 6609 section 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncludeLocation {
    /// The user's own scripts (`:personal`, the default).
    Personal,
    /// Scripts the administrator shares with every user (`:global`).
    Global,
}

/// Finds the source of included scripts at compile time.
pub trait IncludeResolver {
    /// The source of the script `name` in `location`, or `None` when there
    /// is no such script (an error at run time unless `:optional`).
    fn resolve(&self, location: IncludeLocation, name: &str) -> Option<String>;

    /// Whether an `include` (without `:optional`) of a script that is not
    /// found refuses the whole script when compiling, as Pigeonhole does.
    /// By default it does not: the `include` fails when it runs (a
    /// [`RuntimeError`], the message kept), so a script can be uploaded
    /// before the scripts it includes (RFC 6609 section 3.2 allows both).
    fn missing_is_error(&self) -> bool {
        false
    }
}

/// A resolver that finds no script: every `include` is missing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoIncludes;

impl IncludeResolver for NoIncludes {
    fn resolve(&self, _location: IncludeLocation, _name: &str) -> Option<String> {
        None
    }
}

/// Why a script was refused, with the position (1-based) it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// Line of the offending token, counted from 1.
    pub line: u32,
    /// Column (in characters) of the offending token, counted from 1.
    pub column: u32,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for CompileError {}

/// The SIEVE capability list (ManageSieve's `"SIEVE"` capability): every
/// `require` name this interpreter accepts.
pub fn capabilities() -> &'static [&'static str] {
    &[
        "fileinto",
        "copy",
        "envelope",
        "reject",
        "ereject",
        "imap4flags",
        "body",
        "variables",
        "vacation",
        "vacation-seconds",
        "relational",
        "subaddress",
        "date",
        "index",
        "mailbox",
        "include",
        "duplicate",
        "encoded-character",
        "comparator-i;octet",
        "comparator-i;ascii-casemap",
        "comparator-i;ascii-numeric",
    ]
}

/// Parses and validates `source` and compiles it, with the scripts it
/// includes (found through `includes`), into a [`Script`] ready to run.
pub fn compile(source: &str, includes: &dyn IncludeResolver) -> Result<Script, CompileError> {
    Ok(Script {
        program: compile::compile_program(source, includes)?,
    })
}

/// A compiled script: validated, ready to run any number of times.
#[derive(Debug, Clone)]
pub struct Script {
    program: compile::Program,
}

/// The SMTP envelope of the message being delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse path (`MAIL FROM`), empty for the null sender `<>`.
    pub from: String,
    /// The recipient this delivery is for (`RCPT TO`).
    pub to: String,
}

/// What the running script may ask of the world, supplied by the caller.
pub trait Host {
    /// Whether `mailbox` exists (RFC 5490 `mailboxexists`).
    fn mailbox_exists(&self, _mailbox: &str) -> bool {
        false
    }
    /// Whether a message with this duplicate `id` was already delivered
    /// under `handle` (RFC 7352), within its expiry.
    fn duplicate_seen(&self, _handle: &str, _id: &str) -> bool {
        false
    }
}

/// A host that knows no mailbox and has seen no message.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHost;

impl Host for NoHost {}

/// The caller's side of one run: the current time and the [`Host`].
pub struct RunContext<'a> {
    /// The current time, seconds since the Unix epoch (`currentdate`).
    pub now: i64,
    /// The local time zone's offset from UTC, in seconds (`date` without
    /// `:zone`).
    pub utc_offset: i32,
    /// Mailbox and duplicate look-ups.
    pub host: &'a dyn Host,
}

impl fmt::Debug for RunContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunContext")
            .field("now", &self.now)
            .field("utc_offset", &self.utc_offset)
            .finish_non_exhaustive()
    }
}

/// The parameters of a `vacation` action, resolved (RFC 5230, RFC 6131).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacation {
    /// The reply's body (or MIME entity when `mime`).
    pub reason: String,
    /// `:subject`, if given.
    pub subject: Option<String>,
    /// `:from`, if given.
    pub from: Option<String>,
    /// `:addresses`: the user's other addresses.
    pub addresses: Vec<String>,
    /// `:mime`: `reason` is a MIME entity with its own headers.
    pub mime: bool,
    /// The handle that identifies this reply for the per-sender memory.
    pub handle: String,
    /// How long, in seconds, not to answer the same sender again.
    pub seconds: u64,
    /// Why no reply is due although the script asked for one (RFC 5230
    /// section 4.5, RFC 3834 section 2: the null sender, mailing-list or
    /// automatic mail, mail not addressed to the user); `None` to send.
    pub skip: Option<String>,
}

/// One action of the final result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Store into the user's INBOX with these IMAP flags.
    Keep {
        /// Flags and keywords to set on the stored copy.
        flags: Vec<String>,
        /// True when this is the implicit keep, not a `keep` command.
        implicit: bool,
    },
    /// Store into `mailbox` with these flags.
    FileInto {
        /// The target mailbox name (UTF-8).
        mailbox: String,
        /// Flags and keywords to set on the stored copy.
        flags: Vec<String>,
        /// `:create`: create the mailbox when it does not exist.
        create: bool,
    },
    /// Refuse the message with this reason (`ereject` when `extended`).
    Reject {
        /// The human-readable reason.
        reason: String,
        /// True for `ereject` (refuse in the SMTP dialogue when possible).
        extended: bool,
    },
    /// Send the message on to `address`.
    Redirect {
        /// The new recipient.
        address: String,
    },
    /// Answer the sender with an automatic reply.
    Vacation(Vacation),
}

/// A message marked as seen by a `duplicate` test: to be recorded by the
/// caller once the delivery succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateMark {
    /// The `:handle` (empty when none).
    pub handle: String,
    /// The unique id (`:uniqueid`, the header's value, or Message-ID).
    pub id: String,
    /// How long to remember it, in seconds.
    pub seconds: u64,
}

/// A run-time failure: the message is kept in INBOX (implicit keep).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeError {
    /// Line of the command that failed.
    pub line: u32,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What a run decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The actions to carry out, in order; a discarded message has none.
    /// On a run-time error this is the implicit keep alone.
    pub actions: Vec<Action>,
    /// The run-time error, if the script failed.
    pub error: Option<RuntimeError>,
    /// Ids to remember for `duplicate`, once the delivery succeeded.
    pub duplicates: Vec<DuplicateMark>,
}

impl Script {
    /// Runs the script against `message` (its raw bytes) and `envelope`.
    pub fn run(&self, message: &[u8], envelope: &Envelope, ctx: &mut RunContext<'_>) -> Outcome {
        run::run(&self.program, message, envelope, ctx)
    }
}
