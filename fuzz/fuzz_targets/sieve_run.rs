//! A Sieve script and a message from arbitrary bytes (split at the first
//! NUL): the script compiled and run against the message (header, address,
//! body, date tests, the `:matches` wildcard matcher, variables). The run
//! ends with a bounded list of actions, never a panic.
#![no_main]

use mail_sieve::{Envelope, NoHost, NoIncludes, RunContext};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (script, message) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"From: a@b.c\r\nSubject: x\r\n\r\nbody\r\n"[..]),
    };
    let src = String::from_utf8_lossy(script);
    let Ok(script) = mail_sieve::compile(&src, &NoIncludes) else {
        return;
    };
    let env = Envelope {
        from: "sender@example.net".into(),
        to: "user+detail@example.org".into(),
    };
    let mut ctx = RunContext {
        now: 1_700_000_000,
        utc_offset: 3600,
        host: &NoHost,
    };
    let out = script.run(message, &env, &mut ctx);
    // Room for MAX_ACTIONS actions plus the implicit keep.
    assert!(out.actions.len() <= mail_sieve::MAX_ACTIONS + 1);
});
