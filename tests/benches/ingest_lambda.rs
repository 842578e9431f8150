//! The ingest function on a 10,000-record Kafka batch, end to end: the Lambda
//! runtime emulator, base64 decode, parse and checks, idempotency keys
//! (DynamoDB), velocity windows, Parquet to S3, user history (DynamoDB), all
//! on moto. Each round sends fresh offsets (and a redelivery round, all
//! duplicates). `cargo bench -p movie-recs-e2e --bench ingest_lambda`
//! (`--profile dev` reuses the test build's binaries).

#[path = "../tests/common/mod.rs"]
mod common;

use base64::Engine;
use common::LambdaStack;
use serde_json::{json, Value};
use shared::events::{avro, Event, Rate, Watch};
use std::time::Instant;

const N: usize = 10_000;
const T: i64 = 1_795_896_000_000;

fn batch(round: usize, use_avro: bool) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut watch = Vec::new();
    let mut rate = Vec::new();
    for i in 0..N {
        let offset = (round * N + i) as i64;
        let user = (i % 2500) as u64;
        let ts = T - (i as i64) * 997;
        let (e, list, topic) = if i % 2 == 0 {
            (
                Event::Watch(Watch {
                    user_id: user,
                    movie_id: (i * 7919 % 3883) as u64,
                    minute: None,
                    ts_ms: ts,
                }),
                &mut watch,
                "movies.watch",
            )
        } else {
            (
                Event::Rate(Rate {
                    user_id: user,
                    movie_id: (i * 7919 % 3883) as u64,
                    rating: 4.0,
                    ts_ms: ts,
                }),
                &mut rate,
                "movies.rate",
            )
        };
        let value = if use_avro {
            avro::encode_confluent(&e, None, 1)
        } else {
            e.to_json(None).to_string().into_bytes()
        };
        list.push(
            json!({"topic": topic, "partition": 0, "offset": offset, "timestamp": T,
            "timestampType": "CREATE_TIME", "key": b64.encode(user.to_string()),
            "value": b64.encode(value), "headers": []}),
        );
    }
    serde_json::to_vec(&json!({
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:eu-west-1:123456789012:cluster/bench/x",
        "records": {"movies.watch-0": watch, "movies.rate-0": rate}
    }))
    .unwrap()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let stack = LambdaStack::start();
    let mut round = 0;
    for (label, use_avro) in [("JSON", false), ("Avro", true)] {
        let mut secs = Vec::new();
        for _ in 0..3 {
            let payload = batch(round, use_avro);
            round += 1;
            let s = Instant::now();
            let (code, out) = stack.invoke_raw("ingest", &payload);
            secs.push(s.elapsed().as_secs_f64());
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(
                v["accepted"].as_u64().unwrap() + v["quarantined"].as_u64().unwrap(),
                N as u64,
                "{v}"
            );
        }
        secs.sort_by(f64::total_cmp);
        println!(
            "ingest, {N}-record Kafka batch ({label}, {:.1} MB payload), emulator + moto S3/DynamoDB: median {:.2} s ({:.0} records/s), runs {:?}",
            batch(0, use_avro).len() as f64 / 1e6,
            secs[1],
            N as f64 / secs[1],
            secs.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>()
        );
    }
    // Redelivery of the last batch: every record a duplicate, nothing written.
    let payload = batch(round - 1, true);
    let s = Instant::now();
    let (code, out) = stack.invoke_raw("ingest", &payload);
    let dt = s.elapsed().as_secs_f64();
    assert_eq!(code, 200);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["duplicates"], N as u64, "{v}");
    println!("redelivered {N}-record batch (all duplicates): {dt:.2} s");
}
