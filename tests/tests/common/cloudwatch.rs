//! A CloudWatch endpoint for the emulator tests: moto does not speak the
//! SDK's CloudWatch protocol (Smithy RPC v2 CBOR), so this accepts
//! `PutMetricData` as CloudWatch does, answers it, and keeps every metric
//! datum it received, decoded, for the test to read. The functions publish
//! through their real CloudWatch adapter (`AWS_ENDPOINT_URL_CLOUDWATCH`).
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The endpoint and what it received.
pub struct CloudWatch {
    pub port: u16,
    data: Arc<Mutex<Vec<Value>>>,
}

impl CloudWatch {
    pub fn start() -> CloudWatch {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let data = Arc::new(Mutex::new(Vec::new()));
        let d = data.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let d = d.clone();
                std::thread::spawn(move || serve(conn, d));
            }
        });
        CloudWatch { port, data }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every datum received so far: `{"namespace","name","value","unit","dimensions":{..}}`.
    pub fn data(&self) -> Vec<Value> {
        self.data.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, data: Arc<Mutex<Vec<Value>>>) {
    let mut out = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let ok = target.ends_with("/operation/PutMetricData");
        if ok {
            if let Ok(v) = ciborium::de::from_reader::<ciborium::Value, _>(&body[..]) {
                data.lock().unwrap().extend(decode(&v));
            }
        }
        // An empty CBOR map: PutMetricData's (empty) output.
        let (status, payload): (&str, &[u8]) = if ok {
            ("200 OK", &[0xa0])
        } else {
            ("400 Bad Request", &[0xa0])
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nsmithy-protocol: rpc-v2-cbor\r\ncontent-type: application/cbor\r\ncontent-length: {}\r\n\r\n",
            payload.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(payload).is_err() {
            return;
        }
    }
}

fn text(v: &ciborium::Value) -> Option<String> {
    v.as_text().map(str::to_string)
}

fn field<'a>(m: &'a ciborium::Value, k: &str) -> Option<&'a ciborium::Value> {
    m.as_map()?
        .iter()
        .find(|(key, _)| key.as_text() == Some(k))
        .map(|(_, v)| v)
}

fn number(v: &ciborium::Value) -> Option<f64> {
    match v {
        ciborium::Value::Float(f) => Some(*f),
        ciborium::Value::Integer(i) => Some(i128::from(*i) as f64),
        _ => None,
    }
}

fn decode(req: &ciborium::Value) -> Vec<Value> {
    let ns = field(req, "Namespace").and_then(text).unwrap_or_default();
    let Some(items) = field(req, "MetricData").and_then(|d| d.as_array()) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|d| {
            let dims: serde_json::Map<String, Value> = field(d, "Dimensions")
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|dim| {
                            Some((
                                text(field(dim, "Name")?)?,
                                json!(text(field(dim, "Value")?)?),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "namespace": ns,
                "name": field(d, "MetricName").and_then(text),
                "value": field(d, "Value").and_then(number),
                "unit": field(d, "Unit").and_then(text),
                "dimensions": dims,
            })
        })
        .collect()
}
