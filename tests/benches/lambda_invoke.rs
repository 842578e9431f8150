//! recommend through the Lambda runtime emulator, with its model fetched from
//! moto's S3: init time, first-invocation time, and p50/p99 over warm
//! invocations (random users) sent to the emulator's Invoke API, and the
//! floor under them: the one conditional PutItem of the trace recommend
//! writes before it answers, timed alone against the same moto.
//! Run with `make bench-lambda` (release binaries of every function).

#[path = "../tests/common/mod.rs"]
mod common;

use common::LambdaStack;
use shared::adapters::aws::block_on;
use shared::adapters::aws::dynamo::DynamoTraces;
use shared::ports::TraceStore;
use std::time::Instant;

fn pct(mut t: Vec<f64>, q: f64) -> f64 {
    t.sort_by(f64::total_cmp);
    t[((t.len() as f64 - 1.0) * q).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let t0 = Instant::now();
    let stack = LambdaStack::start();
    let started = t0.elapsed().as_secs_f64();
    let event = LambdaStack::recommend_event;
    let s = Instant::now();
    let (code, first) = stack.invoke_raw("recommend", &event(1));
    assert_eq!(code, 200);
    let first_ms = s.elapsed().as_secs_f64() * 1e3;
    let first: serde_json::Value = serde_json::from_slice(&first).unwrap();
    let first_id = first["multiValueHeaders"]["x-request-id"][0]
        .as_str()
        .expect("x-request-id")
        .to_string();
    let log = stack.function("recommend").output();
    let init_ms = strip_ansi(&log)
        .lines()
        .find(|l| l.contains("model loaded"))
        // JSON logs (the template's LogFormat): "init_ms":169.8
        .and_then(|l| l.split("\"init_ms\":").nth(1))
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or("?".to_string(), |v| format!("{v:.1}"));
    let n = 2000;
    let mut lat = Vec::with_capacity(n);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let body = event(1 + x % 300);
        let s = Instant::now();
        let (code, out) = stack.invoke_raw("recommend", &body);
        lat.push(s.elapsed().as_secs_f64() * 1e3);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
        assert!(
            out.starts_with(b"{\"statusCode\":200"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    // The trace write alone: recommend's own trace body, one conditional
    // PutItem per fresh id through the same adapter and moto.
    let url = stack.moto.url();
    let table = stack.names.traces_table.clone();
    let (puts, trace_bytes) = block_on(async move {
        let cfg = common::sdk_config(&url).await;
        let store = DynamoTraces::new(aws_sdk_dynamodb::Client::new(&cfg), &table);
        let now = chrono::Utc::now().timestamp();
        let trace = store
            .get(&first_id, now)
            .await
            .unwrap()
            .expect("the first invocation's trace is stored");
        let mut t = Vec::with_capacity(n);
        for i in 0..n {
            let s = Instant::now();
            store
                .put(&format!("bench-{i}"), &trace, now + 3_600)
                .await
                .unwrap();
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
        (t, trace.to_string().len())
    });
    println!("stack up (moto, provision, train+publish demo-1 to S3, emulator, 5 functions): {started:.1} s");
    println!("recommend init (settings, SDK clients, S3 fetch + sha256 verify + ORT session load): {init_ms} ms");
    println!("first invocation after start: {first_ms:.1} ms");
    println!(
        "warm invocations through the emulator ({n}, random users of 300, k=5): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(lat.clone(), 0.5),
        pct(lat.clone(), 0.99),
        pct(lat, 1.0)
    );
    println!(
        "trace write alone (one conditional PutItem, {trace_bytes} B trace, {n}): p50 {:.2} ms, p99 {:.2} ms",
        pct(puts.clone(), 0.5),
        pct(puts, 0.99)
    );
}

/// Removes ANSI colour sequences (`ESC [ ... m`) from log text.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
