//! The exposure controller on the Lambda path, as deployed: recommend
//! (policy `exposure` as the stack's default, from template.yaml's
//! `DefaultPolicy`) serves a simulated day of hourly windows, each window
//! every user once; after each window the audit function audits exactly
//! that window (traces from DynamoDB on moto), publishes its metrics to
//! CloudWatch and the controller's next adjustments to S3, and recommend
//! picks them up on its own reload. The `TailShare` alarm, evaluated as
//! template.yaml defines it, never fires: the cold start (the base policy)
//! breaches once, and every window from the third on passes.

mod common;

use common::{api_response, LambdaStack, StackOptions};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const USERS: u64 = 200;
/// A day of hourly audits.
const WINDOWS: usize = 24;

fn recommend(stack: &LambdaStack, user: u64) -> Value {
    let mut e: Value = serde_json::from_slice(&LambdaStack::recommend_event(user)).unwrap();
    e["queryStringParameters"]["k"] = "10".into();
    e["multiValueQueryStringParameters"]["k"] = json!(["10"]);
    let (code, out) = stack.invoke_raw("recommend", &serde_json::to_vec(&e).unwrap());
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
    let (status, body) = api_response(&serde_json::from_slice(&out).unwrap());
    assert_eq!(status, 200, "{body}");
    body
}

/// The audit of `[from_ms, to_ms)`, as an operator's invocation names it.
fn audit(stack: &LambdaStack, from_ms: i64, to_ms: i64) -> Value {
    let e = json!({
        "version": "0", "id": format!("day-{to_ms}"), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012",
        "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": "eu-west-1", "resources": [],
        "detail": {"from_ms": from_ms, "to_ms": to_ms}
    });
    let (code, out) = stack.invoke_raw("audit", &serde_json::to_vec(&e).unwrap());
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert!(
        code == 200 && v.get("errorType").is_none(),
        "{v}\n{}",
        stack.function("audit").output()
    );
    v
}

#[test]
fn the_tail_share_alarm_stays_green_through_a_day_served_by_the_controller() {
    let stack = LambdaStack::start_with(StackOptions {
        params: vec![
            ("DefaultPolicy", "exposure".into()),
            ("ModelReloadSeconds", "1".into()),
        ],
        ..Default::default()
    });
    let tpl = common::template::Template::load();
    let alarm = tpl.resource("TailShareAlarm");
    let periods = alarm["Properties"]["EvaluationPeriods"].as_u64().unwrap() as usize;
    let threshold: f64 = tpl
        .parameter_default("TailShareThreshold")
        .unwrap()
        .parse()
        .unwrap();

    // A model trained as `movie-recs train` trains by default, on a
    // catalogue large for its users (200 users, 700 movies): served by the
    // base policy, its lists breach the tail-share threshold. With no
    // rollout state written, the newest version serves.
    let registry = format!("s3://{}/models", stack.names.bucket);
    common::movie_recs_on(
        &stack.moto.url(),
        &[
            "train",
            "--registry",
            &registry,
            "--version",
            "day-1",
            "--synthetic-users",
            "200",
            "--synthetic-items",
            "700",
            "--quiet",
        ],
    );
    let start = Instant::now();
    while recommend(&stack, 1)["provenance"]["model_version"] != "day-1" {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "day-1 never served"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let mut names: Vec<Option<String>> = Vec::new();
    let mut summaries = Vec::new();
    let mut expected: Option<String> = None;
    for w in 0..WINDOWS {
        // recommend serves the newest adjustments before the window opens.
        let start = Instant::now();
        loop {
            let b = recommend(&stack, 1);
            let serving = b["provenance"]["adjustments"].as_str().map(str::to_string);
            if serving == expected {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "recommend still serves {serving:?}, not {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        let from_ms = chrono::Utc::now().timestamp_millis();
        for user in 1..=USERS {
            let b = recommend(&stack, user);
            assert_eq!(b["provenance"]["policy"], "exposure", "{b}");
            assert_eq!(
                b["provenance"]["adjustments"].as_str().map(str::to_string),
                expected,
                "{b}"
            );
            assert_eq!(b["items"].as_array().unwrap().len(), 10);
        }
        let to_ms = chrono::Utc::now().timestamp_millis() + 1;
        let a = audit(&stack, from_ms, to_ms);
        assert_eq!(a["requests"].as_u64(), Some(USERS), "{a}");
        let control = &a["exposure_controller"];
        assert_eq!(control["status"], "published", "{a}");
        expected = control["name"].as_str().map(str::to_string);
        assert_eq!(expected, Some(format!("adj-{:06}", w + 1)));
        names.push(expected.clone());
        summaries.push(a);
    }
    // The adjustments are checksummed objects in S3 with a pointer to the newest.
    let keys = common::bucket_keys(&stack, "exposure/");
    assert!(
        keys.contains(&"exposure/latest.json".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!("exposure/adj-{WINDOWS:06}.json")),
        "{keys:?}"
    );

    // TailShare as the audits published it to CloudWatch, one per window.
    let tail: Vec<f64> = stack
        .cloudwatch
        .data()
        .iter()
        .filter(|d| {
            d["name"] == "TailShare"
                && d["dimensions"]["model_version"] == "all"
                && d["dimensions"]["variant"] == "all"
        })
        .map(|d| d["value"].as_f64().unwrap())
        .collect();
    assert_eq!(tail.len(), WINDOWS, "{tail:?}");
    let report: Vec<String> = summaries
        .iter()
        .map(|a| {
            format!(
                "tail {:.3} coverage {:.3} gini_exposed {:.3} top10 {:.3}",
                a["tail_share"].as_f64().unwrap_or(f64::NAN),
                a["catalog_coverage"].as_f64().unwrap_or(f64::NAN),
                a["gini_exposed"].as_f64().unwrap_or(f64::NAN),
                a["top_10_pct_share"].as_f64().unwrap_or(f64::NAN)
            )
        })
        .collect();
    eprintln!("windows: {report:#?}");
    // The alarm: `periods` consecutive hours below the threshold.
    let fired = tail
        .windows(periods)
        .any(|run| run.iter().all(|&t| t < threshold));
    assert!(!fired, "TailShare alarm would fire: {tail:?}\n{report:#?}");
    // The first window is the cold start (the base policy, before any
    // adjustments): it breached. From the third on every window passes.
    assert!(tail[0] < threshold, "{report:#?}");
    assert!(tail[2..].iter().all(|&t| t >= threshold), "{report:#?}");
}
