//! A request or job parameter that cannot be used. One error type for the
//! parsers of user ids, list sizes, time windows and re-ranking policies;
//! its message starts with the parameter's name, and the HTTP API answers
//! it as a 400 `invalid_parameter` (`ApiError: From<InvalidParam>`).

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name} {problem}")]
pub struct InvalidParam {
    /// The parameter (`user_id`, `k`, `hours`, `policy`, `lambda`, ...).
    pub name: String,
    /// What is wrong with it, with the value given.
    pub problem: String,
}

impl InvalidParam {
    pub fn new(name: impl Into<String>, problem: impl Into<String>) -> Self {
        InvalidParam {
            name: name.into(),
            problem: problem.into(),
        }
    }
}
