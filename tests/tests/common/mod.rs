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

/// One moto for a whole test binary.
pub fn shared_moto() -> &'static Server {
    static S: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
    S.get_or_init(moto)
}

/// Fresh resources on the shared moto, provisioned twice to show
/// `provision` is idempotent (a second run changes nothing and does not fail).
#[allow(dead_code)]
pub fn setup(
    tag: &str,
) -> (
    shared::adapters::aws::SdkConfig,
    shared::adapters::aws::provision::Names,
) {
    let url = shared_moto().url();
    let n = names(tag);
    let n2 = n.clone();
    let cfg = shared::adapters::aws::block_on(async move {
        let cfg = sdk_config(&url).await;
        for _ in 0..2 {
            shared::adapters::aws::provision::provision(&cfg, &n2)
                .await
                .unwrap();
        }
        cfg
    });
    (cfg, n)
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
        ingest_table: format!("ingest-{tag}-{id}"),
    }
}

/// The folder cargo put this test binary's sibling binaries in (target/debug).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    if dir.ends_with("deps") {
        dir.parent().unwrap().to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A workspace binary (a function, or `movie-recs`), built beforehand by
/// `cargo build --workspace --bins` (`make test` does).
pub fn workspace_bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (`make test` does)",
        p.display()
    );
    p
}

/// One HTTP/1.1 POST on a fresh connection; returns (status, body).
pub fn http_post(port: u16, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::Read;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// The six functions running against one Lambda runtime emulator
/// (`cargo lambda watch --only-lambda-apis`), configured for moto.
pub struct LambdaStack {
    pub moto: Server,
    pub watch: Server,
    pub functions: Vec<(String, Server)>,
    pub names: shared::adapters::aws::provision::Names,
    pub cache: tempfile::TempDir,
}

pub const FUNCTIONS: [&str; 6] = ["recommend", "trace", "rollout", "ingest", "audit", "canary"];

impl LambdaStack {
    /// moto with the stack's resources and version `demo-1` published by
    /// `movie-recs train --registry s3://…`, then the emulator and functions.
    pub fn start() -> LambdaStack {
        let moto = moto();
        let names = names("fn");
        let env = aws_env(&moto.url());
        let run = |args: &[&str]| {
            let out = Command::new(workspace_bin("movie-recs"))
                .args(args)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "movie-recs {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        run(&[
            "provision",
            "--bucket",
            &names.bucket,
            "--traces-table",
            &names.traces_table,
            "--rollout-table",
            &names.rollout_table,
            "--history-table",
            &names.history_table,
            "--ingest-table",
            &names.ingest_table,
        ]);
        let registry = format!("s3://{}/models", names.bucket);
        let published = run(&[
            "train",
            "--registry",
            &registry,
            "--version",
            "demo-1",
            "--synthetic-users",
            "300",
            "--synthetic-items",
            "200",
            "--epochs",
            "2",
            "--quiet",
            "--force",
        ]);
        assert_eq!(published, "demo-1");

        let port = free_port();
        let watch = Server::spawn(
            &tool("cargo-lambda"),
            &[
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ],
            &[],
            port,
            "watch",
        );
        wait_for_port(port, "cargo lambda watch", Duration::from_secs(60));
        let cache = tempfile::tempdir().unwrap();
        let functions = FUNCTIONS
            .iter()
            .map(|f| {
                let mut e = env.clone();
                e.extend([
                    (
                        "AWS_LAMBDA_RUNTIME_API",
                        format!("http://127.0.0.1:{port}/.rt/{f}"),
                    ),
                    ("AWS_LAMBDA_FUNCTION_NAME", f.to_string()),
                    ("AWS_LAMBDA_FUNCTION_VERSION", "1".into()),
                    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024".into()),
                    ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".into()),
                    ("MOVIE_RECS_REGISTRY", registry.clone()),
                    ("MOVIE_RECS_MODEL_CACHE", cache.path().display().to_string()),
                    ("MOVIE_RECS_TRACES_TABLE", names.traces_table.clone()),
                    ("MOVIE_RECS_ROLLOUT_TABLE", names.rollout_table.clone()),
                    ("MOVIE_RECS_HISTORY_TABLE", names.history_table.clone()),
                    ("MOVIE_RECS_INGEST_TABLE", names.ingest_table.clone()),
                    ("MOVIE_RECS_LAKE", format!("s3://{}/lake", names.bucket)),
                    ("MOVIE_RECS_METRICS", "cloudwatch".into()),
                    (
                        "MOVIE_RECS_REPORTS",
                        format!("s3://{}/reports", names.bucket),
                    ),
                    ("MOVIE_RECS_STAGE", "test".into()),
                    ("MOVIE_RECS_AUDIT_WINDOW_MINUTES", "120".into()),
                ]);
                if matches!(*f, "audit" | "canary" | "rollout") {
                    // moto does not speak CloudWatch's CBOR protocol: the
                    // data points of the functions that publish go to a
                    // file here, `<function>-metrics.jsonl` (the CloudWatch
                    // adapter is tested with aws-smithy-mocks).
                    e.push((
                        "MOVIE_RECS_METRICS",
                        cache
                            .path()
                            .join(format!("{f}-metrics.jsonl"))
                            .display()
                            .to_string(),
                    ));
                }
                let s = Server::spawn(&workspace_bin(f), &[], &e, port, f);
                (f.to_string(), s)
            })
            .collect();
        LambdaStack {
            moto,
            watch,
            functions,
            names,
            cache,
        }
    }

    pub fn function(&self, name: &str) -> &Server {
        &self.functions.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// `cargo lambda invoke NAME --data-file events/FILE`: the function's JSON answer.
    pub fn invoke(&self, name: &str, event_file: &str) -> serde_json::Value {
        let out = Command::new(tool("cargo-lambda"))
            .args(["lambda", "invoke", name, "-A", "127.0.0.1", "-P"])
            .arg(self.watch.port.to_string())
            .arg("--data-file")
            .arg(repo_root().join("events").join(event_file))
            .args(["--output-format", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "invoking {name} with {event_file}: {}\n{}\nfunction output:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.function(name).output()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{name}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Invokes with a raw payload over the emulator's Invoke API.
    pub fn invoke_raw(&self, name: &str, payload: &[u8]) -> (u16, Vec<u8>) {
        http_post(
            self.watch.port,
            &format!("/2015-03-31/functions/{name}/invocations"),
            payload,
        )
    }
}

/// An API Gateway proxy response's status and parsed JSON body.
pub fn api_response(v: &serde_json::Value) -> (u64, serde_json::Value) {
    let status = v["statusCode"].as_u64().expect("an API Gateway response");
    let body = v["body"].as_str().unwrap_or("null");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}
