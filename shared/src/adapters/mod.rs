//! Implementations of the [`crate::ports`] traits.

pub mod aws;
pub mod local;
