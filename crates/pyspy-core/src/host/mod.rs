//! The whole machine: every Python process, in every container, as they come and go.
//!
//! - [`discover`]: [`Discovery`] scans `/proc` for Python processes (cheap tests first, a
//!   full attach only for candidates), remembers what it saw by pid, `/proc` inode and
//!   executable, and reports new, exited and skipped processes.
//! - [`labels`]: [`ProcessLabels`], who a process is (pids in and out of its namespace,
//!   program, command line, service name, container, pod, Python version), from `/proc`.
//! - [`cgroup`]: containers and pods in `/proc/PID/cgroup` (v1 and v2; docker, containerd,
//!   cri-o, podman, kubepods).
//! - [`sampler`]: [`HostSampler`], one session per process sampled at a steady rate, within
//!   a CPU budget ([`budget`]).
//! - [`procfs`]: the `/proc/PID` files these read, with size caps.

pub mod budget;
pub mod cgroup;
pub mod discover;
pub mod labels;
pub mod procfs;
pub mod sampler;

pub use budget::RateChange;
pub use cgroup::{Container, ContainerRuntime};
pub use discover::{
    Discovered, Discovery, DiscoveryOptions, DiscoveryStats, ProcessFilter, Scan, SkipReason,
    Skipped,
};
pub use labels::{ProcessLabels, ServiceSource, SERVICE_VARIABLES};
pub use sampler::{DetachReason, HostEvent, HostOptions, HostSampler, HostSamplerThread, HostStats};
