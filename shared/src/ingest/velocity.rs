//! The per-user rating velocity limit: at most `limit` accepted ratings by one
//! user in any `span` of event time (default 20 per hour). Ratings over it are
//! quarantined, not dropped, and do not count toward the window.
//!
//! The window keeps `(event time, event key)` of accepted ratings, so a
//! redelivered rating is recognised and admitted again (retries after a failed
//! lake write reach the same decision). Entries older than two spans before
//! the newest are pruned; a rating later than that is checked against what
//! remains.

/// The limit: `limit` ratings per `span_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Velocity {
    pub limit: usize,
    pub span_ms: i64,
}

impl Default for Velocity {
    fn default() -> Self {
        Velocity {
            limit: 20,
            span_ms: 3_600_000,
        }
    }
}

impl Velocity {
    /// Whether one more rating at `ts` keeps every window holding it within the limit.
    fn fits(&self, window: &[(i64, String)], ts: i64) -> bool {
        let count_in = |end: i64| {
            window
                .iter()
                .filter(|(t, _)| *t > end - self.span_ms && *t <= end)
                .count()
        };
        // Windows ending at the new rating, and at each later one it would fall into.
        std::iter::once(ts)
            .chain(
                window
                    .iter()
                    .map(|(t, _)| *t)
                    .filter(|t| *t >= ts && *t < ts + self.span_ms),
            )
            .all(|end| count_in(end) < self.limit)
    }

    /// Decides `candidates` (`(event time, key)`) in time order against
    /// `window`, adding the admitted ones; returns the decision per candidate,
    /// in the order given.
    pub fn admit(
        &self,
        window: &mut Vec<(i64, String)>,
        candidates: &[(i64, String)],
    ) -> Vec<bool> {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| candidates[a].cmp(&candidates[b]));
        let mut out = vec![false; candidates.len()];
        for i in order {
            let (ts, key) = &candidates[i];
            out[i] = if window.iter().any(|(_, k)| k == key) {
                true
            } else if self.fits(window, *ts) {
                window.push((*ts, key.clone()));
                true
            } else {
                false
            };
        }
        if let Some(newest) = window.iter().map(|e| e.0).max() {
            window.retain(|(t, _)| *t > newest - 2 * self.span_ms);
        }
        window.sort();
        out
    }
}

impl Velocity {
    /// [`Self::admit`] on a stored window, and when `arrival_ms` is given
    /// (live sources) also by arrival time: at most `limit` new ratings of
    /// the user may arrive in any `span`, whatever times they claim, so
    /// back-dated ratings cannot refill a window. A redelivered rating (its
    /// key already admitted) is admitted again without counting twice.
    pub fn admit_window(
        &self,
        w: &mut crate::ports::RateWindow,
        candidates: &[(i64, String)],
        arrival_ms: Option<i64>,
    ) -> Vec<bool> {
        let Some(now) = arrival_ms else {
            return self.admit(&mut w.entries, candidates);
        };
        w.arrivals.retain(|(t, _)| *t > now - self.span_ms);
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| candidates[a].cmp(&candidates[b]));
        let mut out = vec![false; candidates.len()];
        for i in order {
            let (ts, key) = &candidates[i];
            let known = |e: &[(i64, String)]| e.iter().any(|(_, k)| k == key);
            if known(&w.entries) || known(&w.arrivals) {
                out[i] = true;
            } else if w.arrivals.len() < self.limit && self.fits(&w.entries, *ts) {
                w.entries.push((*ts, key.clone()));
                w.arrivals.push((now, key.clone()));
                out[i] = true;
            }
        }
        if let Some(newest) = w.entries.iter().map(|e| e.0).max() {
            w.entries.retain(|(t, _)| *t > newest - 2 * self.span_ms);
        }
        w.entries.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn c(ts: i64, k: usize) -> (i64, String) {
        (ts, format!("k{k}"))
    }

    #[test]
    fn the_limit_is_exact_at_its_boundaries() {
        let v = Velocity::default();
        let mut w = Vec::new();
        // 21 ratings within one hour: 20 pass, the 21st is held.
        let burst: Vec<_> = (0..21).map(|i| c(i * 1000, i as usize)).collect();
        let got = v.admit(&mut w, &burst);
        assert_eq!(got.iter().filter(|a| **a).count(), 20);
        assert!(!got[20]);
        // One ms before the first leaves the window: still full.
        assert_eq!(v.admit(&mut w, &[c(H - 1, 100)]), vec![false]);
        // At exactly one hour after the first, that one has left the window.
        assert_eq!(v.admit(&mut w, &[c(H, 101)]), vec![true]);
        assert_eq!(v.admit(&mut w, &[c(H + 500, 102)]), vec![false]);
    }

    #[test]
    fn a_late_rating_may_not_overfill_a_later_window() {
        let v = Velocity {
            limit: 3,
            span_ms: H,
        };
        let mut w = Vec::new();
        assert_eq!(
            v.admit(
                &mut w,
                &[c(10 * H, 1), c(10 * H + 10, 2), c(10 * H + 20, 3)]
            ),
            vec![true; 3]
        );
        // Half an hour earlier: the window ending at it holds none of them,
        // but the window ending at the third would then hold four.
        assert_eq!(v.admit(&mut w, &[c(10 * H - H / 2, 4)]), vec![false]);
        // More than an hour earlier touches none of their windows.
        assert_eq!(v.admit(&mut w, &[c(9 * H - 1, 5)]), vec![true]);
    }

    #[test]
    fn redelivered_ratings_are_admitted_again_and_order_is_by_time() {
        let v = Velocity {
            limit: 2,
            span_ms: H,
        };
        let mut w = Vec::new();
        // Given out of order, decided by time: the two earliest pass.
        let got = v.admit(&mut w, &[c(300, 3), c(100, 1), c(200, 2)]);
        assert_eq!(got, vec![false, true, true]);
        // The same batch again (a retry) reaches the same decisions, and the window is unchanged.
        let before = w.clone();
        assert_eq!(v.admit(&mut w, &[c(300, 3), c(100, 1), c(200, 2)]), got);
        assert_eq!(w, before);
    }

    #[test]
    fn back_dated_ratings_count_by_arrival_at_its_boundaries() {
        let v = Velocity::default();
        let mut w = crate::ports::RateWindow::default();
        let now = 100 * H;
        // One rating now, then 60 stamped three hours ago, all arriving now.
        assert_eq!(v.admit_window(&mut w, &[c(now, 0)], Some(now)), vec![true]);
        let back: Vec<_> = (1..=60).map(|i| c(now - 3 * H + i as i64, i)).collect();
        let got = v.admit_window(&mut w, &back, Some(now + 1000));
        assert_eq!(
            got.iter().filter(|a| **a).count(),
            19,
            "20 per hour of arrival"
        );
        // Redelivered: the same decisions, nothing counted twice.
        let before = w.clone();
        assert_eq!(v.admit_window(&mut w, &back, Some(now + 2000)), got);
        assert_eq!(w.entries, before.entries);
        // One ms before the first arrival leaves the window: still full ...
        assert_eq!(
            v.admit_window(&mut w, &[c(now - 10 * H, 100)], Some(now + H - 1)),
            vec![false]
        );
        // ... at exactly one hour, the first arrival has left it.
        assert_eq!(
            v.admit_window(&mut w, &[c(now - 10 * H, 101)], Some(now + H)),
            vec![true]
        );
        // Without an arrival time (a file), event time alone decides.
        let mut f = crate::ports::RateWindow::default();
        let got = v.admit_window(&mut f, &back, None);
        assert_eq!(got.iter().filter(|a| **a).count(), 20);
    }

    #[test]
    fn old_entries_are_pruned() {
        let v = Velocity::default();
        let mut w = Vec::new();
        v.admit(&mut w, &[c(0, 1), c(H, 2), c(3 * H, 3)]);
        assert_eq!(w.iter().map(|e| e.0).collect::<Vec<_>>(), vec![3 * H]);
    }
}
