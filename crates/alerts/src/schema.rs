//! The one alert schema every channel carries (JetStream, spool, CLI, evidence manifests).

use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// Falco's priorities: one definition for rules, profiles and alerts.
pub use brainbox_profile::{BadPriority, Priority};

/// The container an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerRef {
    /// Runtime container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Image reference (by digest where known).
    pub image: String,
    /// Its pod, if any (how an operator finds it in Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The pod's namespace, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// One alert. `output` must already be redacted by the caller: the alert path never sees secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id (see [`alert_id`]); the JetStream message id, so a re-sent alert is dropped by
    /// the server's de-duplication.
    pub id: String,
    /// When the triggering event happened (RFC 3339, UTC).
    pub time: String,
    /// The node that raised it.
    pub node: String,
    /// The container it is about.
    pub container: ContainerRef,
    /// The rule that fired.
    pub rule: String,
    /// The rule's priority.
    pub priority: Priority,
    /// The rule's tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The rule's output, redacted.
    pub output: String,
    /// The sealed evidence bundle, if one was captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_id: Option<String>,
    /// A summary of identical alerts (see `coalesce`): how many this one stands for, itself
    /// included; 0 for an ordinary alert.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeats: u64,
    /// With `repeats`: when the first of them happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats_since: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Derives a stable alert id from what identifies one firing of one rule: the same event raised
/// twice (an agent restart re-reading it, a retry) gets the same id.
pub fn alert_id(
    node: &str,
    container_id: &str,
    rule: &str,
    event_time_ns: u64,
    pid: u32,
) -> String {
    let mut h = blake3::Hasher::new_derive_key("brainbox-guard alert id v1");
    for part in [node.as_bytes(), container_id.as_bytes(), rule.as_bytes()] {
        // Length-prefix each part so ("ab","c") and ("a","bc") differ.
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(&event_time_ns.to_le_bytes());
    h.update(&pid.to_le_bytes());
    // 128 bits: plenty against collisions, short enough for a message id and a terminal.
    h.finalize().to_hex()[..32].to_owned()
}

impl Alert {
    /// Builds an alert for one event, deriving its id and time.
    #[allow(clippy::too_many_arguments)]
    pub fn for_event(
        node: &str,
        container: ContainerRef,
        rule: &str,
        priority: Priority,
        tags: Vec<String>,
        output: String,
        event_time: SystemTime,
        pid: u32,
    ) -> Self {
        let ns = event_time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Alert {
            id: alert_id(node, &container.id, rule, ns, pid),
            time: humantime::format_rfc3339_nanos(event_time).to_string(),
            node: node.to_owned(),
            container,
            rule: rule.to_owned(),
            priority,
            tags,
            output,
            evidence_id: None,
            repeats: 0,
            repeats_since: None,
        }
    }

    /// The subject this alert is published on: `<prefix>.<node>.<priority>`.
    pub fn subject(&self, prefix: &str) -> String {
        format!(
            "{prefix}.{}.{}",
            subject_token(&self.node),
            self.priority.as_str()
        )
    }

    /// Checks what the transport relies on: a usable id (it becomes a header value).
    pub fn check(&self) -> Result<(), String> {
        let ok = !self.id.is_empty()
            && self.id.len() <= 128
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(())
        } else {
            Err(format!(
                "alert id `{}` must be 1-128 of [A-Za-z0-9_-]",
                self.id
            ))
        }
    }
}

/// Makes `s` one NATS subject token: anything but `[A-Za-z0-9_-]` becomes `_` (dots, spaces and
/// wildcards would change the subject's shape).
pub fn subject_token(s: &str) -> String {
    if s.is_empty() {
        return "_".to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_parse_and_order() {
        assert_eq!("WARNING".parse::<Priority>().unwrap(), Priority::Warning);
        assert_eq!("info".parse::<Priority>().unwrap(), Priority::Informational);
        assert!("loud".parse::<Priority>().is_err());
        assert!(Priority::Critical.at_least(Priority::Warning));
        assert!(!Priority::Notice.at_least(Priority::Warning));
        assert!(Priority::Warning.at_least(Priority::Warning));
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = alert_id("n1", "c", "r", 5, 7);
        assert_eq!(a, alert_id("n1", "c", "r", 5, 7));
        assert_ne!(a, alert_id("n1", "c", "r", 5, 8));
        assert_ne!(
            alert_id("ab", "c", "r", 0, 0),
            alert_id("a", "bc", "r", 0, 0)
        );
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn subjects_are_single_tokens() {
        let mut al = Alert::for_event(
            "node.1 *",
            ContainerRef::default(),
            "r",
            Priority::Critical,
            vec![],
            String::new(),
            SystemTime::UNIX_EPOCH,
            1,
        );
        assert_eq!(
            al.subject("brainbox.alerts"),
            "brainbox.alerts.node_1__.critical"
        );
        al.check().unwrap();
        al.id = "a b".into();
        assert!(al.check().is_err());
        let j = serde_json::to_string(&al).unwrap();
        let back: Alert = serde_json::from_str(&j).unwrap();
        assert_eq!(back, al);
    }
}
