//! CloudWatch `PutMetricData` for the audit's metrics (not used on the request path).

use super::sdk_error;
use crate::ports::{MetricDatum, MetricsPublisher, StoreError};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum as CwDatum, StandardUnit};
use aws_sdk_cloudwatch::Client;

/// The most data points one `PutMetricData` call takes.
pub const MAX_PER_CALL: usize = 1000;

#[derive(Clone)]
pub struct CloudWatchPublisher {
    client: Client,
}

impl CloudWatchPublisher {
    pub fn new(client: Client) -> Self {
        CloudWatchPublisher { client }
    }
}

fn datum(d: &MetricDatum) -> CwDatum {
    let mut b = CwDatum::builder()
        .metric_name(&d.name)
        .value(d.value)
        .unit(StandardUnit::from(d.unit))
        .timestamp(DateTime::from_millis(d.timestamp_ms));
    for (k, v) in &d.dimensions {
        b = b.dimensions(Dimension::builder().name(k).value(v).build());
    }
    b.build()
}

#[async_trait::async_trait]
impl MetricsPublisher for CloudWatchPublisher {
    async fn publish(&self, namespace: &str, data: &[MetricDatum]) -> Result<(), StoreError> {
        for chunk in data.chunks(MAX_PER_CALL) {
            self.client
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(chunk.iter().map(datum).collect()))
                .send()
                .await
                .map_err(|e| StoreError::unavailable("cloudwatch", sdk_error(e)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn point(name: &str, value: f64) -> MetricDatum {
        MetricDatum {
            name: name.into(),
            value,
            unit: "Percent",
            dimensions: vec![("Stage".into(), "dev".into())],
            timestamp_ms: 1_764_360_000_000,
        }
    }

    /// The modelled request: namespace, names, values, units, dimensions,
    /// timestamps; and batches of at most 1,000 points per call.
    #[tokio::test]
    async fn publishes_every_point_in_batches_of_1000() {
        let rule = mock!(Client::put_metric_data)
            .match_requests(|r| {
                r.namespace() == Some("MovieRecs")
                    && r.metric_data().iter().all(|d| {
                        d.unit() == Some(&StandardUnit::Percent)
                            && d.dimensions().len() == 1
                            && d.dimensions()[0].name() == Some("Stage")
                            && d.dimensions()[0].value() == Some("dev")
                            && d.timestamp().map(|t| t.to_millis().unwrap())
                                == Some(1_764_360_000_000)
                    })
            })
            .then_output(|| PutMetricDataOutput::builder().build());
        let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
        let p = CloudWatchPublisher::new(client);
        let data: Vec<MetricDatum> = (0..1500).map(|i| point("TailShare", i as f64)).collect();
        p.publish("MovieRecs", &data).await.unwrap();
        assert_eq!(rule.num_calls(), 2);
        p.publish("MovieRecs", &[point("Gini", 0.4)]).await.unwrap();
        assert_eq!(rule.num_calls(), 3);
    }

    /// The audit's data points as CloudWatch receives them: unit `None` for
    /// ratios, `Count` for counts; dimensions Stage, model_version, variant.
    #[tokio::test]
    async fn the_audits_data_points() {
        use crate::audit::exposure::Catalog;
        use crate::audit::{audit, datums, AuditConfig, AuditInput, Exposure};
        let input = AuditInput {
            exposures: vec![Exposure {
                request_id: None,
                user_id: 1,
                model_version: "v2".into(),
                variant: Some("candidate".into()),
                ts_ms: 0,
                movie_ids: vec![1, 2],
            }],
            catalog: Catalog::from_items((1..=4).map(|m| (m, 1))),
            ..AuditInput::default()
        };
        let data = datums(&audit(input, &AuditConfig::default(), 7), "prod");
        let rule = mock!(Client::put_metric_data)
            .match_requests(|r| {
                let dims = |d: &CwDatum| -> Vec<(String, String)> {
                    d.dimensions()
                        .iter()
                        .map(|x| (x.name().unwrap().into(), x.value().unwrap().into()))
                        .collect()
                };
                let find = |name: &str, variant: &str| {
                    r.metric_data()
                        .iter()
                        .find(|d| d.metric_name() == Some(name) && dims(d)[2].1 == variant)
                };
                let cov = find("CatalogCoverage", "candidate");
                let all = find("CatalogCoverage", "all");
                let spam = find("SpamUsersFlagged", "all");
                r.namespace() == Some("MovieRecs")
                    && cov.is_some_and(|d| {
                        d.value() == Some(0.5)
                            && d.unit() == Some(&StandardUnit::None)
                            && dims(d)
                                == [
                                    ("Stage".into(), "prod".into()),
                                    ("model_version".into(), "v2".into()),
                                    ("variant".into(), "candidate".into()),
                                ]
                    })
                    && all.is_some_and(|d| dims(d)[1].1 == "all")
                    && spam.is_some_and(|d| {
                        d.unit() == Some(&StandardUnit::Count) && d.value() == Some(0.0)
                    })
            })
            .then_output(|| PutMetricDataOutput::builder().build());
        let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
        CloudWatchPublisher::new(client)
            .publish("MovieRecs", &data)
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_service_error_is_reported_not_swallowed() {
        let rule = mock!(Client::put_metric_data).then_error(|| {
            aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError::unhandled(
                "throttled",
            )
        });
        let client = mock_client!(aws_sdk_cloudwatch, [&rule]);
        let e = CloudWatchPublisher::new(client)
            .publish("MovieRecs", &[point("Gini", 0.4)])
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("cloudwatch:"), "{e}");
    }

    /// The request on the wire: current aws-sdk-cloudwatch speaks Smithy RPC
    /// v2 CBOR (which moto does not), to the PutMetricData operation path.
    #[tokio::test]
    async fn wire_request_is_rpc_v2_cbor_put_metric_data() {
        let (http, rx) = aws_smithy_http_client::test_util::capture_request(None);
        let conf = aws_sdk_cloudwatch::Config::builder()
            .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudwatch::config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
                "AKID", "secret", None, None, "test",
            ))
            .http_client(http)
            .build();
        let p = CloudWatchPublisher::new(Client::from_conf(conf));
        p.publish("MovieRecs", &[point("TailShare", 71.5)])
            .await
            .unwrap();
        let req = rx.expect_request();
        assert_eq!(req.method(), "POST");
        assert!(
            req.uri()
                .starts_with("https://monitoring.eu-west-1.amazonaws.com"),
            "{}",
            req.uri()
        );
        assert!(
            req.uri().ends_with("/operation/PutMetricData"),
            "{}",
            req.uri()
        );
        assert_eq!(req.headers().get("smithy-protocol"), Some("rpc-v2-cbor"));
        assert_eq!(req.headers().get("content-type"), Some("application/cbor"));
        assert!(req
            .headers()
            .get("authorization")
            .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256")));
        let body = req.body().bytes().unwrap();
        let has = |s: &str| body.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(has("MovieRecs") && has("TailShare") && has("Stage") && has("dev"));
        // 71.5 as a CBOR double: major type 7, 0xfb, big-endian IEEE 754.
        let mut f = vec![0xfbu8];
        f.extend_from_slice(&71.5f64.to_be_bytes());
        assert!(
            body.windows(9).any(|w| w == f.as_slice()),
            "value encoded as a double"
        );
    }
}
