//! Local adapters: everything runs from one data folder with no AWS account.

mod registry;

pub use registry::FolderRegistry;
