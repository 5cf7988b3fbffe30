use super::*;

#[test]
fn encodes_account_db_and_plus() {
    assert_eq!(
        encode_segment("account/3c/1e/6a2f"),
        "account%2F3c%2F1e%2F6a2f"
    );
    assert_eq!(encode_segment("doc id+1%"), "doc%20id%2B1%25");
}

#[test]
fn credentials_never_in_display() {
    let c = CouchClient::new(
        "http://admin:s3cr%40t@127.0.0.1:5984",
        Duration::from_secs(1),
    )
    .expect("client");
    let shown = format!("{c:?} {}", c.redacted_url());
    assert!(!shown.contains("s3cr"), "{shown}");
    assert_eq!(c.password.as_deref(), Some("s3cr@t"));
    assert_eq!(c.user.as_deref(), Some("admin"));
    assert!(!redact_url("http://a:pw@h/").contains("pw"));
}

#[test]
fn url_building_keeps_prefix() {
    let c =
        CouchClient::new("http://127.0.0.1:5984/couch", Duration::from_secs(1)).expect("client");
    assert_eq!(
        c.url(&["account/ab/cd/ef", "dev+1"], "").as_str(),
        "http://127.0.0.1:5984/couch/account%2Fab%2Fcd%2Fef/dev%2B1"
    );
}

#[test]
fn rejects_non_http() {
    assert!(CouchClient::new("ftp://x", Duration::from_secs(1)).is_err());
    assert!(CouchClient::new("not a url", Duration::from_secs(1)).is_err());
}
