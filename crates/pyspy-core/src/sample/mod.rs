//! Sampling: one snapshot of a session ([`session`], [`reader`], [`pause`], [`options`]), and
//! snapshots at a steady rate ([`sampler`]).

pub mod options;
pub mod pause;
pub mod reader;
pub mod sampler;
pub mod session;
