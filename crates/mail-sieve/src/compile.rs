//! Validation and compilation: turns the parsed tree into the executable
//! form (`ir.rs`), checking `require` (RFC 5228 section 3.2), each command's
//! and test's arguments, and resolving `include` (RFC 6609) once.

use std::collections::{HashMap, HashSet};

use crate::ir::*;
use crate::parse::{self, Arg, CommandNode, Pos, TestNode};
use crate::{CompileError, IncludeLocation, IncludeResolver};

/// The largest script accepted, in bytes (Pigeonhole's default too).
pub const MAX_SCRIPT_SIZE: usize = 1 << 20;
/// How deep `include` may nest (RFC 6609 section 3.2 asks for a limit).
pub const MAX_INCLUDE_DEPTH: usize = 10;
/// How many distinct scripts one script may pull in with `include`.
pub const MAX_INCLUDED_SCRIPTS: usize = 64;
/// The highest match variable `${N}` (RFC 5229 section 3.2 asks for 9 at least).
pub const MAX_MATCH_INDEX: usize = 9;
/// How many variables one script may name.
pub const MAX_VARIABLES: usize = 255;

/// The extensions `require` accepts.
const EXTENSIONS: &[&str] = &[
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
];

/// One compiled script (the main one or an included one).
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    pub commands: Vec<Node>,
}

/// The main script (unit 0) and every script it includes.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    pub units: Vec<Unit>,
}

pub(crate) fn compile_program(
    source: &str,
    includes: &dyn IncludeResolver,
) -> Result<Program, CompileError> {
    let mut prog = Compiler {
        includes,
        units: vec![None],
        by_name: HashMap::new(),
        stack: Vec::new(),
    };
    let unit = prog.compile_unit(source, 0)?;
    prog.units[0] = Some(unit);
    let units = prog
        .units
        .into_iter()
        .map(|u| {
            u.unwrap_or(Unit {
                commands: Vec::new(),
            })
        })
        .collect();
    Ok(Program { units })
}

struct Compiler<'a> {
    includes: &'a dyn IncludeResolver,
    units: Vec<Option<Unit>>,
    by_name: HashMap<(IncludeLocation, String), usize>,
    /// Scripts being compiled (to refuse include cycles).
    stack: Vec<(IncludeLocation, String)>,
}

/// State while compiling one script.
struct Scope {
    exts: HashSet<&'static str>,
    globals: HashSet<String>,
    variables: HashSet<String>,
    depth: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TagKind {
    Flag,
    Str,
    StrList,
    Number,
}

struct TagVal {
    name: String,
    pos: Pos,
    val: Option<Arg>,
}

struct Tags(Vec<TagVal>);

impl Tags {
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|t| t.name == name)
    }
    fn get(&self, name: &str) -> Option<&TagVal> {
        self.0.iter().find(|t| t.name == name)
    }
}

fn tag_err(pos: Pos, what: &str, tag: &str) -> CompileError {
    pos.error(format!("unknown tagged argument ':{tag}' for {what}"))
}

impl Compiler<'_> {
    fn compile_unit(&mut self, source: &str, depth: usize) -> Result<Unit, CompileError> {
        if source.len() > MAX_SCRIPT_SIZE {
            return Err(Pos { line: 1, column: 1 }
                .error(format!("script is larger than {} bytes", MAX_SCRIPT_SIZE)));
        }
        let tree = parse::parse(source)?;
        let mut scope = Scope {
            exts: HashSet::new(),
            globals: HashSet::new(),
            variables: HashSet::new(),
            depth,
        };
        let mut requires_allowed = true;
        let mut commands = Vec::new();
        let mut prev_if = false;
        for node in tree {
            if node.name == "require" {
                if !requires_allowed {
                    return Err(node
                        .pos
                        .error("'require' must come before every other command"));
                }
                self.require(&node, &mut scope)?;
                continue;
            }
            requires_allowed = false;
            self.command_into(node, &mut scope, &mut commands, &mut prev_if, 0)?;
        }
        Ok(Unit { commands })
    }

    fn require(&mut self, node: &CommandNode, scope: &mut Scope) -> Result<(), CompileError> {
        if !node.tests.is_empty() || node.block.is_some() || node.args.len() != 1 {
            return Err(node.pos.error("'require' takes one string list"));
        }
        let (items, pos) = strings(&node.args[0], "require")?;
        for ext in items {
            match EXTENSIONS.iter().find(|e| **e == ext) {
                Some(e) => {
                    scope.exts.insert(e);
                }
                None => {
                    return Err(pos.error(format!("unsupported extension '{ext}'")));
                }
            }
        }
        Ok(())
    }

    /// Compiles one command, handling `elsif`/`else` by attaching them to
    /// the `if` just before.
    fn command_into(
        &mut self,
        node: CommandNode,
        scope: &mut Scope,
        out: &mut Vec<Node>,
        prev_if: &mut bool,
        nesting: usize,
    ) -> Result<(), CompileError> {
        let name = node.name.clone();
        match name.as_str() {
            "elsif" | "else" => {
                if !*prev_if {
                    return Err(node
                        .pos
                        .error(format!("'{name}' must follow 'if' or 'elsif'")));
                }
                let Some(Node {
                    cmd:
                        Cmd::If {
                            branches,
                            otherwise,
                        },
                    ..
                }) = out.last_mut()
                else {
                    return Err(node.pos.error("internal error: no 'if' to attach to"));
                };
                if name == "elsif" {
                    let (test, block) = self.cond_block(node, scope, nesting)?;
                    branches.push((test, block));
                } else {
                    no_args(&node, "else")?;
                    if !node.tests.is_empty() {
                        return Err(node.pos.error("'else' takes no test"));
                    }
                    let Some(b) = node.block else {
                        return Err(node.pos.error("'else' needs a block"));
                    };
                    *otherwise = Some(self.block(b, scope, nesting + 1)?);
                    *prev_if = false;
                }
                return Ok(());
            }
            "require" => {
                return Err(node
                    .pos
                    .error("'require' must come before every other command"));
            }
            _ => {}
        }
        let line = node.pos.line;
        if name == "if" {
            let (test, block) = self.cond_block(node, scope, nesting)?;
            out.push(Node {
                line,
                cmd: Cmd::If {
                    branches: vec![(test, block)],
                    otherwise: None,
                },
            });
            *prev_if = true;
            return Ok(());
        }
        *prev_if = false;
        if node.block.is_some() {
            return Err(node.pos.error(format!("command '{name}' takes no block")));
        }
        if !node.tests.is_empty() {
            return Err(node.pos.error(format!("command '{name}' takes no test")));
        }
        if name == "global" {
            self.need(scope, "include", node.pos, "global")?;
            self.need(scope, "variables", node.pos, "global")?;
            let [arg] = node.args.as_slice() else {
                return Err(node.pos.error("'global' takes one string list"));
            };
            let (items, pos) = strings(arg, "global")?;
            for v in items {
                if !valid_var_name(&v) {
                    return Err(pos.error(format!("invalid variable name '{v}'")));
                }
                scope.globals.insert(v.to_ascii_lowercase());
            }
            return Ok(());
        }
        let cmd = self.command(node, scope)?;
        out.push(Node { line, cmd });
        Ok(())
    }

    fn cond_block(
        &mut self,
        node: CommandNode,
        scope: &mut Scope,
        nesting: usize,
    ) -> Result<(Test, Vec<Node>), CompileError> {
        no_args(&node, &node.name)?;
        if node.tests.len() != 1 || node.test_list {
            return Err(node
                .pos
                .error(format!("'{}' needs exactly one test", node.name)));
        }
        let Some(b) = node.block else {
            return Err(node.pos.error(format!("'{}' needs a block", node.name)));
        };
        let test = node
            .tests
            .into_iter()
            .next()
            .ok_or_else(|| node.pos.error("missing test"))?;
        let test = self.test(test, scope)?;
        let block = self.block(b, scope, nesting + 1)?;
        Ok((test, block))
    }

    fn block(
        &mut self,
        nodes: Vec<CommandNode>,
        scope: &mut Scope,
        nesting: usize,
    ) -> Result<Vec<Node>, CompileError> {
        let mut out = Vec::new();
        let mut prev_if = false;
        for n in nodes {
            self.command_into(n, scope, &mut out, &mut prev_if, nesting)?;
        }
        Ok(out)
    }

    fn need(&self, scope: &Scope, ext: &str, pos: Pos, what: &str) -> Result<(), CompileError> {
        if scope.exts.contains(ext) {
            Ok(())
        } else {
            Err(pos.error(format!(
                "'{what}' needs the \"{ext}\" extension: add require \"{ext}\""
            )))
        }
    }

    fn command(&mut self, node: CommandNode, scope: &mut Scope) -> Result<Cmd, CompileError> {
        let pos = node.pos;
        let name = node.name.as_str();
        match name {
            "stop" => {
                no_args(&node, name)?;
                Ok(Cmd::Stop)
            }
            "discard" => {
                no_args(&node, name)?;
                Ok(Cmd::Discard)
            }
            "return" => {
                self.need(scope, "include", pos, name)?;
                no_args(&node, name)?;
                Ok(Cmd::Return)
            }
            "keep" => {
                let (tags, pos_args) = self.split(&node.args, name, |t| match t {
                    "flags" => Some(TagKind::StrList),
                    _ => None,
                })?;
                expect_count(&pos_args, 0, pos, name)?;
                let flags = self.flags_tag(&tags, scope)?;
                Ok(Cmd::Keep { flags })
            }
            "fileinto" => {
                self.need(scope, "fileinto", pos, name)?;
                let (tags, pos_args) = self.split(&node.args, name, |t| match t {
                    "copy" | "create" => Some(TagKind::Flag),
                    "flags" => Some(TagKind::StrList),
                    _ => None,
                })?;
                expect_count(&pos_args, 1, pos, name)?;
                if let Some(t) = tags.get("copy") {
                    self.need(scope, "copy", t.pos, ":copy")?;
                }
                if let Some(t) = tags.get("create") {
                    self.need(scope, "mailbox", t.pos, ":create")?;
                }
                let flags = self.flags_tag(&tags, scope)?;
                let mailbox = self.string(&pos_args[0], scope, "the mailbox")?;
                if let Some(m) = mailbox.literal()
                    && m.is_empty()
                {
                    return Err(pos_args[0].pos().error("the mailbox name is empty"));
                }
                Ok(Cmd::FileInto {
                    mailbox,
                    copy: tags.has("copy"),
                    create: tags.has("create"),
                    flags,
                })
            }
            "redirect" => {
                let (tags, pos_args) = self.split(&node.args, name, |t| match t {
                    "copy" => Some(TagKind::Flag),
                    _ => None,
                })?;
                expect_count(&pos_args, 1, pos, name)?;
                if let Some(t) = tags.get("copy") {
                    self.need(scope, "copy", t.pos, ":copy")?;
                }
                let address = self.string(&pos_args[0], scope, "the address")?;
                if let Some(a) = address.literal()
                    && crate::message::parse_single_address(a).is_none()
                {
                    return Err(pos_args[0]
                        .pos()
                        .error(format!("invalid redirect address '{a}'")));
                }
                Ok(Cmd::Redirect {
                    address,
                    copy: tags.has("copy"),
                })
            }
            "reject" | "ereject" => {
                self.need(scope, name, pos, name)?;
                let (_, pos_args) = self.split(&node.args, name, |_| None)?;
                expect_count(&pos_args, 1, pos, name)?;
                let reason = self.string(&pos_args[0], scope, "the reason")?;
                Ok(Cmd::Reject {
                    reason,
                    extended: name == "ereject",
                })
            }
            "setflag" | "addflag" | "removeflag" => {
                self.need(scope, "imap4flags", pos, name)?;
                let (_, pos_args) = self.split(&node.args, name, |_| None)?;
                let op = match name {
                    "setflag" => FlagOp::Set,
                    "addflag" => FlagOp::Add,
                    _ => FlagOp::Remove,
                };
                let (var, list) = match pos_args.as_slice() {
                    [list] => (None, list),
                    [var, list] => {
                        self.need(scope, "variables", var.pos(), "a flag variable")?;
                        let v = single_string(var, "the variable name")?;
                        (Some(self.var_ref(&v, var.pos(), scope)?), list)
                    }
                    _ => {
                        return Err(pos.error(format!(
                            "'{name}' takes an optional variable name and a list of flags"
                        )));
                    }
                };
                let flags = self.string_list(list, scope)?;
                Ok(Cmd::Flag { op, var, flags })
            }
            "set" => {
                self.need(scope, "variables", pos, name)?;
                let (tags, pos_args) = self.split(&node.args, name, |t| match t {
                    "lower" | "upper" | "lowerfirst" | "upperfirst" | "quotewildcard"
                    | "length" => Some(TagKind::Flag),
                    _ => None,
                })?;
                expect_count(&pos_args, 2, pos, name)?;
                let mut mods: Vec<(u8, Modifier, Pos)> = Vec::new();
                for t in &tags.0 {
                    let (prec, m) = match t.name.as_str() {
                        "lower" => (40, Modifier::Lower),
                        "upper" => (40, Modifier::Upper),
                        "lowerfirst" => (30, Modifier::LowerFirst),
                        "upperfirst" => (30, Modifier::UpperFirst),
                        "quotewildcard" => (20, Modifier::QuoteWildcard),
                        _ => (10, Modifier::Length),
                    };
                    if mods.iter().any(|(p, _, _)| *p == prec) {
                        return Err(t.pos.error(format!(
                            "modifier ':{}' cannot be combined with another of the same precedence",
                            t.name
                        )));
                    }
                    mods.push((prec, m, t.pos));
                }
                mods.sort_by_key(|m| std::cmp::Reverse(m.0));
                let vname = single_string(&pos_args[0], "the variable name")?;
                let (name, global) = self.var_ref(&vname, pos_args[0].pos(), scope)?;
                let value = self.string(&pos_args[1], scope, "the value")?;
                Ok(Cmd::Set {
                    name,
                    global,
                    value,
                    mods: mods.into_iter().map(|m| m.1).collect(),
                })
            }
            "vacation" => self.vacation(&node, scope),
            "include" => self.include(&node, scope),
            _ => Err(pos.error(format!("unknown command '{name}'"))),
        }
    }

    fn vacation(&mut self, node: &CommandNode, scope: &mut Scope) -> Result<Cmd, CompileError> {
        let pos = node.pos;
        self.need(scope, "vacation", pos, "vacation")?;
        let (tags, pos_args) = self.split(&node.args, "vacation", |t| match t {
            "days" | "seconds" => Some(TagKind::Number),
            "subject" | "from" | "handle" => Some(TagKind::Str),
            "addresses" => Some(TagKind::StrList),
            "mime" => Some(TagKind::Flag),
            _ => None,
        })?;
        expect_count(&pos_args, 1, pos, "vacation")?;
        if let Some(t) = tags.get("seconds") {
            self.need(scope, "vacation-seconds", t.pos, ":seconds")?;
            if tags.has("days") {
                return Err(t
                    .pos
                    .error("':days' and ':seconds' cannot be used together"));
            }
        }
        let num = |n: &str| match tags.get(n).and_then(|t| t.val.as_ref()) {
            Some(Arg::Number(v, _)) => Some(*v),
            _ => None,
        };
        let opt_str =
            |this: &mut Self, scope: &mut Scope, n: &str| -> Result<Option<Str>, CompileError> {
                match tags.get(n).and_then(|t| t.val.as_ref()) {
                    Some(a) => Ok(Some(this.string(a, scope, n)?)),
                    None => Ok(None),
                }
            };
        let subject = opt_str(self, scope, "subject")?;
        let from = opt_str(self, scope, "from")?;
        if let Some(f) = from.as_ref().and_then(Str::literal)
            && crate::message::parse_single_address(f).is_none()
        {
            return Err(tags
                .get("from")
                .map_or(pos, |t| t.pos)
                .error(format!("invalid :from address '{f}'")));
        }
        let handle = opt_str(self, scope, "handle")?;
        let addresses = match tags.get("addresses").and_then(|t| t.val.as_ref()) {
            Some(a) => self.string_list(a, scope)?,
            None => Vec::new(),
        };
        let reason = self.string(&pos_args[0], scope, "the reason")?;
        // The default handle is made from the arguments as written, before
        // variables are expanded (RFC 5230 section 4.2 leaves it to us; this
        // is Pigeonhole's form).
        let raw = |n: &str| match tags.get(n).and_then(|t| t.val.as_ref()) {
            Some(Arg::Strings { items, .. }) => items.first().cloned(),
            _ => None,
        };
        let written_reason = match &pos_args[0] {
            Arg::Strings { items, .. } => items.first().cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let default_handle = format!(
            "{}{}{}{}",
            written_reason,
            raw("subject").unwrap_or_else(|| "<default-subject>".into()),
            raw("from").unwrap_or_else(|| "<default-from>".into()),
            if tags.has("mime") {
                "<MIME>"
            } else {
                "<NO-MIME>"
            }
        );
        Ok(Cmd::Vacation(Box::new(VacationArgs {
            default_handle,
            days: num("days"),
            seconds: num("seconds"),
            subject,
            from,
            addresses,
            mime: tags.has("mime"),
            handle,
            reason,
        })))
    }

    fn include(&mut self, node: &CommandNode, scope: &mut Scope) -> Result<Cmd, CompileError> {
        let pos = node.pos;
        self.need(scope, "include", pos, "include")?;
        let (tags, pos_args) = self.split(&node.args, "include", |t| match t {
            "personal" | "global" | "once" | "optional" => Some(TagKind::Flag),
            _ => None,
        })?;
        expect_count(&pos_args, 1, pos, "include")?;
        if tags.has("personal") && tags.has("global") {
            return Err(pos.error("':personal' and ':global' cannot be used together"));
        }
        let location = if tags.has("global") {
            IncludeLocation::Global
        } else {
            IncludeLocation::Personal
        };
        // RFC 6609 section 3.2: the name is a constant, not a variable.
        let name = single_string(&pos_args[0], "the script name")?;
        if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) {
            return Err(pos_args[0]
                .pos()
                .error(format!("invalid script name '{name}'")));
        }
        let key = (location, name.clone());
        if self.stack.contains(&key) {
            return Err(pos.error(format!("script '{name}' includes itself")));
        }
        let target = if let Some(&i) = self.by_name.get(&key) {
            Some(i)
        } else if let Some(src) = self.includes.resolve(location, &name) {
            if scope.depth + 1 > MAX_INCLUDE_DEPTH {
                return Err(pos.error(format!(
                    "includes nest deeper than {MAX_INCLUDE_DEPTH} levels"
                )));
            }
            if self.units.len() >= MAX_INCLUDED_SCRIPTS {
                return Err(pos.error(format!("more than {MAX_INCLUDED_SCRIPTS} scripts included")));
            }
            let idx = self.units.len();
            self.units.push(None);
            self.stack.push(key.clone());
            let unit = self
                .compile_unit(&src, scope.depth + 1)
                .map_err(|e| pos.error(format!("in included script '{name}': {e}")));
            self.stack.pop();
            self.units[idx] = Some(unit?);
            self.by_name.insert(key, idx);
            Some(idx)
        } else if !tags.has("optional") && self.includes.missing_is_error() {
            return Err(pos.error(format!("included script '{name}' does not exist")));
        } else {
            None
        };
        Ok(Cmd::Include {
            target,
            name,
            once: tags.has("once"),
            optional: tags.has("optional"),
        })
    }

    fn split(
        &self,
        args: &[Arg],
        what: &str,
        spec: impl Fn(&str) -> Option<TagKind>,
    ) -> Result<(Tags, Vec<Arg>), CompileError> {
        let mut tags: Vec<TagVal> = Vec::new();
        let mut positional = Vec::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            match a {
                Arg::Tag(t, pos) => {
                    if !positional.is_empty() {
                        return Err(pos.error(format!(
                            "tagged argument ':{t}' must come before the positional arguments"
                        )));
                    }
                    let kind = spec(t).ok_or_else(|| tag_err(*pos, &format!("'{what}'"), t))?;
                    if tags.iter().any(|x| x.name == *t) {
                        return Err(pos.error(format!("tag ':{t}' given twice")));
                    }
                    let val = match kind {
                        TagKind::Flag => None,
                        TagKind::Number => match it.next() {
                            Some(n @ Arg::Number(..)) => Some(n.clone()),
                            _ => return Err(pos.error(format!("':{t}' needs a number"))),
                        },
                        TagKind::Str => match it.next() {
                            Some(s @ Arg::Strings { list: false, .. }) => Some(s.clone()),
                            _ => return Err(pos.error(format!("':{t}' needs a string"))),
                        },
                        TagKind::StrList => match it.next() {
                            Some(s @ Arg::Strings { .. }) => Some(s.clone()),
                            _ => {
                                return Err(pos.error(format!("':{t}' needs a string list")));
                            }
                        },
                    };
                    tags.push(TagVal {
                        name: t.clone(),
                        pos: *pos,
                        val,
                    });
                }
                other => positional.push(other.clone()),
            }
        }
        Ok((Tags(tags), positional))
    }

    fn flags_tag(&self, tags: &Tags, scope: &mut Scope) -> Result<Option<Vec<Str>>, CompileError> {
        match tags.get("flags") {
            Some(t) => {
                self.need(scope, "imap4flags", t.pos, ":flags")?;
                let Some(a) = &t.val else {
                    return Err(t.pos.error("':flags' needs a string list"));
                };
                Ok(Some(self.string_list(a, scope)?))
            }
            None => Ok(None),
        }
    }

    fn var_ref(
        &self,
        name: &str,
        pos: Pos,
        scope: &mut Scope,
    ) -> Result<(String, bool), CompileError> {
        let lower = name.to_ascii_lowercase();
        if let Some(g) = lower.strip_prefix("global.") {
            if !scope.exts.contains("include") || !valid_var_name(g) {
                return Err(pos.error(format!("invalid variable name '{name}'")));
            }
            return Ok((g.to_string(), true));
        }
        if !valid_var_name(&lower) {
            return Err(pos.error(format!("invalid variable name '{name}'")));
        }
        if scope.variables.insert(lower.clone()) && scope.variables.len() > MAX_VARIABLES {
            return Err(pos.error(format!("more than {MAX_VARIABLES} variables")));
        }
        let global = scope.globals.contains(&lower);
        Ok((lower, global))
    }

    /// A string argument (a single string, not a list).
    fn string(&self, arg: &Arg, scope: &Scope, what: &str) -> Result<Str, CompileError> {
        let s = single_string(arg, what)?;
        self.make_str(&s, arg.pos(), scope)
    }

    fn string_list(&self, arg: &Arg, scope: &Scope) -> Result<Vec<Str>, CompileError> {
        let (items, pos) = strings(arg, "this argument")?;
        items.iter().map(|s| self.make_str(s, pos, scope)).collect()
    }

    fn make_str(&self, s: &str, pos: Pos, scope: &Scope) -> Result<Str, CompileError> {
        let decoded;
        let s = if scope.exts.contains("encoded-character") && s.contains("${") {
            decoded = decode_encoded_chars(s).map_err(|m| pos.error(m))?;
            decoded.as_str()
        } else {
            s
        };
        if scope.exts.contains("variables") && s.contains("${") {
            Ok(template(s, scope))
        } else {
            Ok(Str::Lit(s.to_string()))
        }
    }

    fn test(&mut self, node: TestNode, scope: &mut Scope) -> Result<Test, CompileError> {
        let pos = node.pos;
        let name = node.name.as_str();
        if !matches!(name, "not" | "allof" | "anyof") && !node.tests.is_empty() {
            return Err(pos.error(format!("test '{name}' takes no nested test")));
        }
        match name {
            "true" | "false" => {
                if !node.args.is_empty() {
                    return Err(pos.error(format!("test '{name}' takes no argument")));
                }
                Ok(if name == "true" {
                    Test::True
                } else {
                    Test::False
                })
            }
            "not" => {
                if !node.args.is_empty() || node.tests.len() != 1 || node.test_list {
                    return Err(pos.error("'not' takes exactly one test"));
                }
                let t = node
                    .tests
                    .into_iter()
                    .next()
                    .ok_or_else(|| pos.error("missing test"))?;
                Ok(Test::Not(Box::new(self.test(t, scope)?)))
            }
            "allof" | "anyof" => {
                if !node.args.is_empty() || !node.test_list || node.tests.is_empty() {
                    return Err(pos.error(format!("'{name}' takes a list of tests in '( )'")));
                }
                let mut v = Vec::new();
                for t in node.tests {
                    v.push(self.test(t, scope)?);
                }
                Ok(if name == "allof" {
                    Test::AllOf(v)
                } else {
                    Test::AnyOf(v)
                })
            }
            "size" => {
                let (tags, pos_args) = self.split(&node.args, "size", |t| match t {
                    "over" | "under" => Some(TagKind::Flag),
                    _ => None,
                })?;
                let over = tags.has("over");
                if over == tags.has("under") {
                    return Err(pos.error("'size' needs exactly one of ':over' or ':under'"));
                }
                let [Arg::Number(limit, _)] = pos_args.as_slice() else {
                    return Err(pos.error("'size' needs a number"));
                };
                Ok(Test::Size {
                    over,
                    limit: *limit,
                })
            }
            "exists" => {
                let (_, pos_args) = self.split(&node.args, "exists", |_| None)?;
                expect_count(&pos_args, 1, pos, "exists")?;
                let names = self.header_names(&pos_args[0], scope)?;
                Ok(Test::Exists(names))
            }
            "mailboxexists" => {
                self.need(scope, "mailbox", pos, name)?;
                let (_, pos_args) = self.split(&node.args, name, |_| None)?;
                expect_count(&pos_args, 1, pos, name)?;
                Ok(Test::MailboxExists(self.string_list(&pos_args[0], scope)?))
            }
            "duplicate" => {
                self.need(scope, "duplicate", pos, name)?;
                let (tags, pos_args) = self.split(&node.args, name, |t| match t {
                    "handle" | "header" | "uniqueid" => Some(TagKind::Str),
                    "seconds" => Some(TagKind::Number),
                    "last" => Some(TagKind::Flag),
                    _ => None,
                })?;
                expect_count(&pos_args, 0, pos, name)?;
                if tags.has("header") && tags.has("uniqueid") {
                    return Err(pos.error("':header' and ':uniqueid' cannot be used together"));
                }
                let s = |this: &Self, n: &str| -> Result<Option<Str>, CompileError> {
                    match tags.get(n).and_then(|t| t.val.as_ref()) {
                        Some(a) => Ok(Some(this.string(a, scope, n)?)),
                        None => Ok(None),
                    }
                };
                let id = if let Some(h) = s(self, "header")? {
                    DupId::Header(h)
                } else if let Some(u) = s(self, "uniqueid")? {
                    DupId::Unique(u)
                } else {
                    DupId::MessageId
                };
                let seconds = match tags.get("seconds").and_then(|t| t.val.as_ref()) {
                    Some(Arg::Number(n, _)) => Some(*n),
                    _ => None,
                };
                Ok(Test::Duplicate {
                    handle: s(self, "handle")?,
                    id,
                    seconds,
                    last: tags.has("last"),
                })
            }
            "header" | "address" | "envelope" | "body" | "string" | "hasflag" | "date"
            | "currentdate" => self.match_test(node, scope),
            _ => Err(pos.error(format!("unknown test '{name}'"))),
        }
    }

    fn header_names(&self, arg: &Arg, scope: &Scope) -> Result<Vec<Str>, CompileError> {
        // A name no header can have (a space, a colon) matches nothing; it
        // is not refused (as Pigeonhole).
        self.string_list(arg, scope)
    }

    /// The tests with a comparator and a match type.
    fn match_test(&mut self, node: TestNode, scope: &mut Scope) -> Result<Test, CompileError> {
        let pos = node.pos;
        let name = node.name.as_str();
        let has_part = matches!(name, "address" | "envelope");
        let has_index = matches!(name, "header" | "address" | "date");
        let has_zone = matches!(name, "date" | "currentdate");
        let is_body = name == "body";
        let (tags, pos_args) = self.split(&node.args, name, |t| match t {
            "comparator" => Some(TagKind::Str),
            "is" | "contains" | "matches" => Some(TagKind::Flag),
            "value" | "count" => Some(TagKind::Str),
            "all" | "localpart" | "domain" | "user" | "detail" if has_part => Some(TagKind::Flag),
            "index" if has_index => Some(TagKind::Number),
            "last" if has_index => Some(TagKind::Flag),
            "zone" if has_zone => Some(TagKind::Str),
            "originalzone" if name == "date" => Some(TagKind::Flag),
            "raw" | "text" if is_body => Some(TagKind::Flag),
            "content" if is_body => Some(TagKind::StrList),
            _ => None,
        })?;
        match name {
            "envelope" | "body" | "date" => self.need(scope, name, pos, name)?,
            "currentdate" => self.need(scope, "date", pos, name)?,
            "string" => self.need(scope, "variables", pos, name)?,
            "hasflag" => self.need(scope, "imap4flags", pos, name)?,
            _ => {}
        }
        let m = self.match_of(&tags, scope)?;
        let mut part = AddressPart::All;
        let mut seen_part: Option<Pos> = None;
        for t in &tags.0 {
            let p = match t.name.as_str() {
                "all" => AddressPart::All,
                "localpart" => AddressPart::LocalPart,
                "domain" => AddressPart::Domain,
                "user" => AddressPart::User,
                "detail" => AddressPart::Detail,
                _ => continue,
            };
            if seen_part.is_some() {
                return Err(t.pos.error("only one address part may be given"));
            }
            if matches!(p, AddressPart::User | AddressPart::Detail) {
                self.need(scope, "subaddress", t.pos, &format!(":{}", t.name))?;
            }
            seen_part = Some(t.pos);
            part = p;
        }
        let index = match tags.get("index") {
            Some(t) => {
                self.need(scope, "index", t.pos, ":index")?;
                let Some(Arg::Number(n, _)) = t.val else {
                    return Err(t.pos.error("':index' needs a number"));
                };
                if n == 0 {
                    return Err(t.pos.error("':index' counts from 1"));
                }
                Some(Index {
                    n: usize::try_from(n).unwrap_or(usize::MAX),
                    last: tags.has("last"),
                })
            }
            None => {
                if let Some(t) = tags.get("last") {
                    self.need(scope, "index", t.pos, ":last")?;
                    return Err(t.pos.error("':last' needs ':index'"));
                }
                None
            }
        };
        let zone = if let Some(t) = tags.get("zone") {
            if tags.has("originalzone") {
                return Err(t
                    .pos
                    .error("':zone' and ':originalzone' cannot be used together"));
            }
            let Some(a) = &t.val else {
                return Err(t.pos.error("':zone' needs a string"));
            };
            // A zone that is not "+hhmm"/"-hhmm" means the local zone (as
            // Pigeonhole; RFC 5260 section 4.1 does not say).
            Zone::Fixed(self.string(a, scope, ":zone")?)
        } else if tags.has("originalzone") {
            Zone::Original
        } else {
            Zone::Local
        };
        let want = match name {
            "currentdate" => 2,
            "date" => 3,
            "hasflag" => 0,
            "body" => 1,
            _ => 2,
        };
        if name == "hasflag" {
            if !(1..=2).contains(&pos_args.len()) {
                return Err(pos.error("'hasflag' takes an optional variable list and a key list"));
            }
        } else {
            expect_count(&pos_args, want, pos, name)?;
        }
        let keys_arg = pos_args
            .last()
            .ok_or_else(|| pos.error("missing key list"))?;
        let keys = self.string_list(keys_arg, scope)?;
        if (m.kind == MatchType::Matches || m.kind == MatchType::Contains)
            && m.comparator == Comparator::AsciiNumeric
        {
            {
                return Err(pos
                    .error("comparator \"i;ascii-numeric\" supports only :is, :value and :count"));
            }
        }
        Ok(match name {
            "header" => Test::Header {
                names: self.header_names(&pos_args[0], scope)?,
                keys,
                m,
                index,
            },
            "address" => {
                let headers = self.header_names(&pos_args[0], scope)?;
                for h in &headers {
                    if let Some(l) = h.literal()
                        && !is_address_header(l)
                    {
                        return Err(pos_args[0]
                            .pos()
                            .error(format!("'{l}' is not a header that holds addresses")));
                    }
                }
                Test::Address {
                    headers,
                    keys,
                    m,
                    part,
                    index,
                }
            }
            "envelope" => {
                let parts = self.string_list(&pos_args[0], scope)?;
                for p in &parts {
                    if let Some(l) = p.literal()
                        && !matches!(l.to_ascii_lowercase().as_str(), "from" | "to")
                    {
                        return Err(pos_args[0]
                            .pos()
                            .error(format!("unknown envelope part '{l}'")));
                    }
                }
                Test::Envelope {
                    parts,
                    keys,
                    m,
                    part,
                }
            }
            "body" => {
                let raw = tags.has("raw");
                let text = tags.has("text");
                let content = tags.get("content");
                if usize::from(raw) + usize::from(text) + usize::from(content.is_some()) > 1 {
                    return Err(pos.error("only one body transform may be given"));
                }
                let transform = if raw {
                    BodyTransform::Raw
                } else if let Some(t) = content {
                    let Some(a) = &t.val else {
                        return Err(t.pos.error("':content' needs a string list"));
                    };
                    BodyTransform::Content(self.string_list(a, scope)?)
                } else {
                    BodyTransform::Text
                };
                Test::Body { transform, keys, m }
            }
            "string" => Test::String {
                sources: self.string_list(&pos_args[0], scope)?,
                keys,
                m,
            },
            "hasflag" => {
                let vars = if pos_args.len() == 2 {
                    self.need(scope, "variables", pos, "a flag variable")?;
                    let (items, p) = strings(&pos_args[0], "the variable list")?;
                    let mut v = Vec::new();
                    for s in items {
                        let (n, g) = self.var_ref(&s, p, scope)?;
                        v.push(Str::Tmpl(vec![Piece::Var { name: n, global: g }]));
                    }
                    Some(v)
                } else {
                    None
                };
                Test::HasFlag { vars, keys, m }
            }
            "date" => {
                let header = self.string(&pos_args[0], scope, "the header name")?;
                let part = self.date_part(&pos_args[1], scope)?;
                Test::Date {
                    header,
                    zone,
                    part,
                    keys,
                    m,
                    index,
                }
            }
            _ => {
                let part = self.date_part(&pos_args[0], scope)?;
                Test::CurrentDate {
                    zone,
                    part,
                    keys,
                    m,
                }
            }
        })
    }

    fn date_part(&self, arg: &Arg, scope: &Scope) -> Result<Str, CompileError> {
        // An unknown date part makes the test false at run time (as
        // Pigeonhole does; RFC 5260 section 4.2 does not say).
        self.string(arg, scope, "the date part")
    }

    fn match_of(&self, tags: &Tags, scope: &Scope) -> Result<Match, CompileError> {
        let mut kind: Option<(MatchType, Pos)> = None;
        for t in &tags.0 {
            let k = match t.name.as_str() {
                "is" => MatchType::Is,
                "contains" => MatchType::Contains,
                "matches" => MatchType::Matches,
                "value" | "count" => {
                    self.need(scope, "relational", t.pos, &format!(":{}", t.name))?;
                    let op = match &t.val {
                        Some(Arg::Strings { items, .. }) => {
                            items.first().cloned().unwrap_or_default()
                        }
                        _ => String::new(),
                    };
                    let op = match op.to_ascii_lowercase().as_str() {
                        "gt" => RelOp::Gt,
                        "ge" => RelOp::Ge,
                        "lt" => RelOp::Lt,
                        "le" => RelOp::Le,
                        "eq" => RelOp::Eq,
                        "ne" => RelOp::Ne,
                        _ => {
                            return Err(t.pos.error(format!("invalid relational operator '{op}'")));
                        }
                    };
                    if t.name == "value" {
                        MatchType::Value(op)
                    } else {
                        MatchType::Count(op)
                    }
                }
                _ => continue,
            };
            if kind.is_some() {
                return Err(t.pos.error("only one match type may be given"));
            }
            kind = Some((k, t.pos));
        }
        let comparator = match tags.get("comparator") {
            Some(t) => {
                let name = match &t.val {
                    Some(Arg::Strings { items, .. }) => items.first().cloned().unwrap_or_default(),
                    _ => String::new(),
                };
                match name.as_str() {
                    "i;octet" => Comparator::Octet,
                    "i;ascii-casemap" => Comparator::AsciiCasemap,
                    "i;ascii-numeric" => {
                        self.need(
                            scope,
                            "comparator-i;ascii-numeric",
                            t.pos,
                            "comparator \"i;ascii-numeric\"",
                        )?;
                        Comparator::AsciiNumeric
                    }
                    _ => return Err(t.pos.error(format!("unknown comparator '{name}'"))),
                }
            }
            None => Comparator::AsciiCasemap,
        };
        Ok(Match {
            comparator,
            kind: kind.map_or(MatchType::Is, |k| k.0),
        })
    }
}

fn no_args(node: &CommandNode, name: &str) -> Result<(), CompileError> {
    if node.args.is_empty() {
        Ok(())
    } else {
        Err(node.args[0]
            .pos()
            .error(format!("'{name}' takes no argument")))
    }
}

fn expect_count(args: &[Arg], n: usize, pos: Pos, what: &str) -> Result<(), CompileError> {
    if args.len() == n {
        return Ok(());
    }
    let at = args.get(n).map_or(pos, Arg::pos);
    Err(at.error(format!(
        "'{what}' takes {n} positional argument{}, found {}",
        if n == 1 { "" } else { "s" },
        args.len()
    )))
}

fn strings(arg: &Arg, what: &str) -> Result<(Vec<String>, Pos), CompileError> {
    match arg {
        Arg::Strings { items, pos, .. } => Ok((items.clone(), *pos)),
        other => Err(other.pos().error(format!("{what} must be a string list"))),
    }
}

/// A single string; a list of one string is taken too (as Pigeonhole).
fn single_string(arg: &Arg, what: &str) -> Result<String, CompileError> {
    match arg {
        Arg::Strings { items, .. } if items.len() == 1 => Ok(items[0].clone()),
        other => Err(other.pos().error(format!("{what} must be a single string"))),
    }
}

fn valid_var_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// Headers that hold addresses (RFC 5228 section 5.1 asks implementations
/// to allow the address test on these).
fn is_address_header(h: &str) -> bool {
    matches!(
        h.to_ascii_lowercase().as_str(),
        "from"
            | "to"
            | "cc"
            | "bcc"
            | "sender"
            | "resent-from"
            | "resent-to"
            | "resent-cc"
            | "resent-bcc"
            | "resent-sender"
            | "reply-to"
            | "resent-reply-to"
            | "return-path"
            | "delivered-to"
            | "envelope-to"
            | "x-original-to"
            | "original-recipient"
            | "disposition-notification-to"
            | "errors-to"
            | "mail-followup-to"
            | "mail-reply-to"
    ) || h.len() > 2 && h.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-"))
}

/// RFC 5228 section 2.4.2.4: `${hex:...}` and `${unicode:...}`.
fn decode_encoded_chars(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let decoded = if let Some((kind, body)) = inner.split_once(':') {
            let k = kind.trim_start().to_ascii_lowercase();
            if k == "hex" {
                decode_hex(body)
            } else if k == "unicode" {
                decode_unicode(body)?
            } else {
                None
            }
        } else {
            None
        };
        match decoded {
            Some(d) => {
                out.push_str(&d);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn decode_hex(body: &str) -> Option<String> {
    if body.trim().is_empty() {
        return None;
    }
    let mut bytes = Vec::new();
    for tok in body.split([' ', '\t']).filter(|t| !t.is_empty()) {
        if tok.len() > 2 && tok.len() % 2 == 1 {
            return None;
        }
        // Each token is one or two hex digits per octet (RFC 5228: 1*2HEXDIG).
        if tok.len() > 2 {
            return None;
        }
        bytes.push(u8::from_str_radix(tok, 16).ok()?);
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn decode_unicode(body: &str) -> Result<Option<String>, String> {
    if body.trim().is_empty() {
        return Ok(None);
    }
    let mut out = String::new();
    for tok in body.split([' ', '\t']).filter(|t| !t.is_empty()) {
        if tok.len() > 6 {
            return Ok(None);
        }
        let Ok(n) = u32::from_str_radix(tok, 16) else {
            return Ok(None);
        };
        match char::from_u32(n) {
            Some(c) => out.push(c),
            None => {
                return Err(format!(
                    "invalid Unicode character U+{n:X} in encoded-character"
                ));
            }
        }
    }
    Ok(Some(out))
}

/// Splits `${name}`/`${N}` references out of a string (RFC 5229 3).
fn template(s: &str, scope: &Scope) -> Str {
    let mut pieces: Vec<Piece> = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        lit.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after.find('}');
        let inner = end.map(|e| &after[..e]);
        let piece = inner.and_then(|v| {
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                let n: usize = v.parse().ok()?;
                (n <= MAX_MATCH_INDEX).then_some(Piece::Match(n))
            } else {
                let lower = v.to_ascii_lowercase();
                if let Some(g) = lower.strip_prefix("global.") {
                    (scope.exts.contains("include") && valid_var_name(g)).then(|| Piece::Var {
                        name: g.to_string(),
                        global: true,
                    })
                } else if valid_var_name(&lower) {
                    let global = scope.globals.contains(&lower);
                    Some(Piece::Var {
                        name: lower,
                        global,
                    })
                } else if lower.split('.').all(valid_var_name) {
                    // A namespace we do not know expands to nothing (as
                    // Pigeonhole; RFC 5229 section 3 leaves it open).
                    Some(Piece::Lit(String::new()))
                } else {
                    None
                }
            }
        });
        match (piece, end) {
            (Some(p), Some(e)) => {
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(p);
                rest = &after[e + 1..];
            }
            _ => {
                lit.push_str("${");
                rest = after;
            }
        }
    }
    lit.push_str(rest);
    if pieces.is_empty() {
        return Str::Lit(lit);
    }
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Str::Tmpl(pieces)
}
