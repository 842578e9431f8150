//! Harness shared by the end-to-end tests: the repo's tool folder, free
//! ports, and servers (moto, the Lambda emulator) that stop when the test
//! process ends, whatever way it ends.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A program installed by `infra/python-tools.sh` into `.tools/venv/bin`.
pub fn tool(name: &str) -> PathBuf {
    let p = repo_root().join(".tools/venv/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run infra/python-tools.sh (`make test` does)",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, what: &str, timeout: Duration) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < timeout,
            "{what} did not listen on port {port} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A background process tied to this test process: it runs under a shell
/// that kills it as soon as our end of its stdin closes (on drop, or when
/// the test binary exits or crashes), so nothing outlives the tests.
pub struct Server {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Server {
    pub fn spawn(
        program: &Path,
        args: &[&str],
        envs: &[(&str, String)],
        port: u16,
        name: &str,
    ) -> Server {
        let log = std::env::temp_dir().join(format!("movie-recs-{name}-{port}.log"));
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"prog="$1"; shift; "$prog" "$@" & pid=$!; read _ignored; kill "$pid" 2>/dev/null; sleep 0.2; kill -9 "$pid" 2>/dev/null; wait"#)
            .arg("sh")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        Server { child, port, log }
    }

    /// What the process printed so far (stdout, then stderr).
    pub fn output(&self) -> String {
        let out = std::fs::read_to_string(&self.log).unwrap_or_default();
        let err = std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
        format!("{out}{err}")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"\n");
        }
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// moto_server on a free port, speaking S3, DynamoDB and EventBridge.
pub fn moto() -> Server {
    let port = free_port();
    let s = Server::spawn(
        &tool("moto_server"),
        &["-H", "127.0.0.1", "-p", &port.to_string()],
        &[],
        port,
        "moto",
    );
    wait_for_port(port, "moto_server", Duration::from_secs(60));
    s
}

/// Environment that points the AWS SDK at an emulator with dummy credentials.
pub fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

/// An SDK config for the emulator, independent of the process environment.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await
}

/// Resource names unique to one test, so tests can share one moto.
pub fn names(tag: &str) -> shared::adapters::aws::provision::Names {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    shared::adapters::aws::provision::Names {
        bucket: format!("mr-{tag}-{id}"),
        traces_table: format!("traces-{tag}-{id}"),
        rollout_table: format!("rollout-{tag}-{id}"),
        history_table: format!("history-{tag}-{id}"),
    }
}
