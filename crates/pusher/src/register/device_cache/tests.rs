use super::state::*;
use super::*;
use serde_json::json;

const DB: &str = "account%2Fab%2Fcd%2Fef";

fn push(token: &str) -> CachedPush {
    Some(json!({"Token-App": "org.x", "Token-Type": "apple", "Token-ID": token}))
}

/// A cache whose watcher of `DB` is live; returns its epoch.
fn watched(inner: &mut Inner, now: Instant) -> u64 {
    assert_eq!(inner.lookup(DB, "d", &None, now), Found::StartWatcher(None));
    inner.watching(DB)
}

fn ticket(inner: &mut Inner, now: Instant) -> Ticket {
    match inner.lookup(DB, "d", &None, now) {
        Found::Watched(_, t, _) => t,
        other => panic!("not watched: {other:?}"),
    }
}

fn hit(inner: &mut Inner, wanted: &CachedPush, now: Instant) -> bool {
    matches!(
        inner.lookup(DB, "d", wanted, now),
        Found::Watched(true, _, _)
    )
}

#[test]
fn a_ticket_from_before_a_watcher_failed_never_passes_against_its_replacement() {
    let mut inner = Inner::default();
    let t0 = Instant::now();
    let first = watched(&mut inner, t0);
    // A registration reads the device (push A) with this ticket ...
    let stale = ticket(&mut inner, t0);
    // ... the feed fails (its changes are lost) and a new watcher takes over.
    inner.ended(DB, Some(first), t0);
    assert_eq!(inner.lookup(DB, "d", &None, t0), Found::NotWatched);
    let later = t0 + RETRY_AFTER;
    let second = watched(&mut inner, later);
    assert_ne!(first, second);
    // Both watchers are at generation 0: only the epoch tells the tickets apart.
    let fresh = ticket(&mut inner, later);
    assert_eq!(stale.generation, fresh.generation);
    assert!(!inner.store(DB, "d", push("A"), None, None, stale));
    assert!(!hit(&mut inner, &push("A"), later), "stale push cached");
    assert!(inner.store(DB, "d", push("B"), None, None, fresh));
    assert!(hit(&mut inner, &push("B"), later));
}

#[test]
fn the_end_of_an_old_watcher_does_not_touch_its_replacement() {
    let mut inner = Inner::default();
    let t0 = Instant::now();
    let first = watched(&mut inner, t0);
    inner.ended(DB, Some(first), t0);
    let later = t0 + RETRY_AFTER;
    watched(&mut inner, later);
    let t = ticket(&mut inner, later);
    assert!(inner.store(DB, "d", push("A"), None, None, t));
    inner.ended(DB, Some(first), later);
    inner.ended(DB, None, later);
    assert!(hit(&mut inner, &push("A"), later));
    assert_eq!(inner.entries.len(), 1);
}

#[test]
fn an_older_revision_never_replaces_a_newer_one() {
    let mut inner = Inner::default();
    let now = Instant::now();
    watched(&mut inner, now);
    let t = ticket(&mut inner, now);
    // Two registrations of one device finish out of order: rev 3 first, then rev 2.
    assert!(inner.store(DB, "d", push("new"), Some("3-c".into()), None, t));
    assert!(!inner.store(DB, "d", push("old"), Some("2-b".into()), None, t));
    assert!(hit(&mut inner, &push("new"), now));
    // A read that changed nothing knows no revision: it cannot replace rev 3.
    assert!(!inner.store(DB, "d", push("old"), None, None, t));
    assert!(hit(&mut inner, &push("new"), now));
    // Rev 10 is newer than rev 3 (numbers, not strings).
    assert!(inner.store(DB, "d", push("ten"), Some("10-a".into()), None, t));
    assert!(hit(&mut inner, &push("ten"), now));
    // Same number, other hash: the order is unknown, the entry goes.
    assert!(!inner.store(DB, "d", push("twin"), Some("10-b".into()), None, t));
    assert!(inner.entries.is_empty());
    // A write replaces what a read cached.
    assert!(inner.store(DB, "d", push("read"), None, None, t));
    assert!(inner.store(DB, "d", push("write"), Some("11-a".into()), None, t));
    assert!(hit(&mut inner, &push("write"), now));
}

#[test]
fn revision_order_table() {
    assert_eq!(replace(None, None), Replace::Yes);
    assert_eq!(replace(None, Some("1-a")), Replace::Yes);
    assert_eq!(replace(Some("1-a"), None), Replace::Keep);
    assert_eq!(replace(Some("1-a"), Some("1-a")), Replace::Yes);
    assert_eq!(replace(Some("9-a"), Some("10-a")), Replace::Yes);
    assert_eq!(replace(Some("10-a"), Some("9-a")), Replace::Keep);
    assert_eq!(replace(Some("2-a"), Some("2-b")), Replace::Drop);
    assert_eq!(replace(Some("junk"), Some("2-b")), Replace::Drop);
}

#[test]
fn the_feed_evicts_foreign_changes_and_keeps_our_own_echo() {
    let mut inner = Inner::default();
    let now = Instant::now();
    watched(&mut inner, now);
    let t = ticket(&mut inner, now);
    assert!(inner.store(DB, "d", push("A"), Some("2-x".into()), None, t));
    // The echo of our own write changes nothing.
    assert_eq!(inner.feed_batch(DB, &[("d".into(), "2-x".into())]), 0);
    assert!(hit(&mut inner, &push("A"), now));
    // Someone else's write evicts it, and a read that began before is not stored.
    assert_eq!(inner.feed_batch(DB, &[("d".into(), "3-y".into())]), 1);
    assert!(!hit(&mut inner, &push("A"), now));
    assert!(!inner.store(DB, "d", push("A"), None, None, t));
    let after = ticket(&mut inner, now);
    assert!(inner.store(DB, "d", push("B"), None, None, after));
    // The late echo of an older revision leaves a newer entry alone.
    assert!(inner.store(DB, "d", push("B"), Some("3-z".into()), None, after));
    assert_eq!(inner.feed_batch(DB, &[("d".into(), "2-x".into())]), 0);
    assert!(hit(&mut inner, &push("B"), now));
    // A change of another doc does not stop this one's reads.
    assert_eq!(inner.feed_batch(DB, &[("other".into(), "1-z".into())]), 1);
    assert!(inner.store(DB, "d", push("C"), Some("4-a".into()), None, after));
}

#[test]
fn emptying_a_full_cache_voids_every_earlier_ticket() {
    let mut inner = Inner::default();
    let now = Instant::now();
    watched(&mut inner, now);
    let before = ticket(&mut inner, now);
    inner.clear();
    assert!(!inner.store(DB, "d", push("A"), None, None, before));
    let after = ticket(&mut inner, now);
    assert!(inner.store(DB, "d", push("A"), None, None, after));
}

#[test]
fn nothing_is_stored_while_not_watching() {
    let mut inner = Inner::default();
    let now = Instant::now();
    let epoch = watched(&mut inner, now);
    let t = ticket(&mut inner, now);
    inner.ended(DB, Some(epoch), now);
    assert!(!inner.store(DB, "d", push("A"), None, None, t));
    assert!(inner.entries.is_empty());
}

fn doc(token: &str, rev: &str) -> Arc<str> {
    Arc::from(json!({"_id": "d", "_rev": rev, "name": "phone", "push": push(token)}).to_string())
}

fn cached_doc(inner: &mut Inner, wanted: &CachedPush, now: Instant) -> Option<Arc<str>> {
    match inner.lookup(DB, "d", wanted, now) {
        Found::Watched(_, _, doc) => doc,
        other => panic!("not watched: {other:?}"),
    }
}

#[test]
fn a_miss_hands_out_the_whole_document_at_its_revision() {
    let mut inner = Inner::default();
    let now = Instant::now();
    watched(&mut inner, now);
    let t = ticket(&mut inner, now);
    let written = doc("A", "2-x");
    assert!(inner.store(
        DB,
        "d",
        push("A"),
        Some("2-x".into()),
        Some(written.clone()),
        t
    ));
    assert_eq!(inner.doc_bytes, written.len());
    // A refresh with the same push object is a hit: no document needed.
    assert_eq!(cached_doc(&mut inner, &push("A"), now), None);
    assert!(hit(&mut inner, &push("A"), now));
    // A change gets the copy to write it on.
    assert_eq!(
        cached_doc(&mut inner, &push("B"), now),
        Some(written.clone())
    );
    // Our own echo keeps it; a foreign change evicts it, bytes and all.
    assert_eq!(inner.feed_batch(DB, &[("d".into(), "2-x".into())]), 0);
    assert_eq!(cached_doc(&mut inner, &push("B"), now), Some(written));
    assert_eq!(inner.feed_batch(DB, &[("d".into(), "3-y".into())]), 1);
    assert_eq!(cached_doc(&mut inner, &push("B"), now), None);
    assert_eq!(inner.doc_bytes, 0);
}

#[test]
fn a_document_is_kept_only_with_its_revision_and_within_the_byte_bound() {
    let mut inner = Inner::default();
    let now = Instant::now();
    let epoch = watched(&mut inner, now);
    let t = ticket(&mut inner, now);
    // Without a revision a copy could not be written on: not kept.
    assert!(inner.store(DB, "d", push("A"), None, Some(doc("A", "1-a")), t));
    assert_eq!(cached_doc(&mut inner, &push("B"), now), None);
    assert_eq!(inner.doc_bytes, 0);
    // Replacing an entry replaces its bytes.
    assert!(inner.store(
        DB,
        "d",
        push("A"),
        Some("2-a".into()),
        Some(doc("A", "2-a")),
        t
    ));
    assert!(inner.store(
        DB,
        "d",
        push("B"),
        Some("3-a".into()),
        Some(doc("B", "3-a")),
        t
    ));
    assert_eq!(inner.doc_bytes, doc("B", "3-a").len());
    // Over the bound the entry keeps its push object only.
    inner.doc_bytes = MAX_DOC_BYTES;
    assert!(inner.store(
        DB,
        "e",
        push("C"),
        Some("1-c".into()),
        Some(doc("C", "1-c")),
        t
    ));
    assert!(
        inner.entries[&(DB.to_string(), "e".to_string())]
            .doc
            .is_none()
    );
    inner.doc_bytes = doc("B", "3-a").len();
    // A watcher's end frees its database's bytes.
    inner.ended(DB, Some(epoch), now);
    assert_eq!(inner.doc_bytes, 0);
    assert!(inner.entries.is_empty());
}

#[test]
fn a_write_whose_echo_came_first_is_stored_and_a_stale_read_is_not() {
    let mut inner = Inner::default();
    let now = Instant::now();
    watched(&mut inner, now);
    let t = ticket(&mut inner, now);
    // Our PUT made rev 3; the feed reports it before the PUT's answer is stored.
    assert_eq!(inner.feed_batch(DB, &[("d".into(), "3-ours".into())]), 1);
    assert!(inner.store(
        DB,
        "d",
        push("A"),
        Some("3-ours".into()),
        Some(doc("A", "3-ours")),
        t
    ));
    assert!(hit(&mut inner, &push("A"), now));
    // Someone writes rev 4; a read (ticket from before) that saw rev 3 is stale,
    // one that saw rev 4 or later is not; a same-N twin is never taken for it.
    let t = ticket(&mut inner, now);
    assert_eq!(inner.feed_batch(DB, &[("d".into(), "4-them".into())]), 1);
    assert!(!inner.store(DB, "d", push("A"), Some("3-ours".into()), None, t));
    assert!(!inner.store(DB, "d", push("B"), Some("4-twin".into()), None, t));
    assert!(!inner.store(DB, "d", push("B"), None, None, t));
    assert!(inner.store(DB, "d", push("B"), Some("4-them".into()), None, t));
    assert!(inner.store(DB, "d", push("C"), Some("5-ours".into()), None, t));
    assert!(at_least("10-a", "9-b"));
    assert!(!at_least("9-b", "10-a"));
    assert!(!at_least("1-a", ""));
}

// --- the `_db_updates` run -----------------------------------------------------------

/// A cache in `_db_updates` mode whose run is live and `DB` joined it at `since`.
fn joined(inner: &mut Inner, now: Instant, since: u64) -> u64 {
    inner.mode = Mode::Probing;
    assert_eq!(inner.lookup(DB, "d", &None, now), Found::NotWatched);
    let run = inner.run_live();
    assert_eq!(
        inner.lookup(DB, "d", &None, now),
        Found::StartWatcher(Some(run))
    );
    assert!(inner.joined(DB, run, json!(since), now));
    run
}

#[test]
fn an_updated_database_is_read_from_its_last_sequence_and_evicts_foreign_changes() {
    let mut inner = Inner::default();
    let now = Instant::now();
    joined(&mut inner, now, 7);
    let t = ticket(&mut inner, now);
    assert!(inner.store(DB, "d", push("A"), Some("2-x".into()), None, t));
    let (epoch, from) = inner.catch_up_from(DB).expect("watched");
    assert_eq!(from, json!(7));
    // Our own echo stays; a foreign change evicts and voids the earlier ticket.
    assert_eq!(
        inner.caught_up(DB, epoch, &[("d".into(), "2-x".into())], json!(8)),
        0
    );
    assert!(hit(&mut inner, &push("A"), now));
    assert_eq!(
        inner.caught_up(DB, epoch, &[("d".into(), "3-y".into())], json!(9)),
        1
    );
    assert!(!hit(&mut inner, &push("A"), now));
    assert!(!inner.store(DB, "d", push("A"), None, None, t));
    assert_eq!(inner.catch_up_from(DB).expect("watched").1, json!(9));
    // A catch-up of an older epoch (the database ended and joined again) is ignored.
    assert_eq!(
        inner.caught_up(DB, epoch + 100, &[("d".into(), "4-z".into())], json!(10)),
        0
    );
    assert_eq!(inner.catch_up_from(DB).expect("watched").1, json!(9));
}

#[test]
fn a_gap_in_the_db_updates_feed_voids_every_ticket_of_every_database() {
    let mut inner = Inner::default();
    let t0 = Instant::now();
    let run = joined(&mut inner, t0, 1);
    let stale = ticket(&mut inner, t0);
    // Another database is joining when the feed breaks.
    assert!(matches!(
        inner.lookup("other", "d", &None, t0),
        Found::StartWatcher(Some(_))
    ));
    inner.run_ended(t0);
    assert!(inner.entries.is_empty());
    assert_eq!(inner.lookup(DB, "d", &None, t0), Found::NotWatched);
    // The late join of the old run is refused; so is a lookup until a new run is live.
    assert!(!inner.joined("other", run, json!(1), t0));
    let later = t0 + RETRY_AFTER;
    assert_eq!(inner.lookup(DB, "d", &None, later), Found::NotWatched);
    let next = inner.run_live();
    assert_ne!(next, run);
    assert_eq!(
        inner.lookup(DB, "d", &None, later),
        Found::StartWatcher(Some(next))
    );
    // A join under the old run id is refused even while the database is starting.
    assert!(!inner.joined(DB, run, json!(5), later));
    let later = later + RETRY_AFTER;
    inner.lookup(DB, "d", &None, later);
    assert!(inner.joined(DB, next, json!(5), later));
    assert!(!inner.store(DB, "d", push("A"), None, None, stale));
    let fresh = ticket(&mut inner, later);
    assert!(inner.store(DB, "d", push("A"), None, None, fresh));
}

#[test]
fn a_deleted_or_recreated_database_ends_even_while_it_joins() {
    let mut inner = Inner::default();
    let now = Instant::now();
    let run = joined(&mut inner, now, 1);
    let t = ticket(&mut inner, now);
    assert!(inner.store(DB, "d", push("A"), None, None, t));
    inner.db_gone(DB, now);
    assert!(inner.entries.is_empty());
    assert!(inner.catch_up_from(DB).is_none());
    assert!(matches!(
        inner.lookup("other", "d", &None, now),
        Found::StartWatcher(Some(_))
    ));
    inner.db_gone("other", now);
    assert!(!inner.joined("other", run, json!(3), now));
}
