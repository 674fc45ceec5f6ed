//! Thread names (`threading.Thread.name`) read from the target's `threading` module.
//!
//! Path, per interpreter: `interp->modules` (`sys.modules`) → `"threading"` → the module's
//! `md_dict` → `"_active"` (a dict of ident → `Thread`) → each `Thread`'s instance attribute
//! `"_name"` (2.7: `"_Thread__name"`, the mangled `self.__name`). Threads started with
//! `_thread.start_new_thread` are not in `_active` and have no name; threads not started by
//! `threading` appear there as `Dummy-N` once they call `threading.current_thread()`.
//!
//! # Cost and cache
//!
//! Names are cached per (interpreter, ident, OS thread id):
//!
//! - A sample whose threads all have a cached name costs no reads at all (the thread set is
//!   compared locally with the one of the last lookup).
//! - A name stays cached while its thread is in the target's thread list, shown in samples or
//!   not: a sample that leaves idle threads out does not make a thread that wakes now and
//!   then a new thread each time it is shown. A thread that ended is dropped; one started
//!   after it with the same ident (the C library reuses them) has another OS id, so it is
//!   looked up, not given the old name.
//! - A thread never seen before triggers one lookup for all new threads of its interpreter:
//!   about 10 reads for the path above plus about 7 per new thread (its ident, its attributes,
//!   its name string). The first lookup in a session also reads key strings until it finds
//!   `"threading"`, `"_active"` and `"_name"`; afterwards keys are matched by address.
//! - A lookup that leaves threads unnamed (`threading` not imported, a thread not yet in
//!   `_active`, a read that failed on memory changing underneath) is not repeated on every
//!   sample: those threads are retried after a backoff of 10 ms doubling to 10 s (reset when
//!   every thread has a name). New threads are still looked up when they appear.
//! - A name changed after a thread was first named (`thread.name = ...`) is not seen: names are
//!   read once per thread.

use crate::error::{Error, OrCorrupt, Result};
use crate::attach::layout::Layout;
use crate::memory::{Memory, MemoryExt, ReadAhead};
use crate::walk::objects::dict::dict_entries;
use crate::walk::objects::{Objects, StrKey};
use crate::walk::strings::read_str;
use crate::memory::addr_hash::AddrHasher;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First retry delay after a lookup left threads unnamed.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Names cached before the cache is cleared (a target with that many live threads).
const MAX_NAMES: usize = 1 << 16;

/// One thread whose name is wanted: its interpreter (`PyInterpreterState*`), ident, and OS
/// thread id (0 if unknown). The C library reuses a thread's ident (its descriptor) for a
/// thread started after it ended, often at once; the OS id tells the two apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameKey {
    pub interp: u64,
    pub ident: u64,
    pub tid: u64,
}

impl NameKey {
    /// The key of each thread of a walk (`Walker::walk`'s `(interpreter, thread)` pairs).
    #[cfg(any(test, feature = "internals"))]
    pub fn for_walk(walked: &[(u64, crate::snapshot::ThreadStack)]) -> Vec<NameKey> {
        walked.iter().map(NameKey::of).collect()
    }

    /// The key of one thread of a walk.
    pub fn of((interp, t): &(u64, crate::snapshot::ThreadStack)) -> NameKey {
        NameKey {
            interp: *interp,
            ident: t.thread_id,
            tid: t.native_thread_id.unwrap_or(0),
        }
    }
}

/// Counters of the work done, for callers measuring the cost of names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameStats {
    /// Samples answered from the cache without any read.
    pub cached: u64,
    /// Lookups run (each reads the `threading` path of one or more interpreters).
    pub lookups: u64,
    /// Lookups of an interpreter that failed or found no `threading._active`.
    pub failures: u64,
}

/// Key matchers of one interpreter (its strings are its own from 3.12).
#[derive(Debug)]
struct InterpKeys {
    interp: u64,
    threading: StrKey,
    active: StrKey,
    name: StrKey,
}

/// The thread-name cache of a session.
#[derive(Debug)]
pub struct ThreadNames {
    objects: Objects,
    /// `Some(name)` once found; `None` after a lookup that did not find it.
    names: HashMap<NameKey, Option<Arc<str>>, BuildHasherDefault<AddrHasher>>,
    /// The thread set of the last call, sorted.
    last: Vec<NameKey>,
    /// The threads of the last call as given (the same list, sample after sample, is
    /// answered without sorting it again).
    last_given: Vec<NameKey>,
    keys: Vec<InterpKeys>,
    retry_at: Option<Instant>,
    backoff: Duration,
    stats: NameStats,
}

impl ThreadNames {
    pub fn new(layout: &Layout) -> ThreadNames {
        ThreadNames {
            objects: Objects::new(layout),
            names: HashMap::default(),
            last_given: Vec::new(),
            last: Vec::new(),
            keys: Vec::new(),
            retry_at: None,
            backoff: FIRST_BACKOFF,
            stats: NameStats::default(),
        }
    }

    pub fn stats(&self) -> NameStats {
        self.stats
    }

    /// [`ThreadNames::names_into`], into a new vector.
    #[cfg(any(test, feature = "internals"))]
    pub fn names<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        threads: &[NameKey],
        listed: impl Fn(&NameKey) -> bool,
        modules: impl Fn(u64) -> Result<u64>,
    ) -> Vec<Option<Arc<str>>> {
        let mut out = Vec::with_capacity(threads.len());
        self.names_into(mem, threads, listed, modules, &mut out);
        out
    }

    /// The names of `threads` (same order) into `out` (emptied first, a buffer the caller
    /// keeps), looking up only what the cache cannot answer. `modules` gives an interpreter's
    /// `sys.modules` dict address (read only when needed). `listed` tells whether a thread not
    /// in `threads` is still in the target's thread list (a sample that leaves idle threads
    /// out): its name stays cached for when it is shown again; the names of threads no longer
    /// listed are dropped.
    pub fn names_into<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        threads: &[NameKey],
        listed: impl Fn(&NameKey) -> bool,
        modules: impl Fn(u64) -> Result<u64>,
        out: &mut Vec<Option<Arc<str>>>,
    ) {
        out.clear();
        // Every name of the last call's threads was found (nothing to retry): the same threads
        // have the same names.
        if self.retry_at.is_none() && threads == self.last_given.as_slice() {
            self.stats.cached += 1;
            out.extend(threads.iter().map(|k| self.names.get(k).cloned().flatten()));
            return;
        }
        self.last_given.clear();
        self.last_given.extend_from_slice(threads);
        let mut set = threads.to_vec();
        set.sort_unstable();
        set.dedup();
        let changed = set != self.last;
        if changed {
            self.names
                .retain(|k, _| set.binary_search(k).is_ok() || listed(k));
            if self.names.len() > MAX_NAMES {
                self.names.clear();
            }
        }
        let retry_due = self.retry_at.is_some_and(|at| Instant::now() >= at);
        let wanted: Vec<NameKey> = set
            .iter()
            .copied()
            .filter(|k| match self.names.get(k) {
                None => true,
                Some(None) => retry_due,
                Some(Some(_)) => false,
            })
            .collect();
        if wanted.is_empty() {
            self.stats.cached += 1;
        } else {
            self.stats.lookups += 1;
            let mut interps: Vec<u64> = wanted.iter().map(|k| k.interp).collect();
            interps.dedup();
            // The `Thread` objects and their dicts of a thread set are read once, a page at
            // a time: a first sample of 1,000 threads makes hundreds of reads, not 10,000.
            let mem = ReadAhead::new(mem);
            for interp in interps {
                let idents: Vec<u64> = wanted
                    .iter()
                    .filter(|k| k.interp == interp)
                    .map(|k| k.ident)
                    .collect();
                let found = modules(interp)
                    .and_then(|m| self.lookup(&mem, interp, m, &idents))
                    .unwrap_or_else(|_| {
                        self.stats.failures += 1;
                        Vec::new()
                    });
                for key in wanted.iter().filter(|k| k.interp == interp) {
                    let name = found.iter().find(|(i, _)| *i == key.ident).map(|(_, n)| n);
                    self.names.insert(*key, name.cloned());
                }
            }
            let unnamed = set.iter().any(|k| matches!(self.names.get(k), Some(None)));
            if unnamed {
                if retry_due || self.retry_at.is_none() {
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            } else {
                self.retry_at = None;
                self.backoff = FIRST_BACKOFF;
            }
        }
        self.last = set;
        out.extend(threads.iter().map(|k| self.names.get(k).cloned().flatten()));
    }

    /// Reads the names of `idents` from one interpreter's `threading._active`.
    fn lookup<M: Memory + ?Sized>(
        &mut self,
        mem: &M,
        interp: u64,
        modules: u64,
        idents: &[u64],
    ) -> Result<Vec<(u64, Arc<str>)>> {
        let layout = *self.objects.layout();
        let keys = match self.keys.iter().position(|k| k.interp == interp) {
            Some(i) => i,
            None => {
                if self.keys.len() >= 256 {
                    self.keys.clear();
                }
                let name = if layout.version.0 == 2 {
                    "_Thread__name"
                } else {
                    "_name"
                };
                self.keys.push(InterpKeys {
                    interp,
                    threading: StrKey::new("threading"),
                    active: StrKey::new("_active"),
                    name: StrKey::new(name),
                });
                self.keys.len() - 1
            }
        };
        let missing = Error::Corrupt("threading._active not found");
        if modules == 0 {
            return Err(missing);
        }
        let k = &mut self.keys[keys];
        let entries = dict_entries(mem, &layout, modules)?;
        let module = k.threading.find(mem, &layout, &entries).ok_or(missing)?;
        let md_dict = mem.read_ptr_at(module, layout.module_dict)?;
        if md_dict == 0 {
            return Err(Error::Corrupt("threading module without a dict"));
        }
        let entries = dict_entries(mem, &layout, md_dict)?;
        let active = k
            .active
            .find(mem, &layout, &entries)
            .or_corrupt("threading._active not found")?;
        let mut name_key = k.name.clone();
        let mut out = Vec::new();
        for entry in dict_entries(mem, &layout, active)? {
            // Keys are ints; a thread whose ident is not wanted costs the read of its key.
            let Ok(Some(ident)) = self.objects.int_value(mem, entry.key) else {
                continue;
            };
            let ident = ident as u64;
            if !idents.contains(&ident) {
                continue;
            }
            let Ok(attrs) = self.objects.attr_entries(mem, entry.value) else {
                continue;
            };
            if let Some(name) = name_key.find(mem, &layout, &attrs) {
                if let Ok(s) = read_str(mem, &layout, name) {
                    out.push((ident, Arc::from(s)));
                }
            }
        }
        self.keys[keys].name = name_key;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::layout::for_version;
    use crate::memory::MemoryImage;
    use crate::walk::objects::dict::tests::put_dict;
    use crate::walk::objects::int::tests::long_bytes;
    use crate::walk::objects::tests::put_str;
    use std::cell::Cell;

    /// Counts reads, to check that cached samples read nothing.
    struct Counting<'a> {
        inner: &'a MemoryImage,
        reads: Cell<u64>,
    }

    impl Memory for Counting<'_> {
        fn read(
            &self,
            addr: u64,
            buf: &mut [u8],
        ) -> std::result::Result<(), crate::memory::ReadError> {
            self.reads.set(self.reads.get() + 1);
            self.inner.read(addr, buf)
        }
    }

    /// sys.modules → threading → _active {ident: Thread(_name=...)} for 3.12 (dict attrs).
    fn image(l: &Layout, threads: &[(u64, &str)]) -> MemoryImage {
        let mut img = MemoryImage::new();
        let int_ty = 0x9000;
        let obj_ty = 0x9800;
        for (ty, flags) in [
            (int_ty, crate::walk::objects::int::TPFLAGS_LONG_SUBCLASS),
            (obj_ty, 0),
        ] {
            img.add(ty, &[0u8; 1024]);
            img.put_u64(ty + u64::from(l.type_flags), flags);
            img.put_u64(ty + u64::from(l.type_dictoffset), 16);
        }
        put_str(&mut img, l, 0x1_0000, "threading");
        put_str(&mut img, l, 0x1_1000, "_active");
        put_str(&mut img, l, 0x1_2000, "_name");
        put_str(&mut img, l, 0x1_3000, "other");
        // threading module object with md_dict.
        let module = 0x2_0000;
        img.add(module, &[0u8; 64]);
        let mut pairs = Vec::new();
        for (i, (ident, name)) in threads.iter().enumerate() {
            let key = 0x3_0000 + 0x100 * i as u64;
            let mut b = long_bytes(l, *ident as i128);
            b[8..16].copy_from_slice(&int_ty.to_le_bytes());
            img.add(key, &b);
            let thread = 0x4_0000 + 0x1000 * i as u64;
            img.add(thread, &[0u8; 64]);
            img.put_u64(thread + 8, obj_ty);
            let name_obj = 0x5_0000 + 0x1000 * i as u64;
            put_str(&mut img, l, name_obj, name);
            let tdict = 0x6_0000 + 0x100 * i as u64;
            put_dict(
                &mut img,
                l,
                tdict,
                &[(0x1_3000, 0x1_3000), (0x1_2000, name_obj)],
                false,
                0x100_0000 + 0x10_0000 * i as u64,
            );
            img.put_u64(thread + 16, tdict);
            pairs.push((key, thread));
        }
        put_dict(&mut img, l, 0x7_0000, &pairs, false, 0x200_0000);
        put_dict(
            &mut img,
            l,
            0x7_1000,
            &[(0x1_3000, 0x1_3000), (0x1_1000, 0x7_0000)],
            false,
            0x300_0000,
        );
        img.put_u64(module + u64::from(l.module_dict), 0x7_1000);
        put_dict(
            &mut img,
            l,
            0x7_2000,
            &[(0x1_3000, 0x1_3000), (0x1_0000, module)],
            false,
            0x400_0000,
        );
        img
    }

    #[test]
    fn names_are_read_once_and_then_cost_nothing() {
        for v in [(2, 7), (3, 9), (3, 12)] {
            let l = for_version(v.0, v.1).unwrap();
            let mut l = *l;
            // The fake Thread type keeps its dict at offset 16 without a managed dict.
            l.version = if v.0 == 2 { (2, 7) } else { (3, 10) };
            let name_attr = if v.0 == 2 { "_Thread__name" } else { "_name" };
            let threads = [
                (0x7f00_0000_1000u64, "MainThread"),
                (0x7f00_0000_2000, "worker"),
            ];
            let mut img = image(&l, &threads);
            put_str(&mut img, &l, 0x1_2000, name_attr);
            let mem = Counting {
                inner: &img,
                reads: Cell::new(0),
            };
            let mut names = ThreadNames::new(&l);
            let keys: Vec<NameKey> = threads
                .iter()
                .map(|(i, _)| NameKey {
                    interp: 1,
                    ident: *i,
                    tid: 0,
                })
                .collect();
            let got = names.names(&mem, &keys, |_| false, |_| Ok(0x7_2000));
            assert_eq!(got[0].as_deref(), Some("MainThread"), "{v:?}");
            assert_eq!(got[1].as_deref(), Some("worker"));
            let before = mem.reads.get();
            assert!(before > 0);
            for _ in 0..100 {
                let again = names.names(&mem, &keys, |_| false, |_| panic!("no lookup expected"));
                assert_eq!(again, got);
            }
            assert_eq!(mem.reads.get(), before, "cached samples read nothing");
            assert_eq!(names.stats().cached, 100);
            // A new thread not in _active: looked up once, then only after a backoff.
            let mut more = keys.clone();
            more.push(NameKey {
                interp: 1,
                ident: 42,
                tid: 0,
            });
            let got = names.names(&mem, &more, |_| false, |_| Ok(0x7_2000));
            assert_eq!(got[2], None);
            let lookups = names.stats().lookups;
            for _ in 0..50 {
                names.names(&mem, &more, |_| false, |_| Ok(0x7_2000));
            }
            assert!(names.stats().lookups <= lookups + 1, "retried with backoff");
        }
    }

    /// A sample that leaves a sleeping thread out does not drop its name while the thread is
    /// listed: shown again, it costs no lookup. Once it is no longer listed its name is
    /// dropped, and a thread with its ident but another OS id is looked up, not given the
    /// old name.
    #[test]
    fn names_of_threads_left_out_stay_while_they_are_listed() {
        let mut l = *for_version(3, 12).unwrap();
        l.version = (3, 10);
        let threads = [
            (0x7f00_0000_1000u64, "MainThread"),
            (0x7f00_0000_2000, "sleeper"),
        ];
        let mut img = image(&l, &threads);
        put_str(&mut img, &l, 0x1_2000, "_name");
        let key = |ident: u64, tid: u64| NameKey {
            interp: 1,
            ident,
            tid,
        };
        let (main, sleeper) = (key(threads[0].0, 100), key(threads[1].0, 101));
        let mut names = ThreadNames::new(&l);
        let modules = |_| Ok(0x7_2000);
        let both = names.names(&img, &[main, sleeper], |_| false, modules);
        assert_eq!(both[1].as_deref(), Some("sleeper"));
        assert_eq!(names.stats().lookups, 1);
        // Left out of samples (idle) but listed, then shown again: no lookup.
        for _ in 0..10 {
            let got = names.names(&img, &[main], |k| *k == sleeper, modules);
            assert_eq!(got[0].as_deref(), Some("MainThread"));
            let got = names.names(&img, &[main, sleeper], |_| false, modules);
            assert_eq!(got[1].as_deref(), Some("sleeper"));
        }
        assert_eq!(names.stats().lookups, 1, "{:?}", names.stats());
        // It ended (not listed), and a new thread took its ident: looked up again.
        names.names(&img, &[main], |_| false, modules);
        let reused = key(threads[1].0, 102);
        let got = names.names(&img, &[main, reused], |_| false, modules);
        assert_eq!(got[1].as_deref(), Some("sleeper"));
        assert_eq!(names.stats().lookups, 2);
        // The same ident with a new OS id while the old one is still cached: looked up too.
        let again = key(threads[1].0, 103);
        names.names(&img, &[main, again], |k| *k == reused, modules);
        assert_eq!(names.stats().lookups, 3);
    }

    #[test]
    fn a_missing_threading_module_is_not_retried_every_sample() {
        let l = for_version(3, 12).unwrap();
        let img = MemoryImage::new();
        let mut names = ThreadNames::new(l);
        let keys = [NameKey {
            interp: 1,
            ident: 5,
            tid: 0,
        }];
        for _ in 0..1000 {
            assert_eq!(names.names(&img, &keys, |_| false, |_| Ok(0x1234)), vec![None]);
        }
        let s = names.stats();
        assert!(s.lookups <= 3, "{s:?}");
    }
}
