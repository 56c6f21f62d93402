//! Sieve scripts from arbitrary bytes through the parser, validation and
//! compilation (`mail_sieve::compile`): an error, never a panic; errors
//! name a position inside the script.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    if let Err(e) = mail_sieve::compile(&src, &mail_sieve::NoIncludes) {
        assert!(e.line >= 1 && e.column >= 1);
        let lines = src.split('\n').count() as u32;
        assert!(e.line <= lines.max(1), "{e} past the end");
        let _ = e.to_string();
    }
});
