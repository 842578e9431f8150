//! A per-client request rate limit (GCRA, the token bucket's exact
//! equivalent): at most `per_minute` requests in any minute from one client
//! address, bursts up to that many; each client costs one timestamp. The
//! answer to a refused request says when the next one would pass.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Above this many clients in a shard, idle ones are forgotten.
const SHARD_CLIENTS: usize = 4096;

/// The limiter.
pub struct RateLimiter {
    /// Time between requests at the sustained rate.
    interval: Duration,
    /// How far ahead of now a client's theoretical arrival time may run.
    tolerance: Duration,
    shards: Vec<Mutex<HashMap<IpAddr, Instant>>>,
}

impl RateLimiter {
    /// At most `per_minute` requests per minute per client (`per_minute` > 0).
    pub fn per_minute(per_minute: u32) -> RateLimiter {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        RateLimiter {
            interval,
            tolerance: interval * per_minute.max(1).saturating_sub(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, Instant>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ip.hash(&mut h);
        &self.shards[h.finish() as usize % SHARDS]
    }

    /// Admits one request from `ip` at `now`, or says how long to wait.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut m = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= SHARD_CLIENTS {
            m.retain(|_, tat| *tat > now);
        }
        let tat = m.get(&ip).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        m.insert(ip, tat + self.interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_of_requests_passes_then_one_per_interval_and_clients_are_apart() {
        let l = RateLimiter::per_minute(60);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..60 {
            l.check(a, t0).unwrap();
        }
        let wait = l.check(a, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // Another client is not affected.
        l.check(b, t0).unwrap();
        // A moment before the interval: still refused; at it: one more passes.
        assert!(l.check(a, t0 + Duration::from_millis(999)).is_err());
        l.check(a, t0 + Duration::from_secs(1)).unwrap();
        assert!(l.check(a, t0 + Duration::from_secs(1)).is_err());
        // After a quiet minute the whole burst is back.
        let later = t0 + Duration::from_secs(120);
        for _ in 0..60 {
            l.check(a, later).unwrap();
        }
        assert!(l.check(a, later).is_err());
    }
}
