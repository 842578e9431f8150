//! EventBridge schedules: the time a scheduled invocation stands for, and
//! the window an audit reads (the schedule's, or one an operator names).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde_json::Value;

/// Why an invocation is not a schedule's (or names no usable window).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{function} runs on EventBridge schedules (detail-type \"Scheduled Event\"); got detail-type {detail_type:?} from {origin:?}")]
    NotScheduled {
        function: &'static str,
        detail_type: String,
        origin: String,
    },
    #[error("scheduled event without a time")]
    NoTime,
    #[error("detail.from_ms must be before detail.to_ms, at most a day apart")]
    BadWindow,
    #[error("detail.{0} must be an integer (epoch ms)")]
    NotInteger(&'static str),
    #[error("detail.{given} must be given with detail.{missing}")]
    Unpaired {
        missing: &'static str,
        given: &'static str,
    },
}

/// The time (epoch ms) of an EventBridge schedule's invocation of `function`;
/// anything but a `Scheduled Event` with a time is refused with the reason.
pub fn scheduled_time_ms(
    function: &'static str,
    e: &EventBridgeEvent<Value>,
) -> Result<i64, ScheduleError> {
    if e.detail_type != "Scheduled Event" {
        return Err(ScheduleError::NotScheduled {
            function,
            detail_type: e.detail_type.clone(),
            origin: e.source.clone(),
        });
    }
    e.time
        .map(|t| t.timestamp_millis())
        .ok_or(ScheduleError::NoTime)
}

/// The window a scheduled audit reads: the `window_minutes` before the
/// schedule's time, or, when an operator invokes it with `detail:
/// {"from_ms", "to_ms"}` (to audit or re-audit a chosen window), that one
/// (at most a day long).
pub fn audit_window(
    e: &EventBridgeEvent<Value>,
    window_minutes: i64,
) -> Result<(i64, i64), ScheduleError> {
    let to_ms = scheduled_time_ms("audit", e)?;
    let field = |k: &'static str| e.detail.get(k).map(move |v| v.as_i64().ok_or(k));
    match (field("from_ms"), field("to_ms")) {
        (None, None) => Ok((to_ms - window_minutes * 60_000, to_ms)),
        (Some(Ok(from)), Some(Ok(to))) if from < to && to - from <= 86_400_000 => Ok((from, to)),
        (Some(Ok(_)), Some(Ok(_))) => Err(ScheduleError::BadWindow),
        (Some(Err(k)), _) | (_, Some(Err(k))) => Err(ScheduleError::NotInteger(k)),
        (None, Some(_)) => Err(ScheduleError::Unpaired {
            missing: "to_ms",
            given: "from_ms",
        }),
        (Some(_), None) => Err(ScheduleError::Unpaired {
            missing: "from_ms",
            given: "to_ms",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> EventBridgeEvent<Value> {
        serde_json::from_str(include_str!("../../../../events/audit-schedule.json")).unwrap()
    }

    #[test]
    fn an_audit_reads_the_hour_before_the_schedule_or_the_window_an_operator_names() {
        let mut e = schedule();
        let t = e.time.unwrap().timestamp_millis();
        assert_eq!(audit_window(&e, 60), Ok((t - 3_600_000, t)));
        e.detail = serde_json::json!({"from_ms": 5, "to_ms": 9});
        assert_eq!(audit_window(&e, 60), Ok((5, 9)));
        e.detail = serde_json::json!({"from_ms": 9, "to_ms": 5});
        assert_eq!(audit_window(&e, 60), Err(ScheduleError::BadWindow));
        let err = audit_window(&e, 60).unwrap_err().to_string();
        assert!(err.contains("before"), "{err}");
        e.detail = serde_json::json!({"from_ms": 5});
        let err = audit_window(&e, 60).unwrap_err().to_string();
        assert!(err.starts_with("detail.to_ms must be given"), "{err}");
        e.detail = serde_json::json!({"to_ms": 5});
        let err = audit_window(&e, 60).unwrap_err().to_string();
        assert!(err.starts_with("detail.from_ms must be given"), "{err}");
        e.detail = serde_json::json!({"from_ms": "x", "to_ms": 9});
        let err = audit_window(&e, 60).unwrap_err().to_string();
        assert!(
            err.starts_with("detail.from_ms must be an integer"),
            "{err}"
        );
    }

    #[test]
    fn scheduled_time_of_the_schedule_payload_and_refusals() {
        let mut e = schedule();
        let want = e.time.unwrap().timestamp_millis();
        assert_eq!(scheduled_time_ms("audit", &e), Ok(want));
        e.time = None;
        assert_eq!(
            scheduled_time_ms("audit", &e).unwrap_err().to_string(),
            "scheduled event without a time"
        );
        e.detail_type = "Object Created".into();
        let err = scheduled_time_ms("canary", &e).unwrap_err().to_string();
        assert!(
            err.starts_with("canary runs on EventBridge schedules"),
            "{err}"
        );
        assert!(err.contains("Object Created"), "{err}");
    }
}
