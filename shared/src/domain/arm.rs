//! Which side of a rollout served a list: the primary version or the
//! candidate (JSON `"primary"`, `"candidate"`). One type for the router's
//! assignment, traces, the experiment analysis and the canary.

use serde::{Deserialize, Serialize};

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    #[default]
    Primary,
    Candidate,
}

impl Arm {
    pub const ALL: [Arm; 2] = [Arm::Primary, Arm::Candidate];

    pub const fn as_str(self) -> &'static str {
        match self {
            Arm::Primary => "primary",
            Arm::Candidate => "candidate",
        }
    }
}

impl std::fmt::Display for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An arm name that is neither.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("arm must be primary or candidate, got {0:?}")]
pub struct UnknownArm(pub String);

impl std::str::FromStr for Arm {
    type Err = UnknownArm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Arm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownArm(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arms_read_and_write_their_json_names_and_refuse_others() {
        for a in Arm::ALL {
            let json = serde_json::to_value(a).unwrap();
            assert_eq!(json, a.as_str());
            assert_eq!(serde_json::from_value::<Arm>(json).unwrap(), a);
            assert_eq!(a.as_str().parse::<Arm>().unwrap(), a);
        }
        assert!(serde_json::from_str::<Arm>("\"shadow\"").is_err());
        assert_eq!(
            "Primary".parse::<Arm>().unwrap_err().to_string(),
            "arm must be primary or candidate, got \"Primary\""
        );
    }
}
