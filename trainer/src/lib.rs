//! NeuMF (He et al., 2017) training on implicit feedback, validation-based model
//! selection, ONNX export for serving, and the train/eval pipelines behind
//! `movie-recs train` and `movie-recs eval`. Kept out of the Lambda binaries.

pub mod defaults;
pub mod export;
pub mod fold_in;
pub mod model;
mod onnx_proto;
pub mod pipeline;
pub mod similar;
pub mod simulate;
pub mod tower;
pub mod tradeoff;
pub mod train;

pub use model::{NeuMf, NeuMfWeights};
pub use train::{train, TrainError, Trained};
