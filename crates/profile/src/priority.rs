//! Falco's priorities: the one definition the rule engine (rule `priority:`), the profiles
//! (`priority_at_least`), the alert schema and `brainboxctl` share.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// Falco's priorities, most severe first (so `Emergency < Debug` in `Ord`).
///
/// In JSON (the alert schema) a priority is its lowercase name, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// System is unusable.
    Emergency,
    /// Action must be taken immediately.
    Alert,
    /// Critical conditions.
    Critical,
    /// Error conditions.
    Error,
    /// Warning conditions.
    Warning,
    /// Normal but significant.
    Notice,
    /// Informational.
    Informational,
    /// Debugging.
    Debug,
}

impl Priority {
    /// Every priority, most severe first.
    pub const ALL: [Priority; 8] = [
        Priority::Emergency,
        Priority::Alert,
        Priority::Critical,
        Priority::Error,
        Priority::Warning,
        Priority::Notice,
        Priority::Informational,
        Priority::Debug,
    ];

    /// Parses a name, ASCII case-insensitively, surrounding whitespace ignored: Falco's
    /// (`WARNING`, `Informational`, `INFO`) and the syslog short forms `emerg`, `crit`, `err`,
    /// `warn`.
    pub fn parse(s: &str) -> Option<Priority> {
        let l = s.trim().to_ascii_lowercase();
        let l = match l.as_str() {
            "emerg" => "emergency",
            "crit" => "critical",
            "err" => "error",
            "warn" => "warning",
            "info" => "informational",
            other => other,
        };
        Priority::ALL.into_iter().find(|p| p.as_str() == l)
    }

    /// The lowercase name, as used in subjects and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "emergency",
            Priority::Alert => "alert",
            Priority::Critical => "critical",
            Priority::Error => "error",
            Priority::Warning => "warning",
            Priority::Notice => "notice",
            Priority::Informational => "informational",
            Priority::Debug => "debug",
        }
    }

    /// Severity rank, 0 for `Debug` up to 7 for `Emergency`.
    pub fn rank(self) -> usize {
        Priority::ALL.len() - 1 - self as usize
    }

    /// True if `self` is at least as severe as `min`.
    pub fn at_least(self, min: Priority) -> bool {
        self <= min
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown priority name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority `{0}` (emergency, alert, critical, error, warning, notice, informational, debug)")]
pub struct BadPriority(pub String);

impl FromStr for Priority {
    type Err = BadPriority;
    /// [`Priority::parse`], with an error naming the valid names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::parse(s).ok_or_else(|| BadPriority(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::Priority;

    #[test]
    fn names_short_forms_order_and_serialized_names() {
        for (i, p) in Priority::ALL.iter().enumerate() {
            assert_eq!(Priority::parse(p.as_str()), Some(*p));
            assert_eq!(Priority::parse(&p.as_str().to_ascii_uppercase()), Some(*p));
            assert_eq!(p.rank(), 7 - i);
            assert_eq!(serialized(*p), p.as_str());
        }
        for (short, p) in [
            ("emerg", Priority::Emergency),
            ("crit", Priority::Critical),
            ("err", Priority::Error),
            (" Warn ", Priority::Warning),
            ("INFO", Priority::Informational),
        ] {
            assert_eq!(Priority::parse(short), Some(p), "{short}");
        }
        for bad in ["", "severe", "warnings", "critical!"] {
            assert!(bad.parse::<Priority>().is_err(), "{bad}");
        }
        assert!(Priority::Critical.at_least(Priority::Warning));
        assert!(!Priority::Notice.at_least(Priority::Warning));
    }

    /// What serde writes for a priority (through serde_yaml, the serializer this crate has;
    /// a unit variant is the same plain name in JSON).
    fn serialized(p: Priority) -> String {
        serde_yaml::to_string(&p).unwrap().trim().to_owned()
    }
}
