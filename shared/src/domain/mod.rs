//! Pure domain logic: no I/O, no AWS types.

pub mod arm;
pub mod dataset;
pub mod eval;
pub mod experiment;
pub mod exposure_control;
pub mod filter;
pub mod param;
pub mod ranking;
pub mod rerank;
pub mod split;
pub mod strategy;
pub mod trace;
pub mod trending;

pub use dataset::{DataFormat, Dataset, Interaction, ItemMeta, LooCase, TestSet};
