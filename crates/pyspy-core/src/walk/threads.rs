//! Thread states: every interpreter's thread list, and which thread holds the GIL.

use super::exceptions::RawExceptions;
use super::{Interpreter, Walker};
use crate::error::{Error, Result, ThreadError, OrCorrupt};
use crate::memory::{field_u64, offset, Memory, MemoryExt};

/// Most interpreters (sub-interpreters) walked in one process.
const MAX_INTERPRETERS: usize = 256;
/// Most threads walked in one interpreter.
const MAX_THREADS: usize = 8192;
/// The state of one interpreter's GIL in a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gil {
    /// Held by the thread state at this address.
    HeldBy(u64),
    /// Not held (`locked` is 0).
    Free,
    /// A free-threaded build running without the GIL.
    Disabled,
    /// Not known: no way to find it (≤3.6 without `_PyThreadState_Current`, a layout without
    /// its fields) or it could not be read.
    Unknown,
}

impl Gil {
    fn from_holder(tstate: u64) -> Gil {
        match tstate {
            0 => Gil::Free,
            t => Gil::HeldBy(t),
        }
    }
}

/// A thread state as read from the target, before its stack is walked.
#[derive(Debug, Clone, Copy)]
pub struct RawThread {
    pub addr: u64,
    pub interp: u64,
    /// `PyInterpreterState.id` of `interp` (3.7+).
    pub interp_id: Option<i64>,
    pub thread_id: u64,
    pub native_thread_id: Option<u64>,
    /// The innermost frame (`PyFrameObject*` or `_PyInterpreterFrame*`), 0 if none.
    pub frame: u64,
    /// The exception fields of the thread state, when the walker's [`Extras`](super::Extras)
    /// ask for exceptions (else all 0).
    pub exceptions: RawExceptions,
    /// Why the innermost frame could not be found (3.11/3.12 read it through `cframe`).
    pub frame_error: Option<ThreadError>,
    /// 3.11/3.12: the `_PyCFrame` the innermost frame was read from (0 otherwise).
    pub cframe: u64,
    /// 3.11/3.12: `frame` is not read yet (see [`Walker::current_frame`]).
    pub frame_pending: bool,
    /// 3.11+: the newest data-stack chunk and `datastack_top` (0 if unknown).
    pub datastack_chunk: u64,
    pub datastack_top: u64,
    /// Reads of this thread state (and its `cframe`) that were not served from the walk's
    /// batch (see [`Memory::unbatched_reads`]).
    pub unbatched: u64,
    /// Its interpreter's GIL as the walk read it, before a caller chooses what to do with the
    /// thread (see [`Walker::walk_choosing`](super::Walker::walk_choosing)); `Unknown` until
    /// then.
    pub gil: Gil,
}

impl RawThread {
    /// Whether it held its interpreter's GIL when the walk read it.
    pub fn holds_gil(&self) -> bool {
        self.gil == Gil::HeldBy(self.addr)
    }
}

impl Walker {
    /// Every thread state of every interpreter, in the interpreter's list order.
    pub fn threads<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        interp: &Interpreter,
    ) -> Result<Vec<RawThread>> {
        self.thread_states(mem, interp, true)
    }

    /// [`Walker::threads`]; without `current_frames`, 3.11/3.12 threads' innermost frames are
    /// left to [`Walker::current_frame`] (each is one more read, in the `_PyCFrame` on the
    /// thread's C stack, which a thread whose stack is not walked does not need).
    pub(super) fn thread_states<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        interp: &Interpreter,
        current_frames: bool,
    ) -> Result<Vec<RawThread>> {
        let mut out = super::scratch::take(&mut self.scratch.threads);
        out.reserve(self.last_threads.len());
        let l = &self.layout;
        let mut interp_addr = mem.read_u64(interp.interp_head)?;
        if interp_addr == 0 {
            return Err(Error::NotInitialised { pid: 0 });
        }
        self.visited.clear();
        self.generations.clear();
        self.thread_links.clear();
        for _ in 0..MAX_INTERPRETERS {
            if interp_addr == 0 {
                return Ok(out);
            }
            if !self.visited.insert(interp_addr) {
                return Err(Error::Corrupt("interpreter list is cyclic"));
            }
            let interp_id = match l.interp_id {
                Some(off) => Some(mem.read_i64(offset(interp_addr, off.into())?)?),
                None => None,
            };
            if let Some(off) = l.interp_code_object_generation {
                let generation = mem.read_u64(offset(interp_addr, off.into())?)?;
                self.generations.push((interp_addr, generation));
            }
            let mut tstate = mem.read_ptr_at(interp_addr, l.interp_threads_head)?;
            let mut link = offset(interp_addr, l.interp_threads_head.into())?;
            for n in 0.. {
                self.thread_links.push((link, tstate));
                if tstate == 0 {
                    break;
                }
                if n == MAX_THREADS || !self.visited.insert(tstate) {
                    return Err(Error::Corrupt("thread list is cyclic or too long"));
                }
                let (mut raw, next) = self.read_thread(mem, tstate, current_frames)?;
                raw.interp_id = interp_id;
                if raw.interp != interp_addr {
                    return Err(Error::Corrupt(
                        "thread state does not point back to its interpreter",
                    ));
                }
                out.push(raw);
                link = offset(tstate, l.tstate_next.into())?;
                tstate = next;
            }
            interp_addr = mem.read_ptr_at(interp_addr, l.interp_next)?;
        }
        Err(Error::Corrupt("interpreter list too long"))
    }

    /// Whether every link the last [`Walker::threads`] followed still holds what it read, read
    /// again through `mem` in one batch (a link that cannot be read does not hold).
    pub(super) fn thread_links_hold<M: Memory + ?Sized>(&self, mem: &M) -> bool {
        let ranges: Vec<(u64, usize)> = self.thread_links.iter().map(|&(at, _)| (at, 8)).collect();
        let mut bytes = vec![0u8; 8 * ranges.len()];
        let mut ok = vec![false; ranges.len()];
        mem.read_many(&ranges, &mut bytes, &mut ok);
        self.thread_links
            .iter()
            .zip(bytes.chunks_exact(8))
            .zip(ok)
            .all(|((&(_, was), now), ok)| ok && field_u64(now, 0) == Some(was))
    }

    /// One thread state, and the next one's address (`next`), from one read; with
    /// `current_frame`, and its innermost frame (see [`Walker::current_frame`]).
    fn read_thread<M: Memory + ?Sized>(
        &self,
        mem: &M,
        addr: u64,
        current_frame: bool,
    ) -> Result<(RawThread, u64)> {
        let l = &self.layout;
        let before = mem.unbatched_reads();
        // The batch's bytes where it has them (not copied), else a read.
        let mut storage;
        let buf: &[u8] = match mem.view(addr, self.tstate_len) {
            Some(bytes) => bytes,
            None => {
                storage = [0u8; 1024];
                let buf = (storage.get_mut(..self.tstate_len))
                    .or_corrupt("thread state layout larger than expected")?;
                mem.read(addr, buf)?;
                buf
            }
        };
        let field = |off: u32| field_u64(buf, off).or_corrupt("thread state field");
        let mut frame = field(l.tstate_frame)?;
        let mut cframe = 0;
        if l.cframe_current_frame.is_some() && frame != 0 {
            (cframe, frame) = (frame, 0);
        }
        let mut raw = RawThread {
            addr,
            interp: field(l.tstate_interp)?,
            interp_id: None,
            thread_id: field(l.tstate_thread_id)?,
            native_thread_id: l.tstate_native_thread_id.map(field).transpose()?,
            frame,
            // Read only for a walk that shows them.
            exceptions: match self.extras.exceptions {
                true => RawExceptions::parse(l, buf)?,
                false => RawExceptions::default(),
            },
            frame_error: None,
            cframe,
            frame_pending: cframe != 0,
            datastack_chunk: l.tstate_datastack_chunk.map(field).transpose()?.unwrap_or(0),
            datastack_top: l.tstate_datastack_top.map(field).transpose()?.unwrap_or(0),
            unbatched: mem.unbatched_reads() - before,
            gil: Gil::Unknown,
        };
        if current_frame {
            self.current_frame(mem, &mut raw);
        }
        Ok((raw, field(l.tstate_next)?))
    }

    /// 3.11/3.12: reads a thread's innermost frame from its `_PyCFrame`, if it was left for
    /// later ([`RawThread::frame_pending`]); a `_PyCFrame` that cannot be read is the
    /// thread's [`RawThread::frame_error`].
    pub(super) fn current_frame<M: Memory + ?Sized>(&self, mem: &M, t: &mut RawThread) {
        let Some(cur) = self.layout.cframe_current_frame else {
            return;
        };
        if !t.frame_pending {
            return;
        }
        t.frame_pending = false;
        let before = mem.unbatched_reads();
        match mem.read_ptr_at(t.cframe, cur) {
            Ok(f) => t.frame = f,
            Err(e) => (t.frame, t.frame_error) = (0, Some(ThreadError::Memory(e))),
        }
        t.unbatched += mem.unbatched_reads() - before;
    }

    /// The GIL of the interpreter at `interp_addr`, read once per interpreter and sample.
    pub fn gil<M: Memory + ?Sized>(&self, mem: &M, interp: &Interpreter, interp_addr: u64) -> Gil {
        let l = &self.layout;
        if let Some(cur) = interp.tstate_current {
            return mem.read_u64(cur).map_or(Gil::Unknown, Gil::from_holder);
        }
        if let Some(enabled) = l.interp_gil_enabled {
            // Free-threaded: `_gil.enabled` is 0 unless something enabled the GIL.
            match offset(interp_addr, enabled.into()).map(|a| mem.read_u32(a)) {
                Ok(Ok(0)) => return Gil::Disabled,
                Ok(Ok(_)) => {}
                _ => return Gil::Unknown,
            }
        }
        let (base, locked, holder) = match (l.interp_gil_locked, l.interp_gil_last_holder) {
            (Some(lk), Some(h)) => (interp_addr, lk, h),
            _ => match (interp.runtime, l.runtime_gil_locked, l.runtime_gil_last_holder) {
                (Some(rt), Some(lk), Some(h)) => (rt, lk, h),
                _ => return Gil::Unknown,
            },
        };
        let read = || -> Option<Gil> {
            let locked = mem.read_u32(offset(base, locked.into()).ok()?).ok()?;
            if locked == 0 {
                return Some(Gil::Free);
            }
            Some(Gil::from_holder(
                mem.read_u64(offset(base, holder.into()).ok()?).ok()?,
            ))
        };
        read().unwrap_or(Gil::Unknown)
    }
}
