use super::*;

fn parse(uri: &str) -> AmqpUri {
    AmqpUri::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
}

fn err(uri: &str) -> Error {
    match AmqpUri::parse(uri) {
        Ok(u) => panic!("{uri} was accepted: {u:?}"),
        Err(e) => e,
    }
}

#[test]
fn plain_uri_passes_through_unchanged() {
    let u = parse("amqp://guest:guest@10.0.0.1:5672/%2f?heartbeat=10");
    assert_eq!(u.scheme(), Scheme::Amqp);
    assert_eq!(u.host(), "10.0.0.1");
    assert_eq!(u.port(), 5672);
    assert_eq!(u.tls(), None);
    assert_eq!(
        u.client_uri().expose(),
        "amqp://guest:guest@10.0.0.1:5672/%2f?heartbeat=10"
    );
}

#[test]
fn default_ports_follow_the_scheme() {
    assert_eq!(parse("amqp://h").port(), AMQP_PORT);
    assert_eq!(parse("amqps://h").port(), AMQPS_PORT);
    assert_eq!(parse("AMQPS://h:5999").port(), 5999);
    assert_eq!(parse("amqp://").host(), "localhost");
}

#[test]
fn amqps_without_options_verifies_against_system_roots_and_the_host() {
    let u = parse("amqps://kazoo:secret@rabbit.example/");
    let tls = u.tls().expect("amqps has TLS options");
    assert_eq!(
        tls,
        &TlsOptions {
            cacertfile: None,
            client_cert: None,
            server_name: ServerName::UriHost,
            verify: Verify::Peer,
        }
    );
    assert_eq!(
        tls.names(u.host()),
        (Some("rabbit.example"), "rabbit.example")
    );
    assert_eq!(
        u.client_uri().expose(),
        "amqps://kazoo:secret@rabbit.example/"
    );
}

#[test]
fn erlang_style_tls_options_are_read_and_stripped_from_the_client_uri() {
    let u = parse(
        "amqps://kazoo:s3cret@10.0.0.9:5671/%2f?cacertfile=/etc/kazoo/ca.pem\
         &certfile=%2Fetc%2Fkazoo%2Fclient.pem&keyfile=/etc/kazoo/client.key\
         &server_name_indication=rabbit.example&verify=verify_peer\
         &fail_if_no_peer_cert=true&heartbeat=5&connection_timeout=3000",
    );
    let tls = u.tls().expect("tls");
    assert_eq!(tls.cacertfile.as_deref(), Some("/etc/kazoo/ca.pem"));
    assert_eq!(
        tls.client_cert,
        Some(ClientCert {
            certfile: "/etc/kazoo/client.pem".into(),
            keyfile: "/etc/kazoo/client.key".into(),
        })
    );
    assert_eq!(tls.server_name, ServerName::Name("rabbit.example".into()));
    assert_eq!(
        tls.names(u.host()),
        (Some("rabbit.example"), "rabbit.example")
    );
    assert_eq!(tls.verify, Verify::Peer);
    assert_eq!(
        u.client_uri().expose(),
        "amqps://kazoo:s3cret@10.0.0.9:5671/%2f?heartbeat=5&connection_timeout=3000"
    );
}

#[test]
fn verify_none_is_only_what_the_operator_writes() {
    let u = parse("amqps://h/?verify=verify_none");
    assert_eq!(u.tls().map(|t| t.verify), Some(Verify::None));
    assert!(matches!(
        err("amqps://h/?verify=none"),
        Error::BadValue { ref param, .. } if param == "verify"
    ));
    assert!(matches!(
        err("amqps://h/?verify="),
        Error::BadValue { ref param, .. } if param == "verify"
    ));
}

#[test]
fn sni_can_be_disabled_and_the_host_is_still_checked() {
    let u = parse("amqps://[::1]:5671/?server_name_indication=disable");
    assert_eq!(u.host(), "::1");
    let tls = u.tls().expect("tls");
    assert_eq!(tls.server_name, ServerName::Disabled);
    assert_eq!(tls.names(u.host()), (None, "::1"));
}

#[test]
fn unknown_parameters_are_named_all_at_once() {
    let e = err("amqps://h/?cacertfile=/ca.pem&verfy=verify_none&cacert=/x");
    assert_eq!(
        e,
        Error::UnknownParameters(vec!["verfy".into(), "cacert".into()])
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("unknown parameters `verfy`, `cacert` (known: heartbeat"),
        "{msg}"
    );
    assert!(msg.contains("cacertfile"), "{msg}");
}

#[test]
fn tls_parameters_on_plain_amqp_are_refused() {
    let e = err("amqp://h/?cacertfile=/ca.pem&heartbeat=3");
    assert_eq!(e, Error::TlsOnPlain(vec!["cacertfile".into()]));
    assert_eq!(
        e.to_string(),
        "TLS parameter `cacertfile` needs an amqps:// URI"
    );
}

#[test]
fn client_certificate_needs_both_files() {
    assert_eq!(err("amqps://h/?certfile=/c.pem"), Error::HalfClientCert);
    assert_eq!(err("amqps://h/?keyfile=/k.pem"), Error::HalfClientCert);
    assert!(matches!(
        err("amqps://h/?certfile=&keyfile=/k.pem"),
        Error::BadValue { ref param, .. } if param == "certfile"
    ));
}

#[test]
fn repeated_and_bad_numbers_are_refused() {
    assert_eq!(
        err("amqps://h/?verify=verify_peer&verify=verify_none"),
        Error::Repeated("verify".into())
    );
    assert!(matches!(
        err("amqp://h/?heartbeat=abc"),
        Error::BadValue { ref param, .. } if param == "heartbeat"
    ));
    assert!(matches!(
        err("amqp://h/?channel_max=70000"),
        Error::BadValue { ref param, .. } if param == "channel_max"
    ));
}

#[test]
fn malformed_uris_are_refused_without_echoing_them() {
    for (uri, want) in [
        ("http://h", Error::Scheme),
        ("amqp//h", Error::Scheme),
        (
            "amqp://u:pw@h:99999",
            Error::Malformed("the port is not a number from 1 to 65535".into()),
        ),
        (
            "amqp://u:pw@[::1",
            Error::Malformed("an IPv6 address opens `[` and never closes it".into()),
        ),
    ] {
        let e = err(uri);
        assert_eq!(e, want, "{uri}");
        assert!(!e.to_string().contains("pw"), "{e}");
    }
}

#[test]
fn the_password_is_never_shown() {
    let u = parse("amqps://kazoo:hunter2@h:5671/%2f?cacertfile=/ca.pem");
    assert_eq!(
        u.redacted(),
        "amqps://kazoo:***@h:5671/%2f?cacertfile=/ca.pem"
    );
    assert_eq!(u.to_string(), u.redacted());
    assert!(!format!("{u:?}").contains("hunter2"));
    assert!(!format!("{:?}", u.client_uri()).contains("hunter2"));
    assert_eq!(redact("amqp://kazoo:hunter2@h"), "amqp://kazoo:***@h");
    assert_eq!(redact("amqp://user@h"), "amqp://user@h");
    assert_eq!(
        redact("amqps://kazoo:hunter2@h/?bogus=1"),
        "amqps://<unparsable>"
    );
    assert_eq!(redact("kazoo:hunter2"), "<unparsable URI>");
}
