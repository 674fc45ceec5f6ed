//! Sampling: one snapshot of a session ([`session`], [`reader`], [`pause`], [`options`]; a
//! session over a core file: [`core_file`]), and snapshots at a steady rate ([`sampler`]) of a
//! process and the tree it heads ([`tree`]).

pub mod asyncio_section;
pub mod core_file;
pub mod options;
pub mod pause;
pub mod reader;
pub mod sampler;
pub mod session;
pub mod tree;
