//! The safe-mode state machine: the dead-man switch, the alert-path watchdog and operator
//! commands, as a pure function of events and time (no I/O, so every rule is unit-tested).
//!
//! Safe mode is on while at least one reason holds:
//! - `dead_man`: no operator check-in within the policy's interval. Lifted by the next check-in
//!   when the policy says `lift: checkin`, or only by `safe-mode off` with `lift: operator`.
//! - `alert_path_lost`: NATS is unavailable and the spool is full or broken, so alerts can no
//!   longer be recorded anywhere. Lifted when the alert path works again (it is a condition,
//!   not a latch: brainboxes must not run unwatched, and nothing else can tell them apart).
//! - `operator`: `brainboxctl safe-mode on`, until `safe-mode off` (which also clears a
//!   dead-man latch and counts as a check-in).

use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

/// The policy is part of the profile schema (`safety:`); re-exported for the agent's convenience.
pub use brainbox_profile::{Lift, SafeAction, SafetyPolicy};

/// Why the node is in safe mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The operator missed the check-in.
    DeadMan,
    /// Alerts can no longer be recorded.
    AlertPathLost,
    /// The operator asked for it.
    Operator,
}

impl Reason {
    /// The reason's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DeadMan => "dead_man",
            Reason::AlertPathLost => "alert_path_lost",
            Reason::Operator => "operator",
        }
    }
}

/// What an event did to safe mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Safe mode was entered: apply `action`.
    Entered {
        /// The action to apply.
        action: SafeAction,
        /// Why.
        reasons: Vec<Reason>,
    },
    /// Safe mode was lifted: undo the action.
    Left,
    /// Still in safe mode, for different reasons (announce, nothing to apply).
    Reasons(Vec<Reason>),
    /// Nothing changed.
    None,
}

/// The state machine.
#[derive(Debug, Clone)]
pub struct SafetyMachine {
    policy: SafetyPolicy,
    last_checkin: Instant,
    reasons: BTreeSet<Reason>,
}

impl SafetyMachine {
    /// Starts outside safe mode; the dead-man interval runs from `now` (a grace period at start).
    pub fn new(policy: SafetyPolicy, now: Instant) -> Self {
        Self {
            policy,
            last_checkin: now,
            reasons: BTreeSet::new(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &SafetyPolicy {
        &self.policy
    }

    /// Whether safe mode is on.
    pub fn active(&self) -> bool {
        !self.reasons.is_empty()
    }

    /// Why, in a stable order.
    pub fn reasons(&self) -> Vec<Reason> {
        self.reasons.iter().copied().collect()
    }

    /// When the dead-man switch fires if nobody checks in (none when disabled or fired).
    pub fn deadline(&self) -> Option<Instant> {
        if self.reasons.contains(&Reason::DeadMan) {
            return None;
        }
        self.policy
            .checkin_interval()
            .map(|i: Duration| self.last_checkin + i)
    }

    fn apply(&mut self, f: impl FnOnce(&mut BTreeSet<Reason>)) -> Change {
        let before = self.reasons.clone();
        f(&mut self.reasons);
        match (before.is_empty(), self.reasons.is_empty()) {
            (true, false) => Change::Entered {
                action: self.policy.action,
                reasons: self.reasons(),
            },
            (false, true) => Change::Left,
            (false, false) if before != self.reasons => Change::Reasons(self.reasons()),
            _ => Change::None,
        }
    }

    /// Time passed: fire the dead-man switch if the interval expired.
    pub fn tick(&mut self, now: Instant) -> Change {
        let expired = self.deadline().is_some_and(|d| now >= d);
        self.apply(|r| {
            if expired {
                r.insert(Reason::DeadMan);
            }
        })
    }

    /// The operator checked in.
    pub fn checkin(&mut self, now: Instant) -> Change {
        self.last_checkin = now;
        let lift = self.policy.lift == Lift::Checkin;
        self.apply(|r| {
            if lift {
                r.remove(&Reason::DeadMan);
            }
        })
    }

    /// The operator commanded safe mode on or off.
    pub fn operator(&mut self, on: bool, now: Instant) -> Change {
        if on {
            self.apply(|r| {
                r.insert(Reason::Operator);
            })
        } else {
            // An operator giving commands is present: this is a check-in too.
            self.last_checkin = now;
            self.apply(|r| {
                r.remove(&Reason::Operator);
                r.remove(&Reason::DeadMan);
            })
        }
    }

    /// The alert path was lost (NATS down and spool full or broken) or regained.
    pub fn alert_path(&mut self, lost: bool) -> Change {
        let watch = self.policy.on_alert_path_lost;
        self.apply(|r| {
            if lost && watch {
                r.insert(Reason::AlertPathLost);
            } else {
                r.remove(&Reason::AlertPathLost);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(lift: Lift) -> SafetyPolicy {
        SafetyPolicy {
            checkin_interval_secs: Some(10),
            action: SafeAction::Freeze,
            on_alert_path_lost: true,
            lift,
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn dead_man_fires_after_the_interval_and_a_checkin_lifts_it() {
        let t0 = Instant::now();
        let mut m = SafetyMachine::new(policy(Lift::Checkin), t0);
        assert_eq!(m.tick(t0 + 9 * S), Change::None);
        assert_eq!(m.checkin(t0 + 9 * S), Change::None);
        assert_eq!(
            m.tick(t0 + 18 * S),
            Change::None,
            "check-in restarted the interval"
        );
        assert_eq!(
            m.tick(t0 + 19 * S),
            Change::Entered {
                action: SafeAction::Freeze,
                reasons: vec![Reason::DeadMan]
            }
        );
        assert_eq!(m.tick(t0 + 30 * S), Change::None, "entered once");
        assert_eq!(m.deadline(), None);
        assert_eq!(m.checkin(t0 + 31 * S), Change::Left);
        assert_eq!(m.deadline(), Some(t0 + 41 * S));
    }

    #[test]
    fn lift_operator_ignores_checkins_until_safe_mode_off() {
        let t0 = Instant::now();
        let mut m = SafetyMachine::new(policy(Lift::Operator), t0);
        assert!(matches!(m.tick(t0 + 10 * S), Change::Entered { .. }));
        assert_eq!(m.checkin(t0 + 11 * S), Change::None);
        assert!(m.active());
        assert_eq!(m.operator(false, t0 + 12 * S), Change::Left);
        assert_eq!(
            m.tick(t0 + 21 * S),
            Change::None,
            "off counts as a check-in"
        );
    }

    #[test]
    fn reasons_combine_and_each_lifts_only_itself() {
        let t0 = Instant::now();
        let mut m = SafetyMachine::new(policy(Lift::Checkin), t0);
        assert!(matches!(m.alert_path(true), Change::Entered { .. }));
        assert_eq!(
            m.operator(true, t0),
            Change::Reasons(vec![Reason::AlertPathLost, Reason::Operator])
        );
        assert_eq!(m.alert_path(false), Change::Reasons(vec![Reason::Operator]));
        assert_eq!(m.operator(false, t0), Change::Left);
        // Operator "off" does not lift a lost alert path.
        m.alert_path(true);
        assert_eq!(m.operator(false, t0), Change::None);
        assert!(m.active());
    }

    #[test]
    fn no_interval_means_no_dead_man_and_path_loss_can_be_ignored() {
        let t0 = Instant::now();
        let mut m = SafetyMachine::new(
            SafetyPolicy {
                checkin_interval_secs: None,
                on_alert_path_lost: false,
                ..policy(Lift::Checkin)
            },
            t0,
        );
        assert_eq!(m.tick(t0 + 1_000_000 * S), Change::None);
        assert_eq!(m.alert_path(true), Change::None);
        assert!(!m.active());
    }
}
