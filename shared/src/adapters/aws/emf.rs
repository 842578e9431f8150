//! CloudWatch Embedded Metric Format: one JSON log line per request, turned
//! into metrics by CloudWatch Logs, so the hot path makes no API call.
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use serde_json::{json, Value};
use std::io::Write;

/// The namespace of every movie-recs metric.
pub use crate::ports::METRICS_NAMESPACE as NAMESPACE;

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

/// EMF documents for arbitrary data points: one document per dimension set
/// (each with `Function` added), so every metric sits beside its dimensions.
pub fn documents(function: &str, data: &[crate::ports::MetricDatum]) -> Vec<Value> {
    let mut groups: std::collections::BTreeMap<
        Vec<(String, String)>,
        Vec<&crate::ports::MetricDatum>,
    > = Default::default();
    for d in data {
        let mut dims = d.dimensions.clone();
        dims.sort();
        groups.entry(dims).or_default().push(d);
    }
    groups
        .into_iter()
        .map(|(dims, points)| {
            let mut names: Vec<String> = vec!["Function".into()];
            names.extend(dims.iter().map(|(k, _)| k.clone()));
            let mut doc = json!({
                "_aws": {
                    "Timestamp": points[0].timestamp_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": [names],
                        "Metrics": points.iter().map(|p| json!({"Name": p.name, "Unit": p.unit})).collect::<Vec<_>>(),
                    }]
                },
                "Function": function,
            });
            for (k, v) in dims {
                doc[k] = v.into();
            }
            for p in points {
                doc[p.name.as_str()] = p.value.into();
            }
            doc
        })
        .collect()
}

/// Prints [`documents`] on stdout, a line each.
pub fn print_documents(function: &str, data: &[crate::ports::MetricDatum]) {
    let mut out = std::io::stdout().lock();
    for doc in documents(function, data) {
        let _ = writeln!(out, "{doc}");
    }
}

/// A [`crate::ports::MetricsPublisher`] that prints EMF lines on stdout:
/// in Lambda, CloudWatch metrics without an API call on the hot path (the
/// namespace is always [`NAMESPACE`]).
pub struct EmfStdout {
    function: String,
}

impl EmfStdout {
    pub fn new(function: impl Into<String>) -> Self {
        EmfStdout {
            function: function.into(),
        }
    }
}

/// Each request's [`request_metrics`] as one line on stdout (Lambda ships
/// stdout to CloudWatch Logs).
impl crate::ports::RequestMetricsSink for EmfStdout {
    fn record(&self, r: &crate::ports::RequestSample<'_>) {
        let doc = request_metrics(
            &self.function,
            r.route,
            r.status,
            r.latency_ms,
            r.fallback,
            r.request_id,
            chrono::Utc::now().timestamp_millis(),
        );
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{doc}");
    }
}

#[async_trait::async_trait]
impl crate::ports::MetricsPublisher for EmfStdout {
    async fn publish(
        &self,
        _namespace: &str,
        data: &[crate::ports::MetricDatum],
    ) -> Result<(), crate::ports::StoreError> {
        print_documents(&self.function, data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_points_become_one_document_per_dimension_set() {
        let p = |name: &str, v: f64, dims: Vec<(String, String)>| crate::ports::MetricDatum {
            name: name.into(),
            value: v,
            unit: "Count",
            dimensions: dims,
            timestamp_ms: 7,
        };
        let docs = documents(
            "ingest",
            &[
                p("Accepted", 3.0, vec![]),
                p("Rejected", 2.0, vec![]),
                p("Rejected", 2.0, vec![("Reason".into(), "user_id".into())]),
            ],
        );
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["Accepted"], 3.0);
        assert_eq!(
            docs[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"]])
        );
        assert_eq!(docs[1]["Reason"], "user_id");
        assert_eq!(
            docs[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function", "Reason"]])
        );
        assert_eq!(docs[1]["Function"], "ingest");
    }

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
