//! recommend under the Lambda emulator with its S3 calls through a
//! fault-injecting proxy (reset, black hole, 5 s delay): it keeps answering
//! from the model it loaded, each answer well within the function's timeout,
//! and serves a switched-to version once the fault clears. DynamoDB stays
//! healthy, so only the model reloads are hit.

mod common;

use common::proxy::Fault;
use common::{api_response, LambdaStack, StackOptions};
use serde_json::Value;
use std::time::{Duration, Instant};

fn pct(mut t: Vec<f64>, q: f64) -> f64 {
    t.sort_by(f64::total_cmp);
    t[((t.len() as f64 - 1.0) * q).round() as usize]
}

fn switch_event(version: &str) -> Vec<u8> {
    let mut e: Value = serde_json::from_slice(
        &std::fs::read(common::repo_root().join("events/switch.json")).unwrap(),
    )
    .unwrap();
    e["queryStringParameters"]["model"] = version.into();
    e["multiValueQueryStringParameters"]["model"] = serde_json::json!([version]);
    serde_json::to_vec(&e).unwrap()
}

/// One recommend call: (wall ms, version that answered).
fn recommend(stack: &LambdaStack, user: u64) -> (f64, String) {
    let t = Instant::now();
    let (code, out) = stack.invoke_raw("recommend", &LambdaStack::recommend_event(user));
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
    let v: Value = serde_json::from_slice(&out).unwrap();
    let (status, body) = api_response(&v);
    assert_eq!(status, 200, "{body}");
    (
        ms,
        body["provenance"]["model_version"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

#[test]
fn recommend_keeps_serving_through_s3_faults_and_takes_the_switch_once_they_clear() {
    let stack = LambdaStack::start_with(StackOptions {
        params: vec![("ModelReloadSeconds", "2".into())],
        s3_proxy_for: Some("recommend"),
        ..Default::default()
    });
    let proxy = stack.proxy.as_ref().unwrap();
    assert_eq!(recommend(&stack, 1).1, "demo-1");
    assert!(
        proxy.accepted() > 0,
        "recommend's S3 calls did not go through the proxy"
    );
    // A second version, published straight to moto.
    stack.publish("demo-2", 9);
    let timeout_ms = 10_000.0; // the template's Timeout for recommend
    let mut switched = false;
    for fault in [
        Fault::Reset,
        Fault::BlackHole,
        Fault::Delay(Duration::from_secs(5)),
    ] {
        proxy.set(fault);
        if !switched {
            // The rollout function reaches S3 directly: it verifies demo-2.
            let (code, out) = stack.invoke_raw("rollout", &switch_event("demo-2"));
            let v: Value = serde_json::from_slice(&out).unwrap();
            let (status, body) = api_response(&v);
            assert_eq!((code, status), (200, 200), "{body}");
            assert_eq!(body["effective_within_s"], 2, "{body}");
            switched = true;
        }
        let (start, mut lat) = (Instant::now(), Vec::new());
        let mut user = 1;
        while start.elapsed() < Duration::from_secs(8) {
            let (ms, version) = recommend(&stack, user % 300 + 1);
            user += 7;
            if fault != Fault::Delay(Duration::from_secs(5)) {
                // A reset or black-holed S3 cannot have delivered demo-2.
                assert_eq!(version, "demo-1", "under {fault:?}");
            }
            assert!(ms < timeout_ms, "{ms} ms under {fault:?}");
            lat.push(ms);
        }
        eprintln!(
            "recommend under {fault:?} on S3: {} requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            lat.len(),
            pct(lat.clone(), 0.5),
            pct(lat.clone(), 0.99),
            pct(lat.clone(), 1.0)
        );
    }
    proxy.set(Fault::None);
    let cleared = Instant::now();
    loop {
        let (_, version) = recommend(&stack, 5);
        if version == "demo-2" {
            break;
        }
        assert!(
            cleared.elapsed() < Duration::from_secs(90),
            "demo-2 never served after the fault cleared:\n{}",
            stack.function("recommend").output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "switch served {:.1} s after the fault cleared",
        cleared.elapsed().as_secs_f64()
    );
    stack.assert_working_directories_untouched();
}

#[test]
fn a_switch_serves_within_the_reload_interval_under_the_emulator() {
    let stack = LambdaStack::start_with(StackOptions {
        params: vec![("ModelReloadSeconds", "3".into())],
        ..Default::default()
    });
    assert_eq!(recommend(&stack, 1).1, "demo-1");
    stack.publish("demo-2", 9);
    let t = Instant::now();
    let (_, out) = stack.invoke_raw("rollout", &switch_event("demo-2"));
    let (status, body) = api_response(&serde_json::from_slice(&out).unwrap());
    assert_eq!(status, 200, "{body}");
    let within = body["effective_within_s"].as_f64().unwrap();
    assert_eq!(within, 3.0);
    let mut first = None;
    while t.elapsed() < Duration::from_secs(60) {
        if recommend(&stack, 2).1 == "demo-2" {
            first = Some(t.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let first = first.expect("demo-2 was never served");
    eprintln!("switch answered; demo-2 served {first:.2} s later (effective_within_s {within})");
    // Within the interval, plus the time to fetch and load the version.
    assert!(first <= within + 10.0, "{first} s");
}
