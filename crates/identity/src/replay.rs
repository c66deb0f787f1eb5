//! Replay protection for JWT-SVIDs: a `jti` seen once is refused until the token would have
//! expired anyway. Memory is bounded: expired entries are dropped, and when the cache is full
//! of live tokens a new token is refused (fail closed) rather than forgetting a live one.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// This `jti` was seen before within its lifetime.
    #[error("jti replayed")]
    Replayed,
    /// The token has no `jti`, so it cannot be tracked.
    #[error("token has no jti")]
    NoJti,
    /// The cache is full of live tokens.
    #[error("replay cache full ({0} live tokens)")]
    Full(usize),
}

/// A bounded set of seen `jti`s with their expiry.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashMap<String, u64>,
    by_exp: BTreeSet<(u64, String)>,
}

impl ReplayCache {
    /// A cache holding at most `capacity` live tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records `jti` (valid until `exp`) at time `now`; refuses it if seen before.
    pub fn check_and_insert(&self, jti: &str, exp: u64, now: u64) -> Result<(), ReplayError> {
        if jti.is_empty() {
            return Err(ReplayError::NoJti);
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Forget tokens that have expired: a replay of them fails the expiry check anyway.
        while let Some((e, _)) = g.by_exp.first() {
            if *e > now {
                break;
            }
            if let Some((_, j)) = g.by_exp.pop_first() {
                g.seen.remove(&j);
            }
        }
        if g.seen.contains_key(jti) {
            return Err(ReplayError::Replayed);
        }
        if g.seen.len() >= self.capacity {
            return Err(ReplayError::Full(g.seen.len()));
        }
        // Bound the key size so hostile `jti`s cannot blow memory up.
        let key: String = jti.chars().take(128).collect();
        g.seen.insert(key.clone(), exp);
        g.by_exp.insert((exp, key));
        Ok(())
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|g| g.seen.len()).unwrap_or(0)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_is_refused_until_expiry() {
        let c = ReplayCache::new(10);
        c.check_and_insert("a", 100, 10).unwrap();
        assert_eq!(c.check_and_insert("a", 100, 50), Err(ReplayError::Replayed));
        c.check_and_insert("b", 100, 50).unwrap();
        // After expiry the entry is gone (the token itself is refused as expired elsewhere).
        c.check_and_insert("a", 200, 100).unwrap();
        assert_eq!(c.check_and_insert("", 1, 0), Err(ReplayError::NoJti));
    }

    #[test]
    fn memory_is_bounded_and_fails_closed() {
        let c = ReplayCache::new(3);
        for j in ["a", "b", "c"] {
            c.check_and_insert(j, 100, 0).unwrap();
        }
        assert_eq!(c.check_and_insert("d", 100, 0), Err(ReplayError::Full(3)));
        assert_eq!(c.len(), 3);
        // Once some expire, room returns.
        c.check_and_insert("d", 200, 100).unwrap();
        assert_eq!(c.len(), 1);
    }
}
