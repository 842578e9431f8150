//! Trending: watch and rate counts per movie per UTC hour (kept by ingest),
//! ranked over a sliding window of whole hours. A plain window, not a decay:
//! "watched in the last 24 hours" is what a home-page row promises, each
//! event counts once whatever its hour within the window, and the counts a
//! client could check are the ones it ranked by. Pure: no I/O.

use std::collections::BTreeMap;

/// Hours a window may span (the default is 24), and how long counts are kept.
pub const MAX_HOURS: i64 = 168;
pub const DEFAULT_HOURS: i64 = 24;
/// Counts outlive the longest window by a day.
pub const RETENTION_SECS: i64 = (MAX_HOURS + 24) * 3600;

/// The UTC epoch hour of an epoch-ms time.
pub fn hour_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(3_600_000)
}

/// `(hour, movie_id, count)` of `(movie_id, ts_ms)` events.
pub fn hourly_counts(events: impl IntoIterator<Item = (u64, i64)>) -> Vec<(i64, u64, u32)> {
    let mut by: BTreeMap<(i64, u64), u32> = BTreeMap::new();
    for (movie, ts) in events {
        *by.entry((hour_of(ts), movie)).or_default() += 1;
    }
    by.into_iter().map(|((h, m), n)| (h, m, n)).collect()
}

/// When counts written at `now_ms` may be dropped (epoch seconds).
pub fn expires_at(now_ms: i64) -> i64 {
    now_ms / 1000 + RETENTION_SECS
}

/// The hours `(from, to)` of a window of `hours` ending with the current one.
pub fn window(now_ms: i64, hours: i64) -> (i64, i64) {
    let to = hour_of(now_ms);
    (to - hours + 1, to)
}

/// Parses `hours` (default 24, 1 to [`MAX_HOURS`]).
pub fn parse_hours(raw: Option<&str>) -> Result<i64, super::param::InvalidParam> {
    match raw {
        None => Ok(DEFAULT_HOURS),
        Some(r) => match r.parse::<i64>() {
            Ok(h) if (1..=MAX_HOURS).contains(&h) => Ok(h),
            _ => Err(super::param::InvalidParam::new(
                "hours",
                format!("must be an integer from 1 to {MAX_HOURS}, got {r:?}"),
            )),
        },
    }
}

/// Ranks movies (model indices) by their window count, ties by training
/// popularity then index; movies without a count are left out. `counts`
/// are per model index; `dropped` marks what a filter excludes.
pub fn rank(counts: &[u64], popularity: &[u32], dropped: &[bool], k: usize) -> Vec<(u32, u64)> {
    let mut order: Vec<u32> = (0..counts.len() as u32)
        .filter(|&i| counts[i as usize] > 0 && !dropped.get(i as usize).copied().unwrap_or(false))
        .collect();
    order.sort_by(|&a, &b| {
        counts[b as usize]
            .cmp(&counts[a as usize])
            .then(popularity[b as usize].cmp(&popularity[a as usize]))
            .then(a.cmp(&b))
    });
    order.truncate(k);
    order.into_iter().map(|i| (i, counts[i as usize])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_count_per_movie_per_utc_hour() {
        let h = 3_600_000;
        let c = hourly_counts([
            (7, 5 * h),
            (7, 5 * h + 1),
            (8, 5 * h + 10),
            (7, 6 * h),
            (7, -1),
        ]);
        assert_eq!(c, vec![(-1, 7, 1), (5, 7, 2), (5, 8, 1), (6, 7, 1)]);
        assert_eq!(window(6 * h + 5, 24), (-17, 6));
        assert_eq!(window(6 * h, 1), (6, 6));
    }

    #[test]
    fn ranking_is_by_count_then_popularity_and_respects_the_filter() {
        let counts = [3, 0, 5, 3, 1];
        let pop = [1, 99, 0, 7, 0];
        assert_eq!(
            rank(&counts, &pop, &[], 10),
            vec![(2, 5), (3, 3), (0, 3), (4, 1)]
        );
        assert_eq!(
            rank(&counts, &pop, &[false, false, true], 2),
            vec![(3, 3), (0, 3)]
        );
    }

    #[test]
    fn hours_are_bounded() {
        assert_eq!(parse_hours(None), Ok(24));
        assert_eq!(parse_hours(Some("168")), Ok(168));
        for bad in ["0", "169", "x", "-3"] {
            assert!(parse_hours(Some(bad)).unwrap_err().name == "hours", "{bad}");
        }
    }
}
