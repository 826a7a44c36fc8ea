//! What the roll-site knows of whether the other parties' jobs still live: the last sign of
//! life (heartbeat) of each party in each session. A get waiting on a party whose signs
//! stopped fails once they stopped for the liveness bound, naming the party, rather than
//! after the whole idle timeout; a party never heard from is judged by the idle timeout alone.

use eggroll_core::sync::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A bound is at least this many of the sender's own heartbeat intervals: one late or lost
/// heartbeat never fails a live party.
pub const INTERVALS: u32 = 3;

/// Entries not heard from for this many bounds are dropped when another arrives.
const FORGET_AFTER: u32 = 10;

/// The last heartbeat of each (session, party).
pub struct Liveness {
    timeout: Duration,
    seen: Mutex<HashMap<(String, String), Seen>>,
}

#[derive(Clone, Copy)]
struct Seen {
    at: Instant,
    bound: Duration,
}

/// When a party counts as gone, and the bound that says so.
#[derive(Clone, Copy, Debug)]
pub struct Gone {
    /// Its last sign of life plus the bound.
    pub at: Instant,
    /// The bound: the liveness timeout, or more for a party with a long heartbeat interval.
    pub bound: Duration,
}

impl Liveness {
    /// Judges parties gone after `timeout` without a sign of life; zero: never.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            seen: Mutex::default(),
        }
    }

    /// Records a heartbeat of `party` in `session`, which it sends every `interval`.
    pub fn heard(&self, session: &str, party: &str, interval: Duration) {
        if self.timeout.is_zero() {
            return;
        }
        let now = Instant::now();
        let bound = self.timeout.max(interval * INTERVALS);
        let mut seen = self.seen.lock();
        seen.retain(|_, s| now.duration_since(s.at) < s.bound * FORGET_AFTER);
        seen.insert((session.into(), party.into()), Seen { at: now, bound });
    }

    /// When `party` of `session` counts as gone, counting `last_data` (its latest batch to
    /// arrive) as a sign of life too; `None` when it was never heard from.
    pub fn gone_at(&self, session: &str, party: &str, last_data: Instant) -> Option<Gone> {
        let seen = self.seen.lock();
        let s = seen.get(&(session.to_string(), party.to_string()))?;
        Some(Gone {
            at: s.at.max(last_data) + s.bound,
            bound: s.bound,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_party_is_gone_a_bound_after_its_last_sign_and_never_if_never_heard() {
        let l = Liveness::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert!(l.gone_at("s", "10000", t0).is_none());
        l.heard("s", "10000", Duration::from_secs(5));
        let g = l.gone_at("s", "10000", t0).unwrap();
        assert_eq!(g.bound, Duration::from_secs(30));
        assert!(g.at >= t0 + Duration::from_secs(30));
        // Data that arrived after the heartbeat is a later sign of life.
        let later = Instant::now() + Duration::from_secs(7);
        assert_eq!(l.gone_at("s", "10000", later).unwrap().at, later + g.bound);
        // Other sessions and parties are apart.
        assert!(l.gone_at("s", "9999", t0).is_none());
        assert!(l.gone_at("t", "10000", t0).is_none());
        // A party with a long interval gets three of them.
        l.heard("s", "8888", Duration::from_secs(20));
        assert_eq!(
            l.gone_at("s", "8888", t0).unwrap().bound,
            Duration::from_secs(60)
        );
        // Switched off: nobody is ever gone.
        let off = Liveness::new(Duration::ZERO);
        off.heard("s", "10000", Duration::from_secs(5));
        assert!(off.gone_at("s", "10000", t0).is_none());
    }
}
