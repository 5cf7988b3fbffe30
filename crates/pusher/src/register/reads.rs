//! Device-document reads that share requests: a registration whose device is not in the
//! device cache asks here instead of sending its own `GET`. Per database, one read is
//! in flight at a time; the ids asked for while it runs go together in the next one
//! (`POST _all_docs` with `keys`). Nothing waits for a batch to fill: a lone read goes
//! out at once, and under a storm of cold registrations a few hundred devices cost one
//! request instead of a few hundred.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, PoisonError};

use pusher_io::couch::{self, CouchClient};
use serde_json::Value;
use tokio::sync::oneshot;

/// Most ids in one request.
const MAX_IDS: usize = 200;

type Reply = oneshot::Sender<Result<Option<Value>, Arc<couch::Error>>>;
/// Per database with a read in flight: the ids (and their askers) waiting for the next.
type Waiting = Arc<Mutex<HashMap<String, Vec<(String, Reply)>>>>;

/// Shares reads of device documents, one request in flight per database.
#[derive(Debug)]
pub struct DocReads {
    couch: CouchClient,
    waiting: Waiting,
}

impl DocReads {
    /// Reads through `couch`.
    pub fn new(couch: CouchClient) -> Self {
        Self {
            couch,
            waiting: Arc::default(),
        }
    }

    /// Ids queued behind a read in flight, over all databases.
    pub fn waiting(&self) -> usize {
        let waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.values().map(Vec::len).sum()
    }

    /// Document `id` of `db` as stored now (`None`: it or its database does not
    /// exist). A failed shared request fails every id it carried, each with the same
    /// error ([`couch::Error::Shared`]).
    pub async fn read(&self, db: &str, id: &str) -> Result<Option<Value>, couch::Error> {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            match waiting.entry(db.to_string()) {
                // A read is in flight: this id goes in the next one.
                Entry::Occupied(mut e) => {
                    e.get_mut().push((id.to_string(), tx));
                    None
                }
                // None is: this one goes now, and takes whatever queues meanwhile.
                Entry::Vacant(e) => {
                    e.insert(Vec::new());
                    Some(tx)
                }
            }
        };
        if let Some(tx) = lead {
            // Its own task: a caller that gives up must not strand the ids queued behind it.
            tokio::spawn(serve(
                self.couch.clone(),
                self.waiting.clone(),
                db.to_string(),
                vec![(id.to_string(), tx)],
            ));
        }
        match rx.await {
            Ok(answer) => answer.map_err(couch::Error::Shared),
            // The serving task ended without answering: only when the runtime shuts down.
            Err(_) => Err(couch::Error::Shared(Arc::new(couch::Error::Decode {
                what: "shared document read".into(),
                detail: "ended without an answer".into(),
            }))),
        }
    }
}

/// Reads `first`, then each batch queued for `db` meanwhile, until none is left.
async fn serve(couch: CouchClient, waiting: Waiting, db: String, first: Vec<(String, Reply)>) {
    let mut batch = first;
    loop {
        answer(&couch, &db, batch).await;
        let mut all = waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(queued) = all.get_mut(&db) else {
            return;
        };
        if queued.is_empty() {
            all.remove(&db);
            return;
        }
        let take = queued.len().min(MAX_IDS);
        batch = queued.drain(..take).collect();
    }
}

/// One request for the distinct ids of `batch`; every asker gets its document.
async fn answer(couch: &CouchClient, db: &str, batch: Vec<(String, Reply)>) {
    let mut ids: Vec<String> = Vec::with_capacity(batch.len());
    for (id, _) in &batch {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    match couch.get_docs(db, &ids).await {
        Ok(docs) => {
            for (id, tx) in batch {
                let doc = ids
                    .iter()
                    .position(|i| *i == id)
                    .and_then(|at| docs.get(at).cloned().flatten());
                let _ = tx.send(Ok(doc));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for (_, tx) in batch {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}
