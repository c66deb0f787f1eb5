//! A circuit breaker for the NATS path: closed (publish directly), open (spool only, until a
//! backoff expires), half-open (one probe decides).

use std::time::{Duration, Instant};

/// Breaker state; the gauge value is in brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// NATS works; alerts go straight to JetStream (0).
    Closed,
    /// A probe is allowed (1).
    HalfOpen,
    /// NATS failed; alerts go to the spool until the backoff expires (2).
    Open,
}

impl BreakerState {
    /// The value exported in the `breaker_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Wait after the first failure.
    pub base_backoff: Duration,
    /// Longest wait.
    pub max_backoff: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// The breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: BreakerState,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            state: BreakerState::Closed,
            failures: 0,
            retry_at: None,
        }
    }

    /// The current state (an expired open breaker reports half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match (self.state, self.retry_at) {
            (BreakerState::Open, Some(t)) if now >= t => BreakerState::HalfOpen,
            (s, _) => s,
        }
    }

    /// Whether a publish may be tried now (closed, or a half-open probe).
    pub fn allows(&mut self, now: Instant) -> bool {
        if self.state(now) == BreakerState::HalfOpen {
            self.state = BreakerState::HalfOpen;
        }
        self.state != BreakerState::Open
    }

    /// When an open breaker next allows a probe.
    pub fn retry_at(&self) -> Option<Instant> {
        (self.state == BreakerState::Open)
            .then_some(self.retry_at)
            .flatten()
    }

    /// Ends an open breaker's backoff now (the connection came back): the next attempt is the
    /// half-open probe.
    pub fn probe_now(&mut self) {
        if self.state == BreakerState::Open {
            self.state = BreakerState::HalfOpen;
            self.retry_at = None;
        }
    }

    /// A publish succeeded: close.
    pub fn success(&mut self) {
        self.state = BreakerState::Closed;
        self.failures = 0;
        self.retry_at = None;
    }

    /// A publish or probe failed: open with exponential backoff.
    pub fn failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(16);
        let wait = self
            .cfg
            .base_backoff
            .saturating_mul(1u32 << exp)
            .min(self.cfg.max_backoff);
        self.state = BreakerState::Open;
        self.retry_at = Some(now + wait);
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_backs_off_probes_and_closes() {
        let cfg = BreakerConfig {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg);
        assert!(b.allows(t0));
        b.failure(t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.allows(t0 + Duration::from_millis(99)));
        assert!(b.allows(t0 + Duration::from_millis(100)));
        assert_eq!(b.state(t0), BreakerState::HalfOpen);
        let t1 = t0 + Duration::from_millis(100);
        b.failure(t1);
        assert_eq!(b.retry_at(), Some(t1 + Duration::from_millis(200)));
        b.failure(t1);
        assert_eq!(
            b.retry_at(),
            Some(t1 + Duration::from_millis(350)),
            "capped"
        );
        b.success();
        assert_eq!(b.state(t1), BreakerState::Closed);
        assert_eq!(b.failures(), 0);
        b.failure(t1);
        assert_eq!(b.retry_at(), Some(t1 + Duration::from_millis(100)), "reset");
        b.probe_now();
        assert!(b.allows(t1), "reconnection ends the wait");
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
    }
}
