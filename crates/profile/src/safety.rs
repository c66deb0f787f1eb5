//! The `safety` section of a profile: the dead-man switch and safe mode.

use serde::Deserialize;
use std::time::Duration;

/// What safe mode does to the brainboxes, mildest first.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum SafeAction {
    /// Close every brainbox's egress (zones to deny-all); processes keep running.
    CloseEgress,
    /// Freeze every brainbox's cgroup.
    Freeze,
}

impl SafeAction {
    /// The action's name as written in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            SafeAction::Freeze => "freeze",
            SafeAction::CloseEgress => "close_egress",
        }
    }
}

/// How a dead-man safe mode is lifted.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Lift {
    /// The next operator check-in lifts it.
    #[default]
    Checkin,
    /// Only an explicit `brainboxctl safe-mode off` lifts it.
    Operator,
}

/// The `safety` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SafetyPolicy {
    /// Dead-man interval: the operator must check in at least this often (absent: no
    /// dead-man switch).
    #[serde(default)]
    pub checkin_interval_secs: Option<u64>,
    /// What safe mode does.
    pub action: SafeAction,
    /// Enter safe mode when NATS and the alert spool are both unavailable (default true).
    #[serde(default = "crate::yes")]
    pub on_alert_path_lost: bool,
    /// How a dead-man safe mode is lifted (default `checkin`).
    #[serde(default)]
    pub lift: Lift,
}

impl SafetyPolicy {
    /// The dead-man interval.
    pub fn checkin_interval(&self) -> Option<Duration> {
        self.checkin_interval_secs.map(Duration::from_secs)
    }

    /// One node runs containers of several profiles but has one dead-man switch: the shortest
    /// interval, the strictest action and lift, and alert-path watching if any profile asks.
    pub fn combine<'a>(policies: impl IntoIterator<Item = &'a SafetyPolicy>) -> Option<Self> {
        policies
            .into_iter()
            .fold(None, |acc: Option<SafetyPolicy>, p| {
                Some(match acc {
                    None => p.clone(),
                    Some(a) => SafetyPolicy {
                        checkin_interval_secs: match (
                            a.checkin_interval_secs,
                            p.checkin_interval_secs,
                        ) {
                            (Some(x), Some(y)) => Some(x.min(y)),
                            (x, y) => x.or(y),
                        },
                        action: a.action.max(p.action),
                        on_alert_path_lost: a.on_alert_path_lost || p.on_alert_path_lost,
                        lift: if a.lift == Lift::Operator || p.lift == Lift::Operator {
                            Lift::Operator
                        } else {
                            Lift::Checkin
                        },
                    },
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SafetyPolicy, serde_yaml::Error> {
        serde_yaml::from_str(s)
    }

    #[test]
    fn parses_defaults_and_rejects_typos() {
        let p = parse("checkin_interval_secs: 2\naction: close_egress\nlift: operator\n").unwrap();
        assert_eq!(p.checkin_interval(), Some(Duration::from_secs(2)));
        assert_eq!(p.action, SafeAction::CloseEgress);
        assert!(p.on_alert_path_lost);
        let p = parse("action: freeze\n").unwrap();
        assert_eq!((p.checkin_interval(), p.lift), (None, Lift::Checkin));
        assert!(parse("action: freeze\ninterval: 2\n").is_err());
        assert!(parse("action: pause\n").is_err());
    }

    #[test]
    fn combine_takes_the_strictest() {
        let a =
            parse("checkin_interval_secs: 60\naction: close_egress\non_alert_path_lost: false\n")
                .unwrap();
        let b = parse("checkin_interval_secs: 30\naction: freeze\nlift: operator\n").unwrap();
        let c = SafetyPolicy::combine([&a, &b]).unwrap();
        assert_eq!(c.checkin_interval_secs, Some(30));
        assert_eq!(c.action, SafeAction::Freeze);
        assert!(c.on_alert_path_lost);
        assert_eq!(c.lift, Lift::Operator);
        assert_eq!(SafetyPolicy::combine([]), None);
    }
}
