//! The exposure controller's adjustments as stored objects: one immutable,
//! versioned object per update (`adj-000042.json`) and a pointer to the
//! newest (`latest.json`) that carries its sha256 and size, so a reader
//! verifies what it loads the way a model version is verified. The writer
//! (the audit) writes the object first and the pointer last: a reader sees
//! either the previous version or the whole new one.
//!
//! `crate::adapters::adjustments::AdjustmentObjects` keeps them in any
//! object store (a folder locally, `s3://bucket/exposure` in AWS).

use super::{sha256_hex, ArtifactError};
use crate::domain::exposure_control::{name_of, Adjustments};
use serde::{Deserialize, Serialize};

/// The key of the pointer to the newest adjustments.
pub const LATEST_KEY: &str = "latest.json";

/// What `latest.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentsPointer {
    pub version: u64,
    /// `adj-000042`: what provenance and traces name.
    pub name: String,
    /// The object's key, relative to the store's root.
    pub key: String,
    pub sha256: String,
    pub bytes: u64,
    /// End of the last audit window folded in (ms since the epoch).
    pub updated_ms: i64,
}

/// The object's key of `version`.
pub fn key_of(version: u64) -> String {
    format!("{}.json", name_of(version))
}

/// The object's bytes and the pointer that names them.
pub fn encode(a: &Adjustments) -> (Vec<u8>, AdjustmentsPointer) {
    let bytes = serde_json::to_vec(a).expect("adjustments serialise");
    let pointer = AdjustmentsPointer {
        version: a.version,
        name: a.name(),
        key: key_of(a.version),
        sha256: sha256_hex(&bytes),
        bytes: bytes.len() as u64,
        updated_ms: a.updated_ms,
    };
    (bytes, pointer)
}

/// Parses `latest.json`.
pub fn decode_pointer(bytes: &[u8]) -> Result<AdjustmentsPointer, ArtifactError> {
    let p: AdjustmentsPointer =
        serde_json::from_slice(bytes).map_err(|e| invalid(LATEST_KEY, e))?;
    if p.key != key_of(p.version) || p.name != name_of(p.version) {
        return Err(invalid(
            LATEST_KEY,
            format!(
                "version {} must be named {} at key {}",
                p.version,
                name_of(p.version),
                key_of(p.version)
            ),
        ));
    }
    Ok(p)
}

/// The adjustments `pointer` names, from the object's `bytes`: refused
/// unless the size and sha256 match, the fields are in range and the
/// version is the pointer's.
pub fn verify(pointer: &AdjustmentsPointer, bytes: &[u8]) -> Result<Adjustments, ArtifactError> {
    let actual = sha256_hex(bytes);
    if actual != pointer.sha256 || bytes.len() as u64 != pointer.bytes {
        return Err(ArtifactError::ChecksumMismatch {
            file: pointer.key.clone(),
            expected: format!("{} ({} bytes)", pointer.sha256, pointer.bytes),
            actual: format!("{actual} ({} bytes)", bytes.len()),
        });
    }
    let a: Adjustments = serde_json::from_slice(bytes).map_err(|e| invalid(&pointer.key, e))?;
    a.validate().map_err(|e| invalid(&pointer.key, e))?;
    if a.version != pointer.version {
        return Err(invalid(
            &pointer.key,
            format!(
                "holds version {}, the pointer names {}",
                a.version, pointer.version
            ),
        ));
    }
    Ok(a)
}

fn invalid(file: &str, reason: impl std::fmt::Display) -> ArtifactError {
    ArtifactError::Invalid {
        file: file.into(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::exposure_control::ControllerConfig;
    use std::collections::HashMap;

    fn sample() -> Adjustments {
        let w: HashMap<u64, u64> = [(1, 90), (2, 5), (3, 5)].into_iter().collect();
        Adjustments::default().update(&w, 20, &ControllerConfig::default(), 7)
    }

    #[test]
    fn an_object_round_trips_and_a_changed_byte_is_refused() {
        let a = sample();
        let (bytes, p) = encode(&a);
        assert_eq!(
            (p.version, p.name.as_str(), p.key.as_str()),
            (1, "adj-000001", "adj-000001.json")
        );
        assert_eq!(verify(&p, &bytes).unwrap(), a);
        let mut bad = bytes.clone();
        let i = bad.iter().position(|b| *b == b'9').unwrap();
        bad[i] = b'8';
        let e = verify(&p, &bad).unwrap_err().to_string();
        assert!(e.starts_with("adj-000001.json: checksum mismatch"), "{e}");
        // A pointer naming another version than the object holds.
        let mut other = a.clone();
        other.version = 2;
        let (b2, mut p2) = encode(&other);
        p2.version = 3;
        p2.name = name_of(3);
        p2.key = key_of(3);
        assert!(verify(&p2, &b2)
            .unwrap_err()
            .to_string()
            .contains("holds version 2"));
    }

    #[test]
    fn a_pointer_with_a_foreign_key_is_refused() {
        let (_, mut p) = encode(&sample());
        p.key = "../models/x.json".into();
        let bytes = serde_json::to_vec(&p).unwrap();
        let e = decode_pointer(&bytes).unwrap_err().to_string();
        assert!(e.starts_with("latest.json: version 1 must be named"), "{e}");
        assert!(decode_pointer(b"{\"version\": 1}").is_err());
    }
}
