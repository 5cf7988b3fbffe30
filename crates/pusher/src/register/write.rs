//! Writing one device: read-modify-write of its document (starting from the copy the
//! device cache keeps, 409s re-read and re-applied), transient failures retried with
//! capped, jittered backoff within the retry budget, then the token index told.

use std::time::{Duration, Instant};

use pusher_core::outcome::retry_delay;
use pusher_core::reg_success::{self, PushUpdate};
use pusher_io::couch::{self, Known, UpdateOutcome};
use rand::Rng as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::Registrar;
use super::outcome::RegOutcome;
use super::plan::Job;

/// How many 409s a device update absorbs before it counts as a transient failure.
const MAX_CONFLICTS: u32 = 10;
/// First pause between attempts; doubles up to [`RETRY_CAP`].
const RETRY_BASE: Duration = Duration::from_millis(200);
/// Longest pause between attempts.
const RETRY_CAP: Duration = Duration::from_secs(5);

/// A write stopped by its cancellation token before it was done.
#[derive(Debug)]
pub(super) struct Interrupted;

impl Registrar {
    /// Writes one device, retrying transient failures with capped, jittered backoff
    /// for at most the retry budget (then `Error`: settled without update); `cancel`
    /// interrupts it.
    pub(super) async fn write(
        &self,
        job: &Job,
        cancel: &CancellationToken,
    ) -> Result<RegOutcome, Interrupted> {
        let (msg_id, call_id) = (job.who.msg_id.as_str(), job.who.call_id.as_str());
        let started = Instant::now();
        let mut attempt = 1u32;
        loop {
            let result = tokio::select! {
                r = self.write_once(job) => r,
                () = cancel.cancelled() => return Err(Interrupted),
            };
            let e = match result {
                Ok(outcome) => return Ok(outcome),
                Err(e) if e.is_transient() => e,
                Err(e) => {
                    tracing::error!(msg_id, call_id, error.message = %e, "reg_success failed; settled");
                    return Ok(RegOutcome::Error);
                }
            };
            let delay = retry_delay(attempt, None, RETRY_BASE, RETRY_CAP, rand::rng().random());
            let elapsed = started.elapsed();
            if elapsed + delay > self.retry_budget {
                tracing::error!(msg_id, call_id, attempt, error.message = %e,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "reg_success failed for longer than the retry budget; settled without update");
                return Ok(RegOutcome::Error);
            }
            tracing::warn!(msg_id, call_id, attempt, error.message = %e,
                retry_in_ms = delay.as_millis() as u64, "reg_success failed; will retry");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return Err(Interrupted),
            }
            attempt += 1;
        }
    }

    /// One attempt. The cache is asked again here, not when the job was planned: a
    /// parked job is written later, after other writes of the device updated the
    /// cached copy. Its ticket is taken before the write, as a store requires.
    async fn write_once(&self, job: &Job) -> Result<RegOutcome, couch::Error> {
        let Job {
            account_db,
            device_id,
            update,
            wanted,
            ..
        } = job;
        let found = self.devices.lookup_doc(account_db, device_id, wanted);
        if found.hit {
            // An earlier write of the device (or a read) established this push object.
            if let PushUpdate::Set(push) = update {
                self.tokens.note(push, account_db, device_id);
            }
            return Ok(RegOutcome::Unchanged);
        }
        let known = match found.doc {
            // The cached copy: written at once when the update changes it.
            Some(doc) => Known::Kept(doc),
            // Not cached: read, in one request with the other devices of the database
            // read meanwhile.
            None => match self.reads.read(account_db, device_id).await? {
                Some(doc) => Known::Read(doc),
                None => return Ok(RegOutcome::DeviceNotFound),
            },
        };
        let written = self
            .couch
            .update_doc_from(account_db, device_id, known, MAX_CONFLICTS, |doc| {
                reg_success::apply_update(doc, update)
            })
            .await?;
        if let (Some(ticket), Some(doc)) = (found.ticket, &written.doc) {
            let rev = doc.get("_rev").and_then(Value::as_str).map(str::to_string);
            self.devices.store_doc(
                account_db,
                device_id,
                wanted.clone(),
                rev,
                Some(doc),
                ticket,
            );
        }
        let outcome = written.outcome;
        if let (PushUpdate::Set(push), UpdateOutcome::Updated { .. } | UpdateOutcome::Unchanged) =
            (update, &outcome)
        {
            self.tokens.note(push, account_db, device_id);
        }
        Ok(match (outcome, update) {
            (UpdateOutcome::NotFound, _) => RegOutcome::DeviceNotFound,
            (UpdateOutcome::Unchanged, _) => RegOutcome::Unchanged,
            (UpdateOutcome::Updated { .. }, PushUpdate::Set(_)) => RegOutcome::Updated,
            (UpdateOutcome::Updated { .. }, PushUpdate::Remove) => RegOutcome::Removed,
        })
    }
}
