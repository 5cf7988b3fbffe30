use super::*;

const SAMPLE: &str = r#"
; section are between [] = [section]
# hash comments too
[amqp]
uri = "amqp://guest:guest@10.1.0.1:5672"
uri = amqp://guest:guest@10.1.0.2:5672 ; second broker

[zone]
name = "z100"
amqp_uri = "amqp://guest:guest@10.1.0.1:5672"

[zone]
name = "z200"
amqp_uri = "amqp://guest:guest@10.2.0.1:5672"

[bigcouch]
compact_automatically = true
cookie = change_me
ip = "10.1.0.5"
port = 15984
username = "kazoo"
password = "p@ss:w/rd"
admin_port = 15986

[kazoo_apps]
host = "kazoo1.z100.example.com"
zone = "z100"
cookie = change_me

[kazoo_apps]
host = "kazoo1.z200.example.com"
zone = "z200"
cookie = change_me

[log]
syslog = info
console = notice
file = error
"#;

#[test]
fn parses_sections_entries_quotes_and_comments() {
    let ini = KazooIni::parse(SAMPLE).expect("parse");
    let names: Vec<&str> = ini.sections.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "amqp",
            "zone",
            "zone",
            "bigcouch",
            "kazoo_apps",
            "kazoo_apps",
            "log"
        ]
    );
    let amqp = &ini.sections[0];
    let uris: Vec<&str> = amqp.get_all("uri").map(|e| e.value.as_str()).collect();
    assert_eq!(
        uris,
        [
            "amqp://guest:guest@10.1.0.1:5672",
            "amqp://guest:guest@10.1.0.2:5672"
        ]
    );
    assert_eq!(amqp.get("uri").map(|e| e.line), Some(5));
    let couch = ini.sections("bigcouch").next().expect("bigcouch");
    assert_eq!(couch.value("cookie"), Some("change_me"));
    assert_eq!(couch.value("password"), Some("p@ss:w/rd"));
    assert_eq!(couch.value("compact_automatically"), Some("true"));
}

#[test]
fn view_for_a_host_in_zone_z200() {
    let ini = KazooIni::parse(SAMPLE).expect("parse");
    let host = "kazoo1.z200.example.com";
    let zone = ini.node_zone(host).expect("zone");
    assert_eq!((zone.value.as_str(), zone.line), ("z200", 32));
    let view = ini.pusher_view(host, Some("z200")).expect("view");
    // The generic [amqp] applies to every zone; both of its URIs, in order.
    let uris: Vec<&str> = view.amqp_uris.iter().map(|u| u.value.as_str()).collect();
    assert_eq!(
        uris,
        [
            "amqp://guest:guest@10.1.0.1:5672",
            "amqp://guest:guest@10.1.0.2:5672"
        ]
    );
    let couch = view.couch_url.expect("couch");
    assert_eq!(couch.value, "http://kazoo:p%40ss%3Aw%2Frd@10.1.0.5:15984");
    assert_eq!(
        (couch.place(), couch.line),
        ("[bigcouch] ip".to_string(), 19)
    );
}

#[test]
fn zone_amqp_uri_is_used_when_there_is_no_amqp_section() {
    let text = "[zone]\nname = \"z1\"\namqp_uri = \"amqp://a:b@z1:5672\"\n\
                    [zone]\nname = \"z2\"\namqp_uri = \"amqp://a:b@z2:5672\"\n";
    let ini = KazooIni::parse(text).expect("parse");
    let view = ini.pusher_view("h", Some("z2")).expect("view");
    assert_eq!(view.amqp_uris.len(), 1);
    assert_eq!(view.amqp_uris[0].value, "amqp://a:b@z2:5672");
    assert_eq!(view.amqp_uris[0].place(), "[zone] amqp_uri");
    // An unknown zone gets nothing from the named [zone] sections.
    let none = ini.pusher_view("h", Some("z9")).expect("view");
    assert!(none.amqp_uris.is_empty());
    assert!(none.couch_url.is_none());
}

#[test]
fn host_section_beats_zone_section_beats_generic() {
    let text = "\
[amqp]\nuri = amqp://generic\n\
[amqp]\nzone = z1\nuri = amqp://zone1\n\
[amqp]\nhost = me.example\nuri = amqp://mine\n\
[amqp]\nhost = other.example\nuri = amqp://theirs\n";
    let ini = KazooIni::parse(text).expect("parse");
    let first = |host: &str, zone: Option<&str>| {
        ini.pusher_view(host, zone).expect("view").amqp_uris[0]
            .value
            .clone()
    };
    assert_eq!(first("ME.example", Some("z1")), "amqp://mine");
    assert_eq!(first("x", Some("z1")), "amqp://zone1");
    assert_eq!(first("x", Some("z2")), "amqp://generic");
    assert_eq!(first("x", None), "amqp://generic");
}

#[test]
fn node_zone_from_a_single_hostless_section_or_none_when_ambiguous() {
    let one = KazooIni::parse("[kazoo_apps]\nzone = \"east\"\ncookie = c\n").expect("ok");
    assert_eq!(one.node_zone("any").map(|z| z.value), Some("east".into()));
    let two = KazooIni::parse("[kazoo_apps]\nzone = a\n[kazoo_apps]\nzone = b\n").expect("ok");
    assert_eq!(two.node_zone("any"), None);
    let other_host = KazooIni::parse("[kazoo_apps]\nhost = elsewhere\nzone = a\n").expect("ok");
    assert_eq!(other_host.node_zone("here"), None);
    let no_zone = KazooIni::parse("[kazoo_apps]\ncookie = c\n").expect("ok");
    assert_eq!(no_zone.node_zone("here"), None);
}

#[test]
fn bigcouch_defaults_credentials_and_ipv6() {
    let url = |text: &str| {
        KazooIni::parse(text)
            .expect("parse")
            .pusher_view("h", None)
            .expect("view")
            .couch_url
            .map(|u| u.value)
    };
    assert_eq!(
        url("[bigcouch]\ncookie = x\n").as_deref(),
        Some("http://localhost:5984")
    );
    assert_eq!(
        url("[bigcouch]\nip = ::1\nport = 5984\nusername = \"\"\npassword = \"\"\n").as_deref(),
        Some("http://[::1]:5984")
    );
    assert_eq!(
        url("[bigcouch]\nip = db\nusername = admin\n").as_deref(),
        Some("http://admin@db:5984")
    );
    assert_eq!(url("[amqp]\nuri = amqp://x\n"), None);
}

#[test]
fn bad_bigcouch_values_name_section_key_and_line_not_the_value() {
    let ini = KazooIni::parse("[bigcouch]\nip = db\nport = lots\n").expect("parse");
    let err = ini.pusher_view("h", None).expect_err("bad port");
    assert_eq!(
        err.to_string(),
        "line 3: [bigcouch] port is invalid: expected a port number from 1 to 65535"
    );
    let ini = KazooIni::parse("[bigcouch]\nip = \"a/b\"\n").expect("parse");
    assert!(matches!(
        ini.pusher_view("h", None),
        Err(Error::Invalid { line: 2, .. })
    ));
}

#[test]
fn syntax_errors_name_the_line_and_never_the_content() {
    let cases = [
        (
            "[amqp]\nthis is not ini hunter2\n",
            Error::Syntax { line: 2 },
        ),
        (
            "uri = amqp://x\n",
            Error::KeyOutsideSection {
                line: 1,
                key: "uri".into(),
            },
        ),
        (
            "[bigcouch]\npassword = \"hunter2\n",
            Error::BadQuote {
                line: 2,
                key: "password".into(),
            },
        ),
        (
            "[bigcouch]\npassword = \"hunter2\" trailing\n",
            Error::BadQuote {
                line: 2,
                key: "password".into(),
            },
        ),
        ("[amqp\nuri = x\n", Error::Syntax { line: 1 }),
        ("[]\n", Error::Syntax { line: 1 }),
    ];
    for (text, want) in cases {
        let err = KazooIni::parse(text).expect_err(text);
        assert_eq!(err, want, "{text}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

#[test]
fn values_keep_hashes_inside_and_quoted_comment_chars() {
    let ini = KazooIni::parse(
        "\u{feff}[a]\nk1 = x#y\nk2 = \"v ; not a comment\" ; comment\nk3 =\nk4 = v # c\n",
    )
    .expect("parse");
    let s = &ini.sections[0];
    assert_eq!(s.value("k1"), Some("x#y"));
    assert_eq!(s.value("k2"), Some("v ; not a comment"));
    assert_eq!(s.value("k3"), Some(""));
    assert_eq!(s.value("k4"), Some("v"));
}

#[test]
fn debug_of_the_view_shows_no_credentials() {
    let ini = KazooIni::parse(SAMPLE).expect("parse");
    let view = ini.pusher_view("x", None).expect("view");
    let shown = format!("{view:?}");
    assert!(
        !shown.contains("guest") && !shown.contains("p@ss"),
        "{shown}"
    );
}
