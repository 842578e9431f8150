//! Local adapters: everything runs from one data folder with no AWS account.

mod registry;
mod sqlite;

pub use registry::FolderRegistry;
pub use sqlite::SqliteStore;
