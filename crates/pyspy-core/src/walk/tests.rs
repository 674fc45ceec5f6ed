//! The walker over fake images: partial results, truncation, torn and corrupt stacks, for both
//! frame models (3.10's `PyFrameObject` chains, 3.12's data-stack frames).

use super::frames::{MAX_FRAMES, MAX_WALKED};
use super::{Interpreter, Walker, WALK_ATTEMPTS};
use crate::attach::layout::{for_version, FrameModel, Layout};
use crate::attach::version::Version;
use crate::error::ThreadError;
use crate::memory::{Memory, MemoryImage, ReadError, ReadErrorKind};
use crate::snapshot::ThreadStack;
use crate::walk::objects::tests::put_str;
use std::cell::{Cell, RefCell};

/// The type every fake frame object has (≤3.10).
const FRAME_TYPE: u64 = 0x5_0000;
/// Distance between two frames of a chain.
const STRIDE: u64 = 0x80;
/// Code units (3.11+) or bytes (≤3.10) of every fake code object.
const CODE_LEN: u64 = 1000;

/// A fake interpreter: one interpreter state, thread states, code objects, frame chains.
struct Fake {
    img: MemoryImage,
    l: Layout,
    next: u64,
    tstates: Vec<u64>,
}

/// One thread of a fake: the code object of each frame, innermost first.
struct Chain {
    codes: Vec<u64>,
}

impl Fake {
    fn new(version: (u8, u8)) -> Fake {
        let l = *for_version(version.0, version.1).expect("layout");
        let mut img = MemoryImage::new();
        img.add(FRAME_TYPE, &[0u8; 64]);
        Fake {
            img,
            l,
            next: 0x100_0000,
            tstates: Vec::new(),
        }
    }

    /// `len` bytes of fresh, zeroed memory, 4 KiB aligned and apart from everything else.
    fn alloc(&mut self, len: u64) -> u64 {
        let at = self.next;
        self.next += (len + 0x1fff) & !0xfff;
        self.img.add(at, &vec![0u8; len as usize]);
        at
    }

    fn put(&mut self, addr: u64, off: Option<u32>, value: u64) {
        self.img.put_u64(addr + u64::from(off.expect("field")), value);
    }

    /// A bytes object of `len` zero bytes.
    fn bytes(&mut self, len: u64) -> u64 {
        let l = self.l;
        let at = self.alloc(u64::from(l.bytes_sval) + len + 8);
        self.put(at, Some(l.bytes_size), len);
        at
    }

    /// A code object named `name` (file `name.py`).
    fn code(&mut self, name: &str) -> u64 {
        let l = self.l;
        let at = self.alloc(u64::from(l.code_size) + 64);
        for (off, text) in [
            (Some(l.code_name), name.to_string()),
            (Some(l.code_filename), format!("{name}.py")),
            (l.code_qualname, name.to_string()),
        ] {
            let Some(off) = off else { continue };
            let s = self.alloc(256);
            put_str(&mut self.img, &l, s, &text);
            self.put(at, Some(off), s);
        }
        let table = self.bytes(0);
        self.put(at, Some(l.code_linetable), table);
        self.img
            .put_u32(at + u64::from(l.code_firstlineno), 10);
        match l.code_code {
            Some(_) => {
                let code = self.bytes(CODE_LEN);
                self.put(at, l.code_code, code);
            }
            None => self.put(at, Some(l.varobject_size), CODE_LEN / 2),
        }
        at
    }

    /// Adds a thread running `chain`; returns the address of each frame, innermost first.
    fn thread(&mut self, chain: &Chain) -> Vec<u64> {
        let l = self.l;
        let tstate = self.alloc(u64::from(l.tstate_size) + 64);
        self.tstates.push(tstate);
        self.put(tstate, Some(l.tstate_thread_id), 0x7000 + self.tstates.len() as u64);
        let n = chain.codes.len() as u64;
        match l.frames {
            FrameModel::FrameObject => {
                let base = self.alloc(n.max(1) * STRIDE);
                let addr = |i: u64| base + (n - 1 - i) * STRIDE;
                for (i, &code) in chain.codes.iter().enumerate() {
                    let f = addr(i as u64);
                    self.img.put_u64(f, 1); // refcount
                    self.img.put_u64(f + u64::from(l.object_type), FRAME_TYPE);
                    let back = if (i as u64) + 1 < n { addr(i as u64 + 1) } else { 0 };
                    self.put(f, l.frame_back, back);
                    self.put(f, l.frame_code, code);
                    self.img.put_u32(f + u64::from(l.frame_lasti.unwrap()), 2);
                }
                let first = if n > 0 { addr(0) } else { 0 };
                self.put(tstate, Some(l.tstate_frame), first);
                (0..n).map(addr).collect()
            }
            FrameModel::InterpreterFrame => {
                let data = u64::from(l.chunk_data.unwrap());
                let size = data + (n + 1) * STRIDE;
                let chunk = self.alloc(size);
                self.put(chunk, l.chunk_size, size);
                // The outermost frame first, each callee above its caller.
                let addr = |i: u64| chunk + data + (n - 1 - i) * STRIDE;
                for (i, &code) in chain.codes.iter().enumerate() {
                    let f = addr(i as u64);
                    let previous = if (i as u64) + 1 < n { addr(i as u64 + 1) } else { 0 };
                    self.put(f, l.iframe_previous, previous);
                    self.put(f, l.iframe_executable, code);
                    let start = code + u64::from(l.code_adaptive.unwrap());
                    self.put(f, l.iframe_instr_ptr, start + 4);
                }
                let first = if n > 0 { addr(0) } else { 0 };
                self.put(tstate, l.tstate_datastack_chunk, chunk);
                self.put(tstate, l.tstate_datastack_top, chunk + data + n * STRIDE);
                match l.cframe_current_frame {
                    Some(cur) => {
                        let cframe = self.alloc(64);
                        self.put(cframe, Some(cur), first);
                        self.put(tstate, Some(l.tstate_frame), cframe);
                    }
                    None => self.put(tstate, Some(l.tstate_frame), first),
                }
                (0..n).map(addr).collect()
            }
        }
    }

    /// Links the thread states to one interpreter and returns what a walk starts from.
    fn interpreter(&mut self) -> Interpreter {
        let l = self.l;
        let interp = self.alloc(u64::from(l.interp_size).min(0x1000) + 64);
        let head = self.alloc(8);
        self.img.put_u64(head, interp);
        let tstates = self.tstates.clone();
        for (i, &t) in tstates.iter().enumerate() {
            self.put(t, Some(l.tstate_interp), interp);
            let next = tstates.get(i + 1).copied().unwrap_or(0);
            self.put(t, Some(l.tstate_next), next);
        }
        self.put(interp, Some(l.interp_threads_head), tstates[0]);
        Interpreter {
            version: Version::parse(&format!("{}.{}.0", l.version.0, l.version.1)).unwrap(),
            layout: l,
            runtime: None,
            interp_head: head,
            tstate_current: None,
            layout_source: crate::attach::layout::LayoutSource::Table,
        }
    }
}

fn chain(fake: &mut Fake, names: &[&str]) -> Chain {
    Chain {
        codes: names.iter().map(|n| fake.code(n)).collect(),
    }
}

fn names(t: &ThreadStack) -> Vec<&str> {
    t.frames.iter().map(|f| &*f.function).collect()
}

fn walk(fake: &Fake, interp: &Interpreter) -> Vec<ThreadStack> {
    let mut walker = Walker::new(&fake.l);
    walker
        .walk(&fake.img, interp)
        .expect("the thread list is fine")
        .into_iter()
        .map(|(_, t)| t)
        .collect()
}

const MODELS: [(u8, u8); 2] = [(3, 10), (3, 12)];

#[test]
fn a_broken_thread_keeps_what_was_read_and_the_others_are_whole() {
    for v in MODELS {
        let mut fake = Fake::new(v);
        let healthy = chain(&mut fake, &["inner", "middle", "outer"]);
        fake.thread(&healthy);
        let broken = chain(&mut fake, &["b_inner", "b_middle", "b_outer"]);
        let frames = fake.thread(&broken);
        // b_middle's back link points at nothing.
        let back = match fake.l.frames {
            FrameModel::FrameObject => fake.l.frame_back,
            FrameModel::InterpreterFrame => fake.l.iframe_previous,
        };
        fake.put(frames[1], back, 0x10);
        let also_healthy = chain(&mut fake, &["x"]);
        fake.thread(&also_healthy);
        let interp = fake.interpreter();
        let threads = walk(&fake, &interp);
        assert_eq!(threads.len(), 3, "{v:?}");
        assert_eq!(names(&threads[0]), ["inner", "middle", "outer"], "{v:?}");
        assert_eq!(threads[0].error, None);
        assert_eq!(names(&threads[1]), ["b_inner", "b_middle"], "{v:?}");
        assert_eq!(
            threads[1].error,
            Some(ThreadError::Memory(ReadError::unmapped(0x10, fake_frame_len(&fake.l)))),
            "{v:?}"
        );
        assert!(!threads[1].truncated);
        assert_eq!(names(&threads[2]), ["x"]);
        assert_eq!(threads[2].error, None);
    }
}

/// How many bytes the walker reads of each frame.
fn fake_frame_len(l: &Layout) -> usize {
    Walker::new(l).frame_len
}

#[test]
fn an_unreadable_code_object_ends_its_thread_at_that_frame() {
    for v in MODELS {
        let mut fake = Fake::new(v);
        let mut c = chain(&mut fake, &["inner", "middle", "outer"]);
        c.codes[1] = 0x20; // nothing there
        fake.thread(&c);
        let interp = fake.interpreter();
        let threads = walk(&fake, &interp);
        assert_eq!(names(&threads[0]), ["inner"], "{v:?}");
        assert!(
            matches!(threads[0].error, Some(ThreadError::Memory(r)) if r.kind == ReadErrorKind::Unmapped),
            "{v:?}: {:?}",
            threads[0].error
        );
    }
}

#[test]
fn an_instruction_outside_its_code_is_an_error() {
    for v in MODELS {
        let mut fake = Fake::new(v);
        let c = chain(&mut fake, &["inner", "outer"]);
        let frames = fake.thread(&c);
        let l = fake.l;
        match l.frames {
            FrameModel::FrameObject => {
                let at = frames[1] + u64::from(l.frame_lasti.unwrap());
                fake.img.put_u32(at, CODE_LEN as u32);
            }
            FrameModel::InterpreterFrame => {
                let end = c.codes[1] + u64::from(l.code_adaptive.unwrap()) + CODE_LEN;
                fake.put(frames[1], l.iframe_instr_ptr, end);
            }
        }
        let interp = fake.interpreter();
        let threads = walk(&fake, &interp);
        assert_eq!(names(&threads[0]), ["inner"], "{v:?}");
        assert_eq!(
            threads[0].error,
            Some(ThreadError::Corrupt("an instruction outside its code object")),
            "{v:?}"
        );
    }
}

#[test]
fn a_deep_stack_keeps_its_innermost_and_outermost_frames() {
    for v in MODELS {
        let mut fake = Fake::new(v);
        let depth = 100_000;
        let codes: Vec<u64> = ["leaf", "deep", "root"].iter().map(|n| fake.code(n)).collect();
        let mut c = Chain {
            codes: vec![codes[1]; depth],
        };
        c.codes[0] = codes[0];
        c.codes[depth - 1] = codes[2];
        fake.thread(&c);
        let interp = fake.interpreter();
        let t = &walk(&fake, &interp)[0];
        assert_eq!(t.error, None, "{v:?}");
        assert!(t.truncated);
        assert_eq!(t.frames.len(), MAX_FRAMES);
        assert_eq!(t.truncated_at, Some(MAX_FRAMES / 2));
        assert_eq!(&*t.frames[0].function, "leaf");
        assert_eq!(&*t.frames[MAX_FRAMES - 1].function, "root", "the outermost is kept");
    }
}

#[test]
fn a_chain_longer_than_pyspy_follows_keeps_its_innermost_frames() {
    let mut fake = Fake::new((3, 10));
    let deep = fake.code("deep");
    fake.thread(&Chain {
        codes: vec![deep; MAX_WALKED + 10],
    });
    let interp = fake.interpreter();
    let t = &walk(&fake, &interp)[0];
    assert_eq!(t.error, None);
    assert!(t.truncated);
    assert_eq!(t.frames.len(), MAX_FRAMES / 2, "its bottom is unknown");
    assert_eq!(t.truncated_at, Some(MAX_FRAMES / 2));
}

#[test]
fn a_cyclic_chain_keeps_each_frame_once() {
    for v in MODELS {
        let mut fake = Fake::new(v);
        let c = chain(&mut fake, &["a", "b", "c", "d", "e"]);
        let frames = fake.thread(&c);
        // e's back link goes back to b (on 3.12: b is below e on the data stack, so the
        // order check fires first; both end the walk).
        let back = match fake.l.frames {
            FrameModel::FrameObject => fake.l.frame_back,
            FrameModel::InterpreterFrame => fake.l.iframe_previous,
        };
        fake.put(frames[4], back, frames[1]);
        let interp = fake.interpreter();
        let t = &walk(&fake, &interp)[0];
        assert_eq!(names(t), ["a", "b", "c", "d", "e"], "{v:?}");
        assert!(t.error.is_some(), "{v:?}");
    }
    // Without the data-stack check (a frame object chain): Brent's cycle detection.
    let mut fake = Fake::new((3, 10));
    let c = chain(&mut fake, &["a", "b", "c"]);
    let frames = fake.thread(&c);
    fake.put(frames[2], fake.l.frame_back, frames[0]);
    let interp = fake.interpreter();
    let t = &walk(&fake, &interp)[0];
    assert_eq!(names(t), ["a", "b", "c"]);
    assert_eq!(t.error, Some(ThreadError::Corrupt("frame chain is cyclic")));
}

#[test]
fn frames_outside_the_data_stack_or_out_of_order_are_errors() {
    /// Corrupts a fake given its frames and its data-stack chunk.
    type Corrupt = fn(&mut Fake, &[u64], u64);
    let cases: [(&str, Corrupt); 3] = [
        ("outside", |fake, frames, _| {
            // Move the middle frame somewhere else (a copy, off the data stack).
            let l = fake.l;
            let copy = fake.alloc(STRIDE);
            let mut bytes = vec![0u8; STRIDE as usize];
            fake.img.read(frames[1], &mut bytes).unwrap();
            fake.img.write(copy, &bytes);
            fake.put(frames[0], l.iframe_previous, copy);
        }),
        ("above top", |fake, _, chunk| {
            let l = fake.l;
            let t = fake.tstates[0];
            let data = u64::from(l.chunk_data.unwrap());
            fake.put(t, l.tstate_datastack_top, chunk + data + STRIDE);
        }),
        ("out of order", |fake, frames, chunk| {
            // The innermost frame's caller is a copy of the middle frame above it.
            let l = fake.l;
            let mut bytes = vec![0u8; STRIDE as usize];
            fake.img.read(frames[1], &mut bytes).unwrap();
            fake.img.write(frames[0] + STRIDE, &bytes);
            fake.put(frames[0], l.iframe_previous, frames[0] + STRIDE);
            let size = u64::from(l.chunk_data.unwrap()) + 4 * STRIDE;
            fake.put(fake.tstates[0], l.tstate_datastack_top, chunk + size);
        }),
    ];
    for (what, corrupt) in cases {
        let mut fake = Fake::new((3, 12));
        let c = chain(&mut fake, &["inner", "middle", "outer"]);
        let frames = fake.thread(&c);
        let chunk = {
            let mut b = [0u8; 8];
            let off = fake.l.tstate_datastack_chunk.unwrap();
            fake.img
                .read(fake.tstates[0] + u64::from(off), &mut b)
                .unwrap();
            u64::from_le_bytes(b)
        };
        corrupt(&mut fake, &frames, chunk);
        let interp = fake.interpreter();
        let t = &walk(&fake, &interp)[0];
        assert!(
            matches!(t.error, Some(ThreadError::Corrupt(_))),
            "{what}: {:?} {:?}",
            t.error,
            names(t)
        );
        assert!(t.frames.len() < 3, "{what}");
    }
}

#[test]
fn freed_frame_objects_are_errors() {
    let mut fake = Fake::new((3, 10));
    let c = chain(&mut fake, &["inner", "middle", "outer"]);
    let frames = fake.thread(&c);
    fake.img.put_u64(frames[1], 0); // refcount 0: freed
    let interp = fake.interpreter();
    let t = &walk(&fake, &interp)[0];
    assert_eq!(names(t), ["inner"]);
    assert_eq!(
        t.error,
        Some(ThreadError::Corrupt("a freed frame object in the chain"))
    );
}

/// A memory whose words at `flip` take the next of `values` at every read of them: a thread
/// whose innermost frame changes all the time.
struct Changing<'a> {
    img: RefCell<MemoryImage>,
    flip: u64,
    values: &'a [u64],
    reads: Cell<usize>,
    batches: Cell<usize>,
}

impl Memory for Changing<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let covers = addr <= self.flip && self.flip + 8 <= addr + buf.len() as u64;
        if covers {
            let n = self.reads.get();
            self.reads.set(n + 1);
            let v = self.values[n % self.values.len()];
            self.img.borrow_mut().put_u64(self.flip, v);
        }
        self.img.borrow().read(addr, buf)
    }

    fn read_many(&self, ranges: &[(u64, usize)], out: &mut [u8], ok: &mut [bool]) {
        self.batches.set(self.batches.get() + 1);
        let mut at = 0;
        for (i, &(addr, len)) in ranges.iter().enumerate() {
            ok[i] = self.read(addr, &mut out[at..at + len]).is_ok();
            at += len;
        }
    }
}

#[test]
fn a_stack_that_changes_while_it_is_read_is_torn_not_returned() {
    for v in MODELS {
        let mut fake = Fake::new(v);
        let a = chain(&mut fake, &["a3", "a2", "a1"]);
        let a_frames = fake.thread(&a);
        let interp = fake.interpreter();
        let l = fake.l;
        // Where the walk finds the thread's innermost frame: it moves at every read (three
        // values, so the copies before and after a batch always differ).
        let tstate = fake.tstates[0];
        let flip = match l.cframe_current_frame {
            Some(_) => {
                let mut b = [0u8; 8];
                fake.img
                    .read(tstate + u64::from(l.tstate_frame), &mut b)
                    .unwrap();
                u64::from_le_bytes(b)
            }
            None => tstate + u64::from(l.tstate_frame),
        };
        let values = [a_frames[0], a_frames[1], a_frames[2]];
        let mem = Changing {
            img: RefCell::new(fake.img.clone()),
            flip,
            values: &values,
            reads: Cell::new(0),
            batches: Cell::new(0),
        };
        let mut walker = Walker::new(&l);
        let t = walker.walk(&mem, &interp).unwrap().remove(0).1;
        assert_eq!(t.error, Some(ThreadError::Torn), "{v:?}: {:?}", names(&t));
        // Every attempt was made (the first had nothing to batch).
        assert!(mem.batches.get() >= WALK_ATTEMPTS - 1, "{v:?}");
        // Once it holds still, one more walk reads it from one moment.
        let still = [a_frames[0]];
        let mem = Changing {
            values: &still,
            ..mem
        };
        let t = walker.walk(&mem, &interp).unwrap().remove(0).1;
        assert_eq!(t.error, None, "{v:?}");
        assert_eq!(names(&t), ["a3", "a2", "a1"]);
    }
}

/// Counts the reads (batched or not) that cover `watch`.
struct Watching<'a, M: Memory> {
    inner: &'a M,
    watch: u64,
    seen: Cell<usize>,
}

impl<M: Memory> Memory for Watching<'_, M> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        if addr <= self.watch && self.watch < addr + buf.len() as u64 {
            self.seen.set(self.seen.get() + 1);
        }
        self.inner.read(addr, buf)
    }
}

#[test]
fn retries_walk_only_the_threads_not_read_cleanly() {
    for v in MODELS {
        let mut fake = Fake::new(v);
        let steady = chain(&mut fake, &["s2", "s1"]);
        let steady_frames = fake.thread(&steady);
        fake.next += 1 << 20; // far from the busy thread: no batched range covers both
        let busy = chain(&mut fake, &["a3", "a2", "a1"]);
        let busy_frames = fake.thread(&busy);
        let interp = fake.interpreter();
        let l = fake.l;
        let tstate = fake.tstates[1];
        let flip = match l.cframe_current_frame {
            Some(_) => {
                let mut b = [0u8; 8];
                fake.img
                    .read(tstate + u64::from(l.tstate_frame), &mut b)
                    .unwrap();
                u64::from_le_bytes(b)
            }
            None => tstate + u64::from(l.tstate_frame),
        };
        let values = [busy_frames[0], busy_frames[1], busy_frames[2]];
        let changing = Changing {
            img: RefCell::new(fake.img.clone()),
            flip,
            values: &values,
            reads: Cell::new(0),
            batches: Cell::new(0),
        };
        let mem = Watching {
            inner: &changing,
            watch: steady_frames[0],
            seen: Cell::new(0),
        };
        let threads = Walker::new(&l).walk(&mem, &interp).unwrap();
        assert_eq!(names(&threads[0].1), ["s2", "s1"], "{v:?}");
        assert_eq!(threads[0].1.error, None);
        assert_eq!(threads[1].1.error, Some(ThreadError::Torn));
        // Read by the first attempt, twice by the batch of the second (which read it cleanly;
        // a thread new to the walker is read twice) and twice by the batch of the third (what
        // the second read); not by the five attempts after.
        assert!(mem.seen.get() <= 5, "{v:?}: read {} times", mem.seen.get());
    }
}

/// Counts the batched reads (one per walk attempt).
struct Batches<'a> {
    img: &'a MemoryImage,
    batches: Cell<usize>,
}

impl Memory for Batches<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        self.img.read(addr, buf)
    }

    fn read_many(&self, ranges: &[(u64, usize)], out: &mut [u8], ok: &mut [bool]) {
        self.batches.set(self.batches.get() + 1);
        self.img.read_many(ranges, out, ok)
    }
}

#[test]
fn a_thread_corrupt_the_same_way_again_is_walked_once() {
    for v in MODELS {
        let mut fake = Fake::new(v);
        let c = chain(&mut fake, &["inner", "outer"]);
        let frames = fake.thread(&c);
        let back = match fake.l.frames {
            FrameModel::FrameObject => fake.l.frame_back,
            FrameModel::InterpreterFrame => fake.l.iframe_previous,
        };
        fake.put(frames[0], back, 0x10);
        let interp = fake.interpreter();
        let mem = Batches {
            img: &fake.img,
            batches: Cell::new(0),
        };
        let mut walker = Walker::new(&fake.l);
        for sample in 0..5 {
            let before = mem.batches.get();
            let t = walker.walk(&mem, &interp).unwrap().remove(0).1;
            assert_eq!(names(&t), ["inner"]);
            assert!(t.error.is_some());
            let walks = mem.batches.get() - before;
            if sample > 0 {
                assert_eq!(walks, 1, "{v:?}: sample {sample} walked {walks} times");
            }
        }
    }
}

#[test]
fn read_errors_say_what_happened() {
    let overflow = crate::memory::offset(u64::MAX, 24).unwrap_err();
    assert_eq!(overflow.kind, ReadErrorKind::Overflow);
    let text = crate::error::Error::from(overflow).to_string();
    assert!(text.contains("corrupt pointer"), "{text}");
    assert!(!text.contains("0 bytes"), "{text}");
    let unmapped = ReadError::from_errno(0x10, 8, Some(libc::EFAULT)).to_string();
    assert!(unmapped.contains("nothing is mapped at 0x10"), "{unmapped}");
    let gone = ReadError::from_errno(0x10, 8, Some(libc::ESRCH));
    assert_eq!(gone.kind, ReadErrorKind::ProcessGone);
}

#[test]
fn chosen_threads_are_reused_or_left_out_without_reading_their_frames() {
    use super::Choice;
    for v in MODELS {
        let mut fake = Fake::new(v);
        let first = chain(&mut fake, &["f2", "f1"]);
        let first_frames = fake.thread(&first);
        fake.next += 1 << 20;
        let second = chain(&mut fake, &["g3", "g2", "g1"]);
        let second_frames = fake.thread(&second);
        let interp = fake.interpreter();
        let l = fake.l;
        let mut walker = Walker::new(&l);
        let all = |c: Choice| move |threads: &[super::threads::RawThread], _: &dyn Memory| vec![c; threads.len()];
        // Nothing to reuse yet: both are walked.
        let walked = walker.walk_choosing(&fake.img, &interp, all(Choice::Reuse)).unwrap();
        assert_eq!(names(&walked[0].1), ["f2", "f1"], "{v:?}");
        assert_eq!(names(&walked[1].1), ["g3", "g2", "g1"], "{v:?}");
        // Reused: the frames are not read again, so their memory may be anything now.
        // The innermost frames run another function now.
        let other_code = fake.code("other");
        let code_at = match l.frames {
            FrameModel::FrameObject => l.frame_code,
            FrameModel::InterpreterFrame => l.iframe_executable,
        };
        let mut changed = fake.img.clone();
        for f in [first_frames[0], second_frames[0]] {
            changed.put_u64(f + u64::from(code_at.unwrap()), other_code);
            if let Some(ip) = l.iframe_instr_ptr {
                let start = other_code + u64::from(l.code_adaptive.unwrap());
                changed.put_u64(f + u64::from(ip), start + 4);
            }
        }
        // (The first such walk's batch still holds what the walk before read; the next one's
        // holds only what that walk read.)
        let reused = walker.walk_choosing(&changed, &interp, all(Choice::Reuse)).unwrap();
        assert_eq!(names(&reused[0].1), ["f2", "f1"], "{v:?}");
        let watching = Watching {
            inner: &changed,
            watch: first_frames[0],
            seen: Cell::new(0),
        };
        let reused = walker.walk_choosing(&watching, &interp, all(Choice::Reuse)).unwrap();
        assert_eq!(watching.seen.get(), 0, "{v:?}: a reused thread's frames were read");
        assert_eq!(names(&reused[0].1), ["f2", "f1"], "{v:?}");
        assert_eq!(names(&reused[1].1), ["g3", "g2", "g1"], "{v:?}");
        assert!(reused.iter().all(|(_, t)| t.error.is_none()), "{v:?}");
        // Left out: not in the result. Walked: read again (and now broken).
        let mixed = walker
            .walk_choosing(&changed, &interp, |threads: &[super::threads::RawThread], _: &dyn Memory| {
                assert_eq!(threads.len(), 2);
                vec![Choice::Omit, Choice::Walk { keep: true }]
            })
            .unwrap();
        assert_eq!(mixed.len(), 1, "{v:?}");
        assert_eq!(names(&mixed[0].1), ["other", "g2", "g1"], "{v:?}: walked");
        // Another thread at the same thread state (another ident) is walked, not reused; a
        // thread not read cleanly last time is walked too.
        let kept = walker.walk_choosing(&changed, &interp, all(Choice::Reuse)).unwrap();
        assert_eq!(names(&kept[0].1), ["other", "f1"], "{v:?}: left out last time, walked");
        let mut other = fake.img.clone();
        other.put_u64(fake.tstates[0] + u64::from(l.tstate_thread_id), 0x9999);
        let again = walker.walk_choosing(&other, &interp, all(Choice::Reuse)).unwrap();
        assert_eq!(again[0].1.thread_id, 0x9999, "{v:?}");
        assert_eq!(names(&again[0].1), ["f2", "f1"], "{v:?}");
        // (The second thread is as the last walk read it, not as its memory is now.)
        assert_eq!(names(&again[1].1), ["other", "g2", "g1"], "{v:?}: reused");
        // What is kept for the new thread is its own stack, reused the next time (not read:
        // its innermost frame runs another function now).
        let mut moved_on = other.clone();
        moved_on.put_u64(first_frames[0] + u64::from(code_at.unwrap()), other_code);
        if let Some(ip) = l.iframe_instr_ptr {
            let start = other_code + u64::from(l.code_adaptive.unwrap());
            moved_on.put_u64(first_frames[0] + u64::from(ip), start + 4);
        }
        let next = walker.walk_choosing(&moved_on, &interp, all(Choice::Reuse)).unwrap();
        assert_eq!(next[0].1.thread_id, 0x9999, "{v:?}");
        assert_eq!(names(&next[0].1), ["f2", "f1"], "{v:?}: the new thread was walked again");
        // A plain walk forgets what was kept.
        walker.walk(&fake.img, &interp).unwrap();
        let watching = Watching {
            inner: &changed,
            watch: first_frames[0],
            seen: Cell::new(0),
        };
        let after = walker.walk_choosing(&watching, &interp, all(Choice::Reuse)).unwrap();
        assert!(watching.seen.get() > 0, "{v:?}");
        assert_eq!(names(&after[0].1), ["other", "f1"], "{v:?}");
    }
}

/// A reused stack is lent once stacks are handed back: handed back as given, its frames (the
/// same vector) are reused again; edited, the thread is walked again; kept past the next walk,
/// the thread is walked again and reused stacks are copied from then on.
#[test]
fn reused_stacks_are_lent_and_taken_back() {
    use super::Choice;
    for v in MODELS {
        let mut fake = Fake::new(v);
        let first = chain(&mut fake, &["f2", "f1"]);
        let first_frames = fake.thread(&first);
        let interp = fake.interpreter();
        let l = fake.l;
        let mut walker = Walker::new(&l);
        let all = |c: Choice| move |threads: &[super::threads::RawThread], _: &dyn Memory| vec![c; threads.len()];
        let reuse = |walker: &mut Walker, watched: &mut usize| -> ThreadStack {
            let watching = Watching {
                inner: &fake.img,
                watch: first_frames[0],
                seen: Cell::new(0),
            };
            let mut got = walker.walk_choosing(&watching, &interp, all(Choice::Reuse)).unwrap();
            *watched = watching.seen.get();
            let stack = got.remove(0).1;
            assert_eq!(names(&stack), ["f2", "f1"], "{v:?}");
            stack
        };
        let mut read = 0;
        let walked = reuse(&mut walker, &mut read);
        assert!(read > 0, "{v:?}: nothing to reuse yet");
        walker.recycle([walked]);
        // (This walk's batch still reads what the walk before read.)
        let lent = reuse(&mut walker, &mut read);
        let back = lent.clone();
        let at = back.frames.as_ptr();
        walker.recycle([back]);
        // Handed back as given: those frames come back, not a copy of them.
        let again = reuse(&mut walker, &mut read);
        assert_eq!(read, 0, "{v:?}: reused");
        assert_eq!(again, lent, "{v:?}");
        assert_eq!(again.frames.as_ptr(), at, "{v:?}: the vector handed back");
        // Edited before it was handed back: not taken back; the thread is walked again.
        let mut edited = again;
        edited.frames[0].line = 99;
        walker.recycle([edited]);
        let walked = reuse(&mut walker, &mut read);
        assert!(read > 0, "{v:?}: the lent frames did not come back");
        assert_eq!(walked, lent, "{v:?}");
        walker.recycle([walked]);
        // (Its batch reads what the walk before read.)
        let lent_again = reuse(&mut walker, &mut read);
        // Not handed back in time: the thread is walked, and lending stops.
        let walked = reuse(&mut walker, &mut read);
        assert!(read > 0, "{v:?}: lent frames still out");
        walker.recycle([lent_again, walked]);
        let a = reuse(&mut walker, &mut read);
        let b = reuse(&mut walker, &mut read);
        assert_eq!(read, 0, "{v:?}: copied, so reused without being handed back");
        assert_eq!(a, lent, "{v:?}");
        assert_eq!(b, lent, "{v:?}");
    }
}

/// 3.11/3.12 find a thread's innermost frame through its `_PyCFrame` (on the thread's C
/// stack, a page of its own): a thread left out is not read there.
#[test]
fn a_thread_left_out_is_not_read_past_its_thread_state() {
    use super::Choice;
    use crate::memory::MemoryExt;
    let mut fake = Fake::new((3, 12));
    let first = chain(&mut fake, &["f2", "f1"]);
    fake.thread(&first);
    fake.next += 1 << 20;
    let second = chain(&mut fake, &["g2", "g1"]);
    fake.thread(&second);
    let interp = fake.interpreter();
    let l = fake.l;
    let cur = u64::from(l.cframe_current_frame.unwrap());
    let word = |tstate: u64| fake.img.read_u64(tstate + u64::from(l.tstate_frame)).unwrap() + cur;
    let (left_out, walked) = (word(fake.tstates[0]), word(fake.tstates[1]));
    let mut walker = Walker::new(&l);
    let out = walker
        .walk_choosing(&fake.img, &interp, |threads: &[super::threads::RawThread], _: &dyn Memory| {
            assert!(threads.iter().all(|t| t.frame_pending && t.frame == 0));
            vec![Choice::Omit, Choice::Walk { keep: false }]
        })
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(names(&out[0].1), ["g2", "g1"]);
    let read = |w: &Walker, at: u64| {
        w.prefetch
            .log()
            .iter()
            .any(|&(a, n, _)| a <= at && at < a + n as u64)
    };
    assert!(read(&walker, walked), "the walked thread's current frame is read");
    assert!(!read(&walker, left_out), "the left-out thread's _PyCFrame was read");
    // Without a choice, every thread's is.
    let all = walker.walk(&fake.img, &interp).unwrap();
    assert_eq!(all.len(), 2);
    assert!(read(&walker, left_out) && read(&walker, walked));
}

/// Stacks handed back ([`Walker::recycle`]): the next walk gives again the frames of their
/// unchanged outer part, and returns exactly what a walker without them returns, whatever
/// changed in between: inner frames, an outer frame, a caller's edit, a code object replaced
/// at the same address.
#[test]
fn stacks_handed_back_give_their_unchanged_frames_again() {
    for v in MODELS {
        let mut fake = Fake::new(v);
        let c = chain(&mut fake, &["f5", "f4", "f3", "f2", "f1", "f0"]);
        let frames = fake.thread(&c);
        fake.next += 1 << 20;
        let d = chain(&mut fake, &["g1", "g0"]);
        fake.thread(&d);
        let interp = fake.interpreter();
        let l = fake.l;
        let other = fake.code("other");
        let renamed = fake.alloc(256);
        put_str(&mut fake.img, &l, renamed, "renamed");
        let mut img = fake.img.clone();
        // Frame `frame` runs `code` now.
        let run = |img: &mut MemoryImage, frame: u64, code: u64| match l.frames {
            FrameModel::FrameObject => {
                img.put_u64(frame + u64::from(l.frame_code.unwrap()), code);
            }
            FrameModel::InterpreterFrame => {
                img.put_u64(frame + u64::from(l.iframe_executable.unwrap()), code);
                let start = code + u64::from(l.code_adaptive.unwrap());
                img.put_u64(frame + u64::from(l.iframe_instr_ptr.unwrap()), start + 4);
            }
        };
        let mut walker = Walker::new(&l);
        // A walk compared with a fresh walker's; returns the frames given again.
        let step = |walker: &mut Walker, img: &MemoryImage, what: &str| -> (Vec<ThreadStack>, u64) {
            let before = walker.frames_reused();
            let got: Vec<ThreadStack> = walker.walk(img, &interp).unwrap().into_iter().map(|(_, t)| t).collect();
            let fresh: Vec<ThreadStack> = Walker::new(&l).walk(img, &interp).unwrap().into_iter().map(|(_, t)| t).collect();
            assert_eq!(got, fresh, "{v:?}: {what}");
            (got, walker.frames_reused() - before)
        };
        let (got, reused) = step(&mut walker, &img, "first walk");
        assert_eq!(reused, 0, "{v:?}: nothing handed back yet");
        walker.recycle(got);
        // Walks keep what they resolve once stacks are handed back, not before.
        let (got, reused) = step(&mut walker, &img, "the first stacks handed back");
        assert_eq!(reused, 0, "{v:?}: nothing kept to give again yet");
        walker.recycle(got);
        let (got, reused) = step(&mut walker, &img, "nothing changed");
        assert_eq!(reused, 8, "{v:?}: every frame given again");
        walker.recycle(got);
        // The thread's innermost frame is `frame` now.
        let tstate = fake.tstates[0];
        let set_first = |img: &mut MemoryImage, frame: u64| {
            let at = match l.cframe_current_frame {
                Some(cur) if l.frames == FrameModel::InterpreterFrame => {
                    let cframe = crate::memory::MemoryExt::read_u64(&*img, tstate + u64::from(l.tstate_frame)).unwrap();
                    cframe + u64::from(cur)
                }
                _ => tstate + u64::from(l.tstate_frame),
            };
            img.put_u64(at, frame);
        };
        // The innermost frame returns, and is called again: the stack shrinks by one frame,
        // then grows by one, and what is kept follows.
        set_first(&mut img, frames[1]);
        let (got, reused) = step(&mut walker, &img, "the innermost frame returned");
        assert_eq!(names(&got[0]), ["f4", "f3", "f2", "f1", "f0"], "{v:?}");
        assert_eq!(reused, 5 + 2, "{v:?}: every frame left");
        walker.recycle(got);
        let (got, reused) = step(&mut walker, &img, "nothing changed after a return");
        assert_eq!(reused, 5 + 2, "{v:?}: every frame");
        walker.recycle(got);
        set_first(&mut img, frames[0]);
        let (got, reused) = step(&mut walker, &img, "the innermost frame called again");
        assert_eq!(names(&got[0])[..2], ["f5", "f4"], "{v:?}");
        assert_eq!(reused, 5 + 2, "{v:?}: all but the new frame");
        walker.recycle(got);
        let (got, reused) = step(&mut walker, &img, "nothing changed after a call");
        assert_eq!(reused, 8, "{v:?}: every frame");
        walker.recycle(got);
        run(&mut img, frames[0], other);
        let (got, reused) = step(&mut walker, &img, "the innermost frame runs another function");
        assert_eq!(names(&got[0])[..2], ["other", "f4"], "{v:?}");
        assert_eq!(reused, 5 + 2, "{v:?}: all but the innermost frame");
        walker.recycle(got);
        run(&mut img, frames[3], other);
        let (got, reused) = step(&mut walker, &img, "an outer frame runs another function");
        assert_eq!(names(&got[0]), ["other", "f4", "f3", "other", "f1", "f0"], "{v:?}");
        assert_eq!(reused, 2 + 2, "{v:?}: the frames outside the one that changed");
        let (mut got, _) = step(&mut walker, &img, "nothing handed back");
        got[0].frames[5].line = 99;
        got[1].frames[1].function = "edited".into();
        walker.recycle(got);
        let (got, reused) = step(&mut walker, &img, "frames edited before they were handed back");
        assert_eq!(reused, 0, "{v:?}: edited stacks are not kept");
        assert_eq!(got[0].frames[5].line, 10, "{v:?}");
        assert_eq!(names(&got[1]), ["g1", "g0"], "{v:?}");
        walker.recycle(got);
        // The outermost code object is another one now, at the same address.
        img.put_u64(c.codes[5] + u64::from(l.code_name), renamed);
        let (got, reused) = step(&mut walker, &img, "a code object replaced");
        assert_eq!(names(&got[0])[5], "renamed", "{v:?}");
        assert_eq!(reused, 2, "{v:?}: only the other thread's frames");
        walker.recycle(got);
        // Another code object at the same address with the same strings: only its line table
        // and first line differ.
        fake.img = img;
        let table = fake.bytes(0);
        let mut img = fake.img.clone();
        img.put_u64(c.codes[4] + u64::from(l.code_linetable), table);
        img.put_u32(c.codes[4] + u64::from(l.code_firstlineno), 20);
        let (got, reused) = step(&mut walker, &img, "a code object replaced, same strings");
        assert_eq!(got[0].frames[4].line, 20, "{v:?}");
        assert_eq!(reused, 2, "{v:?}: the stack is resolved again whole");
        walker.recycle(got);
        // Positions are read from memory that changes without the frames changing.
        walker.set_extras(super::Extras { positions: true, ..super::Extras::default() });
        let before = walker.frames_reused();
        let got = walker.walk(&img, &interp).unwrap();
        assert_eq!(walker.frames_reused(), before, "{v:?}: nothing given again with positions");
        assert_eq!(names(&got[0].1)[5], "renamed", "{v:?}");
    }
}
