//! Local adapters: everything runs from one data folder with no AWS account.

mod files;
mod registry;
mod sqlite;
mod trending;

pub use files::{FileMetrics, FolderLake};
pub use registry::FolderRegistry;
pub use sqlite::SqliteStore;
