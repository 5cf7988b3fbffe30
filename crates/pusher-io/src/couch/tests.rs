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
        c.url(&["account/ab/cd/ef", "dev+1"], "")
            .expect("url")
            .as_str(),
        "http://127.0.0.1:5984/couch/account%2Fab%2Fcd%2Fef/dev%2B1"
    );
}

#[test]
fn rejects_non_http() {
    assert!(CouchClient::new("ftp://x", Duration::from_secs(1)).is_err());
    assert!(CouchClient::new("not a url", Duration::from_secs(1)).is_err());
}

#[test]
fn dot_segments_and_empty_names_are_refused() {
    let c =
        CouchClient::new("http://127.0.0.1:5984/couch", Duration::from_secs(1)).expect("client");
    for bad in ["", ".", ".."] {
        for segments in [
            vec![bad],
            vec!["db", bad],
            vec!["db", "doc", bad],
            vec![bad, "doc"],
        ] {
            match c.url(&segments, "") {
                Err(Error::InvalidName(name)) => assert_eq!(name, bad),
                other => panic!("{segments:?}: {other:?}"),
            }
        }
    }
    // Only whole dot segments are special: these are ordinary names.
    assert_eq!(
        c.url(&["db", "...", ".a", "a."], "").expect("url").as_str(),
        "http://127.0.0.1:5984/couch/db/.../.a/a."
    );
}

/// A refused name fails before any request (nothing listens on the port) and is not
/// transient, so no caller retries it.
#[tokio::test]
async fn calls_with_a_dot_segment_fail_at_once_and_for_good() {
    let c = CouchClient::new("http://127.0.0.1:9/", Duration::from_secs(30)).expect("client");
    let errors = [
        c.get_doc("account%2Fab", "..").await.expect_err("GET .."),
        c.get_doc("..", "doc").await.expect_err("GET db .."),
        c.update_doc("db", ".", 3, |_| true)
            .await
            .expect_err("update ."),
        c.db_info("").await.expect_err("empty db"),
        c.get_attachment("db", "doc", "..")
            .await
            .expect_err("attachment .."),
    ];
    for e in errors {
        assert!(matches!(e, Error::InvalidName(_)), "{e:?}");
        assert!(!e.is_transient(), "{e}");
    }
}

/// Every request is counted once under what it was for, by its answer, including one
/// that never got an answer (after its retries).
#[tokio::test]
async fn requests_are_counted_by_op_and_answer() {
    let c = CouchClient::new("http://127.0.0.1:9/", Duration::from_secs(5)).expect("client");
    let counts = c.request_counts();
    assert!(counts.snapshot().is_empty());
    let e = c.get_doc("db", "doc").await.expect_err("nothing listens");
    assert!(e.is_transient(), "{e}");
    // A refused name is never sent, so never counted.
    c.get_doc("db", "..").await.expect_err("refused");
    assert_eq!(
        c.clone().request_counts().snapshot(),
        vec![(Op::GetDoc, Answer::Unreachable, 1)]
    );
    assert_eq!(counts.total(Op::GetDoc), 1);
    assert_eq!(counts.total(Op::PutDoc), 0);
}
