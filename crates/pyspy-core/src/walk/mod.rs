//! Walking a located interpreter: interpreters → thread states → frames.
//!
//! Written once against [`Memory`]; the two frame models (`PyFrameObject` chains up to 3.10,
//! `_PyInterpreterFrame` chains from 3.11) differ only in how the next frame, its code object
//! and its instruction offset are found, which the [`Layout`] tells. Every loop is capped and
//! every chain is checked for cycles: a walk over changing or corrupt memory ends in an error,
//! never a hang.
//!
//! [`threads`] reads the interpreters' thread lists and the GIL, [`frames`] one thread's frame
//! chain, [`code`] the code objects the frames run, [`names`] the `threading` names.
//!
//! What a debugger shows beyond the stack, when asked ([`Extras`]): [`locals`] (each frame's
//! variables, shown by [`values`]), [`exceptions`] (each thread's exception state) and
//! positions ([`linetable::position_for_offset`], [`opcodes`]).
//!
//! asyncio's tasks, their coroutine stacks and who awaits whom: [`tasks`].

pub mod code;
pub mod exceptions;
pub mod frames;
mod interpreter;
pub mod linetable;
pub mod locals;
pub mod names;
pub mod native_tid;
pub mod objects;
pub mod opcodes;
pub mod strings;
#[cfg(any(test, feature = "internals"))]
pub mod synthetic;
pub mod tasks;
pub mod threads;
pub mod values;

pub use interpreter::Interpreter;
pub use threads::Gil;

use crate::attach::layout::opcodes::Opcodes;
use crate::walk::exceptions::RawExceptions;
use crate::walk::locals::LocalsCache;
use crate::walk::values::{ReprLimits, Values};

use crate::memory::addr_hash::AddrSet;
use crate::walk::code::CodeCache;
use crate::error::{Error, Result};
use crate::attach::layout::{FrameModel, Layout};
use crate::memory::{Budget, Memory, PrefetchPlan, Prefetched};
use crate::snapshot::ThreadStack;

/// Most bytes of target memory one walk reads. The caps above multiply (threads × frames ×
/// code objects × strings); this bounds their product, so a walk over memory that repeats
/// itself cannot take seconds or gigabytes. A real sample reads well under 1 MiB (with cold
/// caches: a few MiB for thousands of code objects).
pub const MAX_SAMPLE_BYTES: usize = 64 << 20;

/// State kept between samples: caches and scratch space.
#[derive(Debug)]
pub struct Walker {
    layout: Layout,
    codes: CodeCache,
    visited: AddrSet,
    tstate_len: usize,
    frame_len: usize,
    /// The small reads of the last walk, read again in one batch before the next (see
    /// [`Prefetched`]).
    prefetch: PrefetchPlan,
    /// What a walk reads beyond the stacks.
    extras: Extras,
    values: Values,
    locals: LocalsCache,
    opcodes: Option<&'static Opcodes>,
    /// Whether walks note each thread's eval-loop groups (for native stacks).
    collect_groups: bool,
    /// Per thread of the last walk: the sizes of its eval-loop groups, innermost first.
    groups: Vec<Vec<u32>>,
}

/// What a walk reads beyond the stacks (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    /// Each frame's locals, shown within these limits.
    pub locals: Option<ReprLimits>,
    /// Each thread's exception state.
    pub exceptions: bool,
    /// Each frame's columns, end line and opcode (3.11+).
    pub positions: bool,
    /// The limits of exception messages.
    pub limits: ReprLimits,
}

fn span(fields: &[Option<u32>]) -> usize {
    fields.iter().flatten().max().map_or(0, |m| *m as usize + 8)
}

impl Walker {
    pub fn new(layout: &Layout) -> Walker {
        let l = layout;
        let mut tstate_fields = vec![
            Some(l.tstate_next),
            Some(l.tstate_interp),
            Some(l.tstate_frame),
            Some(l.tstate_thread_id),
            l.tstate_native_thread_id,
        ];
        tstate_fields.extend(RawExceptions::fields(l));
        let tstate_len = span(&tstate_fields);
        let frame_len = match l.frames {
            FrameModel::FrameObject => span(&[l.frame_back, l.frame_code, l.frame_lasti]),
            FrameModel::InterpreterFrame => span(&[
                l.iframe_previous,
                l.iframe_executable,
                l.iframe_instr_ptr,
                l.iframe_owner,
                l.iframe_tlbc_index,
                l.iframe_is_entry,
            ]),
        };
        Walker {
            layout: *layout,
            codes: CodeCache::new(layout),
            visited: AddrSet::default(),
            tstate_len,
            frame_len,
            prefetch: PrefetchPlan::default(),
            extras: Extras::default(),
            values: Values::new(layout),
            locals: LocalsCache::default(),
            opcodes: Opcodes::for_version(l.version.0, l.version.1),
            collect_groups: false,
            groups: Vec::new(),
        }
    }

    /// Makes walks note each thread's eval-loop groups ([`Walker::groups`]).
    pub fn collect_groups(&mut self, on: bool) {
        self.collect_groups = on;
    }

    /// For each thread of the last walk (in its order), the sizes of the groups of frames
    /// one eval-loop call runs, innermost first (see `native::merge`); empty unless
    /// [`Walker::collect_groups`] is on.
    pub fn groups(&self) -> &[Vec<u32>] {
        &self.groups
    }


    /// Chooses what the following walks read beyond the stacks.
    pub fn set_extras(&mut self, extras: Extras) {
        self.extras = extras;
    }

    /// Reads every thread's stack, with each thread's `PyInterpreterState*` address.
    /// `active`, `cpu_time` and names are left unset: they are facts the caller adds.
    /// Fails with [`Error::Corrupt`] once the walk has read [`MAX_SAMPLE_BYTES`].
    pub fn walk<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        interp: &Interpreter,
    ) -> Result<Vec<(u64, ThreadStack)>> {
        self.values.clear();
        let budget = Budget::new(mem, MAX_SAMPLE_BYTES);
        // The plan is taken out for the walk, which borrows the walker mutably.
        let plan = std::mem::take(&mut self.prefetch);
        let prefetched = Prefetched::new(&budget, &plan);
        let result = self.walk_within(&prefetched, interp);
        let log = prefetched.into_log();
        self.prefetch = plan;
        self.prefetch.update(log);
        if budget.exhausted() {
            return Err(Error::Corrupt(
                "one sample read more than 64 MiB of target memory",
            ));
        }
        result
    }

    fn walk_within<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        interp: &Interpreter,
    ) -> Result<Vec<(u64, ThreadStack)>> {
        let threads = self.threads(mem, interp)?;
        let mut raws = Vec::with_capacity(threads.len());
        for t in &threads {
            raws.push(self.raw_frames(mem, t.frame)?);
        }
        let frames = self.resolve(mem, &raws)?;
        let mut gils: Vec<(u64, Gil)> = Vec::new();
        let mut out = Vec::with_capacity(threads.len());
        for (t, frames) in threads.into_iter().zip(frames) {
            let gil = match gils.iter().find(|(i, _)| *i == t.interp) {
                Some((_, g)) => *g,
                None => {
                    let g = self.gil(mem, interp, t.interp);
                    gils.push((t.interp, g));
                    g
                }
            };
            // An exception state that cannot be read (a torn read) is left out rather than
            // failing the whole walk.
            let (exception, propagating) = if self.extras.exceptions {
                let limits = self.extras.limits;
                exceptions::read(mem, &self.layout, &mut self.values, &limits, &t.exceptions)
                    .unwrap_or_default()
            } else {
                (None, None)
            };
            out.push((
                t.interp,
                ThreadStack {
                    thread_id: t.thread_id,
                    native_thread_id: t.native_thread_id,
                    owns_gil: gil == Gil::HeldBy(t.addr),
                    no_gil: matches!(gil, Gil::Disabled | Gil::Unknown),
                    interp_id: t.interp_id,
                    exception,
                    propagating,
                    frames,
                    ..ThreadStack::default()
                },
            ));
        }
        Ok(out)
    }
}

