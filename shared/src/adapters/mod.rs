//! Implementations of the [`crate::ports`] traits.

pub mod adjustments;
pub mod aws;
pub mod local;
