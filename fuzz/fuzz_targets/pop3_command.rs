//! POP3 command lines and the streaming dot-stuffer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        let _ = pop3_wire::parse(line);
    }
    let top = data.first().map(|&b| u32::from(b % 8));
    let mut out = Vec::new();
    let mut s = pop3_wire::DotStuffer::new(top);
    for chunk in data.chunks(7) {
        s.push(chunk, &mut out);
    }
    s.finish(&mut out);
    assert!(out.ends_with(b".\r\n"));
});
