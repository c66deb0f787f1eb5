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
    /// Whether `last_checkin` is a real check-in (else it is the start-up grace).
    checkin_known: bool,
    reasons: BTreeSet<Reason>,
}

impl SafetyMachine {
    /// Starts outside safe mode; the dead-man interval runs from `now` (a grace period at start).
    pub fn new(policy: SafetyPolicy, now: Instant) -> Self {
        Self {
            policy,
            last_checkin: now,
            checkin_known: false,
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

    /// The operator checked in just now.
    pub fn checkin(&mut self, now: Instant) -> Change {
        self.checkin_aged(Duration::ZERO, now)
    }

    /// A check-in made `age` ago (its own timestamp, as stored). A stale one, as replayed from
    /// the store when the agent (re)starts, does not restart the interval: if it is older than
    /// the interval, the switch fires now. A restart of the agent or of NATS can therefore never
    /// postpone the dead-man switch.
    pub fn checkin_aged(&mut self, age: Duration, now: Instant) -> Change {
        if self.policy.checkin_interval().is_some_and(|i| age >= i) {
            return self.apply(|r| {
                r.insert(Reason::DeadMan);
            });
        }
        self.note_checkin(now.checked_sub(age).unwrap_or(now));
        let lift = self.policy.lift == Lift::Checkin;
        self.apply(|r| {
            if lift {
                r.remove(&Reason::DeadMan);
            }
        })
    }

    /// The first check-in the node learns of replaces the start-up grace; later ones only move
    /// the interval forward.
    fn note_checkin(&mut self, at: Instant) {
        self.last_checkin = if self.checkin_known {
            self.last_checkin.max(at)
        } else {
            at
        };
        self.checkin_known = true;
    }

    /// The operator commanded safe mode on or off just now.
    pub fn operator(&mut self, on: bool, now: Instant) -> Change {
        self.operator_aged(on, Duration::ZERO, now)
    }

    /// A command given `age` ago. `off` counts as a check-in (an operator giving commands is
    /// present) and clears a dead-man latch, but only while it is younger than the interval:
    /// a stale `off` replayed from the store only says the operator's own reason is gone.
    pub fn operator_aged(&mut self, on: bool, age: Duration, now: Instant) -> Change {
        if on {
            return self.apply(|r| {
                r.insert(Reason::Operator);
            });
        }
        let current = self.policy.checkin_interval().is_none_or(|i| age < i);
        if current {
            self.note_checkin(now.checked_sub(age).unwrap_or(now));
        }
        self.apply(|r| {
            r.remove(&Reason::Operator);
            if current {
                r.remove(&Reason::DeadMan);
            }
        })
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
    fn stored_checkins_count_from_their_own_time_not_from_the_agent_start() {
        let t0 = Instant::now() + 100 * S;
        // The stored check-in is 3 s old when the agent starts: 7 s left, not 10.
        let mut m = SafetyMachine::new(policy(Lift::Checkin), t0);
        assert_eq!(m.checkin_aged(3 * S, t0), Change::None);
        assert_eq!(m.deadline(), Some(t0 + 7 * S));
        // Older than the interval (the operator went quiet before a restart): fires at once,
        // and the stale value does not lift it.
        let mut m = SafetyMachine::new(policy(Lift::Checkin), t0);
        assert_eq!(
            m.checkin_aged(11 * S, t0),
            Change::Entered {
                action: SafeAction::Freeze,
                reasons: vec![Reason::DeadMan]
            }
        );
        assert!(m.active());
        // A fresh check-in lifts it.
        assert_eq!(m.checkin(t0 + S), Change::Left);
        // A late-delivered older check-in does not move the interval back.
        assert_eq!(m.checkin_aged(5 * S, t0 + 2 * S), Change::None);
        assert_eq!(m.deadline(), Some(t0 + 11 * S));
    }

    #[test]
    fn a_stale_off_command_neither_counts_as_a_checkin_nor_lifts_the_dead_man() {
        let t0 = Instant::now() + 100 * S;
        let mut m = SafetyMachine::new(policy(Lift::Operator), t0);
        assert!(matches!(m.tick(t0 + 10 * S), Change::Entered { .. }));
        // `safe-mode off` from an hour ago, replayed by the store after a NATS outage.
        assert_eq!(m.operator_aged(false, 3600 * S, t0 + 11 * S), Change::None);
        assert!(m.active());
        // A new one lifts it and counts as a check-in.
        assert_eq!(m.operator_aged(false, S, t0 + 12 * S), Change::Left);
        assert_eq!(m.deadline(), Some(t0 + 21 * S));
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
