//! CloudWatch Embedded Metric Format: one JSON log line per request, turned
//! into metrics by CloudWatch Logs, so the hot path makes no API call.
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use serde_json::{json, Value};
use std::io::Write;

/// The namespace of every movie-recs metric.
pub const NAMESPACE: &str = "MovieRecs";

/// The EMF document of one request: `Latency` (ms), `Requests`, `Errors5xx`,
/// `Fallback` (count), by `Route` (and overall, dimension-less via the
/// `Function` dimension set), with the request id as a searchable property.
pub fn request_metrics(
    function: &str,
    route: &str,
    status: u16,
    latency_ms: f64,
    fallback: bool,
    request_id: &str,
    timestamp_ms: i64,
) -> Value {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"], ["Function", "Route"]],
                "Metrics": [
                    {"Name": "Latency", "Unit": "Milliseconds"},
                    {"Name": "Requests", "Unit": "Count"},
                    {"Name": "Errors5xx", "Unit": "Count"},
                    {"Name": "Fallback", "Unit": "Count"}
                ]
            }]
        },
        "Function": function,
        "Route": route,
        "Latency": latency_ms,
        "Requests": 1,
        "Errors5xx": u8::from(status >= 500),
        "Fallback": u8::from(fallback),
        "status": status,
        "request_id": request_id,
    })
}

/// Prints [`request_metrics`] as one line on stdout (Lambda ships stdout to CloudWatch Logs).
pub fn print_request_metrics(
    function: &str,
    route: &str,
    status: u16,
    latency_ms: f64,
    fallback: bool,
    request_id: &str,
) {
    let doc = request_metrics(
        function,
        route,
        status,
        latency_ms,
        fallback,
        request_id,
        chrono::Utc::now().timestamp_millis(),
    );
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{doc}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the directive declares is a number at the top level, and
    /// every dimension named is a string there: what CloudWatch requires.
    #[test]
    fn document_follows_the_emf_specification() {
        let d = request_metrics(
            "recommend",
            "/recommend/{user_id}",
            503,
            1.5,
            true,
            "r-1",
            42,
        );
        let directive = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["_aws"]["Timestamp"], 42);
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(d[name].is_number(), "{name} must be a number");
        }
        for set in directive["Dimensions"].as_array().unwrap() {
            for dim in set.as_array().unwrap() {
                assert!(d[dim.as_str().unwrap()].is_string());
            }
        }
        assert_eq!(d["Errors5xx"], 1);
        assert_eq!(d["Fallback"], 1);
        assert_eq!(d["Latency"], 1.5);
    }
}
