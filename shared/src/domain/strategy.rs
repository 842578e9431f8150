//! How a rollout splits traffic between the primary version and a candidate:
//! the one type of the rollout state, its change log, traces, the canary and
//! the API (JSON `"fixed"`, `"canary"`, `"ab_test"`, `"shadow"`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every user is served the primary version.
    #[default]
    Fixed,
    /// A share of users is served the candidate, ramped by the canary.
    Canary,
    /// A share of users is served the candidate, held for an experiment.
    AbTest,
    /// The primary serves everyone; the candidate ranks a share of requests too, unserved.
    Shadow,
}

/// A strategy name that is none of the four.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("strategy must be fixed, canary, ab_test or shadow, got {0:?}")]
pub struct UnknownStrategy(pub String);

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::Fixed,
        Strategy::Canary,
        Strategy::AbTest,
        Strategy::Shadow,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Strategy::Fixed => "fixed",
            Strategy::Canary => "canary",
            Strategy::AbTest => "ab_test",
            Strategy::Shadow => "shadow",
        }
    }

    /// The candidate serves a share of users (canary and A/B test).
    pub fn splits_traffic(self) -> bool {
        matches!(self, Strategy::Canary | Strategy::AbTest)
    }

    /// A candidate is involved (every strategy but fixed).
    pub fn has_candidate(self) -> bool {
        self != Strategy::Fixed
    }
}

impl std::str::FromStr for Strategy {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| UnknownStrategy(s.to_string()))
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for s in Strategy::ALL {
            assert_eq!(s.as_str().parse::<Strategy>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(
                serde_json::from_value::<Strategy>(s.as_str().into()).unwrap(),
                s
            );
        }
        let e = "blue_green".parse::<Strategy>().unwrap_err();
        assert!(e.to_string().contains("blue_green"));
        assert!(Strategy::Canary.splits_traffic() && !Strategy::Shadow.splits_traffic());
    }
}
