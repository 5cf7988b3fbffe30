//! The live `system_config/pusher` document.
//!
//! A watcher task loads the doc at start, then follows the `system_config` `_changes`
//! feed (long-poll with a client-side bound, because pouchdb-server ignores `timeout`)
//! and reloads the doc when it changes, so rule and credential edits apply without a
//! restart, typically within a few hundred milliseconds. Each version is compiled once
//! (User-Agent regexes) and published through a `watch` channel; handlers take a cheap
//! `Arc` snapshot per message. The service never writes defaults back into the doc
//! (unlike Kazoo's `kapps_config:get/4`).

use std::sync::Arc;
use std::time::Duration;

use pusher_core::kapps_config::ConfigDoc;
use pusher_core::legacy_resp;
use pusher_core::outcome::retry_delay;
use pusher_core::ua_rules::UserAgentRules;
use pusher_io::couch::CouchClient;
use rand::Rng as _;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::state::State;

pub use pusher_core::kapps_config::{PUSHER_CATEGORY, SYSTEM_CONFIG_DB};

/// One compiled version of `system_config/pusher`, as seen from this node and zone.
#[derive(Debug)]
pub struct PusherConfig {
    /// The raw document, for scoped lookups.
    pub doc: ConfigDoc,
    /// `_rev` of the doc (empty when the doc does not exist).
    pub rev: String,
    /// `User-Agents` resolved node → zone → default, compiled.
    pub rules: UserAgentRules,
    /// `rfc8599` resolved node → zone → default (default false).
    pub rfc8599: bool,
    /// `legacy_push_resp` resolved node → zone → default (default false): answer the
    /// `kazoo_query` of 2015 Kamailio configurations (see [`crate::legacy`]).
    pub legacy_push_resp: bool,
    /// `legacy_push_resp_wait_ms` resolved node → zone → default: how long such a
    /// request waits for its device's registration (default 20 s, 1–60 s).
    pub legacy_push_resp_wait: Duration,
    /// `(scope, not-after as Unix seconds)` of each readable `<scope>.apple.certificate`,
    /// for the expiry gauge.
    pub apns_cert_not_after: Vec<(String, i64)>,
}

impl PusherConfig {
    /// Compiles a doc for `node`/`zone`, logging each rule that cannot be used (once
    /// per config version, naming its key).
    pub fn compile(doc: Value, node: &str, zone: &str) -> Self {
        let rev = doc
            .get("_rev")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let doc = ConfigDoc::new(doc);
        let (rules, errors) = match doc.node_value(node, zone, &["User-Agents"]) {
            Some(v) => UserAgentRules::compile(v),
            None => UserAgentRules::compile(&Value::Null),
        };
        for e in &errors {
            tracing::error!(config_rev = %rev, error.message = %e, "User-Agents rule skipped");
        }
        let flag = |key: &str| {
            doc.node_value(node, zone, &[key])
                .and_then(pusher_core::kapps_config::to_boolean)
                .unwrap_or(false)
        };
        let rfc8599 = flag("rfc8599");
        let legacy_push_resp = flag("legacy_push_resp");
        let legacy_push_resp_wait =
            legacy_resp::wait(doc.node_value(node, zone, &["legacy_push_resp_wait_ms"]))
                .unwrap_or(legacy_resp::DEFAULT_WAIT);
        let apns_cert_not_after = apns_certificates(&doc);
        Self {
            doc,
            rev,
            rules,
            rfc8599,
            legacy_push_resp,
            legacy_push_resp_wait,
            apns_cert_not_after,
        }
    }
}

/// Not-after dates of the APNs certificates stored in the doc, by top-level scope.
fn apns_certificates(doc: &ConfigDoc) -> Vec<(String, i64)> {
    let Some(map) = doc.raw().as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(scope, v)| {
            let pem = v.get("apple")?.get("certificate")?.as_str()?;
            let not_after = pusher_core::credentials::certificate_not_after(pem)?;
            Some((scope.clone(), not_after))
        })
        .collect()
}

/// First pause after a failed read of the config; doubles up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest pause between reads of the config while CouchDB fails.
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Pause after the `failures`-th failure in a row: exponential from [`BACKOFF_BASE`],
/// capped at [`BACKOFF_CAP`], jittered ±20 % by `jitter` (uniform in `0..1`), so a
/// cluster of instances that lost CouchDB together does not retry in lockstep.
fn backoff(failures: u32, jitter: f64) -> Duration {
    retry_delay(failures, None, BACKOFF_BASE, BACKOFF_CAP, jitter)
}

/// Read side of the live config: `None` until the first successful load.
pub type ConfigReceiver = watch::Receiver<Option<Arc<PusherConfig>>>;

/// Loads the doc once. A missing database or doc is an empty config, not an error.
async fn load(
    couch: &CouchClient,
    node: &str,
    zone: &str,
) -> Result<PusherConfig, pusher_io::couch::Error> {
    let doc = couch
        .get_doc(SYSTEM_CONFIG_DB, PUSHER_CATEGORY)
        .await?
        .unwrap_or_else(|| Value::Object(Default::default()));
    Ok(PusherConfig::compile(doc, node, zone))
}

/// Starts the watcher; returns the receiver immediately (the first load runs in the
/// task, so start-up is not delayed by CouchDB).
pub fn spawn_watcher(
    couch: CouchClient,
    node: String,
    zone: String,
    state: Arc<State>,
    cancel: CancellationToken,
) -> ConfigReceiver {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        tokio::select! {
            () = watch_loop(&couch, &node, &zone, &tx, &state) => {}
            () = cancel.cancelled() => {}
        }
    });
    rx
}

async fn watch_loop(
    couch: &CouchClient,
    node: &str,
    zone: &str,
    tx: &watch::Sender<Option<Arc<PusherConfig>>>,
    state: &State,
) {
    const LONGPOLL: Duration = Duration::from_secs(25);
    const MISSING_DB_POLL: Duration = Duration::from_millis(500);
    let mut failures = 0u32;
    // `since` of the changes feed; None = must (re)load first.
    let mut since: Option<Value> = None;
    loop {
        let step = async {
            let Some(seq) = since.clone() else {
                // Read update_seq *before* the doc, so a change in between is not missed.
                let seq = couch
                    .db_info(SYSTEM_CONFIG_DB)
                    .await?
                    .and_then(|info| info.get("update_seq").cloned());
                let cfg = load(couch, node, zone).await?;
                publish(tx, cfg, state);
                since = seq;
                if since.is_none() {
                    tokio::time::sleep(MISSING_DB_POLL).await;
                }
                return Ok(());
            };
            match couch
                .changes_longpoll(SYSTEM_CONFIG_DB, &seq, LONGPOLL)
                .await?
            {
                None => since = None, // database deleted: back to polling
                Some(batch) => {
                    if batch.ids.iter().any(|id| id == PUSHER_CATEGORY) {
                        let cfg = load(couch, node, zone).await?;
                        publish(tx, cfg, state);
                    }
                    since = Some(batch.last_seq);
                }
            }
            Ok::<(), pusher_io::couch::Error>(())
        };
        match step.await {
            Ok(()) => failures = 0,
            Err(e) => {
                if e.is_transient() {
                    state.set_couch_reachable(false);
                }
                failures = failures.saturating_add(1);
                let delay = backoff(failures, rand::rng().random());
                tracing::warn!(error.message = %e, retry_in_ms = delay.as_millis() as u64,
                    "cannot read system_config/pusher; keeping the last good version");
                tokio::time::sleep(delay).await;
                since = None;
            }
        }
    }
}

fn publish(tx: &watch::Sender<Option<Arc<PusherConfig>>>, cfg: PusherConfig, state: &State) {
    state.set_couch_reachable(true);
    let changed = tx.borrow().as_ref().is_none_or(|old| old.rev != cfg.rev);
    if changed {
        state
            .metrics
            .config_reloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(config_rev = %cfg.rev, user_agent_rules = cfg.rules.len(),
            rfc8599 = cfg.rfc8599, legacy_push_resp = cfg.legacy_push_resp,
            "system_config/pusher loaded");
    }
    tx.send_replace(Some(Arc::new(cfg)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compiles_node_scoped_rules_and_flags() {
        let doc = json!({
            "_rev": "3-abc",
            "default": {"User-Agents": {"A": {"regex": "^A", "properties": {}}}, "rfc8599": false},
            "local": {"rfc8599": true},
            "pusher@n1": {"User-Agents": {"B": {"regex": "^B"}, "Bad": {"regex": "("}}}
        });
        let on_n1 = PusherConfig::compile(doc.clone(), "pusher@n1", "local");
        assert_eq!(on_n1.rev, "3-abc");
        assert_eq!(
            on_n1.rules.len(),
            1,
            "the node's own rules win, the bad one is skipped"
        );
        assert!(on_n1.rfc8599, "zone beats default");
        let elsewhere = PusherConfig::compile(doc, "pusher@n2", "east");
        assert_eq!(elsewhere.rules.rules()[0].key, "A");
        assert!(!elsewhere.rfc8599);
    }

    #[test]
    fn legacy_push_resp_is_node_scoped_and_off_by_default() {
        let doc = json!({
            "default": {"legacy_push_resp": "false", "legacy_push_resp_wait_ms": 5000},
            "local": {"legacy_push_resp": "TRUE"},
            "pusher@n1": {"legacy_push_resp": false, "legacy_push_resp_wait_ms": 2000},
            "pusher@n2": {"legacy_push_resp_wait_ms": 61_000}
        });
        let n1 = PusherConfig::compile(doc.clone(), "pusher@n1", "local");
        assert!(!n1.legacy_push_resp, "node beats zone");
        assert_eq!(n1.legacy_push_resp_wait, Duration::from_secs(2));
        let n2 = PusherConfig::compile(doc.clone(), "pusher@n2", "local");
        assert!(n2.legacy_push_resp, "zone beats default");
        assert_eq!(
            n2.legacy_push_resp_wait,
            legacy_resp::DEFAULT_WAIT,
            "out of range: the default, not the next scope"
        );
        let n3 = PusherConfig::compile(doc, "pusher@n3", "east");
        assert!(!n3.legacy_push_resp);
        assert_eq!(n3.legacy_push_resp_wait, Duration::from_secs(5));
        let empty = PusherConfig::compile(json!({}), "n", "z");
        assert!(!empty.legacy_push_resp);
        assert_eq!(empty.legacy_push_resp_wait, Duration::from_secs(20));
    }

    #[test]
    fn apns_certificate_dates_are_read_per_scope() {
        let pki = pusher_sandbox::pki::TestPki::load_or_generate(
            &std::env::temp_dir().join("pusher-unit-pki"),
        )
        .expect("test PKI");
        let pem = &pki.client(pusher_sandbox::pki::ClientVariant::Pkcs8).pem;
        let doc = json!({
            "org.a": {"apple": {"certificate": pem}},
            "org.b": {"apple": {"certificate": "not a pem"}},
            "org.c": {"firebase": {"api_key": "x"}}
        });
        let cfg = PusherConfig::compile(doc, "n", "z");
        assert_eq!(cfg.apns_cert_not_after.len(), 1);
        assert_eq!(cfg.apns_cert_not_after[0].0, "org.a");
        assert!(cfg.apns_cert_not_after[0].1 > 1_700_000_000);
    }

    #[test]
    fn backoff_is_jittered_doubling_and_capped() {
        // Two instances failing together draw different random inputs: different pauses,
        // each within ±20 % of the nominal one.
        for failures in 1..=12u32 {
            let nominal = (BACKOFF_BASE * 2u32.pow(failures.min(10) - 1)).min(BACKOFF_CAP);
            let a = backoff(failures, 0.1);
            let b = backoff(failures, 0.9);
            assert_ne!(a, b, "failure {failures}: no jitter");
            for d in [a, b, backoff(failures, 0.0), backoff(failures, 1.0)] {
                assert!(
                    d >= nominal.mul_f64(0.8),
                    "failure {failures}: {d:?} < 80 % of {nominal:?}"
                );
                assert!(
                    d <= nominal.mul_f64(1.2).min(BACKOFF_CAP),
                    "failure {failures}: {d:?}"
                );
            }
        }
        assert_eq!(backoff(1, 0.5), BACKOFF_BASE);
        assert_eq!(backoff(u32::MAX, 0.0), BACKOFF_CAP.mul_f64(0.8));
        // Consecutive pauses of one instance, with its own random draws, also vary.
        let draws: Vec<Duration> = (0..8).map(|_| backoff(2, rand::rng().random())).collect();
        assert!(draws.iter().any(|d| *d != draws[0]), "{draws:?}");
    }

    #[test]
    fn empty_doc_is_an_empty_config() {
        let cfg = PusherConfig::compile(json!({}), "n", "z");
        assert!(cfg.rules.is_empty());
        assert!(!cfg.rfc8599);
        assert_eq!(cfg.rev, "");
    }
}
