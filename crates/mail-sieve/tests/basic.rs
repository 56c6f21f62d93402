#![allow(clippy::unwrap_used)]
//! Behaviour of the interpreter on small scripts, and the bounds on hostile
//! ones (huge scripts, deep includes, many actions, pathological
//! `:matches`).

use std::collections::HashMap;

use mail_sieve::{
    Action, Envelope, IncludeLocation, IncludeResolver, NoHost, NoIncludes, Outcome, RunContext,
    compile,
};

const MSG: &[u8] = b"From: Alice <alice@example.com>\r\nTo: bob+lists@example.org\r\nSubject: Hello world\r\nList-Id: <dev.lists.example.com>\r\nMessage-ID: <1@example.com>\r\n\r\nHi Bob\r\n";

fn env() -> Envelope {
    Envelope {
        from: "alice@example.com".into(),
        to: "bob+lists@example.org".into(),
    }
}

fn run_with(src: &str, inc: &dyn IncludeResolver, msg: &[u8]) -> Outcome {
    let script = compile(src, inc).unwrap_or_else(|e| panic!("{e}"));
    let mut ctx = RunContext {
        now: 1_700_000_000,
        utc_offset: 0,
        host: &NoHost,
    };
    script.run(msg, &env(), &mut ctx)
}

fn run(src: &str) -> Outcome {
    run_with(src, &NoIncludes, MSG)
}

fn fileinto(m: &str) -> Action {
    Action::FileInto {
        mailbox: m.into(),
        flags: vec![],
        create: false,
    }
}

fn implicit() -> Action {
    Action::Keep {
        flags: vec![],
        implicit: true,
    }
}

#[test]
fn error_names_line_and_column() {
    let e = compile(
        "require \"fileinto\";\nif true {\n  fileinto;\n}\n",
        &NoIncludes,
    )
    .unwrap_err();
    assert_eq!((e.line, e.column), (3, 3), "{e}");
    assert!(e.to_string().starts_with("line 3, column 3: "), "{e}");
    let e = compile("fileinto \"x\";", &NoIncludes).unwrap_err();
    assert!(e.message.contains("fileinto"), "{e}");
    let e = compile("require \"nosuch\";", &NoIncludes).unwrap_err();
    assert_eq!((e.line, e.column), (1, 9));
    let e = compile(
        "if header :is \"x\" \"y\" { keep; }\nelse\n{ discard }",
        &NoIncludes,
    )
    .unwrap_err();
    assert_eq!(e.line, 3, "{e}");
}

#[test]
fn lists_and_variables() {
    let o = run(r#"require ["fileinto", "variables"];
if header :matches "List-Id" "*<*.lists.example.com>*" { fileinto "lists/${2}"; }"#);
    assert_eq!(o.actions, vec![fileinto("lists/dev")]);
    let o = run(r#"require ["fileinto", "envelope", "subaddress"];
if envelope :detail "to" "lists" { fileinto "L"; stop; } keep;"#);
    assert_eq!(o.actions, vec![fileinto("L")]);
}

#[test]
fn multiline_strings_and_numbers() {
    let o = run("require \"reject\";\nif size :under 1K {\nreject text:\nline one\n..dot\n.\n;\n}");
    assert_eq!(
        o.actions,
        vec![Action::Reject {
            reason: "line one\r\n.dot\r\n".into(),
            extended: false
        }]
    );
}

#[test]
fn flags_apply_to_implicit_keep() {
    let o = run(r#"require "imap4flags"; addflag ["\\seen", "$label1"]; removeflag "$label1";"#);
    assert_eq!(
        o.actions,
        vec![Action::Keep {
            flags: vec!["\\Seen".into()],
            implicit: true
        }]
    );
}

#[test]
fn runtime_error_keeps() {
    let o = run(r#"require ["variables"]; set "a" "not an address"; redirect "${a}";"#);
    assert_eq!(o.actions, vec![implicit()]);
    assert!(o.error.is_some());
}

#[test]
fn too_many_actions_and_redirects_keep() {
    let mut s = String::from("require [\"fileinto\"];\n");
    for i in 0..(mail_sieve::MAX_ACTIONS + 1) {
        s.push_str(&format!("fileinto \"f{i}\";\n"));
    }
    let o = run(&s);
    assert_eq!(o.actions, vec![implicit()]);
    assert!(o.error.unwrap().message.contains("actions"));
    let mut s = String::new();
    for i in 0..(mail_sieve::MAX_REDIRECTS + 1) {
        s.push_str(&format!("redirect \"r{i}@example.net\";\n"));
    }
    let o = run(&s);
    assert_eq!(o.actions, vec![implicit()]);
    assert!(o.error.unwrap().message.contains("redirects"));
}

#[test]
fn odd_bytes_are_errors_not_panics() {
    // Found by the sieve_parse fuzz target: a multi-byte header name.
    assert!(compile("if address \"\u{fffd}\" \"x\" { keep; }", &NoIncludes).is_err());
    assert!(compile("if address \"x\u{fffd}\" \"x\" { keep; }", &NoIncludes).is_err());
}

#[test]
fn huge_script_refused() {
    let body = "keep;\n".repeat(mail_sieve::MAX_SCRIPT_SIZE / 6 + 1);
    let e = compile(&body, &NoIncludes).unwrap_err();
    assert!(e.message.contains("larger"), "{e}");
}

#[test]
fn deep_nesting_refused() {
    let s = format!("{}keep;{}", "if true {".repeat(1000), "}".repeat(1000));
    assert!(compile(&s, &NoIncludes).is_err());
    let s = format!("if {}true{} {{ keep; }}", "not ".repeat(100_000), "");
    assert!(compile(&s, &NoIncludes).is_err());
}

struct Map(HashMap<String, String>);
impl IncludeResolver for Map {
    fn resolve(&self, _l: IncludeLocation, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

#[test]
fn includes_bounded_and_cycles_refused() {
    // A chain deeper than the limit.
    let mut m = HashMap::new();
    for i in 0..50 {
        m.insert(
            format!("s{i}"),
            format!("require \"include\"; include \"s{}\";", i + 1),
        );
    }
    m.insert("s50".into(), "keep;".into());
    let e = compile("require \"include\"; include \"s0\";", &Map(m)).unwrap_err();
    assert!(e.message.contains("deeper"), "{e}");
    // A cycle.
    let mut m = HashMap::new();
    m.insert("a".into(), "require \"include\"; include \"b\";".into());
    m.insert("b".into(), "require \"include\"; include \"a\";".into());
    let e = compile("require \"include\"; include \"a\";", &Map(m)).unwrap_err();
    assert!(e.message.contains("itself"), "{e}");
    // Fan-out: each script includes the next twice; compiled once each.
    let mut m = HashMap::new();
    for i in 0..9 {
        m.insert(
            format!("s{i}"),
            format!(
                "require \"include\"; include \"s{n}\"; include \"s{n}\";",
                n = i + 1
            ),
        );
    }
    m.insert("s9".into(), "require \"fileinto\"; fileinto \"x\";".into());
    let o = run_with("require \"include\"; include \"s0\";", &Map(m), MSG);
    assert_eq!(o.actions, vec![fileinto("x")]);
    // Missing but optional, and missing at run time.
    let o = run("require \"include\"; include :optional \"nope\"; discard;");
    assert_eq!(o.actions, vec![]);
    // A missing script fails when the include runs (so scripts can be
    // uploaded in any order)...
    let o = run("require \"include\"; include \"nope\"; discard;");
    assert_eq!(o.actions, vec![implicit()]);
    assert!(o.error.unwrap().message.contains("nope"));
    // ...or, when the resolver asks for it, refuses the script (Pigeonhole).
    struct Strict;
    impl IncludeResolver for Strict {
        fn resolve(&self, _l: IncludeLocation, _name: &str) -> Option<String> {
            None
        }
        fn missing_is_error(&self) -> bool {
            true
        }
    }
    let e = compile("require \"include\";\ninclude \"nope\";", &Strict).unwrap_err();
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn pathological_matches_bounded() {
    let long = "a".repeat(60_000);
    let msg = format!("Subject: {long}\r\n\r\nx\r\n");
    let pattern = format!("{}b", "*a".repeat(200));
    let src = format!(
        "require \"fileinto\"; if header :matches \"subject\" \"{pattern}\" {{ fileinto \"x\"; }}"
    );
    let o = run_with(&src, &NoIncludes, msg.as_bytes());
    assert_eq!(o.actions, vec![implicit()]);
    let pattern = format!("{}?*", "*?".repeat(300));
    let src = format!(
        "require \"fileinto\"; if header :matches \"subject\" \"{pattern}\" {{ fileinto \"x\"; }}"
    );
    let o = run_with(&src, &NoIncludes, msg.as_bytes());
    assert_eq!(o.actions, vec![fileinto("x")]);
    // A "?" segment that would cost value x segment comparisons is refused
    // at run time: the message is kept.
    let long = "a".repeat(300_000);
    let msg = format!("Subject: {long}\r\n\r\nx\r\n");
    let pattern = format!("*?{}b*", "a".repeat(20_000));
    let src = format!(
        "require \"fileinto\"; if header :matches \"subject\" \"{pattern}\" {{ fileinto \"x\"; }}"
    );
    let o = run_with(&src, &NoIncludes, msg.as_bytes());
    assert_eq!(o.actions, vec![implicit()]);
    assert!(o.error.unwrap().message.contains("too costly"));
}

#[test]
fn variables_are_bounded() {
    let o = run(r#"require ["variables", "fileinto"];
set "a" "0123456789abcdef";
set "a" "${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}";
set "a" "${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}";
set "a" "${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}${a}";
set :length "n" "${a}";
fileinto "${n}";"#);
    assert_eq!(
        o.actions,
        vec![fileinto(&mail_sieve::MAX_VARIABLE_SIZE.to_string())]
    );
}
