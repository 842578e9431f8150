//! Request metrics in Prometheus text format: a counter and a latency histogram
//! per (route, status, model version), and counters of store failures.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default, Clone)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// All metrics of one process.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, u16, String), Series>>,
    pub trace_write_failures: AtomicU64,
    pub history_read_failures: AtomicU64,
    /// Requests refused by the local server's per-client rate limit.
    pub rate_limited: AtomicU64,
    /// Connections closed at accept because the server had its maximum open.
    pub connections_refused: AtomicU64,
    /// The background trace writer's counters (the local server).
    pub trace_queue: Arc<TraceQueueStats>,
}

/// Counters of the background trace writer ([`super::trace_writer`]).
#[derive(Default, Debug)]
pub struct TraceQueueStats {
    /// Traces written.
    pub written: AtomicU64,
    /// Traces dropped because the queue was full (the response was served).
    pub dropped: AtomicU64,
    /// Traces the store refused or failed to write.
    pub failed: AtomicU64,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Records one request.
    pub fn observe(&self, route: &str, status: u16, model_version: &str, seconds: f64) {
        let mut m = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let s = m
            .entry((route.to_string(), status, model_version.to_string()))
            .or_default();
        s.count += 1;
        s.sum += seconds;
        for (b, le) in s.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= le {
                *b += 1;
            }
        }
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let m = self
            .series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = String::new();
        out.push_str(
            "# HELP movie_recs_requests_total HTTP requests by route, status and model version.\n",
        );
        out.push_str("# TYPE movie_recs_requests_total counter\n");
        for ((route, status, version), s) in &m {
            let _ = writeln!(
                out,
                "movie_recs_requests_total{{route=\"{}\",status=\"{status}\",model_version=\"{}\"}} {}",
                escape(route),
                escape(version),
                s.count
            );
        }
        out.push_str("# HELP movie_recs_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE movie_recs_request_duration_seconds histogram\n");
        for ((route, status, version), s) in &m {
            let labels = format!(
                "route=\"{}\",status=\"{status}\",model_version=\"{}\"",
                escape(route),
                escape(version)
            );
            for (b, le) in s.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "movie_recs_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {b}"
                );
            }
            let _ = writeln!(
                out,
                "movie_recs_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "movie_recs_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "movie_recs_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        let q = &self.trace_queue;
        let trace_failures = AtomicU64::new(
            self.trace_write_failures.load(Ordering::Relaxed) + q.failed.load(Ordering::Relaxed),
        );
        for (name, help, v) in [
            (
                "movie_recs_trace_write_failures_total",
                "Trace writes that failed (the response was still served).",
                &trace_failures,
            ),
            (
                "movie_recs_traces_written_total",
                "Traces written by the background trace writer.",
                &q.written,
            ),
            (
                "movie_recs_traces_dropped_total",
                "Traces dropped because the trace queue was full (the response was still served).",
                &q.dropped,
            ),
            (
                "movie_recs_history_read_failures_total",
                "User-history reads that failed (served without them).",
                &self.history_read_failures,
            ),
            (
                "movie_recs_rate_limited_total",
                "Requests refused by the per-client rate limit (429).",
                &self.rate_limited,
            ),
            (
                "movie_recs_connections_refused_total",
                "Connections closed at accept: the server had its maximum open.",
                &self.connections_refused,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}
