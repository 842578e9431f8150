use super::*;
use serde_json::json;

const NOW: i64 = 1_764_000_000_000;

fn reject(v: Value, hint: Option<EventType>) -> Rejection {
    parse_value(&v, hint, NOW).unwrap_err()
}

#[test]
fn each_type_parses_and_round_trips_through_json() {
    let cases = [
        json!({"type": "watch", "user_id": 1, "movie_id": 2, "minute": 30, "ts": NOW}),
        json!({"type": "rate", "user_id": 1, "movie_id": 2, "rating": 3.5, "ts": NOW}),
        json!({"type": "reco_response", "request_id": "r-1", "user_id": 1, "movie_ids": [3, 4],
                   "model_version": "v1", "variant": "candidate", "status": 200, "latency_ms": 4.5, "ts": NOW}),
    ];
    for c in cases {
        let p = parse_value(&c, None, NOW).unwrap();
        assert_eq!(p.event.ts_ms(), NOW);
        let back = parse_value(&p.event.to_json(Some("e-1")), None, NOW).unwrap();
        assert_eq!(back.event, p.event);
        assert_eq!(back.event_id.as_deref(), Some("e-1"));
    }
}

#[test]
fn legacy_records_parse_with_a_type_hint() {
    let p = parse_json(
            br#"{"user_id": 1, "movie_id": 201, "rating": 3.5, "timestamp": "2025-11-07T04:25:26.733880+00:00"}"#,
            Some(EventType::Rate),
            NOW,
        )
        .unwrap();
    assert_eq!(
        p.event,
        Event::Rate(Rate {
            user_id: 1,
            movie_id: 201,
            rating: 3.5,
            ts_ms: 1_762_489_526_733
        })
    );
    let p = parse_json(
            br#"{"user_id": 1, "movie_ids": [2047, 2901], "model_version": "v_ncf", "variant": null, "ts": 1763855708444}"#,
            Some(EventType::RecoResponse),
            NOW,
        )
        .unwrap();
    let Event::RecoResponse(r) = p.event else {
        panic!()
    };
    assert_eq!(
        (r.movie_ids, r.variant, r.status),
        (vec![2047, 2901], None, None)
    );
    // A naive ISO date-time is UTC.
    assert_eq!(
        parse_iso8601("2024-01-02T03:04:05"),
        Some(1_704_164_645_000)
    );
}

#[test]
fn every_rule_names_its_field() {
    use EventType::*;
    let base = json!({"user_id": 1, "movie_id": 2, "rating": 4, "ts": NOW});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases: Vec<(Value, Option<EventType>, &str, &str)> = vec![
        (
            with("user_id", json!("INVALID")),
            Some(Rate),
            "user_id",
            "non-negative integer",
        ),
        (
            with("user_id", json!(-3)),
            Some(Rate),
            "user_id",
            "non-negative integer",
        ),
        (
            with("user_id", json!(1.5)),
            Some(Rate),
            "user_id",
            "non-negative integer",
        ),
        (without("user_id"), Some(Rate), "user_id", "required"),
        (
            with("movie_id", json!(null)),
            Some(Rate),
            "movie_id",
            "required",
        ),
        (with("rating", json!(0)), Some(Rate), "rating", "1 to 5"),
        (with("rating", json!(5.5)), Some(Rate), "rating", "1 to 5"),
        (
            with("rating", json!(3.3)),
            Some(Rate),
            "rating",
            "steps of 0.5",
        ),
        (with("rating", json!("4")), Some(Rate), "rating", "1 to 5"),
        (without("rating"), Some(Rate), "rating", "required"),
        (without("ts"), Some(Rate), "ts", "required"),
        (
            with("ts", json!("yesterday")),
            Some(Rate),
            "ts",
            "epoch milliseconds",
        ),
        (
            with("ts", json!(1_700_000_000)),
            Some(Rate),
            "ts",
            "before 1995",
        ),
        (
            with("ts", json!(NOW + MAX_FUTURE_MS + 1)),
            Some(Rate),
            "ts",
            "future",
        ),
        (with("type", json!("click")), None, "type", "one of"),
        (
            with("type", json!("watch")),
            Some(Rate),
            "type",
            "source carries rate",
        ),
        (base.clone(), None, "type", "required"),
        (with("minute", json!(-1)), Some(Watch), "minute", "integer"),
        (
            with("event_id", json!("")),
            Some(Rate),
            "event_id",
            "1 to 128",
        ),
        (json!([1, 2]), Some(Rate), "record", "JSON object"),
    ];
    for (v, hint, field, rule) in cases {
        let r = reject(v.clone(), hint);
        assert_eq!(r.field, field, "{v}: {r}");
        assert!(r.rule.contains(rule), "{v}: {r}");
    }
    let mut ts = without("ts");
    ts["timestamp"] = json!("07/11/2025");
    assert_eq!(reject(ts, Some(Rate)).field, "timestamp");
    // Half stars are fine.
    assert!(parse_value(&with("rating", json!(0.5 + 4.0)), Some(Rate), NOW).is_ok());
}

#[test]
fn reco_response_rules() {
    let base = json!({"type": "reco_response", "user_id": 1, "movie_ids": [1, 2],
                          "model_version": "v1", "ts": NOW});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (v, field) in [
        (with("movie_ids", json!([1, "x"])), "movie_ids[1]"),
        (with("movie_ids", json!("1,2")), "movie_ids"),
        (
            with("movie_ids", json!((0..1001).collect::<Vec<_>>())),
            "movie_ids",
        ),
        (with("model_version", json!("")), "model_version"),
        (with("model_version", json!(null)), "model_version"),
        (with("status", json!(99)), "status"),
        (with("latency_ms", json!(-1)), "latency_ms"),
        (with("request_id", json!(7)), "request_id"),
    ] {
        assert_eq!(reject(v, None).field, field);
    }
}

#[test]
fn malformed_json_is_a_json_rejection() {
    for bad in [&b"{\"user_id\": 1,"[..], b"", b"\xff\xfe", b"nan"] {
        let r = parse_json(bad, Some(EventType::Rate), NOW).unwrap_err();
        assert_eq!(r.field, "json", "{r}");
    }
}
