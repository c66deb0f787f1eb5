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
