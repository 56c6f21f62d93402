//! The compiled form of a script: validated commands and tests with their
//! arguments resolved, run by `run.rs`.

/// A string argument, with `${...}` variable references split out when the
/// script requires "variables" (RFC 5229 section 3).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Str {
    Lit(String),
    Tmpl(Vec<Piece>),
}

impl Str {
    /// The text when it has no variable reference.
    pub(crate) fn literal(&self) -> Option<&str> {
        match self {
            Str::Lit(s) => Some(s),
            Str::Tmpl(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    Lit(String),
    /// A named variable: lower-case name, and whether it is global.
    Var {
        name: String,
        global: bool,
    },
    /// A match variable `${N}`.
    Match(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparator {
    Octet,
    AsciiCasemap,
    AsciiNumeric,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchType {
    Is,
    Contains,
    Matches,
    Value(RelOp),
    Count(RelOp),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Match {
    pub comparator: Comparator,
    pub kind: MatchType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressPart {
    All,
    LocalPart,
    Domain,
    User,
    Detail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Index {
    pub n: usize,
    pub last: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Zone {
    Local,
    Original,
    Fixed(Str),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BodyTransform {
    Raw,
    Text,
    Content(Vec<Str>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DupId {
    MessageId,
    Header(Str),
    Unique(Str),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Test {
    True,
    False,
    Not(Box<Test>),
    AllOf(Vec<Test>),
    AnyOf(Vec<Test>),
    Header {
        names: Vec<Str>,
        keys: Vec<Str>,
        m: Match,
        index: Option<Index>,
    },
    Address {
        headers: Vec<Str>,
        keys: Vec<Str>,
        m: Match,
        part: AddressPart,
        index: Option<Index>,
    },
    Envelope {
        parts: Vec<Str>,
        keys: Vec<Str>,
        m: Match,
        part: AddressPart,
    },
    Exists(Vec<Str>),
    Size {
        over: bool,
        limit: u64,
    },
    Body {
        transform: BodyTransform,
        keys: Vec<Str>,
        m: Match,
    },
    String {
        sources: Vec<Str>,
        keys: Vec<Str>,
        m: Match,
    },
    HasFlag {
        vars: Option<Vec<Str>>,
        keys: Vec<Str>,
        m: Match,
    },
    Date {
        header: Str,
        zone: Zone,
        part: Str,
        keys: Vec<Str>,
        m: Match,
        index: Option<Index>,
    },
    CurrentDate {
        zone: Zone,
        part: Str,
        keys: Vec<Str>,
        m: Match,
    },
    MailboxExists(Vec<Str>),
    Duplicate {
        handle: Option<Str>,
        id: DupId,
        seconds: Option<u64>,
        last: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagOp {
    Set,
    Add,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Modifier {
    Lower,
    Upper,
    LowerFirst,
    UpperFirst,
    QuoteWildcard,
    Length,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VacationArgs {
    pub days: Option<u64>,
    pub seconds: Option<u64>,
    pub subject: Option<Str>,
    pub from: Option<Str>,
    pub addresses: Vec<Str>,
    pub mime: bool,
    pub handle: Option<Str>,
    pub default_handle: String,
    pub reason: Str,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cmd {
    If {
        branches: Vec<(Test, Vec<Node>)>,
        otherwise: Option<Vec<Node>>,
    },
    Stop,
    Keep {
        flags: Option<Vec<Str>>,
    },
    Discard,
    FileInto {
        mailbox: Str,
        copy: bool,
        create: bool,
        flags: Option<Vec<Str>>,
    },
    Redirect {
        address: Str,
        copy: bool,
    },
    Reject {
        reason: Str,
        extended: bool,
    },
    Flag {
        op: FlagOp,
        var: Option<(String, bool)>,
        flags: Vec<Str>,
    },
    Set {
        name: String,
        global: bool,
        value: Str,
        mods: Vec<Modifier>,
    },
    Vacation(Box<VacationArgs>),
    Include {
        /// Index into the script's table of compiled scripts, or `None`
        /// when the script was not found.
        target: Option<usize>,
        name: String,
        once: bool,
        optional: bool,
    },
    Return,
}

/// A command with the line it starts on (for run-time errors).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub line: u32,
    pub cmd: Cmd,
}
