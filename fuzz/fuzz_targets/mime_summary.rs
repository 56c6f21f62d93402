//! The delivery-time MIME summary and SORT/THREAD keys: any bytes, no
//! panic, offsets inside the message.
#![no_main]

fn check(p: &mail_summary::BodyPart, len: u64) {
    assert!(p.header_start <= p.body_start && p.body_start <= p.body_end && p.body_end <= len);
    for c in &p.parts {
        check(c, len);
    }
    if let Some(m) = &p.message {
        check(&m.1, len);
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = mail_summary::summarize(data);
    check(&s.body, data.len() as u64);
    let _ = mail_summary::sort_keys(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = mail_summary::base_subject(text);
    }
});
