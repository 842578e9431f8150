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
