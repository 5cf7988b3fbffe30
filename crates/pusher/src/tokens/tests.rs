use super::*;

#[test]
fn doc_ids_share_firebase_kinds() {
    assert_eq!(doc_id("apple", "a.b", "t").as_deref(), Some("apple:a.b:t"));
    assert_eq!(doc_id("android", "a", "t"), doc_id("firebase_v1", "a", "t"));
    assert_eq!(doc_id("pigeon", "a", "t"), None);
}

#[test]
fn registered_at_is_written_once_per_interval_or_when_the_owner_changes() {
    let every = Duration::from_secs(900);
    let seen = Seen {
        account_db: "db".into(),
        device_id: "dev".into(),
        seen_ms: 5_000,
        written_ms: 1_000,
        rev: None,
    };
    assert!(must_write(None, "db", "dev", 1_000, every), "new token");
    assert!(
        !must_write(Some(&seen), "db", "dev", 1_000 + 899_999, every),
        "a refresh within the interval stays in memory"
    );
    assert!(
        must_write(Some(&seen), "db", "dev", 1_000 + 900_000, every),
        "the stored time is refreshed once the interval has passed"
    );
    assert!(must_write(Some(&seen), "db", "other", 1_001, every));
    assert!(must_write(Some(&seen), "db2", "dev", 1_001, every));
    assert!(must_write(Some(&seen), "db", "dev", 1_001, Duration::ZERO));
}
