//! pyspy-core reads every thread's Python stack from a running CPython process, from outside,
//! without stopping or changing it, and turns stacks sampled over time into profiles.
//!
//! It is for profilers, observability agents and debuggers that want the Python stacks of
//! another process. Attach once ([`attach`]: finds the interpreter, its version and its memory
//! layout), then take [`Snapshot`]s as often as needed, or let a [`Sampler`] take them at a
//! steady rate and aggregate them into a [`Profile`] that the [`export`] functions write as
//! pprof, collapsed stacks, speedscope, a Chrome trace or pstats, or encode as the request
//! bodies of continuous-profiling backends (Pyroscope, DataKit, OTLP; the crate has no network
//! code). It never runs code in the target and
//! never changes its memory; it stops the target's threads only when asked
//! ([`SampleOptions::pause`]). With [`SampleOptions::native`] it also unwinds each thread's
//! native (C, C++, Rust) stack and merges it with the Python one. A core file of a process
//! that is gone gives the same snapshots ([`open_core`]), with the signal that ended it.
//!
//! ```no_run
//! use pyspy_core::{attach, AttachOptions};
//!
//! let mut session = attach(1234, &AttachOptions::default())?;
//! println!("Python {}", session.version());
//! for thread in session.snapshot()?.threads {
//!     println!("thread {:#x} (gil: {})", thread.thread_id, thread.owns_gil);
//!     for frame in &thread.frames {
//!         println!("    {} ({}:{})", frame.function, frame.filename, frame.line);
//!     }
//! }
//! # Ok::<(), pyspy_core::Error>(())
//! ```
//!
//! # Words
//!
//! - A **snapshot** ([`Snapshot`]) is every Python thread's stack of one process at one
//!   moment; [`Session::snapshot`] takes one.
//! - A **sample** ([`Sample`]) is one tick of a [`Sampler`]: the snapshots of every process it
//!   samples (one, or a program and its children), with the time and how late it was taken.
//! - A **profile** ([`Profile`]) counts the distinct stacks of many samples.
//!
//! What a snapshot reads is chosen by [`SampleOptions`] (it shows every thread by default, as a
//! debugger would); what a profile counts by [`ProfileOptions`] (threads running on a CPU by
//! default, as a CPU profiler would).
//!
//! # Inside
//!
//! The modules follow the data: `attach` (the `/proc` facts, ELF files, locating the
//! interpreter, its version and layout) → `walk` (thread states, frames, code objects, line
//! tables, strings, names) → `sample` (options, pausing, one snapshot, the [`Session`], the
//! steady [`Sampler`]) → `profile` (aggregation and [`export`]), all reading through one small
//! memory trait (`memory`: a live process, a core file, byte images, recorded reads). They are
//! private; the non-default `internals` feature makes `attach`, `memory` and `walk` public for
//! pyspy's own fuzzers, tests and developer tools, with no stability promise.
//!
//! # Errors
//!
//! Every fallible call returns [`Error`], whose variants say what went wrong and whether
//! retrying can help ([`Error::is_transient`]). A snapshot in which one thread's stack cannot
//! be read (corrupt, or changing faster than it can be read from one moment) still succeeds:
//! that thread carries a [`ThreadError`] in [`ThreadStack::error`] with the frames read before
//! the failure, and the other threads are complete.

#![deny(missing_docs)]

/// Declares a module that is public with the `internals` feature and private without it.
macro_rules! internal_mod {
    ($(#[$attr:meta])* $name:ident) => {
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        $(#[$attr])*
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        $(#[$attr])*
        mod $name;
    };
}

internal_mod!(attach);
internal_mod!(host);
internal_mod!(memory);
internal_mod!(native);
internal_mod!(walk);
mod error;
mod profile;
internal_mod!(sample);
mod snapshot;

pub use attach::layout::supported_versions;
pub use attach::layout::LayoutSource;
pub use attach::locate::{LocateStrategy, LocatedBy};
pub use attach::version::Version;
pub use error::{Error, ReadError, ReadErrorKind, Result, ThreadError};
pub use host::{
    Container, ContainerRuntime, DetachReason, Discovered, Discovery, DiscoveryOptions,
    DiscoveryStats, HostEvent, HostOptions, HostSampler, HostSamplerThread, HostStats,
    ProcessFilter, ProcessLabels, RateChange, Scan, ServiceSource, SkipReason, Skipped,
    SERVICE_VARIABLES,
};
pub use profile::export;
pub use profile::{FrameId, FrameKey, Profile, ProfileOptions, Stack, ThreadKey};
pub use sample::core_file::{open_core, CoreDetails, CoreOptions, Signal};
pub use sample::options::SampleOptions;
pub use sample::sampler::{
    precise_timers, EndReason, ProcessDetails, ProcessSnapshot, Sample, Sampler, SamplerOptions,
    SamplerStats, SamplerThread, StopHandle,
};
pub use sample::session::{attach, AttachOptions, Session};
pub use snapshot::{
    ExceptionInfo, Frame, Local, LocalKind, Snapshot, TaskInfo, TaskState, ThreadStack,
};
pub use walk::names::NameStats;
pub use walk::values::ReprLimits;

#[cfg(feature = "internals")]
#[doc(hidden)]
pub use sample::reader::Hooks;
