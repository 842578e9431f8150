//! Implementations of the [`crate::ports`] traits.

pub mod local;
