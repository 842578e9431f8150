//! movie-recs shared crate: everything the Lambda functions, the CLI and the
//! trainer have in common.
//!
//! - [`domain`]: pure logic with no I/O: datasets, splits, evaluation metrics.
//! - [`data`]: loaders for the supported on-disk formats and the synthetic generator.
//! - [`artifact`]: the model artifact format (manifest, checksums, history sidecar).
//! - [`ports`]: small traits, one per capability (model store, …).
//! - [`events`]: event schemas (JSON, Avro), the Parquet lake format.
//! - [`ingest`]: the ingest pipeline (validate, deduplicate, rate-limit, land).
//! - [`audit`]: fairness, feedback-loop and rating-spam metrics, the scheduled audit.
//! - [`adapters`]: implementations of the ports (local folder registry, …).
//! - [`scoring`]: ONNX Runtime sessions that score the catalogue for a user.
//! - [`config`]: settings from the environment; [`wiring`]: the adapters they select.

pub mod adapters;
pub mod artifact;
pub mod audit;
pub mod batch;
pub mod canary;
pub mod config;
pub mod data;
pub mod domain;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod ingest;
pub mod ports;
pub mod scoring;
pub mod wiring;

/// Git commit of the code this binary was built from (`unknown` outside a checkout).
pub const GIT_SHA: &str = env!("MOVIE_RECS_GIT_SHA");
