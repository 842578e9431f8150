//! The trace of one recommendation response: what ranked which list for
//! whom, with which model and data. One struct for the writer (recommend),
//! `GET /trace`, the audit and the experiment analysis; stored as JSON.
//! Reading is lenient about the names older writers used (`model` for
//! `model_version`, no `arm`), so traces written before stay readable.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The candidate's list under a shadow rollout: computed, recorded, never served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShadowList {
    pub model_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One response's trace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub request_id: String,
    /// When the list was ranked (epoch ms).
    pub timestamp: i64,
    /// The version that ranked the list.
    #[serde(alias = "model")]
    pub model_version: String,
    #[serde(default)]
    pub model_name: Option<String>,
    #[serde(default)]
    pub model_sha256: Option<String>,
    #[serde(default)]
    pub git_sha: Option<String>,
    #[serde(default)]
    pub data_snapshot_id: Option<String>,
    #[serde(default)]
    pub function_version: Option<String>,
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// `popularity` for users the model does not know.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Where the user's vector came from: `embedding` (a training user's
    /// row) or `history` (folded in from their movies at request time);
    /// absent with the popularity fallback and in older traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_vector: Option<String>,
    /// The exposure controller's adjustments the list was ranked with
    /// (`adj-000042`; policy `exposure` once there are any); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjustments: Option<String>,
    /// The catalogue filter of the request (`genre`, `exclude_genre`,
    /// `year_from`, `year_to`, `exclude`); absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<crate::domain::filter::Filter>,
    /// The rollout strategy (`fixed`, `canary`, `ab_test`, `shadow`).
    #[serde(default)]
    pub strategy: super::strategy::Strategy,
    /// The side of the rollout that served the list.
    #[serde(default)]
    pub arm: super::arm::Arm,
    #[serde(default)]
    pub experiment_id: Option<String>,
    /// The response's `variant` (the arm under canary and A/B, else null).
    #[serde(default)]
    pub variant: Option<super::arm::Arm>,
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub policy_params: Value,
    pub user_id: u64,
    #[serde(default)]
    pub k: usize,
    /// The movie ids served, best first (empty for failed requests).
    #[serde(default)]
    pub items: Vec<u64>,
    /// The HTTP status answered (failed requests are traced too).
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub path: String,
    /// When the trace was written (epoch ms).
    #[serde(default)]
    pub stored_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowList>,
    /// The client's `X-Request-ID` when it named another response's trace
    /// and this response got a fresh id instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_request_id: Option<String>,
}

fn ok() -> u16 {
    200
}

impl Trace {
    /// A stored trace, if it has the fields every trace has.
    pub fn read(v: &Value) -> Option<Trace> {
        let mut t: Trace = serde_json::from_value(v.clone()).ok()?;
        // Writers before the arm field named the arm by the variant.
        if v.get("arm").is_none() {
            if let Some(variant) = t.variant {
                t.arm = variant;
            }
        }
        Some(t)
    }

    /// The JSON stored and answered by `GET /trace`.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a trace serialises")
    }

    /// Whether the request was answered with a list.
    pub fn ok(&self) -> bool {
        self.status == 200
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_trace_round_trips_and_older_field_names_still_read() {
        let old = json!({"request_id": "r", "timestamp": 5, "model": "v1", "user_id": 3,
                         "items": [1, 2], "variant": "candidate"});
        let t = Trace::read(&old).unwrap();
        assert_eq!(
            (t.model_version.as_str(), t.arm.as_str()),
            ("v1", "candidate")
        );
        assert_eq!((t.status, t.strategy.as_str()), (200, "fixed"));
        assert_eq!(Trace::read(&t.to_value()), Some(t.clone()));
        assert!(Trace::read(&json!({"request_id": "r", "timestamp": 5})).is_none());
        let v = t.to_value();
        assert!(v.get("shadow").is_none() && v.get("error").is_none());
    }
}
