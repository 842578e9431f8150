//! What the tests that run the real `movie-recs serve` share: a trained data
//! dir, the server (stopped with SIGTERM when dropped) and raw HTTP/1.1.
#![allow(dead_code, unused_imports)]

pub use serde_json::{json, Value};
pub use std::io::{Read, Write};
pub use std::net::TcpStream;
pub use std::path::Path;
use std::process::{Child, Command, Stdio};
pub use std::time::{Duration, Instant};

pub mod model;
pub mod router;

pub const TOKEN: &str = "t0ken";

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_movie-recs"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A data dir with one small trained model.
pub fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["train", "--data", "synthetic", "--registry"])
        .arg(dir.path().join("registry"))
        .args(["--synthetic-users", "300", "--synthetic-items", "200"])
        .args([
            "--epochs",
            "2",
            "--factors",
            "8",
            "--layers",
            "16,8",
            "--quiet",
            "--force",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The server, stopped (SIGTERM) when dropped.
pub struct Serve {
    pub child: Child,
    pub port: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    pub fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub fn serve(dir: &Path, addr_host: &str, extra: &[&str], token: Option<&str>) -> Serve {
    let port = free_port();
    let mut cmd = bin();
    cmd.args(["serve", "--data-dir"])
        .arg(dir)
        .args([
            "--addr",
            &format!("{addr_host}:{port}"),
            "--canary-every-minutes",
            "0",
        ])
        .args(extra)
        .env_remove("MOVIE_RECS_ADMIN_TOKEN")
        .env_remove("MOVIE_RECS_CLIENT_RATE_LIMIT")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(t) = token {
        cmd.env("MOVIE_RECS_ADMIN_TOKEN", t);
    }
    let child = cmd.spawn().unwrap();
    let s = Serve { child, port };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "serve did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// One request on a fresh connection: (status, headers lower-cased, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
    out
}

pub fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or(Value::Null)
}

pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn post_events(port: u16, events: &Value, auth: Option<&str>) -> (u16, Value) {
    let bearer = auth.map(|t| format!("Bearer {t}"));
    let mut h = vec![("Content-Type", "application/json")];
    if let Some(b) = &bearer {
        h.push(("Authorization", b));
    }
    let (code, _, body) = http(port, "POST", "/events", &h, events.to_string().as_bytes());
    (code, json_of(&body))
}

pub fn top(port: u16, user: u64) -> Vec<u64> {
    let (code, _, b) = http(
        port,
        "GET",
        &format!("/recommend/{user}?k=5&policy=none"),
        &[],
        b"",
    );
    assert_eq!(code, 200);
    serde_json::from_value(json_of(&b)["items"].clone()).unwrap()
}
