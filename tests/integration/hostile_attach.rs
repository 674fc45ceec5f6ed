//! Hostile and unlucky targets, the attach and process-lifecycle half (issue 14):
//!
//! - a target that maps crafted ELF files (a 480 MB string table of NUL bytes, a 500 MB
//!   `.rodata`, as sparse files) attaches under `ulimit -v 1G` in well under a CPU second;
//! - a target that truncates a mapped candidate file while pyspy attaches again and again never
//!   kills pyspy (or this test process, which attaches through the library) with `SIGBUS`;
//! - an executable or libpython deleted and replaced by another file of the same name is never
//!   read in its place: pyspy as root, as the target's owner and as `nobody` with only
//!   `CAP_SYS_PTRACE` reads the right file (`/proc/PID/exe`, `/proc/PID/map_files`) or says
//!   clearly why it cannot;
//! - chroot targets report their executable as they see it;
//! - whether a thread runs reads the same to root, the target's owner and `nobody` with
//!   `CAP_SYS_PTRACE` (from `/proc/PID/task/TID/syscall`, or `stat` where that is closed);
//! - `record --subprocesses` of a shell that starts Python later, a target that `exec`s another
//!   program (Python or not), and children that live a quarter of a second.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pyspy_tests::{
    compare_stacks, copy_executable, for_every_interpreter, interpreters, pyspy, sid_root,
    Interpreter, StagedDir, Target,
};
use serde_json::Value;

const HOSTILE: &str = include_str!("../targets/hostile.py");
const STATES: &str = include_str!("../targets/thread_states.py");

// ---------------------------------------------------------------------------------------------
// Running pyspy with limits, measuring what it cost
// ---------------------------------------------------------------------------------------------

/// One finished run: its output and what it cost (from `wait4`).
struct Run {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
    /// User + system CPU time.
    cpu: Duration,
    /// Peak resident set, KiB.
    max_rss_kib: i64,
}

impl Run {
    fn json(&self) -> Result<Value, String> {
        if !self.status.success() {
            return Err(format!("pyspy failed ({}): {}", self.status, self.stderr));
        }
        serde_json::from_slice(&self.stdout).map_err(|e| format!("not JSON ({e}): {}", self.stderr))
    }
}

/// Runs `cmd` with its address space limited to `address_space` bytes (as `ulimit -v` does),
/// killing it after 60 s.
#[allow(clippy::zombie_processes)] // reaped by wait4, which also reports what it cost
fn run_measured(mut cmd: Command, address_space: Option<u64>) -> Run {
    if let Some(limit) = address_space {
        // SAFETY: setrlimit is async-signal-safe and only changes the child's own limit.
        unsafe {
            cmd.pre_exec(move || {
                let rl = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &rl) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child, with valid out-pointers.
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if got == pid {
            break (ExitStatus::from_raw(status), usage);
        }
        assert!(got == 0, "wait4: {}", std::io::Error::last_os_error());
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Run {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned(),
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
    }
}

/// `pyspy dump --json --pid PID`, run by `wrapper` (e.g. setpriv) if given.
fn dump_cmd(pid: i32, wrapper: &[&str]) -> Command {
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(pyspy());
            c
        }
        None => Command::new(pyspy()),
    };
    cmd.args(["dump", "--json", "--pid", &pid.to_string()]);
    cmd
}

/// The wrappers that run pyspy without root's rights.
const AS_OWNER: &[&str] = &["setpriv", "--reuid=1234", "--regid=1234", "--clear-groups"];
const AS_NOBODY_WITH_PTRACE: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=+sys_ptrace",
    "--ambient-caps=+sys_ptrace",
];
/// What the error for a replaced library asks for: `map_files` rights besides ptrace.
const AS_NOBODY_WITH_MAP_FILES: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=+sys_ptrace,+checkpoint_restore,+dac_read_search",
    "--ambient-caps=+sys_ptrace,+checkpoint_restore,+dac_read_search",
];

fn interpreter(label: &str) -> Option<Interpreter> {
    let found = interpreters().into_iter().find(|i| i.label == label);
    if found.is_none() {
        eprintln!("WARNING: interpreter {label} is missing (see the harness's warning)");
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Crafted ELF files
// ---------------------------------------------------------------------------------------------

/// A section of a crafted file: its bytes are a hole of the sparse file (zeros).
struct Crafted {
    name: &'static str,
    kind: u32,
    addr: u64,
    size: u64,
    /// Index of the linked section (a symbol table's string table).
    link: u32,
    entry_size: u64,
}

/// Writes a 64-bit ELF file of `total` bytes (sparse: only the headers take disk space) whose
/// section headers describe `sections` (after the null section; `.shstrtab` comes last), laid
/// out from offset 1 MiB on.
fn write_crafted_elf(path: &Path, total: u64, sections: &[Crafted]) {
    let file = std::fs::File::create(path).expect("create crafted file");
    file.set_len(total).expect("size crafted file");
    let mut names = vec![0u8];
    let mut name_at = Vec::new();
    for name in sections.iter().map(|s| s.name).chain([".shstrtab"]) {
        name_at.push(names.len() as u32);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let (shoff, shstr_off) = (0x1000u64, 0x3000u64);
    let mut headers = vec![0u8; 64];
    let mut at = 1u64 << 20;
    let mut add = |name: u32, kind: u32, addr: u64, off: u64, size: u64, link: u32, es: u64| {
        let mut h = [0u8; 64];
        h[0..4].copy_from_slice(&name.to_le_bytes());
        h[4..8].copy_from_slice(&kind.to_le_bytes());
        h[16..24].copy_from_slice(&addr.to_le_bytes());
        h[24..32].copy_from_slice(&off.to_le_bytes());
        h[32..40].copy_from_slice(&size.to_le_bytes());
        h[40..44].copy_from_slice(&link.to_le_bytes());
        h[56..64].copy_from_slice(&es.to_le_bytes());
        headers.extend_from_slice(&h);
    };
    for (i, s) in sections.iter().enumerate() {
        add(name_at[i], s.kind, s.addr, at, s.size, s.link, s.entry_size);
        at = (at + s.size + 0xfff) & !0xfff;
    }
    assert!(at <= total, "sections do not fit in {total} bytes");
    add(
        name_at[sections.len()],
        3,
        0,
        shstr_off,
        names.len() as u64,
        0,
        0,
    );
    let shnum = sections.len() as u16 + 2;
    let mut ehdr = [0u8; 64];
    ehdr[..4].copy_from_slice(b"\x7fELF");
    ehdr[4] = 2; // 64-bit
    ehdr[5] = 1; // little-endian
    ehdr[6] = 1;
    ehdr[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
    ehdr[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
    ehdr[32..40].copy_from_slice(&64u64.to_le_bytes()); // program headers right after
    ehdr[40..48].copy_from_slice(&shoff.to_le_bytes());
    ehdr[52..54].copy_from_slice(&64u16.to_le_bytes());
    ehdr[54..56].copy_from_slice(&56u16.to_le_bytes());
    ehdr[56..58].copy_from_slice(&1u16.to_le_bytes());
    ehdr[58..60].copy_from_slice(&64u16.to_le_bytes());
    ehdr[60..62].copy_from_slice(&shnum.to_le_bytes());
    ehdr[62..64].copy_from_slice(&(shnum - 1).to_le_bytes());
    let mut phdr = [0u8; 56];
    phdr[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD of the whole file at 0
    phdr[4..8].copy_from_slice(&5u32.to_le_bytes()); // R+X
    phdr[32..40].copy_from_slice(&total.to_le_bytes());
    phdr[40..48].copy_from_slice(&total.to_le_bytes());
    file.write_all_at(&ehdr, 0).unwrap();
    file.write_all_at(&phdr, 64).unwrap();
    file.write_all_at(&headers, shoff).unwrap();
    file.write_all_at(&names, shstr_off).unwrap();
}

const MB: u64 = 1 << 20;

/// `libpython3.97.so`: 500 MB, a symbol table whose string table is 480 MB of NUL bytes.
fn huge_string_table(dir: &Path) -> &'static str {
    let name = "libpython3.97.so";
    write_crafted_elf(
        &dir.join(name),
        500 * MB,
        &[
            Crafted {
                name: ".symtab",
                kind: 2,
                addr: 0,
                size: 24 * 1000,
                link: 2,
                entry_size: 24,
            },
            Crafted {
                name: ".strtab",
                kind: 3,
                addr: 0,
                size: 480 * MB,
                link: 0,
                entry_size: 0,
            },
        ],
    );
    name
}

/// `python3.98`: 500 MB, nearly all of it `.rodata` (where the version string is looked for).
fn huge_rodata(dir: &Path) -> &'static str {
    let name = "python3.98";
    write_crafted_elf(
        &dir.join(name),
        500 * MB,
        &[Crafted {
            name: ".rodata",
            kind: 1,
            addr: 0x10_0000,
            size: 495 * MB,
            link: 0,
            entry_size: 0,
        }],
    );
    name
}

/// Starts `hostile.py map` mapping `files` (names in `dir`) on `interp`.
fn spawn_mapper(interp: &Interpreter, dir: &StagedDir, files: &[&str]) -> Target {
    let paths: Vec<String> = files
        .iter()
        .map(|f| dir.path().join(f).to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["map"];
    args.extend(paths.iter().map(String::as_str));
    Target::spawn_files(interp, &[("hostile.py", HOSTILE)], &args)
}

// ---------------------------------------------------------------------------------------------
// 1. Bounded attach
// ---------------------------------------------------------------------------------------------

/// Attach must cost bounded memory and time whatever the target maps: under `ulimit -v 1G`,
/// in less than a CPU second, with a small resident set.
#[test]
fn crafted_files_cost_bounded_memory_and_time() {
    let _ = pyspy();
    for_every_interpreter("attach with 500 MB crafted files mapped", |interp| {
        let dir = interp.stage_dir();
        let files = [
            huge_string_table(dir.host_path()),
            huge_rodata(dir.host_path()),
        ];
        let target = spawn_mapper(interp, &dir, &files);
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", target.pid())).unwrap();
        for f in files {
            if !maps.lines().any(|l| l.contains(f) && l.contains("r-x")) {
                return Err(format!("{f} is not mapped executable:\n{maps}"));
            }
        }
        let run = run_measured(dump_cmd(target.pid(), &[]), Some(1 << 30));
        if run.status.signal().is_some() {
            return Err(format!(
                "pyspy died of a signal: {}\n{}",
                run.status, run.stderr
            ));
        }
        let dump = run.json()?;
        compare_stacks(&target.truth, &dump, interp.has_qualname())?;
        eprintln!(
            "[{}] dump with crafted files mapped: {:?} CPU, {} MiB peak RSS",
            interp.label,
            run.cpu,
            run.max_rss_kib / 1024
        );
        if run.cpu > Duration::from_secs(1) {
            return Err(format!("attach took {:?} of CPU", run.cpu));
        }
        if run.max_rss_kib > 128 * 1024 {
            return Err(format!("attach used {} MiB", run.max_rss_kib / 1024));
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// 2. No signals from target files
// ---------------------------------------------------------------------------------------------

/// A target maps a big candidate file that is truncated and extended in a loop while pyspy
/// attaches again and again, in this process (through the library: a SIGBUS would kill the
/// test) and as the CLI (which must never die of a signal).
#[test]
fn a_candidate_truncated_while_read_is_an_error_not_a_signal() {
    let _ = pyspy();
    for_every_interpreter("attach while a mapped file is truncated", |interp| {
        let dir = interp.stage_dir();
        let name = "libpython3.96.so";
        let host = dir.host_path().join(name);
        write_crafted_elf(
            &host,
            256 * MB,
            &[
                Crafted {
                    name: ".symtab",
                    kind: 2,
                    addr: 0,
                    size: 24 * 4096,
                    link: 2,
                    entry_size: 24,
                },
                Crafted {
                    name: ".strtab",
                    kind: 3,
                    addr: 0,
                    size: 100 * MB,
                    link: 0,
                    entry_size: 0,
                },
                Crafted {
                    name: ".rodata",
                    kind: 1,
                    addr: 0x10_0000,
                    size: 100 * MB,
                    link: 0,
                    entry_size: 0,
                },
            ],
        );
        let target = spawn_mapper(interp, &dir, &[name]);
        let pid = target.pid();
        let stop = AtomicBool::new(false);
        let (attached, cycles) = std::thread::scope(|s| {
            let truncator = s.spawn(|| {
                let file = std::fs::OpenOptions::new().write(true).open(&host).unwrap();
                let mut cycles = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    file.set_len(64 << 10).unwrap();
                    std::thread::sleep(Duration::from_micros(300));
                    file.set_len(256 * MB).unwrap();
                    std::thread::sleep(Duration::from_micros(300));
                    cycles += 1;
                }
                cycles
            });
            let mut result = Ok(0);
            for i in 0..20 {
                if i % 4 == 0 {
                    let run = run_measured(dump_cmd(pid, &[]), None);
                    if run.status.signal().is_some() {
                        result = Err(format!("pyspy died: {}\n{}", run.status, run.stderr));
                        break;
                    }
                    if let Err(e) = run.json() {
                        result = Err(e);
                        break;
                    }
                } else {
                    let attached = pyspy_core::attach(pid, &pyspy_core::AttachOptions::default())
                        .and_then(|mut s| s.snapshot());
                    if let Err(e) = attached {
                        result = Err(format!("attach {i} failed: {e}"));
                        break;
                    }
                }
                result = result.map(|n| n + 1);
            }
            stop.store(true, Ordering::Relaxed);
            (result, truncator.join().unwrap())
        });
        let attached = attached?;
        eprintln!(
            "[{}] {attached} attaches while the file was truncated {cycles} times",
            interp.label
        );
        if cycles < 10 {
            return Err(format!("the file was truncated only {cycles} times"));
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// 3. Files replaced after the target mapped them
// ---------------------------------------------------------------------------------------------

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(parent: &Path, name: &str) -> Scratch {
        let dir = parent.join(format!("pyspy-hostile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replaces `path` (a file a process maps) by a copy of `other`: a new inode at the old name.
fn replace_file(path: &Path, other: &Path) {
    std::fs::remove_file(path).expect("delete the mapped file");
    copy_executable(other, path).expect("put another file in its place");
}

/// The interpreter is in the executable (Debian's static builds): it is run as user 1234 from
/// a copy, which is then replaced by another Python. pyspy as root, as user 1234 and as
/// `nobody` with CAP_SYS_PTRACE must all read the process's own executable.
#[test]
fn a_replaced_executable_is_never_read_in_its_place() {
    let _ = pyspy();
    let mut failures = Vec::new();
    for (label, other) in [
        ("3.11-debian", sid_root().join("usr/bin/python3.14")),
        ("3.14", sid_root().join("usr/bin/python3.15")),
        ("3.15", PathBuf::from("/usr/bin/python3.11")),
    ] {
        let Some(interp) = interpreter(label) else {
            failures.push(format!("{label}: missing"));
            continue;
        };
        if let Err(e) = replaced_executable(&interp, &other) {
            failures.push(format!("[{label}] {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `files` run by the interpreter `executable` (a path as the target sees it) as user 1234:
/// through `chroot --userspec` for chroot interpreters, else `setpriv`; the staging directory
/// is opened to that user first (the target writes its truth there).
fn spawn_as_1234(
    interp: &Interpreter,
    executable: &Path,
    files: &[(&str, &str)],
    args: &[&str],
) -> Target {
    let run_as_1234 = match &interp.chroot {
        Some(root) => format!(
            "chmod 777 .; exec chroot --userspec=1234:1234 {} {} \"$@\"",
            root.display(),
            executable.display()
        ),
        None => format!(
            "chmod 777 .; exec setpriv --reuid=1234 --regid=1234 --clear-groups {} \"$@\"",
            executable.display()
        ),
    };
    Target::spawn_files_with(interp, files, args, &|_| {
        let mut c = Command::new("sh");
        c.args(["-c", &run_as_1234, "sh"])
            .env("LC_ALL", "C.UTF-8")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        c
    })
}

fn replaced_executable(interp: &Interpreter, other: &Path) -> Result<(), String> {
    let (scratch, copy_target) = match &interp.chroot {
        Some(root) => {
            let s = Scratch::new(&root.join("tmp"), &format!("exe-{}", interp.label));
            let inside = Path::new("/tmp")
                .join(s.0.file_name().unwrap())
                .join("python3");
            (s, inside)
        }
        None => {
            let s = Scratch::new(&std::env::temp_dir(), &format!("exe-{}", interp.label));
            let path = s.0.join("python3");
            (s, path)
        }
    };
    let copy_host = scratch.0.join("python3");
    copy_executable(&interp.host_executable(), &copy_host).map_err(|e| e.to_string())?;
    let target = spawn_as_1234(interp, &copy_target, &[("hostile.py", HOSTILE)], &["map"]);
    let pid = target.pid();
    replace_file(&copy_host, other);
    let want = format!("{}.{}.", interp.version.0, interp.version.1);
    for (who, wrapper) in [
        ("root", &[][..]),
        ("the owner", AS_OWNER),
        ("nobody with CAP_SYS_PTRACE", AS_NOBODY_WITH_PTRACE),
    ] {
        let run = run_measured(dump_cmd(pid, wrapper), None);
        let dump = run.json().map_err(|e| format!("as {who}: {e}"))?;
        let version = dump["python_version"].as_str().unwrap_or_default();
        if !version.starts_with(&want) {
            return Err(format!("as {who}: version {version}, want {want}*"));
        }
        compare_stacks(&target.truth, &dump, interp.has_qualname())
            .map_err(|e| format!("as {who}: {e}"))?;
    }
    Ok(())
}

/// Whether a thread runs is read from its `syscall` file by root and by the target's owner, and
/// from `stat` by `nobody` with CAP_SYS_PTRACE, who may trace the target but not open that file
/// (it is the owner's alone). Whichever it is, thread_states.py's spinning thread is active
/// and its blocked threads are not. The target runs as user 1234 on every interpreter that
/// can (the chroot's and Debian's: pyenv's are under root's private home, and the threads
/// suite checks them as root).
#[test]
fn active_is_the_same_whichever_file_gives_a_thread_s_state() {
    let _ = pyspy();
    let runnable: Vec<Interpreter> = interpreters()
        .into_iter()
        .filter(|i| i.chroot.is_some() || !i.executable.starts_with("/root"))
        .collect();
    let tested: Vec<&str> = runnable.iter().map(|i| i.label.as_str()).collect();
    let failures: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = runnable
            .iter()
            .map(|interp| s.spawn(move || active_as_each_user(interp).err()))
            .collect();
        runs.into_iter()
            .zip(&runnable)
            .filter_map(|(run, interp)| {
                let failed = run.join().unwrap_or_else(|_| Some("panicked".into()));
                failed.map(|e| format!("[{}] {e}", interp.label))
            })
            .collect()
    });
    eprintln!(
        "active read as root, the owner and nobody with CAP_SYS_PTRACE on: {}",
        tested.join(", ")
    );
    assert!(
        tested.len() >= 3,
        "interpreters that can run as another user are missing (see the harness's warning): \
         only {tested:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Dumps thread_states.py, run as user 1234, as root, as its owner and as `nobody` with
/// CAP_SYS_PTRACE: the spinner is active in 2 of 3 dumps each at least, blocked threads in none.
fn active_as_each_user(interp: &Interpreter) -> Result<(), String> {
    let target = spawn_as_1234(
        interp,
        &interp.executable,
        &[("thread_states.py", STATES)],
        &[],
    );
    std::fs::write(target.dir().host_path().join("go"), "").map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    let pid = target.pid();
    for (who, wrapper) in [
        ("root", &[][..]),
        ("the owner", AS_OWNER),
        ("nobody with CAP_SYS_PTRACE", AS_NOBODY_WITH_PTRACE),
    ] {
        let mut spinner_active = 0;
        for _ in 0..3 {
            let run = run_measured(dump_cmd(pid, wrapper), None);
            let dump = run.json().map_err(|e| format!("as {who}: {e}"))?;
            let threads = dump["threads"].as_array().cloned().unwrap_or_default();
            if threads.len() != 4 {
                return Err(format!("as {who}: {} threads, want 4", threads.len()));
            }
            for t in &threads {
                let (name, active) = (t["name"].as_str().unwrap_or("?"), &t["active"]);
                if name == "spinner" {
                    spinner_active += usize::from(*active == Value::Bool(true));
                } else if *active != Value::Bool(false) {
                    return Err(format!(
                        "as {who}: blocked thread {name} is active {active}"
                    ));
                }
            }
        }
        if spinner_active < 2 {
            return Err(format!(
                "as {who}: the spinner active in {spinner_active} of 3 dumps"
            ));
        }
    }
    Ok(())
}

/// The interpreter is in libpython (pyenv builds): the process maps a copy of it (through
/// `LD_LIBRARY_PATH`), which is then replaced by another version's libpython. Root reads the
/// mapped copy through `/proc/PID/map_files`, and so does `nobody` with the capabilities the
/// error names; `nobody` with only CAP_SYS_PTRACE cannot, and must say why rather than read
/// the other file.
#[test]
fn a_replaced_libpython_is_never_read_in_its_place() {
    let _ = pyspy();
    let all = interpreters();
    let pyenv: Vec<&Interpreter> = all
        .iter()
        .filter(|i| i.chroot.is_none() && i.label != "3.11-debian")
        .collect();
    for_every_interpreter("a replaced libpython", |interp| {
        let Some(i) = pyenv.iter().position(|p| p.label == interp.label) else {
            return Ok(()); // the interpreter is in the executable: see the test above
        };
        let other = pyenv[(i + 1) % pyenv.len()];
        // libpython3.12.so.1.0, libpython3.7m.so.1.0, ...
        let lib = |p: &Interpreter| {
            let dir = p
                .host_executable()
                .parent()
                .and_then(Path::parent)
                .unwrap()
                .join("lib");
            std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .find(|f| {
                    let name = f.file_name().unwrap_or_default().to_string_lossy();
                    name.starts_with("libpython") && name.ends_with(".so.1.0")
                })
                .unwrap_or_else(|| panic!("no libpython*.so.1.0 in {}", dir.display()))
        };
        let scratch = Scratch::new(&std::env::temp_dir(), &format!("lib-{}", interp.label));
        let copy = scratch.0.join(lib(interp).file_name().unwrap());
        std::fs::copy(lib(interp), &copy).map_err(|e| e.to_string())?;
        let target = Target::spawn_files_with(interp, &[("hostile.py", HOSTILE)], &["map"], &|i| {
            let mut c = i.command();
            c.env("LD_LIBRARY_PATH", &scratch.0);
            c
        });
        let pid = target.pid();
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        if !maps.contains(&*copy.to_string_lossy()) {
            return Err(format!("the target does not map {}", copy.display()));
        }
        replace_file(&copy, &lib(other));

        for (who, wrapper) in [
            ("root", &[][..]),
            ("nobody with map_files rights", AS_NOBODY_WITH_MAP_FILES),
        ] {
            let run = run_measured(dump_cmd(pid, wrapper), None);
            let dump = run.json().map_err(|e| format!("as {who}: {e}"))?;
            compare_stacks(&target.truth, &dump, interp.has_qualname())
                .map_err(|e| format!("as {who}: {e}"))?;
        }

        let run = run_measured(dump_cmd(pid, AS_NOBODY_WITH_PTRACE), None);
        let why = run.stderr.trim();
        if run.status.success()
            || !why.contains("permission denied")
            || !why.contains("was replaced")
            || !why.contains("CAP_CHECKPOINT_RESTORE")
            || why.lines().count() != 1
        {
            return Err(format!(
                "as nobody with CAP_SYS_PTRACE: want one clear error, got {}: {why}\n{}",
                run.status,
                String::from_utf8_lossy(&run.stdout)
            ));
        }
        Ok(())
    });
}

/// Copies `from` to `to` with its section headers gone from the ELF header (`e_shoff`,
/// `e_shnum`, `e_shstrndx` zeroed), as `sstrip` leaves a file: loaders need only the program
/// headers.
fn copy_without_section_headers(from: &Path, to: &Path) {
    let mut bytes = std::fs::read(from).expect("read the binary");
    bytes[40..48].fill(0);
    bytes[60..64].fill(0);
    // Written under another name and run from a copy `cp` makes (see `copy_executable`).
    let staging = to.with_extension("staging");
    std::fs::write(&staging, bytes).expect("write the copy");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy_executable(&staging, to).expect("copy the binary");
    std::fs::remove_file(&staging).unwrap();
}

/// The interpreter's binary without section headers: its dynamic symbols are found through the
/// dynamic segment (`DT_SYMTAB`, `DT_HASH`/`DT_GNU_HASH`), so `--locate symbols` works from
/// 3.7 on (`_PyRuntime` is exported); 2.7 and 3.6 need `interp_head`, which only `.symtab` has,
/// and fail with a clear error.
#[test]
fn a_binary_without_section_headers_is_read_through_its_dynamic_segment() {
    let _ = pyspy();
    for_every_interpreter("no section headers", |interp| {
        let exe = interp.host_executable();
        let lib_dir = exe.parent().and_then(Path::parent).unwrap().join("lib");
        let libpython = std::fs::read_dir(&lib_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|f| {
                let name = f.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with("libpython") && name.ends_with(".so.1.0")
            });
        let parent = match &interp.chroot {
            Some(root) => root.join("tmp"),
            None => std::env::temp_dir(),
        };
        let scratch = Scratch::new(&parent, &format!("noshdr-{}", interp.label));
        let target = match (&libpython, &interp.chroot) {
            // pyenv: the interpreter is in libpython, loaded from the scratch directory.
            (Some(lib), None) => {
                copy_without_section_headers(lib, &scratch.0.join(lib.file_name().unwrap()));
                Target::spawn_files_with(interp, &[("hostile.py", HOSTILE)], &["map"], &|i| {
                    let mut c = i.command();
                    c.env("LD_LIBRARY_PATH", &scratch.0);
                    c
                })
            }
            // Debian's static builds: the interpreter is in the executable.
            _ => {
                let copy = scratch.0.join("python3");
                copy_without_section_headers(&exe, &copy);
                let inside = match &interp.chroot {
                    Some(_) => Path::new("/tmp")
                        .join(scratch.0.file_name().unwrap())
                        .join("python3"),
                    None => copy.clone(),
                };
                Target::spawn_files_with(interp, &[("hostile.py", HOSTILE)], &["map"], &|i| {
                    let mut c = match &i.chroot {
                        Some(root) => {
                            let mut c = Command::new("chroot");
                            c.arg(root).arg(&inside);
                            c
                        }
                        None => Command::new(&inside),
                    };
                    c.env("LC_ALL", "C.UTF-8")
                        .env("PYTHONDONTWRITEBYTECODE", "1");
                    c
                })
            }
        };
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", target.pid())).unwrap();
        if !maps.contains(&*scratch.0.to_string_lossy()) {
            return Err(format!(
                "the target maps nothing from {}",
                scratch.0.display()
            ));
        }
        let mut cmd = dump_cmd(target.pid(), &[]);
        cmd.args(["--locate", "symbols"]);
        let run = run_measured(cmd, None);
        if interp.version < (3, 7) {
            let why = run.stderr.trim();
            return if !run.status.success()
                && why.contains("not a Python process")
                && why.lines().count() == 1
            {
                Ok(())
            } else {
                Err(format!("want a clear error, got {}: {why}", run.status))
            };
        }
        let dump = run.json()?;
        compare_stacks(&target.truth, &dump, interp.has_qualname())
    });
}

// ---------------------------------------------------------------------------------------------
// 10. Chroot paths
// ---------------------------------------------------------------------------------------------

/// A process in a chroot reports its executable and interpreter binary as it sees them.
#[test]
fn chroot_targets_report_paths_as_they_see_them() {
    let _ = pyspy();
    let mut checked = 0;
    for interp in interpreters() {
        let target = pyspy_tests::scenarios::spawn_idle(&interp, None);
        let want = interp.executable.to_string_lossy().into_owned();
        let run = run_measured(dump_cmd(target.pid(), &[]), None);
        let dump = run
            .json()
            .unwrap_or_else(|e| panic!("[{}] {e}", interp.label));
        let exe = dump["executable"].as_str().unwrap_or_default();
        // pyenv's bin/python is a link to python3.X; compare the resolved files.
        let real = |p: &str| {
            let host = match &interp.chroot {
                Some(root) => root.join(p.trim_start_matches('/')),
                None => PathBuf::from(p),
            };
            std::fs::canonicalize(host).ok()
        };
        assert!(
            real(exe).is_some() && real(exe) == real(&want),
            "[{}] executable {exe}, want {want} as the target sees it",
            interp.label
        );
        if interp.chroot.is_some() {
            assert_eq!(exe, want, "[{}]", interp.label);
            let mut text_cmd = Command::new(pyspy());
            text_cmd.args(["dump", "--pid", &target.pid().to_string()]);
            let text = String::from_utf8(run_measured(text_cmd, None).stdout).unwrap();
            assert!(
                text.starts_with(&format!("Process {}: {want}\nPython v", target.pid()))
                    && text
                        .lines()
                        .nth(1)
                        .unwrap_or("")
                        .ends_with(&format!("({want})")),
                "[{}] {text}",
                interp.label
            );
            let session =
                pyspy_core::attach(target.pid(), &pyspy_core::AttachOptions::default()).unwrap();
            assert_eq!(session.executable(), want);
            assert_eq!(session.interpreter_binary(), want);
            checked += 1;
        }
    }
    assert!(
        checked > 0 || std::env::var_os("CI").is_none(),
        "no chroot interpreter"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Process lifecycle
// ---------------------------------------------------------------------------------------------

/// `pyspy record ARGS` with collapsed output; (run, the profile's text).
fn record(args: &[String], seconds: u64) -> (Run, String) {
    let out = tempfile_path("record", "txt");
    let mut cmd = Command::new(pyspy());
    cmd.args(["record", "-f", "collapsed", "-o"])
        .arg(&out)
        .args(["--duration", &seconds.to_string()])
        .args(args);
    let run = run_measured(cmd, None);
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    (run, text)
}

fn tempfile_path(what: &str, ext: &str) -> PathBuf {
    use std::sync::atomic::AtomicUsize;
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "pyspy-hostile-{what}-{}-{}.{ext}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The pids of the processes whose stacks hold `function` in a collapsed profile with process
/// frames (`process PID: "cmdline";...`).
fn pids_running(profile: &str, function: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = profile
        .lines()
        .filter(|l| l.contains(&format!(";{function} (")))
        .filter_map(|l| l.strip_prefix("process ")?.split(':').next()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The command line that runs `hostile.py` (staged in `dir`) on `interp`, as words for a shell.
fn python_words(interp: &Interpreter, dir: &StagedDir) -> Vec<String> {
    let cmd = interp.command();
    let mut words: Vec<String> = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.push(dir.path().join("hostile.py").to_string_lossy().into_owned());
    words.push(dir.path().join("truth.json").to_string_lossy().into_owned());
    words
}

/// A shell that starts Python only after a second: `record --pid SHELL --subprocesses` and
/// `record --subprocesses -- sh -c ...` wait for it and sample it.
#[test]
fn record_subprocesses_of_a_shell_that_starts_python_later() {
    let _ = pyspy();
    for_every_interpreter("record --subprocesses of a shell", |interp| {
        let dir = interp.stage_dir();
        dir.write("hostile.py", HOSTILE);
        let script = format!(
            "sleep 1; {} busy 1.5; true",
            python_words(interp, &dir).join(" ")
        );
        // By pid: the shell is running (and not Python) when pyspy attaches.
        let mut shell = Command::new("sh")
            .args(["-c", &script])
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(200));
        let (run, profile) = record(
            &[
                "--pid".into(),
                shell.id().to_string(),
                "--subprocesses".into(),
            ],
            20,
        );
        let _ = shell.kill();
        let _ = shell.wait();
        check_shell_recording("--pid", shell.id(), &run, &profile)?;
        // Started by pyspy.
        let (run, profile) = record(
            &[
                "--subprocesses".into(),
                "--".into(),
                "sh".into(),
                "-c".into(),
                script.clone(),
            ],
            20,
        );
        check_shell_recording("-- sh -c", 0, &run, &profile)
    });
}

fn check_shell_recording(how: &str, shell: u32, run: &Run, profile: &str) -> Result<(), String> {
    let pids = pids_running(profile, "python_busy");
    if !run.status.success()
        || pids.is_empty()
        || pids.contains(&shell)
        || !run.stderr.contains("runs no Python")
        || !run.stderr.contains("exited")
    {
        return Err(format!(
            "{how}: {} python_busy in {pids:?}\n{}\n{profile}",
            run.status, run.stderr
        ));
    }
    Ok(())
}

/// Starts `hostile.py ARGS` (staged in `dir`) on `interp` and waits until its interpreter is
/// initialised.
fn spawn_hostile(interp: &Interpreter, dir: &StagedDir, args: &[String]) -> std::process::Child {
    let mut cmd = interp.command();
    cmd.arg(dir.path().join("hostile.py"))
        .arg(dir.path().join("truth.json"))
        .args(args)
        .stdin(Stdio::null());
    let child = cmd.spawn().expect("start the target");
    let options = pyspy_core::AttachOptions::default().wait_for_init(Duration::from_secs(10));
    if let Err(e) = pyspy_core::attach(child.id() as i32, &options) {
        eprintln!(
            "[{}] warning: the target did not initialise: {e}",
            interp.label
        );
    }
    child
}

/// A target that `exec`s a program that is not Python: `record` ends at once, cleanly, with
/// the samples taken before. One that `exec`s Python again is followed.
#[test]
fn record_ends_or_follows_at_an_exec() {
    let _ = pyspy();
    for_every_interpreter("record across exec", |interp| {
        let dir = interp.stage_dir();
        dir.write("hostile.py", HOSTILE);
        let words = |s: &[&str]| s.iter().map(|w| w.to_string()).collect::<Vec<String>>();

        // Into /bin/sleep.
        // Long enough before the exec for pyspy to start and attach on a loaded machine.
        let mut child = spawn_hostile(interp, &dir, &words(&["exec", "3", "/bin/sleep", "30"]));
        let started = Instant::now();
        let (run, profile) = record(&["--pid".into(), child.id().to_string()], 20);
        let took = started.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        let errors = errors_reported(&run.stderr);
        if !run.status.success()
            || !run.stderr.contains(" /usr/bin/sleep (exec)")
            || !profile.contains("before_exec (")
            || took > Duration::from_secs(12)
            || errors > 2
        {
            return Err(format!(
                "exec into sleep: {} after {took:?}, {errors} errors:\n{}\n{profile}",
                run.status, run.stderr
            ));
        }

        // Into Python again: hostile.py busy, by the interpreter's path as the target sees it.
        let mut args = words(&["exec", "2.5", &interp.executable.to_string_lossy()]);
        args.extend(python_words(interp, &dir).into_iter().rev().take(2).rev());
        args.extend(words(&["busy", "1.5"]));
        let mut child = spawn_hostile(interp, &dir, &args);
        let (run, profile) = record(&["--pid".into(), child.id().to_string()], 20);
        let _ = child.kill();
        let _ = child.wait();
        if !run.status.success()
            || !profile.contains("before_exec (")
            || !profile.contains("python_busy (")
            || !run.stderr.contains("exited")
        {
            return Err(format!(
                "exec into Python: {}:\n{}\n{profile}",
                run.status, run.stderr
            ));
        }
        Ok(())
    });
}

/// The error count from pyspy's summary line (`pyspy: 201 samples, 3 errors, ...`).
fn errors_reported(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once(" samples, ")?;
            rest.split(' ').next()?.parse().ok()
        })
        .unwrap_or(u64::MAX)
}

/// Ten children that live a quarter of a second each, one after another: nearly all are
/// found and sampled (a `/proc` scan every 500 ms found about half).
///
/// The recordings run one at a time: a dozen spinning targets and their samplers at once on a
/// two-core machine would starve the sampler of the quarter second it has per child.
#[test]
fn short_lived_children_are_sampled() {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _ = pyspy();
    for_every_interpreter("short-lived children", |interp| {
        let dir = interp.stage_dir();
        dir.write("hostile.py", HOSTILE);
        let mut args: Vec<String> = vec!["--subprocesses".into(), "--".into()];
        args.extend(python_words(interp, &dir));
        args.extend(["children".into(), "10".into(), "0.25".into()]);
        let (run, profile) = {
            let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
            record(&args, 30)
        };
        let truth = std::fs::read_to_string(dir.host_path().join("truth.json")).unwrap_or_default();
        let children: Vec<u32> = truth.lines().filter_map(|l| l.parse().ok()).collect();
        let seen = pids_running(&profile, "short_lived_child");
        let found = children.iter().filter(|c| seen.contains(c)).count();
        eprintln!(
            "[{}] sampled {found} of {} short-lived children",
            interp.label,
            children.len()
        );
        if !run.status.success() || children.len() != 10 || found < 8 {
            return Err(format!(
                "{}: children {children:?}, sampled {seen:?}\n{}\n{profile}",
                run.status, run.stderr
            ));
        }
        Ok(())
    });
}
