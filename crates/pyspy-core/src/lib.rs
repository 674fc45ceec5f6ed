//! pyspy-core: read every thread's Python stack from a running CPython process.
pub mod error;
pub mod layout;
pub mod linetable;
pub mod memory;
pub mod strings;
pub mod version;

pub use error::{Error, Result};
pub use version::Version;
