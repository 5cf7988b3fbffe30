//! Which feed keeps the device cache right (issue #13, P10), over real HTTP:
//!
//! - against pouchdb-server, which has no `_db_updates`, the cache settles on one
//!   `_changes` feed per database;
//! - against [`CouchFront`], an HTTP front of the same pouchdb-server that adds the one
//!   thing it lacks — `GET /_db_updates`, fed by the writes that pass through it, the
//!   way CouchDB's global changes are fed by its databases' writes — the cache follows
//!   that one feed: an `updated` event evicts through a normal `_changes` read of the
//!   real database, `deleted` drops the database, and a break of the feed voids every
//!   earlier ticket. Every other request is passed to pouchdb-server unchanged, so the
//!   documents, revisions and sequences the cache sees are the real server's. Only
//!   writes through the front make events: every writer in these tests goes through it.

use std::time::Duration;

use pusher::register::device_cache::{DeviceCache, FeedMode, RETRY_AFTER};
use pusher_io::couch::CouchClient;
use pusher_sandbox::couch_front::CouchFront;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::cache::wait_for;
use crate::helpers::{couch_url, init_tracing, rand_hex};

async fn account_db(c: &CouchClient) -> String {
    let db = pusher_core::account::account_db(&rand_hex(32)).expect("account db");
    c.create_db(&db).await.expect("create account db");
    db
}

fn push(token: &str) -> Option<Value> {
    Some(json!({"Token-App": "org.feed", "Token-Type": "apple", "Token-ID": token}))
}

/// Writes `dev` in `db` with `token`; returns the new revision.
async fn put_device(c: &CouchClient, db: &str, token: &str) -> String {
    let existing = c.get_doc(db, "dev").await.expect("get device");
    let mut doc = existing.unwrap_or_else(|| json!({"_id": "dev", "pvt_type": "device"}));
    doc["push"] = push(token).expect("push");
    c.put_doc(db, &doc).await.expect("put device")
}

fn client(url: &str) -> CouchClient {
    init_tracing();
    CouchClient::new(url, Duration::from_secs(5)).expect("couch client")
}

/// A client of pouchdb-server itself, a fresh account database, and a cache on that
/// client (long-polls of `longpoll`) with its stop token.
async fn direct(longpoll: Duration) -> (CouchClient, String, CancellationToken, DeviceCache) {
    let c = client(&couch_url());
    c.ping()
        .await
        .expect("pouchdb-server up (scripts/services.sh up)");
    let db = account_db(&c).await;
    let stop = CancellationToken::new();
    let cache = DeviceCache::with_longpoll(c.clone(), stop.clone(), longpoll);
    (c, db, stop, cache)
}

/// A front, a client through it, two fresh account databases, and a cache on that
/// client (short long-polls) with its stop token.
async fn through_front() -> (
    CouchFront,
    CouchClient,
    [String; 2],
    CancellationToken,
    DeviceCache,
) {
    let front = CouchFront::start(&couch_url()).await.expect("front");
    let c = client(&front.url());
    c.ping().await.expect("pouchdb-server up through the front");
    let dbs = [account_db(&c).await, account_db(&c).await];
    let stop = CancellationToken::new();
    let cache = DeviceCache::with_longpoll(c.clone(), stop.clone(), Duration::from_millis(500));
    (front, c, dbs, stop, cache)
}

/// Looks `dev` up until its database is watched; returns the ticket.
async fn watched(cache: &DeviceCache, db: &str) -> pusher::register::device_cache::Ticket {
    wait_for("database watched", RETRY_AFTER * 4, || async {
        cache.lookup(db, "dev", &None).1
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pouchdb_server_has_no_db_updates_so_each_database_gets_its_own_feed() {
    let (c, db, stop, cache) = direct(Duration::from_millis(500)).await;
    let mode = wait_for("feed mode decided", Duration::from_secs(15), || async {
        cache.feed_mode()
    })
    .await;
    assert_eq!(mode, FeedMode::PerDb);
    let t = watched(&cache, &db).await;
    cache.store(&db, "dev", push("a1"), None, t);
    assert!(cache.lookup(&db, "dev", &push("a1")).0);
    // The database's own feed evicts a change made elsewhere.
    put_device(&c, &db, "b2").await;
    wait_for("eviction", Duration::from_secs(15), || async {
        (!cache.lookup(&db, "dev", &push("a1")).0).then_some(())
    })
    .await;
    stop.cancel();
    let _ = c.delete_db(&db).await;
}

/// pouchdb-server answers a `_changes` long-poll's headers at once and holds the body
/// past `timeout`: the wait bounds the whole exchange, so a quiet database stays
/// watched, poll after poll, instead of its watcher failing on the body's timeout
/// (P10 found every per-database watcher ending 30 s after it started).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_database_stays_watched_across_long_polls_the_server_never_ends() {
    let (c, db, stop, cache) = direct(Duration::from_millis(300)).await;
    let t = watched(&cache, &db).await;
    cache.store(&db, "dev", push("q1"), None, t);
    let counts = c.request_counts();
    let polls = counts.total(pusher_io::couch::Op::Changes);
    // Ten more long-polls ended on our side while nothing changed; each request's own
    // timeout (the wait + 5 s) is far longer than all of them together.
    wait_for("ten quiet long-polls", Duration::from_secs(30), || async {
        (counts.total(pusher_io::couch::Op::Changes) >= polls + 10).then_some(())
    })
    .await;
    assert!(cache.is_watching(&db), "the watcher ended on a quiet feed");
    assert!(cache.lookup(&db, "dev", &push("q1")).0, "entry dropped");
    stop.cancel();
    let _ = c.delete_db(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_db_updates_one_feed_evicts_an_updated_database_and_drops_a_deleted_one() {
    let (front, c, [one, two], stop, cache) = through_front().await;
    let rev_one = put_device(&c, &one, "a1").await;
    put_device(&c, &two, "a2").await;
    let mode = wait_for("feed mode decided", Duration::from_secs(15), || async {
        cache.feed_mode()
    })
    .await;
    assert_eq!(mode, FeedMode::DbUpdates);

    // Both databases join the one feed; what a read saw is cached.
    let t1 = watched(&cache, &one).await;
    let t2 = watched(&cache, &two).await;
    cache.store(&one, "dev", push("a1"), Some(rev_one), t1);
    cache.store(&two, "dev", push("a2"), None, t2);
    assert!(cache.lookup(&one, "dev", &push("a1")).0);

    // Another writer changes `one`: the `updated` event makes the cache read `one`'s
    // changes and evict the device; `two` keeps its entry.
    put_device(&c, &one, "b1").await;
    wait_for("eviction on updated", Duration::from_secs(15), || async {
        (!cache.lookup(&one, "dev", &push("a1")).0).then_some(())
    })
    .await;
    assert!(cache.lookup(&two, "dev", &push("a2")).0);
    assert!(
        cache.is_watching(&one),
        "an update does not end the database"
    );
    // A read that began before the change is not stored.
    cache.store(&one, "dev", push("a1"), None, t1);
    assert!(!cache.lookup(&one, "dev", &push("a1")).0);

    // Deleting `two` drops it.
    assert!(c.delete_db(&two).await.expect("delete"));
    wait_for(
        "deleted database dropped",
        Duration::from_secs(15),
        || async { (!cache.is_watching(&two)).then_some(()) },
    )
    .await;
    assert!(!cache.lookup(&two, "dev", &push("a2")).0);

    // One long-poll held at most, and no database has a feed of its own: the cache's
    // `_changes` reads were normal requests.
    let stats = front.stats();
    let (most, longpolls, changes) = (stats.most_polls, stats.changes_longpolls, stats.changes);
    assert_eq!(most, 1, "one _db_updates long-poll at a time");
    assert_eq!(longpolls, 0, "no per-database long-poll");
    assert!(
        changes >= 1,
        "the update was read from the database's _changes"
    );
    stop.cancel();
    let _ = c.delete_db(&one).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_in_db_updates_voids_the_tickets_of_every_database() {
    let (front, c, [one, two], stop, cache) = through_front().await;
    let stale1 = watched(&cache, &one).await;
    let stale2 = watched(&cache, &two).await;
    assert_eq!(cache.feed_mode(), Some(FeedMode::DbUpdates));

    // The feed breaks: every database is dropped, not only one that changed.
    front.set_broken(true);
    wait_for(
        "every database dropped",
        Duration::from_secs(15),
        || async { (!cache.is_watching(&one) && !cache.is_watching(&two)).then_some(()) },
    )
    .await;
    // Changes during the gap are never reported to anyone.
    put_device(&c, &one, "during-gap").await;
    front.set_broken(false);
    let fresh1 = watched(&cache, &one).await;
    watched(&cache, &two).await;
    assert_eq!(cache.feed_mode(), Some(FeedMode::DbUpdates));
    // Reads from before the break store nothing; a read under the new run does.
    cache.store(&one, "dev", push("before"), None, stale1);
    cache.store(&two, "dev", push("before"), None, stale2);
    assert!(
        cache.is_empty(),
        "a ticket from before the gap was accepted"
    );
    cache.store(&one, "dev", push("during-gap"), None, fresh1);
    assert!(cache.lookup(&one, "dev", &push("during-gap")).0);
    stop.cancel();
    let _ = c.delete_db(&one).await;
    let _ = c.delete_db(&two).await;
}
