//! Revocations pushed over NATS: every node agent follows the `BRAINBOX_REVOCATIONS` JetStream
//! stream from its first message (`brainboxctl identity revoke` publishes there), so a
//! revocation reaches every node within a round trip, and survives agent and NATS restarts: a
//! restarted agent replays the whole stream before it has been up for long. Pushed revocations
//! add to the deny-list file's entries; they never remove any.

use brainbox_alerts::control::{check_revocation, ControlPlane, MAX_REVOCATION_BYTES};
use brainbox_identity::denylist::{Revocation, SharedDenyList};
use futures_util::StreamExt;
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

/// Parses one revocation message. Refuses oversized, malformed and empty ones.
pub fn parse(body: &[u8]) -> Result<Revocation, String> {
    if body.len() > MAX_REVOCATION_BYTES {
        return Err(format!("{} bytes, over {MAX_REVOCATION_BYTES}", body.len()));
    }
    let r: Revocation = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    check_revocation(r.spiffe_id.as_deref(), r.serial.as_deref())?;
    Ok(r)
}

/// Follows the revocations stream for the life of the agent, pushing each revocation into
/// `deny`. Sets `ready` once every revocation that existed at start is applied, or after `wait`
/// (NATS unreachable: the node then serves with its deny-list file only, and says so). NATS
/// need not be up: the client reconnects, and the stream is re-opened.
pub async fn follow(
    client: async_nats::Client,
    deny: SharedDenyList,
    ready: Arc<AtomicBool>,
    wait: Duration,
) {
    let control = ControlPlane::from_client(client);
    let r2 = ready.clone();
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        if !r2.swap(true, Ordering::AcqRel) {
            tracing::error!(
                waited_secs = wait.as_secs(),
                "revocations over NATS not loaded; serving identities with the deny-list file only"
            );
        }
    });
    loop {
        match control.follow_revocations().await {
            Ok((last, stream)) => {
                tracing::info!(
                    revocations = last,
                    "following identity revocations over NATS"
                );
                if last == 0 && !ready.swap(true, Ordering::AcqRel) {
                    tracing::info!("no pushed revocations; identities are served");
                }
                let mut stream = std::pin::pin!(stream);
                while let Some(item) = stream.next().await {
                    match item {
                        Ok((seq, body)) => {
                            match parse(&body) {
                                Ok(r) => {
                                    tracing::warn!(spiffe_id = ?r.spiffe_id, serial = ?r.serial, seq, "identity revoked (pushed over NATS)");
                                    deny.push(&r);
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, seq, "ignoring a malformed revocation message")
                                }
                            }
                            if seq >= last && !ready.swap(true, Ordering::AcqRel) {
                                tracing::info!(
                                    revocations = last,
                                    "pushed revocations loaded; identities are served"
                                );
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "revocations stream interrupted; re-opening");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "revocations stream unavailable; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_messages_are_checked() {
        assert!(parse(br#"{"spiffe_id":"spiffe://brainbox.local/ns/default/brainbox/a"}"#).is_ok());
        assert!(parse(br#"{"serial":"0A:1b:ff"}"#).is_ok());
        for bad in [
            &br#"{}"#[..],
            br#"{"spiffe_id":"http://x"}"#,
            br#"{"serial":"zz"}"#,
            br#"{"serial":""}"#,
            b"not json",
            b"",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&vec![b' '; MAX_REVOCATION_BYTES + 1]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_messages_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }
    }
}
