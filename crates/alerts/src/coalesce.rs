//! Noise control: identical alerts close together reach the operator as two, not as many.
//!
//! One command often fires one rule several times with the same output: `nc -e /bin/sh` dups
//! the socket onto stdin and stdout (two `dup2`, two "Redirect STDOUT/STDIN" alerts), a retry
//! loop repeats the same forbidden open every few milliseconds. Falco sends each; with one
//! operator for many agents, that pages for every copy.
//!
//! Alerts are identical when their node, container, rule, priority and (redacted) output are.
//! The first of a run is sent at once: coalescing never delays news. Identical alerts in the
//! next `window` are folded, and when the window closes one summary goes out: the last of
//! them, with `repeats` (how many it stands for, itself included) and `repeats_since` (the
//! time of the first folded one). A storm therefore costs at most one alert per window and
//! key, and the count of what happened is kept. The node's own event output still has every
//! alert; only what is sent to the operator is folded.
//!
//! Memory is bounded: past `max_keys` open windows, alerts pass through unfolded, never
//! dropped (`Coalescer::overflowed` counts them; the node agent exports the count as
//! `brainbox_alerts_coalesce_overflow_total`).

use crate::schema::Alert;
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// Coalescing settings.
#[derive(Debug, Clone, Copy)]
pub struct CoalesceConfig {
    /// How long after the first of a run identical alerts are folded (zero: off).
    pub window: Duration,
    /// Most open windows (distinct recent alerts) held.
    pub max_keys: usize,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            max_keys: 4096,
        }
    }
}

struct Open {
    opened: Instant,
    /// The last folded alert and how many were folded (0: none yet).
    last: Option<Alert>,
    folded: u64,
    since: String,
}

/// Folds identical alerts; see the module documentation.
pub struct Coalescer {
    cfg: CoalesceConfig,
    open: HashMap<[u8; 32], Open>,
    /// Alerts that passed unfolded because `max_keys` windows were open.
    pub overflowed: u64,
}

fn key(a: &Alert) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("brainbox-guard alert coalescing v1");
    for part in [
        a.node.as_str(),
        a.container.id.as_str(),
        a.rule.as_str(),
        a.priority.as_str(),
        a.output.as_str(),
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    *h.finalize().as_bytes()
}

fn summary(o: Open) -> Option<Alert> {
    let mut a = o.last?;
    a.repeats = o.folded;
    a.repeats_since = Some(o.since);
    Some(a)
}

impl Coalescer {
    /// A coalescer with these settings.
    pub fn new(cfg: CoalesceConfig) -> Self {
        Self {
            cfg,
            open: HashMap::new(),
            overflowed: 0,
        }
    }

    /// Offers an alert at `now`; returns what to send now (nothing when it was folded; the
    /// summary of an expired window of the same key before it, if any).
    pub fn offer(&mut self, a: Alert, now: Instant) -> Vec<Alert> {
        if self.cfg.window.is_zero() {
            return vec![a];
        }
        let k = key(&a);
        let mut out = Vec::new();
        if let Some(o) = self.open.get_mut(&k) {
            if now.duration_since(o.opened) < self.cfg.window {
                if o.folded == 0 {
                    o.since = a.time.clone();
                }
                o.folded += 1;
                o.last = Some(a);
                return out;
            }
            // That window is over: its summary first, then this alert opens a new one.
            if let Some(old) = self.open.remove(&k) {
                out.extend(summary(old));
            }
        }
        if self.open.len() >= self.cfg.max_keys {
            self.overflowed += 1;
            out.push(a);
            return out;
        }
        self.open.insert(
            k,
            Open {
                opened: now,
                last: None,
                folded: 0,
                since: String::new(),
            },
        );
        out.push(a);
        out
    }

    /// Summaries of the windows that closed by `now`, oldest first; their keys are forgotten.
    pub fn expired(&mut self, now: Instant) -> Vec<Alert> {
        let window = self.cfg.window;
        let mut done: Vec<([u8; 32], Instant)> = self
            .open
            .iter()
            .filter(|(_, o)| now.duration_since(o.opened) >= window)
            .map(|(k, o)| (*k, o.opened))
            .collect();
        done.sort_by_key(|(_, t)| *t);
        done.into_iter()
            .filter_map(|(k, _)| self.open.remove(&k).and_then(summary))
            .collect()
    }

    /// Every pending summary (at shutdown): nothing folded is left unsent.
    pub fn drain(&mut self) -> Vec<Alert> {
        let mut all: Vec<Open> = self.open.drain().map(|(_, o)| o).collect();
        all.sort_by_key(|o| o.opened);
        all.into_iter().filter_map(summary).collect()
    }

    /// Open windows now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// True when no window is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ContainerRef, Priority};

    fn alert(i: u64, output: &str) -> Alert {
        let mut a = Alert::for_event(
            "node",
            ContainerRef {
                id: "c1".into(),
                name: "agent".into(),
                image: "img".into(),
                ..Default::default()
            },
            "Redirect STDOUT/STDIN to Network Connection in Container",
            Priority::Critical,
            vec![],
            output.into(),
            std::time::UNIX_EPOCH + Duration::from_secs(1_000 + i),
            i as u32,
        );
        a.time = format!("t{i}");
        a
    }

    #[test]
    fn first_goes_at_once_repeats_fold_into_one_summary() {
        let mut c = Coalescer::new(CoalesceConfig::default());
        let t0 = Instant::now();
        let first = c.offer(alert(0, "x"), t0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].repeats, 0);
        for i in 1..=5 {
            assert!(c
                .offer(alert(i, "x"), t0 + Duration::from_secs(i))
                .is_empty());
        }
        // Another output is another alert.
        assert_eq!(c.offer(alert(9, "y"), t0).len(), 1);
        assert!(c.expired(t0 + Duration::from_secs(9)).is_empty());
        let s = c.expired(t0 + Duration::from_secs(10));
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].repeats, 5);
        assert_eq!(s[0].repeats_since.as_deref(), Some("t1"));
        assert_eq!(s[0].time, "t5");
        assert_eq!(s[0].id, alert(5, "x").id);
        // "y" had no repeats: its window closes without a summary.
        assert!(c.is_empty());
        // After the window the next one is news again.
        assert_eq!(
            c.offer(alert(20, "x"), t0 + Duration::from_secs(20))[0].repeats,
            0
        );
    }

    #[test]
    fn an_alert_after_an_unswept_window_sends_the_summary_first() {
        let mut c = Coalescer::new(CoalesceConfig::default());
        let t0 = Instant::now();
        c.offer(alert(0, "x"), t0);
        c.offer(alert(1, "x"), t0 + Duration::from_secs(1));
        let out = c.offer(alert(2, "x"), t0 + Duration::from_secs(11));
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].repeats, out[1].repeats), (1, 0));
    }

    #[test]
    fn nothing_is_lost_past_the_key_bound_or_at_shutdown() {
        let mut c = Coalescer::new(CoalesceConfig {
            window: Duration::from_secs(10),
            max_keys: 2,
        });
        let t0 = Instant::now();
        let mut sent = 0;
        for i in 0..4 {
            sent += c.offer(alert(i, &format!("o{i}")), t0).len();
        }
        assert_eq!((sent, c.overflowed, c.len()), (4, 2, 2));
        c.offer(alert(7, "o0"), t0);
        c.offer(alert(8, "o0"), t0);
        let d = c.drain();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].repeats, 2);
        assert!(c.is_empty());
    }

    #[test]
    fn a_zero_window_is_off() {
        let mut c = Coalescer::new(CoalesceConfig {
            window: Duration::ZERO,
            max_keys: 8,
        });
        let t0 = Instant::now();
        assert_eq!(c.offer(alert(0, "x"), t0).len(), 1);
        assert_eq!(c.offer(alert(1, "x"), t0).len(), 1);
        assert!(c.is_empty());
    }

    proptest::proptest! {
        /// Whatever arrives, every alert is either sent or counted in exactly one summary.
        #[test]
        fn every_alert_is_sent_or_counted(steps in proptest::collection::vec((0u8..3, 0u64..4_000), 0..200)) {
            let mut c = Coalescer::new(CoalesceConfig { window: Duration::from_millis(1_000), max_keys: 2 });
            let t0 = Instant::now();
            let mut now = t0;
            let mut accounted = 0u64;
            let count = |v: Vec<Alert>| v.iter().map(|a| a.repeats.max(1)).sum::<u64>();
            for (i, (which, dt)) in steps.iter().enumerate() {
                now += Duration::from_millis(*dt / 4);
                accounted += count(c.offer(alert(i as u64, &format!("o{which}")), now));
                if dt % 3 == 0 {
                    accounted += count(c.expired(now));
                }
            }
            accounted += count(c.drain());
            proptest::prop_assert_eq!(accounted, steps.len() as u64);
        }
    }
}
