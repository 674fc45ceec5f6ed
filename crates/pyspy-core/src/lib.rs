//! pyspy-core reads every thread's Python stack from a running CPython process, from outside,
//! without stopping or changing it.
//!
//! It is for profilers, observability agents and debuggers that want the Python stacks of
//! another process: attach once (which finds the interpreter, its version and its memory
//! layout), then sample as often as needed. It does not run code in the target, unwind native
//! stacks, or aggregate samples into profiles by itself.
//!
//! ```no_run
//! use pyspy_core::{attach, AttachOptions};
//!
//! let mut session = attach(1234, &AttachOptions::default())?;
//! println!("Python {}", session.version());
//! for thread in session.sample()?.threads {
//!     println!("thread {:#x} (gil: {})", thread.thread_id, thread.owns_gil);
//!     for frame in &thread.frames {
//!         println!("    {} ({}:{})", frame.function, frame.filename, frame.line);
//!     }
//! }
//! # Ok::<(), pyspy_core::Error>(())
//! ```
//!
//! The pieces, in the order data flows: [`process`] (what `/proc` says), [`binary`] (ELF files,
//! symbols), [`locate`] (which binary holds the interpreter, its version and [`layout`]),
//! [`walk`] (threads and frames over the [`memory`] trait), [`snapshot`] (the result).

pub mod addr_hash;
pub mod binary;
pub mod code;
pub mod error;
pub mod export;
pub mod layout;
pub mod linetable;
pub mod locate;
pub mod memory;
pub mod native_tid;
pub mod objects;
pub mod pause;
pub mod process;
pub mod profile;
pub mod sampler;
pub mod sampling;
pub mod session;
pub mod snapshot;
pub mod strings;
pub mod thread_names;
pub mod version;
pub mod walk;

pub use error::{Error, Result};
pub use locate::{LocateStrategy, LocatedBy};
pub use profile::{Profile, ProfileOptions};
pub use sampler::{Sample, Sampler, SamplerOptions};
pub use sampling::SampleOptions;
pub use session::{attach, AttachOptions, Session};
pub use snapshot::{Frame, Snapshot, ThreadStack};
pub use version::Version;
