//! SIP `Contact` parser and Kazoo URL decoding on arbitrary text.
//!
//! Checks, beyond "never panics": a successful parse respects the documented bounds
//! (1..=`MAX_CONTACTS` contacts, header ≤ `MAX_HEADER_LEN`), every contact has a URI and
//! named parameters, and `param`/`has_param` agree with the parameter list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pusher_core::contact::{MAX_CONTACTS, MAX_HEADER_LEN, parse_contacts, url_decode};

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let decoded = url_decode(header);
    // Decoding only ever shrinks (`%HH` → 1 byte, `+` → ` `), or returns the input.
    assert!(decoded.len() <= header.len());
    match parse_contacts(header) {
        Ok(contacts) => {
            assert!(header.len() <= MAX_HEADER_LEN);
            assert!(!contacts.is_empty() && contacts.len() <= MAX_CONTACTS);
            for contact in &contacts {
                assert!(!contact.uri.is_empty());
                for p in &contact.params {
                    assert!(!p.name.is_empty());
                    assert!(contact.has_param(&p.name));
                    if p.value.is_some() {
                        assert!(contact.param(&p.name).is_some());
                    }
                    let _ = url_decode(p.value.as_deref().unwrap_or(""));
                }
            }
        }
        Err(e) => {
            // Error messages quote input, bounded.
            let text = e.to_string();
            assert!(text.len() <= 1024, "error message too long: {}", text.len());
        }
    }
});
