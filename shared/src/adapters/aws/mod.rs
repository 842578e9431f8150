//! AWS adapters: the S3 model registry and event lake, DynamoDB traces, rollout
//! state and user history, CloudWatch metrics (Embedded Metric Format on the hot
//! path, `PutMetricData` for the audit). Clients come from one [`SdkConfig`]
//! built once per process; `AWS_ENDPOINT_URL` points every client at an
//! emulator (moto, LocalStack) and switches S3 to path-style addressing.

pub mod cloudwatch;
pub mod dynamo;
pub mod emf;
pub mod provision;
pub mod s3;
pub mod schedule;
pub mod trending;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
pub use aws_config::SdkConfig;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

/// How long one AWS call may take: every client gets connect, read, attempt
/// and operation timeouts and the standard retry mode (exponential backoff
/// with full jitter), so a hung endpoint fails a call instead of stalling
/// whatever waits on it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CallBudget {
    pub connect: Duration,
    /// Longest silence while reading a response (covers streamed bodies).
    pub read: Duration,
    /// One attempt, until the response is parsed.
    pub attempt: Duration,
    /// The whole call, retries included.
    pub operation: Duration,
    pub max_attempts: u32,
}

impl CallBudget {
    /// Jobs, ingest, rollout changes and the model registry: large objects,
    /// no one waiting on a request.
    pub const BACKGROUND: CallBudget = CallBudget {
        connect: Duration::from_secs(3),
        read: Duration::from_secs(10),
        attempt: Duration::from_secs(15),
        operation: Duration::from_secs(40),
        max_attempts: 3,
    };
    /// A request's own calls (recommend's history read and trace write, the
    /// trace lookup): small items, a client waiting, so fail fast and let
    /// the request degrade.
    pub const INTERACTIVE: CallBudget = CallBudget {
        connect: Duration::from_millis(500),
        read: Duration::from_secs(1),
        attempt: Duration::from_millis(800),
        operation: Duration::from_secs(2),
        max_attempts: 2,
    };

    fn timeouts(self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect)
            .read_timeout(self.read)
            .operation_attempt_timeout(self.attempt)
            .operation_timeout(self.operation)
            .build()
    }

    fn retries(self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(Duration::from_millis(50))
            .with_max_backoff(Duration::from_secs(2))
    }

    /// `cfg` with this budget's timeouts and retries.
    pub fn apply(self, cfg: &SdkConfig) -> SdkConfig {
        cfg.to_builder()
            .timeout_config(self.timeouts())
            .retry_config(self.retries())
            .build()
    }
}

/// Loads region, credentials and endpoint the SDK's usual way (environment,
/// profile, container/instance role), with the [`CallBudget::BACKGROUND`]
/// timeouts and retries. `endpoint` overrides `AWS_ENDPOINT_URL`; service
/// variables such as `AWS_ENDPOINT_URL_S3` still apply per service.
pub async fn load_sdk_config(endpoint: Option<&str>) -> SdkConfig {
    let b = CallBudget::BACKGROUND;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(b.timeouts())
        .retry_config(b.retries());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// Whether the config talks to an emulator rather than AWS (an endpoint override).
pub fn is_emulated(cfg: &SdkConfig) -> bool {
    cfg.endpoint_url().is_some()
}

/// An S3 client; path-style addressing against emulators.
pub fn s3_client(cfg: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(cfg)
        .force_path_style(is_emulated(cfg))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Why a string is not an `s3://bucket/prefix` URL.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum S3UrlError {
    #[error("{0:?} is not an s3:// URL")]
    NotS3(String),
    #[error("{0:?}: bucket name must have 3-63 characters")]
    BucketName(String),
}

/// Splits `s3://bucket/some/prefix` into `("bucket", "some/prefix")`.
pub fn parse_s3_url(url: &str) -> Result<(String, String), S3UrlError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| S3UrlError::NotS3(url.into()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.len() < 3 || bucket.len() > 63 {
        return Err(S3UrlError::BucketName(url.into()));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

/// Runs `fut` to completion from synchronous code, on a runtime of its own
/// that lives for the whole process. This lets synchronous ports (the model
/// registry, used at init, on reload and by the CLI) call the async SDK from
/// any thread, including one inside another runtime, without nesting runtimes.
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("aws-bridge")
            .enable_all()
            .build()
            .expect("building the AWS bridge runtime")
    });
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("the AWS bridge runtime dropped a task")
}

/// A readable message from any SDK error, including the service's code.
pub(crate) fn sdk_error<E, R>(e: aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use std::error::Error;
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        assert_eq!(
            parse_s3_url("s3://models-bkt/registry/").unwrap(),
            ("models-bkt".into(), "registry".into())
        );
        assert_eq!(
            parse_s3_url("s3://models-bkt").unwrap(),
            ("models-bkt".into(), String::new())
        );
        assert_eq!(
            parse_s3_url("models/registry"),
            Err(S3UrlError::NotS3("models/registry".into()))
        );
        assert_eq!(
            parse_s3_url("s3://ab/x").unwrap_err().to_string(),
            "\"s3://ab/x\": bucket name must have 3-63 characters"
        );
    }

    #[tokio::test]
    async fn block_on_works_inside_a_runtime() {
        assert_eq!(block_on(async { 40 + 2 }), 42);
    }
}
