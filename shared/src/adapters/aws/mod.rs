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

pub use aws_config::SdkConfig;
use std::future::Future;
use std::sync::OnceLock;

/// Loads region, credentials and endpoint the SDK's usual way (environment,
/// profile, container/instance role). `endpoint` overrides `AWS_ENDPOINT_URL`.
pub async fn load_sdk_config(endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
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

/// Splits `s3://bucket/some/prefix` into `("bucket", "some/prefix")`.
pub fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url:?} is not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.len() < 3 || bucket.len() > 63 {
        return Err(format!("{url:?}: bucket name must have 3-63 characters"));
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
        assert!(parse_s3_url("models/registry").is_err());
        assert!(parse_s3_url("s3://ab/x").is_err());
    }

    #[tokio::test]
    async fn block_on_works_inside_a_runtime() {
        assert_eq!(block_on(async { 40 + 2 }), 42);
    }
}
