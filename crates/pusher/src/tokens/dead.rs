//! Dead-token clean-up: a provider said the token is dead and the app has
//! `remove_invalid_tokens` on, so the device holding it loses its `push` object — only
//! if it still holds that very token and (APNs 410) has not registered again since.

use pusher_core::push_req::PushReq;
use pusher_io::couch::UpdateOutcome;
use serde_json::{Value, json};

use super::{FLUSH_WAIT, TOKENS_DB, TokenIndex, doc_id};

impl TokenIndex {
    /// Removes the `push` object of the device holding `req`'s dead token. Returns
    /// whether a device doc was changed.
    pub async fn remove_dead(&self, req: &PushReq, invalid_since_ms: Option<u64>) -> bool {
        let Some(id) = doc_id(req.token_type.as_str(), &req.token_app, &req.token_id) else {
            return false;
        };
        if self.is_pending(&id) {
            self.wait_written(&id, FLUSH_WAIT).await;
        }
        let couch = &self.shared.couch;
        let entry = match couch.get_doc(TOKENS_DB, &id).await {
            Ok(Some(e)) => e,
            Ok(None) => {
                tracing::info!(
                    "dead token not in the token index (registered before this service ran?); device left as is"
                );
                return false;
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "cannot read the token index; device left as is");
                return false;
            }
        };
        // The later of the stored time and this process's own memory (see the module doc).
        let registered = entry["registered_at_ms"]
            .as_u64()
            .unwrap_or(0)
            .max(self.seen_ms(&id).unwrap_or(0));
        if let Some(ts) = invalid_since_ms
            && registered > ts
        {
            tracing::info!(
                registered_at_ms = registered,
                invalid_since_ms = ts,
                "device registered this token again after the provider invalidated it; kept"
            );
            return false;
        }
        let (Some(db), Some(device)) = (entry["account_db"].as_str(), entry["device_id"].as_str())
        else {
            return false;
        };
        let token = req.token_id.as_str();
        let changed = couch
            .update_doc(db, device, 10, |doc| {
                let holds = doc.pointer("/push/Token-ID").and_then(Value::as_str) == Some(token);
                holds
                    && doc
                        .as_object_mut()
                        .is_some_and(|d| d.remove("push").is_some())
            })
            .await;
        let mut tombstone = entry.clone();
        tombstone["_deleted"] = json!(true);
        if let Err(e) = couch.put_doc(TOKENS_DB, &tombstone).await {
            tracing::debug!(error.message = %e, "token index entry not deleted");
        }
        self.known().remove(&id);
        match changed {
            Ok(UpdateOutcome::Updated { .. }) => {
                tracing::warn!(
                    device_id = device,
                    "push object removed from the device (dead token)"
                );
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error.message = %e, device_id = device, "cannot remove the dead token from the device");
                false
            }
        }
    }
}
