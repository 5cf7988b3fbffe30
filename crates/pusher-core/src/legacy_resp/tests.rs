//! The pending-request table, the request reader and the message bodies.

use super::*;

const S20: Duration = Duration::from_secs(20);

fn w(token: &str, msg: &str) -> Waiting {
    Waiting {
        token_id: token.to_string(),
        msg_id: msg.to_string(),
        server_id: format!("kamailio@host-<1>-targeted-{msg}"),
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn wait_accepts_whole_ms_within_one_to_sixty_seconds() {
    use serde_json::json;
    assert_eq!(wait(Some(&json!(2000))), Some(secs(2)));
    assert_eq!(wait(Some(&json!(60_000))), Some(secs(60)));
    for bad in [
        json!(999),
        json!(60_001),
        json!("2000"),
        json!(-1),
        json!(1.5),
    ] {
        assert_eq!(wait(Some(&bad)), None, "{bad}");
    }
    assert_eq!(wait(None), None);
}

#[test]
fn reads_a_kazoo_query_push_req() {
    use serde_json::json;
    // The 2015 Kamailio request: no Payload, an Alert-Body, Kamailio's envelope.
    let body = json!({"Event-Category": "notification", "Event-Name": "push_req",
        "Token-ID": "abc", "Token-Type": "apple", "Token-App": "org.app",
        "Alert-Body": "2001 - Alice", "Msg-ID": "m-1", "App-Name": "kamailio",
        "Server-ID": "kamailio@host-<1>-targeted-3"});
    assert_eq!(
        Waiting::of(&body),
        Some(Waiting {
            token_id: "abc".into(),
            msg_id: "m-1".into(),
            server_id: "kamailio@host-<1>-targeted-3".into()
        })
    );
    for field in ["Token-ID", "Msg-ID", "Server-ID"] {
        let mut b = body.clone();
        b.as_object_mut().unwrap().remove(field);
        assert_eq!(Waiting::of(&b), None, "without {field}");
        b[field] = json!("");
        assert_eq!(Waiting::of(&b), None, "empty {field}");
    }
    let mut b = body.clone();
    b["Server-ID"] = json!("x".repeat(256));
    assert_eq!(Waiting::of(&b), None, "not a routing key");
    b["Server-ID"] = json!("q\n");
    assert_eq!(Waiting::of(&b), None, "control character");
    let mut b = body;
    b["Token-ID"] = json!("a b");
    assert_eq!(Waiting::of(&b), None, "invalid token");
}

#[test]
fn a_request_is_answered_once_within_its_wait() {
    let t0 = Instant::now();
    let mut t = PendingTable::default();
    assert_eq!(t.remember(w("tok", "m1"), t0, S20), Remembered::Added);
    assert_eq!(t.len(), 1);
    assert_eq!(t.take("other", t0 + secs(1)), vec![]);
    assert_eq!(t.take("tok", t0 + secs(19)), vec![w("tok", "m1")]);
    assert_eq!(t.take("tok", t0 + secs(19)), vec![], "forgotten once taken");
    assert!(t.is_empty());
}

#[test]
fn nothing_is_answered_after_the_wait() {
    let t0 = Instant::now();
    let mut t = PendingTable::default();
    t.remember(w("tok", "m1"), t0, secs(2));
    assert_eq!(
        t.take("tok", t0 + secs(2)),
        vec![],
        "the wait is over at 2 s"
    );
    assert!(t.is_empty(), "the expired request is forgotten too");
    t.remember(w("a", "m1"), t0, secs(2));
    t.remember(w("b", "m2"), t0 + secs(1), secs(2));
    assert_eq!(t.purge(t0 + secs(2)), 1);
    assert_eq!(t.len(), 1);
    assert_eq!(t.take("b", t0 + secs(2)), vec![w("b", "m2")]);
}

#[test]
fn several_calls_to_one_phone_are_each_answered_and_copies_are_not_doubled() {
    let t0 = Instant::now();
    let mut t = PendingTable::default();
    t.remember(w("tok", "m1"), t0, S20);
    assert_eq!(
        t.remember(w("tok", "m1"), t0 + secs(5), S20),
        Remembered::AlreadyWaiting
    );
    t.remember(w("tok", "m2"), t0 + secs(1), S20);
    assert_eq!(t.len(), 2);
    assert_eq!(
        t.take("tok", t0 + secs(19)),
        vec![w("tok", "m1"), w("tok", "m2")]
    );
    // The redelivered copy did not extend m1's wait: it still ends at 20 s.
    t.remember(w("tok", "m1"), t0, S20);
    t.remember(w("tok", "m1"), t0 + secs(10), S20);
    assert_eq!(t.take("tok", t0 + secs(21)), vec![]);
}

#[test]
fn a_flood_of_made_up_requests_stays_within_the_bounds() {
    let t0 = Instant::now();
    let mut t = PendingTable::new(100, 3);
    t.remember(w("real", "m0"), t0, S20);
    for i in 0..10_000u32 {
        let at = t0 + Duration::from_millis(u64::from(i));
        t.remember(w(&format!("fake{i}"), &format!("m{i}")), at, S20);
        assert!(t.len() <= 100);
    }
    assert_eq!(t.len(), 100);
    assert_eq!(t.by_token.len(), 100);
    assert_eq!(
        t.take("real", t0 + secs(11)),
        vec![],
        "the oldest was evicted"
    );
    assert_eq!(
        t.take("fake9999", t0 + secs(11)),
        vec![w("fake9999", "m9999")],
        "the newest is kept"
    );
    // One token flooded: only its newest requests are kept.
    let mut t = PendingTable::new(100, 3);
    t.remember(w("other", "o"), t0, S20);
    for i in 0..50u32 {
        let r = t.remember(w("tok", &format!("m{i}")), t0 + secs(1), S20);
        assert_eq!(
            r,
            if i < 3 {
                Remembered::Added
            } else {
                Remembered::AddedEvictingOldest
            }
        );
    }
    assert_eq!(t.len(), 4);
    let kept: Vec<String> = t
        .take("tok", t0 + secs(2))
        .into_iter()
        .map(|w| w.msg_id)
        .collect();
    assert_eq!(kept, ["m47", "m48", "m49"]);
    assert_eq!(t.take("other", t0 + secs(2)), vec![w("other", "o")]);
}

#[test]
fn expired_requests_make_room_before_live_ones_are_evicted() {
    let t0 = Instant::now();
    let mut t = PendingTable::new(2, 8);
    t.remember(w("a", "1"), t0, secs(1));
    t.remember(w("b", "2"), t0, S20);
    assert_eq!(
        t.remember(w("c", "3"), t0 + secs(2), S20),
        Remembered::Added
    );
    assert_eq!(t.take("b", t0 + secs(3)), vec![w("b", "2")]);
}

#[test]
fn push_resp_carries_the_request_ids_and_kazoo_envelope() {
    let r = push_resp(&w("tok", "m1"), "pusher@n1", "1.2.3");
    assert_eq!(
        r,
        serde_json::json!({"Event-Category": "notification", "Event-Name": "push_resp",
            "Token-ID": "tok", "Msg-ID": "m1", "App-Name": "pusher",
            "App-Version": "1.2.3", "Node": "pusher@n1"})
    );
}

#[test]
fn announcements_round_trip_and_other_bodies_are_ignored() {
    use serde_json::json;
    let a = announcement("tok-1", "pusher@n1");
    assert_eq!(announced_token(&a), Some("tok-1"));
    assert_eq!(announced_token(&json!({"Token-ID": "tok-1"})), None);
    let mut bad = a.clone();
    bad["Token-ID"] = json!("a b");
    assert_eq!(announced_token(&bad), None);
    let mut other = a;
    other["Event-Name"] = json!("push_req");
    assert_eq!(announced_token(&other), None);
}
