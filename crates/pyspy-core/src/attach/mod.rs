//! Attaching: from a pid to a located interpreter, done once per target.
//!
//! [`process`] reads what `/proc` says (maps, threads) and [`cpu_clock`] whether any thread ran, [`binary`] opens the ELF files mapped
//! into the target (read by the bounded [`elf`] reader), [`locate`] finds the interpreter state in them, [`version`] tells which
//! CPython it is and [`layout`] gives that version's offsets.

pub mod binary;
pub mod cpu_clock;
pub mod elf;
pub mod layout;
pub mod locate;
pub mod process;
pub mod version;
