//! Harness shared by the end-to-end tests: the repo's tool folder, free
//! ports, and servers (moto, the Lambda emulator) that stop when the test
//! process ends, whatever way it ends.
#![allow(dead_code)]

pub mod cloudwatch;
pub mod proxy;
pub mod states;
pub mod template;

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
        Self::spawn_in(program, args, envs, None, port, name)
    }

    /// [`Server::spawn`] with `cwd` as the working directory.
    pub fn spawn_in(
        program: &Path,
        args: &[&str],
        envs: &[(&str, String)],
        cwd: Option<&Path>,
        port: u16,
        name: &str,
    ) -> Server {
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Self::launch(program, args, &envs, false, cwd, port, name)
    }

    /// Like [`Server::spawn`], with exactly `envs` as the environment (nothing
    /// inherited from the test process) and `cwd` as the working directory.
    pub fn spawn_clean(
        program: &Path,
        args: &[&str],
        envs: &[(String, String)],
        cwd: Option<&Path>,
        port: u16,
        name: &str,
    ) -> Server {
        Self::launch(program, args, envs, true, cwd, port, name)
    }

    fn launch(
        program: &Path,
        args: &[&str],
        envs: &[(String, String)],
        clean: bool,
        cwd: Option<&Path>,
        port: u16,
        name: &str,
    ) -> Server {
        let log = std::env::temp_dir().join(format!("movie-recs-{name}-{port}.log"));
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(r#"prog="$1"; shift; "$prog" "$@" & pid=$!; read _ignored; kill "$pid" 2>/dev/null; sleep 0.2; kill -9 "$pid" 2>/dev/null; wait"#)
            .arg("sh")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
        if clean {
            cmd.env_clear();
        }
        cmd.envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
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
        trending_table: format!("trending-{tag}-{id}"),
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

/// The functions running against one Lambda runtime emulator
/// (`cargo lambda watch --only-lambda-apis`), each started as Lambda would
/// start it: with exactly the environment template.yaml gives it (resolved
/// for moto and the CloudWatch stand-in, plus what the Lambda service sets),
/// from an empty, read-only working directory, with its own `/tmp` and the
/// ONNX Runtime layer at `/opt/lib`. The sandbox is a private mount
/// namespace (`unshare`); where that is not allowed the function runs in an
/// empty folder that is checked to stay empty, with the layer's library
/// path pointed at the repo's copy.
pub struct LambdaStack {
    pub moto: Server,
    pub watch: Server,
    pub cloudwatch: cloudwatch::CloudWatch,
    /// By binary name (`recommend`, ...).
    pub functions: Vec<(String, Server)>,
    /// Binary name -> the function's name in the template (`movie-recs-dev-recommend`).
    pub function_names: std::collections::HashMap<String, String>,
    /// Binary name -> the environment it was started with.
    pub environments: std::collections::HashMap<String, std::collections::BTreeMap<String, String>>,
    pub names: shared::adapters::aws::provision::Names,
    /// Per-function `task/` (working directory) and `tmp/` (its /tmp).
    pub root: tempfile::TempDir,
    /// Whether the functions run in the mount-namespace sandbox.
    pub sandboxed: bool,
    /// The fault proxy of [`StackOptions::s3_proxy_for`].
    pub proxy: Option<proxy::FaultProxy>,
}

pub const FUNCTIONS: [&str; 7] = [
    "recommend",
    "trace",
    "rollout",
    "ingest",
    "audit",
    "canary",
    "batch",
];

/// What a test changes about a stack: template parameters (as `sam deploy
/// --parameter-overrides` would) and, per function, emulator plumbing such
/// as `AWS_ENDPOINT_URL_S3` through a fault proxy. Never a MOVIE_RECS_ variable.
#[derive(Default)]
pub struct StackOptions {
    pub params: Vec<(&'static str, String)>,
    pub plumbing: Vec<(&'static str, &'static str, String)>,
    /// Routes this function's S3 calls through a [`proxy::FaultProxy`] to moto.
    pub s3_proxy_for: Option<&'static str>,
}

/// The script that starts a function in its sandbox: args are the layer's
/// library folder, the function's /tmp, its working directory and the binary.
const SANDBOX: &str = r#"set -e
mount -t tmpfs tmpfs /opt
mkdir /opt/lib
mount --bind "$1" /opt/lib
mount --bind "$3" "$3"
mount -o remount,bind,ro "$3"
mount --bind "$2" /tmp
cd "$3"
exec "$4""#;

/// Whether a private mount namespace can be made here (root with
/// CAP_SYS_ADMIN), and used: the sandbox mounts the function's own folder
/// over /tmp, which would hide a checkout that lives under /tmp (its task
/// folder and binary), so there the functions run unsandboxed.
pub fn sandbox_available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        let root = std::fs::canonicalize(repo_root()).unwrap_or_else(|_| repo_root());
        if root.starts_with("/tmp") {
            return false;
        }
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs tmpfs /opt")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The emulator plumbing every function gets: moto's endpoint for S3 and
/// DynamoDB, the CloudWatch stand-in, dummy credentials, the runtime API.
fn plumbing(moto: &str, cloudwatch: &str, runtime_api: String) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = aws_env(moto)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    v.push(("AWS_ENDPOINT_URL_CLOUDWATCH".into(), cloudwatch.into()));
    v.push(("AWS_LAMBDA_RUNTIME_API".into(), runtime_api));
    v.push((
        "PATH".into(),
        "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into(),
    ));
    v
}

/// A resolver for template.yaml over `names`, with `params` overridden.
pub fn resolver<'a>(
    tpl: &'a template::Template,
    names: &shared::adapters::aws::provision::Names,
    params: &[(&'static str, String)],
) -> template::Resolver<'a> {
    let mut r = template::Resolver::new(tpl)
        .with_physical("DataBucket", &names.bucket)
        .with_physical("TracesTable", &names.traces_table)
        .with_physical("RolloutTable", &names.rollout_table)
        .with_physical("HistoryTable", &names.history_table)
        .with_physical("IngestTable", &names.ingest_table)
        .with_physical("TrendingTable", &names.trending_table);
    for (k, v) in params {
        r = r.with_param(k, v.clone());
    }
    r
}

/// `movie-recs ARGS` against moto at `endpoint` (the AWS stores of a
/// stack); its trimmed stdout, after asserting it succeeded.
pub fn movie_recs_on(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new(workspace_bin("movie-recs"))
        .args(args)
        .envs(aws_env(endpoint))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "movie-recs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl LambdaStack {
    /// moto with the stack's resources and version `demo-1` published by
    /// `movie-recs train --registry s3://…`, then the emulator and functions.
    pub fn start() -> LambdaStack {
        Self::start_with(StackOptions::default())
    }

    pub fn start_with(opts: StackOptions) -> LambdaStack {
        let moto = moto();
        let names = names("fn");
        let run = |args: &[&str]| movie_recs_on(&moto.url(), args);
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
            "--trending-table",
            &names.trending_table,
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
        let watch = Server::spawn_in(
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
            None,
            port,
            "watch",
        );
        wait_for_port(port, "cargo lambda watch", Duration::from_secs(60));
        let cloudwatch = cloudwatch::CloudWatch::start();
        let root = tempfile::Builder::new()
            .prefix("stack-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let tpl = template::Template::load();
        let res = resolver(&tpl, &names, &opts.params);
        let sandboxed = sandbox_available();
        let proxy = opts
            .s3_proxy_for
            .map(|_| proxy::FaultProxy::start(moto.port));
        let layer = repo_root().join(".tools/onnxruntime");
        let mut function_names = std::collections::HashMap::new();
        let mut environments = std::collections::HashMap::new();
        let mut functions = Vec::new();
        for f in FUNCTIONS {
            let def = tpl.function_by_binary(f);
            let name = res.reference(&def.logical_id).unwrap();
            let mut e = res.environment(&def.logical_id);
            e.extend(res.lambda_environment(&def.logical_id));
            let fn_env = e.clone();
            e.extend(plumbing(
                &moto.url(),
                &cloudwatch.url(),
                // The emulator routes by cargo binary name (its own plumbing);
                // the function's name, as Lambda reports it, is the template's.
                format!("http://127.0.0.1:{port}/.rt/{f}"),
            ));
            if let (Some(via), Some(p)) = (opts.s3_proxy_for, &proxy) {
                if via == f {
                    e.insert("AWS_ENDPOINT_URL_S3".into(), p.url());
                }
            }
            for (func, k, v) in &opts.plumbing {
                if *func == f {
                    e.insert(k.to_string(), v.clone());
                }
            }
            let (task, tmp) = (
                root.path().join(f).join("task"),
                root.path().join(f).join("tmp"),
            );
            std::fs::create_dir_all(&task).unwrap();
            std::fs::create_dir_all(&tmp).unwrap();
            let bin = workspace_bin(f);
            let envs: Vec<(String, String)> = e.into_iter().collect();
            let s = if sandboxed {
                Server::spawn_clean(
                    Path::new("unshare"),
                    &[
                        "--mount",
                        "--propagation",
                        "private",
                        "sh",
                        "-c",
                        SANDBOX,
                        "sandbox",
                        layer.to_str().unwrap(),
                        tmp.to_str().unwrap(),
                        task.to_str().unwrap(),
                        bin.to_str().unwrap(),
                    ],
                    &envs,
                    None,
                    port,
                    f,
                )
            } else {
                // No namespace: the layer's path cannot exist, so point at
                // the repo's copy of the same library.
                let mut envs = envs;
                envs.retain(|(k, _)| k != "ORT_DYLIB_PATH");
                if fn_env.contains_key("ORT_DYLIB_PATH") {
                    envs.push((
                        "ORT_DYLIB_PATH".into(),
                        layer
                            .join(shared::scoring::ORT_LIBRARY)
                            .display()
                            .to_string(),
                    ));
                }
                Server::spawn_clean(&bin, &[], &envs, Some(&task), port, f)
            };
            function_names.insert(f.to_string(), name);
            environments.insert(f.to_string(), fn_env);
            functions.push((f.to_string(), s));
        }
        LambdaStack {
            moto,
            watch,
            cloudwatch,
            functions,
            function_names,
            environments,
            names,
            root,
            sandboxed,
            proxy,
        }
    }

    pub fn function(&self, name: &str) -> &Server {
        &self.functions.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// The function's /tmp, as the host sees it (`/tmp` itself without the sandbox).
    pub fn function_tmp(&self, name: &str) -> PathBuf {
        match self.sandboxed {
            true => self.root.path().join(name).join("tmp"),
            false => PathBuf::from("/tmp"),
        }
    }

    /// Whether every function's working directory is still empty.
    pub fn assert_working_directories_untouched(&self) {
        for f in FUNCTIONS {
            let task = self.root.path().join(f).join("task");
            let left: Vec<_> = std::fs::read_dir(&task)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            assert!(
                left.is_empty(),
                "{f} wrote in its working directory: {left:?}"
            );
        }
    }

    /// The function's name as the template gives it (what Lambda reports).
    pub fn function_name(&self, name: &str) -> &str {
        self.function_names
            .get(name)
            .unwrap_or_else(|| panic!("no function {name}"))
    }

    /// Invokes the function with `events/FILE` over the emulator's Invoke
    /// API (what `cargo lambda invoke --data-file` does): its JSON answer.
    pub fn invoke(&self, name: &str, event_file: &str) -> serde_json::Value {
        let payload = std::fs::read(repo_root().join("events").join(event_file)).unwrap();
        let (code, out) = self.invoke_raw(name, &payload);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!(
                "{name}: not JSON ({e}): {}\nfunction output:\n{}",
                String::from_utf8_lossy(&out),
                self.function(name).output()
            )
        });
        assert!(
            code == 200 && v.get("errorType").is_none(),
            "invoking {name} with {event_file}: {code} {v}\nfunction output:\n{}",
            self.function(name).output()
        );
        v
    }

    /// `events/recommend.json` for `user`, without its X-Request-ID (a fresh
    /// id per request).
    pub fn recommend_event(user: u64) -> Vec<u8> {
        let mut e: serde_json::Value = serde_json::from_slice(
            &std::fs::read(repo_root().join("events/recommend.json")).unwrap(),
        )
        .unwrap();
        e["path"] = format!("/recommend/{user}").into();
        e["pathParameters"]["user_id"] = user.to_string().into();
        for h in ["headers", "multiValueHeaders"] {
            e[h].as_object_mut().unwrap().remove("X-Request-ID");
        }
        serde_json::to_vec(&e).unwrap()
    }

    /// Publishes `version` (a small synthetic model) to the stack's registry
    /// in moto, as `movie-recs train` does.
    pub fn publish(&self, version: &str, seed: u64) {
        let registry = format!("s3://{}/models", self.names.bucket);
        let out = Command::new(workspace_bin("movie-recs"))
            .args(["train", "--registry", &registry, "--version", version])
            .args(["--synthetic-users", "300", "--synthetic-items", "200"])
            .args(["--epochs", "1", "--quiet", "--force", "--seed"])
            .arg(seed.to_string())
            .envs(aws_env(&self.moto.url()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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

/// The keys under `prefix` in the stack's bucket (moto).
pub fn bucket_keys(stack: &LambdaStack, prefix: &str) -> Vec<String> {
    let prefix = prefix.to_string();
    let url = stack.moto.url();
    let bucket = stack.names.bucket.clone();
    shared::adapters::aws::block_on(async move {
        let s3 = shared::adapters::aws::s3_client(&sdk_config(&url).await);
        let out = s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    })
}
