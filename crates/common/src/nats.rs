//! How brainbox-guard's programs authenticate to NATS: one `[*.nats_auth]` shape for the node
//! agent, the sidecar and `brainboxctl`. Secrets are read from files (Kubernetes Secret mounts)
//! at connect time, never taken inline, so they stay out of config files, environment dumps and
//! `ps`. Empty means anonymous (a lab's private `nats-server`).
//!
//! The server decides what each user may do (`deploy/kubernetes/20-nats.yaml`: node agents,
//! sidecars and operators get different publish/subscribe permissions), so a stolen sidecar
//! password cannot switch safe mode off or lift an isolation.

use serde::Deserialize;
use std::path::PathBuf;

/// NATS credentials and TLS trust.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NatsAuth {
    /// User name (with `password_file`).
    pub user: String,
    /// File holding the user's password (first line; surrounding whitespace ignored).
    pub password_file: PathBuf,
    /// File holding an authentication token (instead of user and password).
    pub token_file: PathBuf,
    /// PEM file of the CA that signs the server's certificate: TLS becomes required.
    pub ca_file: PathBuf,
}

fn set(p: &std::path::Path) -> bool {
    !p.as_os_str().is_empty()
}

fn secret(p: &std::path::Path, what: &str) -> Result<String, String> {
    let s = std::fs::read_to_string(p)
        .map_err(|e| format!("cannot read the NATS {what} file {}: {e}", p.display()))?;
    let s = s.lines().next().unwrap_or_default().trim().to_owned();
    if s.is_empty() {
        return Err(format!("the NATS {what} file {} is empty", p.display()));
    }
    Ok(s)
}

impl NatsAuth {
    /// Checks that the settings make sense together (at configuration load, before connecting);
    /// errors name the keys as `<section>.<field>`.
    pub fn validate(&self, section: &str) -> Result<(), String> {
        self.validate_named(|field| format!("{section}.{field}"))
    }

    /// [`NatsAuth::validate`] with the settings named by `name` (a command line names them as
    /// flags).
    pub fn validate_named(&self, name: impl Fn(&str) -> String) -> Result<(), String> {
        let (user, password, token) = (name("user"), name("password_file"), name("token_file"));
        if !self.user.is_empty() && !set(&self.password_file) {
            return Err(format!("{user} needs {password}"));
        }
        if set(&self.password_file) && self.user.is_empty() {
            return Err(format!("{password} needs {user}"));
        }
        if set(&self.token_file) && !self.user.is_empty() {
            return Err(format!("give {user} and {password}, or {token}, not both"));
        }
        Ok(())
    }

    /// Whether any credential is configured.
    pub fn is_anonymous(&self) -> bool {
        self.user.is_empty() && !set(&self.token_file)
    }

    /// `opts` with these credentials and this CA applied (reads the secret files now).
    pub fn apply(
        &self,
        mut opts: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, String> {
        self.validate("nats_auth")?;
        if !self.user.is_empty() {
            opts =
                opts.user_and_password(self.user.clone(), secret(&self.password_file, "password")?);
        } else if set(&self.token_file) {
            opts = opts.token(secret(&self.token_file, "token")?);
        }
        if set(&self.ca_file) {
            if !self.ca_file.is_file() {
                return Err(format!(
                    "the NATS CA file {} does not exist",
                    self.ca_file.display()
                ));
            }
            opts = opts
                .add_root_certificates(self.ca_file.clone())
                .require_tls(true);
        }
        Ok(opts)
    }
}

/// A JetStream publishing link shared by the alert publisher and the sidecar's log output: both
/// send one message at a time, wait for its ack, and retry the same message (same
/// `Nats-Msg-Id`) until it is acked, so that order holds and JetStream drops the copies.
///
/// Nothing is handed to the client while it is disconnected: async-nats would keep the message
/// in its reconnect buffer and send it after reconnecting, behind or ahead of our own retry,
/// and the order would be lost.
pub struct JetStreamLink {
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    ack_timeout: std::time::Duration,
    /// The stream to create (or check) before the first publish; `None` once done, or when the
    /// stream is managed elsewhere.
    ensure: Option<async_nats::jetstream::stream::Config>,
}

impl JetStreamLink {
    /// Connects in the background (the program must start with NATS down), reconnecting
    /// quickly, and waits up to `initial_wait` for a first connection so that a normal start
    /// does not begin with a failed publish. `opts` carries the credentials and any event
    /// callback; `ensure` is the stream to create before the first publish.
    pub async fn connect(
        opts: async_nats::ConnectOptions,
        name: &str,
        url: &str,
        ack_timeout: std::time::Duration,
        initial_wait: std::time::Duration,
        ensure: Option<async_nats::jetstream::stream::Config>,
    ) -> Result<Self, async_nats::ConnectError> {
        use std::time::{Duration, Instant};
        let client = opts
            .name(name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(ack_timeout))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 100).min(1000))
            })
            .connect(url)
            .await?;
        let deadline = Instant::now() + initial_wait;
        while client.connection_state() != async_nats::connection::State::Connected
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut js = async_nats::jetstream::new(client.clone());
        js.set_timeout(ack_timeout);
        Ok(Self {
            client,
            js,
            ack_timeout,
            ensure,
        })
    }

    /// Whether the client is connected now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Publishes `body` to `subject` with `headers` and waits for JetStream's ack. Errors are
    /// for the caller to count and retry with the same `Nats-Msg-Id` header.
    pub async fn publish(
        &mut self,
        subject: &str,
        headers: async_nats::HeaderMap,
        body: bytes::Bytes,
    ) -> Result<async_nats::jetstream::publish::PublishAck, String> {
        if !self.connected() {
            return Err("not connected to NATS".into());
        }
        let t = self.ack_timeout;
        if let Some(cfg) = &self.ensure {
            let name = cfg.name.clone();
            tokio::time::timeout(t, self.js.get_or_create_stream(cfg.clone()))
                .await
                .map_err(|_| format!("timed out ensuring stream {name}"))?
                .map_err(|e| format!("cannot ensure stream {name}: {e}"))?;
            self.ensure = None;
        }
        let fut = tokio::time::timeout(
            t,
            self.js
                .publish_with_headers(subject.to_owned(), headers, body),
        )
        .await
        .map_err(|_| "timed out queueing the publish".to_owned())?
        .map_err(|e| format!("publish failed: {e}"))?;
        tokio::time::timeout(
            t + std::time::Duration::from_millis(100),
            std::future::IntoFuture::into_future(fut),
        )
        .await
        .map_err(|_| "timed out waiting for the JetStream ack".to_owned())?
        .map_err(|e| format!("no JetStream ack: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_secrets_come_from_files() {
        assert!(NatsAuth::default().validate("a").is_ok());
        assert!(NatsAuth::default().is_anonymous());
        let only_user = NatsAuth {
            user: "agent".into(),
            ..Default::default()
        };
        assert!(only_user
            .validate("alerts.nats_auth")
            .unwrap_err()
            .contains("password_file"));
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let both = NatsAuth {
            user: "agent".into(),
            password_file: pw.clone(),
            token_file: pw.clone(),
            ..Default::default()
        };
        assert!(both.validate("x").unwrap_err().contains("not both"));
        let ok = NatsAuth {
            user: "agent".into(),
            password_file: pw.clone(),
            ..Default::default()
        };
        assert!(ok.apply(async_nats::ConnectOptions::new()).is_ok());
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = NatsAuth {
            token_file: empty,
            ..Default::default()
        }
        .apply(async_nats::ConnectOptions::new())
        .unwrap_err();
        assert!(e.contains("is empty"), "{e}");
        let e = NatsAuth {
            ca_file: dir.path().join("nope.pem"),
            ..Default::default()
        }
        .apply(async_nats::ConnectOptions::new())
        .unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
    }
}
