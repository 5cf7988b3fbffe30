use super::*;

const FIXTURES: &str = include_str!("../../../../tests/fixtures/kamailio-captured.jsonl");

fn fixture_contacts() -> Vec<String> {
    FIXTURES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["body"]["Contact"].as_str().map(str::to_string)
        })
        .collect()
}

fn one(header: &str) -> Contact {
    let mut contacts = parse_contacts(header).unwrap();
    assert_eq!(contacts.len(), 1, "{header}");
    contacts.remove(0)
}

fn p(name: &str, value: Option<&str>) -> Param {
    Param {
        name: name.to_string(),
        value: value.map(str::to_string),
    }
}

#[test]
fn fixture_token_contact() {
    let contacts = fixture_contacts();
    assert_eq!(contacts.len(), 2);
    let c = one(&contacts[0]);
    assert_eq!(
        c.uri,
        "sip:2001@127.0.0.1:5074;transport=udp;app-id=org.myorg.myapp;pn-tok=abc;pn-type=apple"
    );
    assert_eq!(
        c.params,
        vec![
            p("transport", Some("udp")),
            p("app-id", Some("org.myorg.myapp")),
            p("pn-tok", Some("abc")),
            p("pn-type", Some("apple")),
            p(
                "+sip.instance",
                Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
            ),
        ]
    );
    assert_eq!(c.param("pn-tok"), Some("abc"));
}

#[test]
fn fixture_rfc8599_contact() {
    let c = one(&fixture_contacts()[1]);
    assert_eq!(c.param("pn-provider"), Some("apns"));
    assert_eq!(c.param("pn-param"), Some("ABCD1234.org.myorg.myapp.voip"));
    assert_eq!(
        c.param("pn-prid"),
        Some("00fc13adff785122b4ad28809a3420982341241421348097878e577c991de8f0")
    );
    assert_eq!(c.param("expires"), Some("600"));
    assert_eq!(c.params.last(), Some(&p("expires", Some("600"))));
}

#[test]
fn quoted_display_name_with_uri_and_header_params() {
    let c = one(r#""Alice Smith" <sip:a@b;x=1>;y=2"#);
    assert_eq!(c.uri, "sip:a@b;x=1");
    assert_eq!(c.params, vec![p("x", Some("1")), p("y", Some("2"))]);
}

#[test]
fn unquoted_display_name() {
    let c = one("Bob Jones <sip:bob@example.com>;expires=60");
    assert_eq!(c.uri, "sip:bob@example.com");
    assert_eq!(c.param("expires"), Some("60"));
}

#[test]
fn display_name_with_escaped_quote() {
    let c = one(r#""Bob \"the\" <Builder>" <sip:bob@h>"#);
    assert_eq!(c.uri, "sip:bob@h");
    assert!(c.params.is_empty());
}

#[test]
fn no_space_between_display_name_and_uri() {
    assert_eq!(one(r#""Bob"<sip:bob@h>"#).uri, "sip:bob@h");
}

#[test]
fn bare_uri_params_all_listed() {
    let c = one("sip:u@h;transport=tcp;ob");
    assert_eq!(c.uri, "sip:u@h");
    assert_eq!(c.params, vec![p("transport", Some("tcp")), p("ob", None)]);
}

#[test]
fn bare_uri_without_params() {
    let c = one("sips:u@example.com:5061");
    assert_eq!(c.uri, "sips:u@example.com:5061");
    assert!(c.params.is_empty());
}

#[test]
fn ipv6_hosts() {
    let c = one("<sip:u@[2001:db8::1]:5060;transport=tcp>;reg-id=1");
    assert_eq!(c.uri, "sip:u@[2001:db8::1]:5060;transport=tcp");
    assert_eq!(c.param("transport"), Some("tcp"));
    assert_eq!(c.param("reg-id"), Some("1"));

    let c = one("sip:[::1]:5060;lr");
    assert_eq!(c.uri, "sip:[::1]:5060");
    assert_eq!(c.params, vec![p("lr", None)]);

    let c = one("<sip:[::1]>");
    assert_eq!(c.uri, "sip:[::1]");
}

#[test]
fn several_contacts_comma_in_quoted_display_name() {
    let contacts =
        parse_contacts(r#""Smith, John" <sip:j@h;a=1>, <sip:k@h>;b=2 , sip:l@h;c"#).unwrap();
    assert_eq!(contacts.len(), 3);
    assert_eq!(contacts[0].uri, "sip:j@h;a=1");
    assert_eq!(contacts[0].param("a"), Some("1"));
    assert_eq!(contacts[1].uri, "sip:k@h");
    assert_eq!(contacts[1].param("b"), Some("2"));
    assert_eq!(contacts[2].uri, "sip:l@h");
    assert!(contacts[2].has_param("c"));
}

#[test]
fn quoted_values_with_separators() {
    let c = one(r#"<sip:u@h>;note="a;b,c<d>e=f";x=1"#);
    assert_eq!(c.param("note"), Some("a;b,c<d>e=f"));
    assert_eq!(c.param("x"), Some("1"));

    let c = one(r#"<sip:u@h>;q="say \"hi\"""#);
    assert_eq!(c.param("q"), Some(r#"say "hi""#));

    // Quoted values inside the URI are unquoted too, and may hide `;` and `>`.
    let c = one(r#"<sip:u@h;k="1;2>3";z>"#);
    assert_eq!(c.params, vec![p("k", Some("1;2>3")), p("z", None)]);
}

#[test]
fn flag_params() {
    let c = one("<sip:u@h;ob;lr>;+sip.ice;x=");
    assert_eq!(
        c.params,
        vec![
            p("ob", None),
            p("lr", None),
            p("+sip.ice", None),
            p("x", Some(""))
        ]
    );
    assert_eq!(c.param("ob"), None);
    assert!(c.has_param("ob"));
    assert_eq!(c.param("x"), Some(""));
    assert!(!c.has_param("missing"));
}

#[test]
fn param_returns_first_valued_occurrence_case_sensitively() {
    let c = one("<sip:u@h;tok;tok=1>;tok=2;TOK=3");
    assert_eq!(c.param("tok"), Some("1"));
    assert_eq!(c.param("TOK"), Some("3"));
    assert_eq!(c.param("Tok"), None);
}

#[test]
fn whitespace_around_separators() {
    let c = one(" <sip:u@h ; transport = tcp> ;  expires = 60 ; ob ");
    assert_eq!(c.uri, "sip:u@h ; transport = tcp");
    assert_eq!(
        c.params,
        vec![
            p("transport", Some("tcp")),
            p("expires", Some("60")),
            p("ob", None)
        ]
    );
    // CRLF folding and empty entries are tolerated.
    let c = one("<sip:u@h>;a=1;;\r\n\t;b=2;");
    assert_eq!(c.params, vec![p("a", Some("1")), p("b", Some("2"))]);
}

#[test]
fn uri_headers_are_not_params() {
    let c = one("<sip:u@h;transport=tcp?subject=hi;x=y&a=b>;expires=5");
    assert_eq!(c.uri, "sip:u@h;transport=tcp?subject=hi;x=y&a=b");
    assert_eq!(
        c.params,
        vec![p("transport", Some("tcp")), p("expires", Some("5"))]
    );
    let c = one("<sip:u@h?a=b>");
    assert!(c.params.is_empty());
}

#[test]
fn user_part_with_semicolon_is_part_of_the_uri() {
    let c = one("<sip:+1555;phone-context=example.com@h;user=phone>");
    assert_eq!(c.params, vec![p("user", Some("phone"))]);
}

#[test]
fn star_contact() {
    let c = one("*");
    assert_eq!(c.uri, "*");
    assert!(c.params.is_empty());
    assert_eq!(one("  *  ").uri, "*");
}

#[test]
fn garbage_is_an_error() {
    use ContactError as E;
    assert_eq!(parse_contacts("<sip:a"), Err(E::UnterminatedAngle));
    assert_eq!(
        parse_contacts("\"unterminated <sip:a@b>"),
        Err(E::UnterminatedQuote)
    );
    assert_eq!(parse_contacts(""), Err(E::Empty));
    assert_eq!(parse_contacts(" \t\r\n "), Err(E::Empty));
    assert_eq!(
        parse_contacts("sip:a@b>"),
        Err(E::Unexpected { ch: '>', pos: 7 })
    );
    assert_eq!(
        parse_contacts("<sip:a<b>>"),
        Err(E::Unexpected { ch: '<', pos: 6 })
    );
    assert_eq!(
        parse_contacts("<sip:a@b> junk"),
        Err(E::Unexpected { ch: 'j', pos: 10 })
    );
    assert_eq!(
        parse_contacts("<sip:a@b>, , <sip:c@d>"),
        Err(E::EmptyContact { pos: 10 })
    );
    assert!(matches!(
        parse_contacts("<sip:a@b>,"),
        Err(E::EmptyContact { .. })
    ));
    assert!(matches!(
        parse_contacts("<>"),
        Err(E::InvalidUri {
            reason: "empty",
            ..
        })
    ));
    assert!(matches!(parse_contacts("hello"), Err(E::InvalidUri { .. })));
    assert!(matches!(
        parse_contacts("Bob sip:a@b"),
        Err(E::InvalidUri { .. })
    ));
    assert!(matches!(
        parse_contacts("<sip:>"),
        Err(E::InvalidUri { .. })
    ));
    assert!(matches!(
        parse_contacts("<1sip:a@b>"),
        Err(E::InvalidUri { .. })
    ));
    assert!(matches!(
        parse_contacts("<sip:a@b>;=x"),
        Err(E::InvalidParam { .. })
    ));
    assert!(matches!(
        parse_contacts(r#"<sip:a@b>;x="q"junk"#),
        Err(E::InvalidParam { .. })
    ));
    assert!(matches!(
        parse_contacts(r#""Bob" Jr <sip:a@b>"#),
        Err(E::InvalidDisplayName(_))
    ));
    assert!(matches!(
        parse_contacts(r#"<sip:a@b>;x="\"#),
        Err(E::UnterminatedQuote)
    ));
}

#[test]
fn size_limits() {
    let long = format!("<sip:u@h>;x={}", "a".repeat(10 * 1024));
    assert_eq!(
        parse_contacts(&long),
        Err(ContactError::TooLong { len: long.len() })
    );
    let at_limit = format!("<sip:u@h>;x={}", "a".repeat(MAX_HEADER_LEN - 12));
    assert_eq!(at_limit.len(), MAX_HEADER_LEN);
    assert_eq!(
        parse_contacts(&at_limit).unwrap()[0]
            .param("x")
            .map(str::len),
        Some(MAX_HEADER_LEN - 12)
    );

    let many = vec!["<sip:u@h>"; MAX_CONTACTS + 1].join(",");
    assert_eq!(
        parse_contacts(&many),
        Err(ContactError::TooManyContacts {
            count: MAX_CONTACTS + 1
        })
    );
    let max = vec!["<sip:u@h>"; MAX_CONTACTS].join(",");
    assert_eq!(parse_contacts(&max).unwrap().len(), MAX_CONTACTS);
}

#[test]
fn error_messages_are_short() {
    let err = parse_contacts(&format!("<{}>", "x".repeat(1000))).unwrap_err();
    assert!(err.to_string().len() < 150, "{err}");
}

#[test]
fn never_panics_on_odd_input() {
    let inputs = [
        "\"",
        "<",
        ">",
        ",",
        ";",
        "=",
        "\\",
        "<\"",
        "\"<",
        "<sip:a@b>;",
        "<sip:a@b>;;",
        "sip:a@b;\"",
        "sip:é@ü;ä=ö",
        "<sip:a@b>;x=\"é\\",
        "\u{0}",
        "<sip:a@b>\u{0}",
        "<sip:@>",
        "sip:a@b,,",
        "*,*",
        "<*>",
    ];
    for input in inputs {
        let _ = parse_contacts(input);
    }
    let c = one("sip:é@ü;ä=ö");
    assert_eq!(c.param("ä"), Some("ö"));
}

/// Cheap deterministic fuzzing: random strings over the characters that matter.
#[test]
fn random_input_never_panics() {
    const ALPHABET: [char; 22] = [
        '<', '>', '"', '\\', ';', ',', '=', '@', ':', '?', ' ', 's', 'i', 'p', 'é', '€', '*', '\t',
        '[', ']', '%', '+',
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    let mut parsed = 0;
    for _ in 0..20_000 {
        let len = next() % 40;
        let mut s: String = (0..len)
            .map(|_| ALPHABET[next() % ALPHABET.len()])
            .collect();
        if next() % 2 == 0 {
            s = format!("<sip:{s}");
        }
        if let Ok(contacts) = parse_contacts(&s) {
            parsed += 1;
            assert!(!contacts.is_empty() && contacts.len() <= MAX_CONTACTS);
            for c in &contacts {
                assert!(!c.uri.is_empty());
                assert!(c.params.iter().all(|p| !p.name.is_empty()));
            }
        }
        let _ = url_decode(&s);
    }
    assert!(parsed > 0, "the generator should hit some valid headers");
}

#[test]
fn url_decode_cases() {
    assert_eq!(url_decode("a%2Fb"), "a/b");
    assert_eq!(url_decode("a%2fb"), "a/b");
    assert_eq!(url_decode("a+b"), "a b");
    assert_eq!(url_decode("a%2Bb"), "a+b");
    assert_eq!(url_decode("%zz"), "%zz");
    assert_eq!(url_decode("abc%"), "abc%");
    assert_eq!(url_decode("abc%4"), "abc%4");
    assert_eq!(url_decode("caf%C3%A9"), "café");
    assert_eq!(url_decode("%FF+x"), "%FF+x");
    assert_eq!(url_decode(""), "");
    assert_eq!(url_decode("org.myorg.myapp"), "org.myorg.myapp");
    assert_eq!(url_decode("sip:127.0.0.1:5060"), "sip:127.0.0.1:5060");
}
