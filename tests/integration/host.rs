//! The whole machine: `pyspy push --all` (and `datakit --all`) against local receivers while
//! Python processes of every interpreter come and go — in a chroot, in a new pid and mount
//! namespace, in cgroups shaped like a docker container's and a Kubernetes pod's, one not
//! initialised yet, one that a shell `exec`s, one that reuses the pid of another — and the
//! library's `Discovery` and `HostSampler` directly (the limit, failures of one process).
//!
//! Other tests (and other people's) run Python processes on this machine at the same time:
//! every target carries a marker in its command line, pyspy is told `--include MARKER`, and
//! the assertions are about those processes only.
//!
//! The truth: each target writes, once initialised, its own pid (as it sees it), version and
//! the time; the test knows which host pid it started, which environment, cgroup and
//! namespace. pyspy's stderr lines are stamped as they arrive ("profiling process PID",
//! "process PID ... exited"); every upload is decoded (Pyroscope's `PushRequest` and the pprof
//! inside; OTLP's `ExportProfilesServiceRequest`; DataKit's `event.json`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use pyspy_tests::proto::opentelemetry::proto::profiles::v1development as otlp_pb;
use pyspy_tests::proto::{pprof as pprof_pb, pyroscope as pyroscope_pb};
use pyspy_tests::receiver::{Receiver, Request};
use pyspy_tests::{interpreters, pyspy, Interpreter, StagedDir};
use serde_json::Value;

/// The target: writes its facts once initialised, then idles (or, `busy`, works 2 ms of
/// every 50). Python 2.7 and 3.x.
const TARGET: &str = r#"
import json, os, sys, time

def busy_step():
    end = time.time() + 0.002
    while time.time() < end:
        pass

def idle_step():
    time.sleep(0.05)

def main_loop(busy):
    while True:
        if busy:
            busy_step()
        idle_step()

ready, marker = sys.argv[1], sys.argv[2]
busy = len(sys.argv) > 3 and sys.argv[3] == 'busy'
facts = {'pid': os.getpid(), 'version': '%d.%d.%d' % sys.version_info[:3], 'time': time.time()}
with open(ready + '.tmp', 'w') as f:
    json.dump(facts, f)
os.rename(ready + '.tmp', ready)
main_loop(busy)
"#;

/// A library that holds a program up for `$PYSPY_TEST_DELAY` seconds before `main`: a python
/// whose libpython is mapped but whose interpreter is not initialised yet.
const DELAY_C: &str = r#"
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void delay(void) {
    const char *s = getenv("PYSPY_TEST_DELAY");
    if (s) usleep((useconds_t)(atof(s) * 1e6));
}
"#;

/// Seconds between scans in these tests; "appears within two scan intervals" is measured
/// against it.
const SCAN: f64 = 0.5;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A marker for this test's command lines.
fn marker(test: &str) -> String {
    format!("pyspyhost{}{test}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------

/// A started target: the process the test launched (python itself, or `unshare`, or a shell
/// that `exec`s python) and the python's host pid once known.
struct Proc {
    name: String,
    child: Child,
    /// The python's pid as the host sees it (for `unshare`, its child).
    pid: i32,
    /// Where the target writes its facts (host path), and the facts once written.
    ready: PathBuf,
    facts: Option<Value>,
    _dir: Option<StagedDir>,
    /// Killed and reaped: its pid may name another process now (the test reuses pids).
    killed: bool,
}

impl Proc {
    /// Waits (at most `limit`) for the facts file; returns them.
    fn wait_ready(&mut self, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(&self.ready) {
                let facts: Value = serde_json::from_str(&text).unwrap();
                self.facts = Some(facts.clone());
                return facts;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("target {} exited early: {status}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("target {} wrote no facts within {limit:?}", self.name);
    }

    /// When the target was ready (its own clock).
    fn ready_at(&self) -> f64 {
        self.facts
            .as_ref()
            .and_then(|f| f["time"].as_f64())
            .unwrap()
    }

    /// Kills the python and what launched it, reaps what is ours; returns when it was gone.
    /// That is after the reap, not at the kill: SIGKILL takes effect when the target is next
    /// scheduled, and until then its memory is readable and a sample of it is true.
    fn kill(&mut self) -> f64 {
        // SAFETY: kill(2) of a pid this test started (for unshare's child: still running, as
        // unshare waits for it).
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.killed = true;
        now()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.killed {
            return; // its pid may be another process's now
        }
        // SAFETY: as in kill.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stages the target where `interp` sees it; returns (dir, script, ready path as the target
/// sees it, ready path on the host).
fn stage(interp: &Interpreter, name: &str) -> (StagedDir, PathBuf, PathBuf, PathBuf) {
    let dir = interp.stage_dir();
    let (script, _) = dir.write(&format!("{name}.py"), TARGET);
    let ready = dir.path().join("ready.json");
    let ready_host = dir.host_path().join("ready.json");
    (dir, script, ready, ready_host)
}

fn base_env(cmd: &mut Command) {
    cmd.env("LC_ALL", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("DD_SERVICE")
        .env_remove("PYROSCOPE_APPLICATION_NAME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
}

/// How a target is started.
enum Launch<'a> {
    /// `python hostscript.py READY MARKER [busy]` with these environment variables.
    Plain(&'a [(&'a str, &'a str)], bool),
    /// `python -m hostmod READY MARKER` (cwd: the staging directory).
    Module,
    /// `sh -c 'echo $$ > CGROUP/cgroup.procs && exec python ...'`, with these environment
    /// variables.
    InCgroup(&'a Path, &'a [(&'a str, &'a str)]),
    /// `unshare --pid --fork --mount-proc`: python is pid 1 there, and its interpreter is
    /// bind-mounted at a path that exists only in that mount namespace.
    Namespaces(&'a Path),
    /// `sh -c 'sleep 2; exec python ...'`: a shell first.
    Exec,
    /// With `LD_PRELOAD` of the delay library: not initialised for `delay` seconds.
    Delayed(&'a Path, f64),
}

fn start(interp: &Interpreter, marker: &str, launch: Launch) -> Proc {
    let name = match launch {
        Launch::Module => "hostmod",
        _ => "hostscript",
    };
    let (dir, script, ready, ready_host) = stage(interp, name);
    let py = interp.command();
    let program: Vec<String> = std::iter::once(py.get_program())
        .chain(py.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let shell_quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let argv_tail = format!(
        "{} {} {}",
        shell_quote(&script.display().to_string()),
        shell_quote(&ready.display().to_string()),
        shell_quote(marker)
    );
    let mut cmd;
    match launch {
        Launch::Plain(env, busy) => {
            cmd = Command::new(&program[0]);
            cmd.args(&program[1..]).arg(&script).arg(&ready).arg(marker);
            if busy {
                cmd.arg("busy");
            }
            base_env(&mut cmd);
            for (k, v) in env {
                cmd.env(k, v);
            }
        }
        Launch::Module => {
            cmd = Command::new(&program[0]);
            cmd.args(&program[1..])
                .args(["-m", "hostmod"])
                .arg(&ready)
                .arg(marker)
                .current_dir(dir.host_path());
            base_env(&mut cmd);
        }
        Launch::InCgroup(cgroup, env) => {
            let line = format!(
                "echo $$ > {} && exec {} {argv_tail}",
                shell_quote(&cgroup.join("cgroup.procs").display().to_string()),
                program
                    .iter()
                    .map(|p| shell_quote(p))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            cmd = Command::new("sh");
            cmd.args(["-c", &line]);
            base_env(&mut cmd);
            for (k, v) in env {
                cmd.env(k, v);
            }
        }
        Launch::Namespaces(mount_point) => {
            assert!(interp.chroot.is_none());
            let exe = interp.host_executable();
            let prefix = exe.parent().unwrap().parent().unwrap();
            let inside = mount_point.join("bin").join(exe.file_name().unwrap());
            let line = format!(
                "mount --bind {} {mp} && LD_LIBRARY_PATH={mp}/lib exec {} {argv_tail}",
                shell_quote(&prefix.display().to_string()),
                shell_quote(&inside.display().to_string()),
                mp = shell_quote(&mount_point.display().to_string()),
            );
            cmd = Command::new("unshare");
            cmd.args([
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                "sh",
                "-c",
                &line,
            ]);
            base_env(&mut cmd);
        }
        Launch::Exec => {
            let line = format!(
                "sleep 2; exec {} {argv_tail}",
                program
                    .iter()
                    .map(|p| shell_quote(p))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            cmd = Command::new("sh");
            cmd.args(["-c", &line]);
            base_env(&mut cmd);
        }
        Launch::Delayed(library, seconds) => {
            cmd = Command::new(&program[0]);
            cmd.args(&program[1..]).arg(&script).arg(&ready).arg(marker);
            base_env(&mut cmd);
            cmd.env("LD_PRELOAD", library)
                .env("PYSPY_TEST_DELAY", seconds.to_string());
        }
    }
    let namespaced = matches!(launch, Launch::Namespaces(_));
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("[{}] cannot start {cmd:?}: {e}", interp.label));
    let mut pid = child.id() as i32;
    if namespaced {
        pid = only_child(pid, Duration::from_secs(10));
    }
    Proc {
        name: format!("{} ({})", interp.label, name),
        child,
        pid,
        ready: ready_host,
        facts: None,
        _dir: Some(dir),
        killed: false,
    }
}

/// The one child of `parent` (from `/proc/PARENT/task/PARENT/children`).
fn only_child(parent: i32, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("process {parent} started no child");
}

/// A non-Python process with the marker in its command line.
fn start_other(marker: &str) -> Child {
    Command::new("sh")
        .args(["-c", "sleep 600", marker])
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// A program named `python-*` that is not Python (the name makes it a candidate): a copy of
/// the shell.
fn start_impostor(dir: &Path, marker: &str) -> Child {
    let fake = dir.join("python-impostor");
    std::fs::copy("/bin/sh", &fake).unwrap();
    Command::new(&fake)
        .args(["-c", "sleep 600", marker])
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// Compiles the delay library.
fn delay_library(dir: &Path) -> PathBuf {
    let src = dir.join("delay.c");
    let lib = dir.join("libdelay.so");
    std::fs::write(&src, DELAY_C).unwrap();
    let out = Command::new("gcc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .expect("gcc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

/// Starts a process whose pid is `pid`, by setting `/proc/sys/kernel/ns_last_pid` right
/// before the fork (root only). Other processes of the machine fork too, so it may take a
/// few tries (for at most 30 s); a process that got another pid is killed again, and while
/// another process holds the pid, nothing is forked.
///
/// Afterwards the kernel's pid cursor is put back where it was, so that the processes forked
/// next do not take the pids this test freed just before (a killed target's pid taken by the
/// next target would make the test see uploads of that pid after the kill).
fn start_with_pid(pid: i32, mut make: impl FnMut() -> Proc) -> Proc {
    const CURSOR: &str = "/proc/sys/kernel/ns_last_pid";
    let cursor = |what| -> i32 {
        std::fs::read_to_string(CURSOR)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("reading {CURSOR} {what}"))
    };
    let before = cursor("before");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if Path::new(&format!("/proc/{pid}")).exists() {
            // Another process (or thread) took the pid meanwhile: a busy machine, a build
            // beside the tests. Forking cannot get it until that one ends.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        std::fs::write(CURSOR, (pid - 1).to_string())
            .expect("writing /proc/sys/kernel/ns_last_pid (the test runs as root)");
        let p = make();
        if p.pid == pid {
            if cursor("after") < before {
                let _ = std::fs::write(CURSOR, before.to_string());
            }
            return p;
        }
        drop(p);
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("could not start a process with pid {pid} in 30 s: the machine forks too much");
}

// ---------------------------------------------------------------------------------------------
// Cgroups shaped like a container runtime's
// ---------------------------------------------------------------------------------------------

/// A cgroup this test made, removed (deepest first, only what it made) on drop.
struct FakeCgroup {
    leaf: PathBuf,
    made: Vec<PathBuf>,
}

impl FakeCgroup {
    /// Makes `root/relative`, recording each directory it had to make.
    fn make(root: &Path, relative: &str) -> FakeCgroup {
        let mut made = Vec::new();
        let mut dir = root.to_path_buf();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("cannot make cgroup {}: {e}", dir.display()));
                made.push(dir.clone());
            }
        }
        FakeCgroup { leaf: dir, made }
    }
}

impl Drop for FakeCgroup {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            // A cgroup empties when its last process is reaped, a moment after the kill.
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The cgroup hierarchies mounted here: (cgroup v2 mount point, a v1 hierarchy's mount point).
fn cgroup_mounts() -> (Option<PathBuf>, Option<PathBuf>) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let mut v2 = None;
    let mut v1 = Vec::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        match f[2] {
            "cgroup2" => v2 = v2.or(Some(PathBuf::from(f[1]))),
            "cgroup" => v1.push((PathBuf::from(f[1]), f[3].to_string())),
            _ => {}
        }
    }
    // A v1 hierarchy without resource limits to get in the way: pids, else any.
    let v1 = v1
        .iter()
        .find(|(_, opts)| opts.split(',').any(|o| o == "pids"))
        .or(v1.first())
        .map(|(p, _)| p.clone());
    (v2, v1)
}

/// 64 hex digits, different per test process and call.
fn container_id(salt: &str) -> String {
    let seed = format!("{}-{salt}-{}", std::process::id(), now());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::new();
    for round in 0..4u8 {
        for b in seed.bytes().chain([round]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

/// The docker-shaped cgroup: `/docker/<id>` in a v1 hierarchy, else
/// `/system.slice/docker-<id>.scope` in the v2 one. Returns it and (id, runtime).
fn docker_cgroup() -> (FakeCgroup, String) {
    let id = container_id("docker");
    let cg = match cgroup_mounts() {
        (_, Some(v1)) => FakeCgroup::make(&v1, &format!("docker/{id}")),
        (Some(v2), None) => FakeCgroup::make(&v2, &format!("system.slice/docker-{id}.scope")),
        (None, None) => panic!("no cgroup hierarchy is mounted"),
    };
    (cg, id)
}

/// The Kubernetes-shaped cgroup (systemd driver, containerd) in the v2 hierarchy, else the
/// cgroupfs-driver shape in a v1 one. Returns it, the container id, the pod uid, and the
/// runtime the path names.
fn kubepods_cgroup() -> (FakeCgroup, String, String, Option<&'static str>) {
    let id = container_id("kubepods");
    let uid = format!(
        "{}-{}-{}-{}-{}",
        &id[0..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    );
    match cgroup_mounts() {
        (Some(v2), _) => {
            let underscored = uid.replace('-', "_");
            let path = format!(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{underscored}.slice/cri-containerd-{id}.scope"
            );
            (FakeCgroup::make(&v2, &path), id, uid, Some("containerd"))
        }
        (None, Some(v1)) => {
            let path = format!("kubepods/besteffort/pod{uid}/{id}");
            (FakeCgroup::make(&v1, &path), id, uid, None)
        }
        (None, None) => panic!("no cgroup hierarchy is mounted"),
    }
}

// ---------------------------------------------------------------------------------------------
// pyspy, its stderr, its uploads
// ---------------------------------------------------------------------------------------------

/// `pyspy` running in the background, its stderr lines stamped as they arrive.
struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<(f64, String)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    fn start(args: &[String]) -> Agent {
        let mut child = Command::new(pyspy())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((now(), line));
            }
        });
        Agent {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn lines(&self) -> Vec<(f64, String)> {
        self.lines.lock().unwrap().clone()
    }

    fn text(&self) -> String {
        self.lines()
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The first line matching `pred`, waiting at most `limit`.
    fn wait_line(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<(f64, String)> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = self.lines().into_iter().find(|(_, l)| pred(l)) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// When pyspy said it profiles `pid` (the n-th time), waiting at most `limit`.
    fn attached(&self, pid: i32, nth: usize, limit: Duration) -> Option<(f64, String)> {
        let prefix = format!("pyspy: profiling process {pid}: ");
        let deadline = Instant::now() + limit;
        loop {
            let found: Vec<(f64, String)> = self
                .lines()
                .into_iter()
                .filter(|(_, l)| l.starts_with(&prefix))
                .collect();
            if let Some(f) = found.get(nth) {
                return Some(f.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Ctrl-C, then waits (at most 60 s) for the end; returns whether it succeeded.
    fn stop(&mut self) -> bool {
        // SAFETY: kill(2) of our own child, not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("pyspy did not end within 60 s of Ctrl-C:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status.success()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One decoded Pyroscope upload.
#[derive(Debug)]
struct Upload {
    labels: HashMap<String, String>,
    /// The profile's start and end (seconds since the epoch) and its function names.
    start: f64,
    end: f64,
    functions: Vec<String>,
}

fn decode_pyroscope(r: &Request) -> Upload {
    assert_eq!(r.path, "/push.v1.PusherService/Push");
    let push = pyroscope_pb::PushRequest::decode(&r.body[..]).expect("a PushRequest");
    let series = &push.series[0];
    let labels = series
        .labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&series.samples[0].raw_profile[..])
        .read_to_end(&mut raw)
        .expect("gzip'd pprof");
    let p = pprof_pb::Profile::decode(&raw[..]).expect("a pprof");
    let functions = p
        .function
        .iter()
        .map(|f| p.string_table[f.name as usize].clone())
        .collect();
    Upload {
        labels,
        start: p.time_nanos as f64 / 1e9,
        end: (p.time_nanos + p.duration_nanos) as f64 / 1e9,
        functions,
    }
}

/// Every decoded upload, by the `pid` label.
fn uploads_by_pid(receiver: &Receiver) -> HashMap<i32, Vec<Upload>> {
    let mut by_pid: HashMap<i32, Vec<Upload>> = HashMap::new();
    for r in receiver.requests() {
        let u = decode_pyroscope(&r);
        let pid = u.labels["pid"].parse().expect("a pid label");
        by_pid.entry(pid).or_default().push(u);
    }
    by_pid
}

fn push_all_args(receiver: &Receiver, marker: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "push",
        "--all",
        "--protocol",
        "pyroscope",
        "--url",
        &receiver.url(),
        "--include",
        marker,
        "--interval",
        "1",
        "--scan-interval",
        &SCAN.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// What a process's uploads must say.
struct Expect {
    service: String,
    version: (u8, u8),
    namespace_pid: Option<i32>,
    container: Option<(String, Option<&'static str>)>,
    pod_uid: Option<String>,
    /// The executable path pyspy must report, where it is known exactly.
    executable: Option<String>,
    /// Whether its profiles must show the target's functions (a process that works).
    busy: bool,
}

impl Expect {
    fn service(service: &str, version: (u8, u8)) -> Expect {
        Expect {
            service: service.to_string(),
            version,
            namespace_pid: None,
            container: None,
            pod_uid: None,
            executable: None,
            busy: false,
        }
    }
}

fn check_labels(pid: i32, uploads: &[Upload], want: &Expect, marker: &str) -> Result<(), String> {
    let last = uploads
        .last()
        .ok_or(format!("no upload for process {pid}"))?;
    let l = &last.labels;
    let get = |k: &str| l.get(k).map(String::as_str);
    let mut problems = Vec::new();
    let mut expect = |k: &str, v: Option<&str>| {
        if get(k) != v {
            problems.push(format!("{k} is {:?}, want {v:?}", get(k)));
        }
    };
    expect("service_name", Some(&want.service));
    expect("pid", Some(&pid.to_string()));
    expect(
        "namespace_pid",
        want.namespace_pid.map(|p| p.to_string()).as_deref(),
    );
    expect(
        "container_id",
        want.container.as_ref().map(|c| c.0.as_str()),
    );
    expect(
        "container_runtime",
        want.container.as_ref().and_then(|c| c.1),
    );
    expect("k8s_pod_uid", want.pod_uid.as_deref());
    if let Some(exe) = &want.executable {
        expect("executable", Some(exe));
    }
    let version = format!("{}.{}.", want.version.0, want.version.1);
    if !get("python_version").is_some_and(|v| v.starts_with(&version)) {
        problems.push(format!(
            "python_version {:?}, want {version}*",
            get("python_version")
        ));
    }
    if !get("executable").is_some_and(|e| {
        e.rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with("python"))
    }) {
        problems.push(format!("executable {:?}", get("executable")));
    }
    if !get("command_line").is_some_and(|c| c.contains(marker)) {
        problems.push(format!(
            "command_line {:?} lacks the marker",
            get("command_line")
        ));
    }
    let functions = |u: &Upload| u.functions.iter().any(|f| f == "main_loop");
    if want.busy && !uploads.iter().any(functions) {
        problems.push("no profile shows main_loop, yet it works 2 ms in 50".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "process {pid}: {}; labels {l:?}",
            problems.join("; ")
        ))
    }
}

fn interp(label: &str) -> Option<Interpreter> {
    let found = interpreters().into_iter().find(|i| i.label == label);
    if found.is_none() {
        eprintln!("WARNING: interpreter {label} is missing: its part of the host test is skipped");
    }
    found
}

/// Tests that start many processes and a whole-host agent run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scratch directory on the host, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("pyspy-host-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Seconds from `ready` to `attached`, checked against two scan intervals.
fn within_two_scans(
    what: &str,
    ready: f64,
    attached: Option<(f64, String)>,
    agent: &Agent,
) -> Result<(), String> {
    let Some((at, line)) = attached else {
        return Err(format!("{what} was never profiled:\n{}", agent.text()));
    };
    let took = at - ready;
    if took > 2.0 * SCAN {
        return Err(format!(
            "{what} was profiled {took:.2} s after it was ready, more than two scan intervals ({} s): {line}",
            2.0 * SCAN
        ));
    }
    eprintln!("{what}: profiled {took:+.3} s after it was ready: {line}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// push --all
// ---------------------------------------------------------------------------------------------

/// A plain target of the first wave: (interpreter, environment, service it gives, busy).
type PlainTarget = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    bool,
);

#[test]
fn push_all_follows_python_processes_as_they_come_and_go() {
    let _one = serial();
    let marker = marker("main");
    let scratch = Scratch::new("main");
    let receiver = Receiver::start();
    let mut agent = Agent::start(&push_all_args(&receiver, &marker, &[]));
    let mut failures: Vec<String> = Vec::new();
    let mut procs: Vec<(Proc, Expect)> = Vec::new();
    let mut cgroups = Vec::new();

    // The first wave: every interpreter, each in its own situation.
    let plain: [PlainTarget; 3] = [
        (
            "3.12",
            &[("OTEL_SERVICE_NAME", "otel-shop")],
            "otel-shop",
            false,
        ),
        ("2.7", &[("DD_SERVICE", "dd-shop")], "dd-shop", true),
        (
            "3.8",
            &[("PYROSCOPE_APPLICATION_NAME", "pyro.app{env=test}")],
            "pyro.app",
            false,
        ),
    ];
    for (label, env, service, busy) in plain {
        if let Some(i) = interp(label) {
            let p = start(&i, &marker, Launch::Plain(env, busy));
            let mut want = Expect::service(service, i.version);
            want.busy = busy;
            procs.push((p, want));
        }
    }
    for label in ["3.14", "3.15"] {
        if let Some(i) = interp(label) {
            let p = start(&i, &marker, Launch::Plain(&[], false));
            let mut want = Expect::service("hostscript", i.version);
            // A chroot's executable as the host sees it.
            want.executable = Some(i.host_executable().display().to_string());
            procs.push((p, want));
        }
    }
    if let Some(i) = interp("3.9") {
        procs.push((
            start(&i, &marker, Launch::Module),
            Expect::service("hostmod", i.version),
        ));
    }
    let mount_point = scratch.0.join("mnt");
    std::fs::create_dir(&mount_point).unwrap();
    if let Some(i) = interp("3.11") {
        let p = start(&i, &marker, Launch::Namespaces(&mount_point));
        let mut want = Expect::service("hostscript", i.version);
        want.namespace_pid = Some(1);
        // The path inside its mount namespace, which is an empty directory on the host.
        let exe = std::fs::canonicalize(i.host_executable()).unwrap();
        want.executable = Some(
            mount_point
                .join("bin")
                .join(exe.file_name().unwrap())
                .display()
                .to_string(),
        );
        procs.push((p, want));
    }
    if let Some(i) = interp("3.13") {
        let (cg, id) = docker_cgroup();
        let p = start(&i, &marker, Launch::InCgroup(&cg.leaf, &[]));
        let mut want = Expect::service("hostscript", i.version);
        want.container = Some((id, Some("docker")));
        procs.push((p, want));
        cgroups.push(cg);
    }
    if let Some(i) = interp("3.11-debian") {
        let (cg, id, uid, runtime) = kubepods_cgroup();
        let p = start(&i, &marker, Launch::InCgroup(&cg.leaf, &[]));
        let mut want = Expect::service("hostscript", i.version);
        want.container = Some((id, runtime));
        want.pod_uid = Some(uid);
        procs.push((p, want));
        cgroups.push(cg);
    }
    let mut delayed = None;
    if let Some(i) = interp("3.10") {
        let lib = delay_library(&scratch.0);
        let started = now();
        let p = start(&i, &marker, Launch::Delayed(&lib, 3.0));
        delayed = Some((p.pid, started));
        procs.push((p, Expect::service("hostscript", i.version)));
    }
    if let Some(i) = interp("3.7") {
        procs.push((
            start(&i, &marker, Launch::Exec),
            Expect::service("hostscript", i.version),
        ));
    }
    let mut others = vec![start_other(&marker), start_impostor(&scratch.0, &marker)];

    for (p, _) in procs.iter_mut() {
        p.wait_ready(Duration::from_secs(30));
    }
    for (p, _) in &procs {
        let attached = agent.attached(p.pid, 0, Duration::from_secs(15));
        if let Err(e) = within_two_scans(&p.name, p.ready_at(), attached.clone(), &agent) {
            failures.push(e);
        }
        if let (Some((pid, started)), Some((at, _))) = (delayed, &attached) {
            if pid == p.pid && *at < started + 3.0 {
                failures.push(format!(
                    "the process held up for 3 s before its interpreter started was profiled after {:.2} s",
                    at - started
                ));
            }
        }
    }

    // A process started while pyspy runs.
    if let Some(i) = interp("3.6") {
        let mut p = start(&i, &marker, Launch::Plain(&[], true));
        p.wait_ready(Duration::from_secs(30));
        let attached = agent.attached(p.pid, 0, Duration::from_secs(15));
        if let Err(e) = within_two_scans(
            "a process started later (3.6)",
            p.ready_at(),
            attached,
            &agent,
        ) {
            failures.push(e);
        }
        let mut want = Expect::service("hostscript", i.version);
        want.busy = true;
        procs.push((p, want));
    }

    // Exits: noticed at once (at the latest at the next scan).
    let mut killed: Vec<(i32, f64)> = Vec::new();
    for victim in ["3.12 (hostscript)", "3.13 (hostscript)"] {
        if let Some((p, want)) = procs.iter_mut().find(|(p, _)| p.name == victim) {
            let at = p.kill();
            killed.push((p.pid, at));
            let line = agent.wait_line(Duration::from_secs(10), |l| {
                l.starts_with(&format!(
                    "pyspy: process {} ({}) exited",
                    p.pid, want.service
                ))
            });
            match line {
                Some((t, _)) if t - at <= 2.0 * SCAN => {
                    eprintln!("{victim}: exit noticed {:.3} s after the kill", t - at)
                }
                Some((t, _)) => failures.push(format!(
                    "{victim}: exit noticed only {:.2} s after the kill",
                    t - at
                )),
                None => failures.push(format!(
                    "{victim}: its exit was never noticed:\n{}",
                    agent.text()
                )),
            }
        }
    }

    // A reused pid: a profiled process replaced by another Python process with its pid, and a
    // non-Python process replaced by a Python one.
    let mut reused: Option<(i32, f64, f64)> = None;
    if let (Some(i), Some(idx)) = (
        interp("3.12"),
        procs.iter().position(|(p, _)| p.name == "3.8 (hostscript)"),
    ) {
        let (mut old, old_want) = procs.remove(idx);
        let pid = old.pid;
        let killed_at = old.kill();
        let mut new = start_with_pid(pid, || {
            start(
                &i,
                &marker,
                Launch::Plain(&[("OTEL_SERVICE_NAME", "second")], false),
            )
        });
        new.wait_ready(Duration::from_secs(30));
        if agent
            .wait_line(Duration::from_secs(10), |l| {
                l.starts_with(&format!(
                    "pyspy: process {pid} ({}) exited",
                    old_want.service
                ))
            })
            .is_none()
        {
            failures.push(format!(
                "the process whose pid was reused ({pid}) was never detached:\n{}",
                agent.text()
            ));
        }
        let attached = agent.attached(pid, 1, Duration::from_secs(15));
        if let Some((_, line)) = &attached {
            if !line.contains("service second") {
                failures.push(format!(
                    "the second process with pid {pid} has the old labels: {line}"
                ));
            }
        }
        if let Err(e) = within_two_scans(
            "a Python process reusing a profiled one's pid",
            new.ready_at(),
            attached.clone(),
            &agent,
        ) {
            failures.push(e);
        }
        reused = Some((pid, killed_at, attached.map(|a| a.0).unwrap_or(f64::MAX)));
        procs.push((new, Expect::service("second", i.version)));
    }
    if let Some(i) = interp("3.9") {
        let mut sleeper = start_other(&marker);
        let pid = sleeper.id() as i32;
        // Looked at (and remembered as not Python) by two scans.
        std::thread::sleep(Duration::from_secs_f64(2.0 * SCAN + 0.2));
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        let mut new = start_with_pid(pid, || {
            start(
                &i,
                &marker,
                Launch::Plain(&[("OTEL_SERVICE_NAME", "third")], false),
            )
        });
        new.wait_ready(Duration::from_secs(30));
        let attached = agent.attached(pid, 0, Duration::from_secs(15));
        if let Err(e) = within_two_scans(
            "a Python process reusing a non-Python one's pid",
            new.ready_at(),
            attached,
            &agent,
        ) {
            failures.push(e);
        }
        procs.push((new, Expect::service("third", i.version)));
    }

    // Two upload intervals for everyone, then Ctrl-C.
    std::thread::sleep(Duration::from_millis(2500));
    let ok = agent.stop();
    let text = agent.text();
    if !ok {
        failures.push(format!("pyspy push --all failed:\n{text}"));
    }
    let uploads = uploads_by_pid(&receiver);
    for (p, want) in &procs {
        if killed.iter().any(|(pid, _)| *pid == p.pid) {
            continue;
        }
        let mine: Vec<Upload> = match (&reused, uploads.get(&p.pid)) {
            // Of a reused pid, the uploads of the new process.
            (Some((pid, _, attached)), Some(all)) if *pid == p.pid => all
                .iter()
                .filter(|u| u.start >= *attached - 0.1)
                .map(|u| Upload {
                    labels: u.labels.clone(),
                    start: u.start,
                    end: u.end,
                    functions: u.functions.clone(),
                })
                .collect(),
            (_, Some(all)) => all
                .iter()
                .map(|u| Upload {
                    labels: u.labels.clone(),
                    start: u.start,
                    end: u.end,
                    functions: u.functions.clone(),
                })
                .collect(),
            (_, None) => Vec::new(),
        };
        if let Err(e) = check_labels(p.pid, &mine, want, &marker) {
            failures.push(format!("{}: {e}", p.name));
        }
    }
    // Nothing of a killed process after its kill.
    for (pid, at) in &killed {
        for u in uploads.get(pid).map(Vec::as_slice).unwrap_or(&[]) {
            if u.start > *at {
                failures.push(format!(
                    "an upload of process {pid} starts {:.2} s after it was killed",
                    u.start - at
                ));
            }
        }
        if !uploads.contains_key(pid) {
            failures.push(format!("no upload of process {pid} before it was killed"));
        }
    }
    if let Some((pid, killed_at, attached)) = reused {
        for u in uploads.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            let service = u.labels["service_name"].as_str();
            let old = service == "pyro.app";
            if (old && u.start > killed_at) || (!old && u.start < attached - 0.1) {
                failures.push(format!(
                    "pid {pid}: an upload labelled {service:?} covers {:.2}–{:.2}, the first process was killed at {killed_at:.2} and the second profiled from {attached:.2}",
                    u.start, u.end
                ));
            }
        }
    }
    // Non-Python processes never appear; the one named like Python is said to be none, once.
    for other in &mut others {
        let pid = other.id() as i32;
        if text.contains(&format!("profiling process {pid}:")) || uploads.contains_key(&pid) {
            failures.push(format!(
                "the non-Python process {pid} was profiled:\n{text}"
            ));
        }
        let _ = other.kill();
        let _ = other.wait();
    }
    let impostor = others[1].id();
    let said = text
        .matches(&format!("cannot profile process {impostor} "))
        .count();
    if said != 1 || !text.contains("is not a Python process") {
        failures.push(format!(
            "the python-named shell {impostor} was reported {said} times as not profiled, want once"
        ));
    }
    drop(procs);
    drop(cgroups);
    assert!(
        failures.is_empty(),
        "{}\n\npyspy's output:\n{text}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// OTLP resource attributes and DataKit tags
// ---------------------------------------------------------------------------------------------

/// The parts of a multipart/form-data body: (name, data).
fn multipart(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a boundary")
        .trim_matches('"');
    let delim = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let find = |from: usize, needle: &[u8]| {
        text[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut at = find(0, delim.as_bytes()).expect("a first boundary") + delim.len();
    while !text[at..].starts_with(b"--") {
        let head_end = find(at, b"\r\n\r\n").expect("part headers");
        let head = String::from_utf8_lossy(&text[at..head_end]).into_owned();
        let next = find(head_end, format!("\r\n{delim}").as_bytes()).expect("a closing boundary");
        let name = head
            .split("name=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_string();
        parts.push((name, text[head_end + 4..next].to_vec()));
        at = next + 2 + delim.len();
    }
    parts
}

/// Two processes with labels worth checking: one in a docker-shaped cgroup with a
/// `DD_SERVICE`, one in its own pid and mount namespace. Returns them with their expectations
/// and what must be cleaned up.
fn two_labelled(marker: &str, scratch: &Scratch) -> (Vec<(Proc, Expect)>, Vec<FakeCgroup>) {
    let all = interpreters();
    let pick = |label: &str| {
        all.iter()
            .find(|i| i.label == label)
            .or_else(|| all.iter().find(|i| i.chroot.is_none()))
            .cloned()
            .expect("an interpreter")
    };
    let mut out = Vec::new();
    let docker = pick("3.12");
    let (cg, id) = docker_cgroup();
    let p = start(
        &docker,
        marker,
        Launch::InCgroup(&cg.leaf, &[("DD_SERVICE", "checkout")]),
    );
    let mut want = Expect::service("checkout", docker.version);
    want.container = Some((id, Some("docker")));
    out.push((p, want));
    let ns = pick("3.11");
    let mount_point = scratch.0.join("mnt");
    std::fs::create_dir_all(&mount_point).unwrap();
    let p = start(&ns, marker, Launch::Namespaces(&mount_point));
    let mut want = Expect::service("hostscript", ns.version);
    want.namespace_pid = Some(1);
    out.push((p, want));
    for (p, _) in out.iter_mut() {
        p.wait_ready(Duration::from_secs(30));
    }
    (out, vec![cg])
}

#[test]
fn otlp_resource_attributes_and_datakit_tags_carry_the_labels() {
    let _one = serial();
    let mut failures = Vec::new();
    for protocol in ["otlp", "datakit"] {
        let marker = marker(protocol);
        let scratch = Scratch::new(protocol);
        let (procs, cgroups) = two_labelled(&marker, &scratch);
        let receiver = Receiver::start();
        let args: Vec<String> = if protocol == "otlp" {
            let mut a = push_all_args(&receiver, &marker, &[]);
            a[3] = "otlp".into(); // --protocol otlp
            a
        } else {
            let port = receiver.port().to_string();
            [
                "datakit",
                "--all",
                "-H",
                "127.0.0.1",
                "-P",
                &port,
                "-d",
                "1",
                "--include",
                &marker,
                "--scan-interval",
                "0.5",
                "-E",
                "test",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let mut agent = Agent::start(&args);
        for (p, _) in &procs {
            if agent.attached(p.pid, 0, Duration::from_secs(15)).is_none() {
                failures.push(format!("[{protocol}] {} was never profiled", p.name));
            }
        }
        std::thread::sleep(Duration::from_millis(2500));
        if !agent.stop() {
            failures.push(format!("[{protocol}] pyspy failed:\n{}", agent.text()));
        }
        // Per pid, the attributes or tags of its last upload.
        let mut seen: HashMap<i64, HashMap<String, String>> = HashMap::new();
        for r in receiver.requests() {
            let attrs: HashMap<String, String> = if protocol == "otlp" {
                assert_eq!(r.path, "/v1development/profiles");
                let req = otlp_pb::ExportProfilesServiceRequest::decode(&r.body[..]).expect("OTLP");
                let resource = req.resource_profiles[0]
                    .resource
                    .clone()
                    .unwrap_or_default();
                resource
                    .attributes
                    .iter()
                    .map(|kv| {
                        use pyspy_tests::proto::opentelemetry::proto::common::v1::any_value::Value;
                        let v = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                            Some(Value::StringValue(s)) => s,
                            Some(Value::IntValue(i)) => i.to_string(),
                            other => format!("{other:?}"),
                        };
                        (kv.key.clone(), v)
                    })
                    .collect()
            } else {
                assert_eq!(r.path, "/profiling/v1/input");
                let parts = multipart(r.header("content-type").unwrap_or(""), &r.body);
                let event = &parts
                    .iter()
                    .find(|(n, _)| n == "event")
                    .expect("an event part")
                    .1;
                let json: Value = serde_json::from_slice(event).expect("event.json");
                json["tags_profiler"]
                    .as_str()
                    .unwrap_or("")
                    .split(',')
                    .filter_map(|kv| kv.split_once(':'))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            };
            let pid_key = if protocol == "otlp" {
                "process.pid"
            } else {
                "process_id"
            };
            let pid: i64 = attrs
                .get(pid_key)
                .and_then(|p| p.parse().ok())
                .expect("a pid");
            seen.insert(pid, attrs);
        }
        for (p, want) in &procs {
            let Some(attrs) = seen.get(&i64::from(p.pid)) else {
                failures.push(format!("[{protocol}] no upload of {}", p.name));
                continue;
            };
            let get = |k: &str| attrs.get(k).map(String::as_str);
            let keys: [(&str, &str); 6] = if protocol == "otlp" {
                [
                    ("service", "service.name"),
                    ("container", "container.id"),
                    ("runtime", "container.runtime.name"),
                    ("vpid", "process.vpid"),
                    ("cmd", "process.command_line"),
                    ("exe", "process.executable.path"),
                ]
            } else {
                [
                    ("service", "service"),
                    ("container", "container_id"),
                    ("runtime", "container_runtime"),
                    ("vpid", "namespace_pid"),
                    ("cmd", "cmdline"),
                    ("exe", "executable"),
                ]
            };
            let key = |k: &str| keys.iter().find(|(n, _)| *n == k).unwrap().1;
            let expect = [
                (key("service"), Some(want.service.clone())),
                (
                    key("container"),
                    want.container.as_ref().map(|c| c.0.clone()),
                ),
                (
                    key("runtime"),
                    want.container.as_ref().and_then(|c| c.1).map(String::from),
                ),
                (key("vpid"), want.namespace_pid.map(|n| n.to_string())),
            ];
            for (k, v) in expect {
                if get(k) != v.as_deref() {
                    failures.push(format!(
                        "[{protocol}] {}: {k} is {:?}, want {v:?}: {attrs:?}",
                        p.name,
                        get(k)
                    ));
                }
            }
            if !get(key("cmd")).is_some_and(|c| c.contains(&marker))
                || !get(key("exe")).is_some_and(|e| e.contains("python"))
            {
                failures.push(format!(
                    "[{protocol}] {}: no command line or executable: {attrs:?}",
                    p.name
                ));
            }
            if protocol == "datakit" && get("env") != Some("test") {
                failures.push(format!("[datakit] {}: env is {:?}", p.name, get("env")));
            }
        }
        drop(procs);
        drop(cgroups);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The CPU budget
// ---------------------------------------------------------------------------------------------

/// Idle processes with eight threads each: a wall-time profile reads every thread at every
/// tick.
const THREADS: &str = r#"
import json, os, sys, threading, time

def wait_here():
    while True:
        time.sleep(1)

for _ in range(7):
    t = threading.Thread(target=wait_here)
    t.daemon = True
    t.start()
ready = sys.argv[1]
with open(ready + '.tmp', 'w') as f:
    json.dump({'pid': os.getpid(), 'time': time.time()}, f)
os.rename(ready + '.tmp', ready)
wait_here()
"#;

/// user + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) as f64 / 100.0
}

#[test]
fn over_its_cpu_budget_pyspy_lowers_the_rate_and_says_so() {
    let _one = serial();
    let marker = marker("budget");
    let i = interpreters()
        .into_iter()
        .find(|i| i.label == "3.12")
        .or_else(|| interpreters().into_iter().find(|i| i.chroot.is_none()))
        .expect("an interpreter");
    let mut targets = Vec::new();
    for n in 0..4 {
        let dir = i.stage_dir();
        let (script, _) = dir.write("threads.py", THREADS);
        let ready = dir.host_path().join("ready.json");
        let mut cmd = i.command();
        cmd.arg(&script)
            .arg(dir.path().join("ready.json"))
            .arg(&marker);
        base_env(&mut cmd);
        let child = cmd.spawn().unwrap();
        let mut p = Proc {
            name: format!("threads {n}"),
            pid: child.id() as i32,
            child,
            ready,
            facts: None,
            _dir: Some(dir),
            killed: false,
        };
        p.wait_ready(Duration::from_secs(30));
        targets.push(p);
    }
    let receiver = Receiver::start();
    let budget = 3.0;
    let args = push_all_args(
        &receiver,
        &marker,
        &[
            "--idle",
            "--rate",
            "400",
            "--cpu-budget",
            &budget.to_string(),
        ],
    );
    let mut agent = Agent::start(&args);
    let over = agent.wait_line(Duration::from_secs(20), |l| {
        l.contains("over the CPU budget")
    });
    let Some((_, line)) = over else {
        panic!("pyspy never said it was over its budget:\n{}", agent.text());
    };
    let rate: f64 = line
        .split("sampling at ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {line:?}"));
    assert!(rate < 400.0, "{line}");
    // Two budget windows to settle, then pyspy's own CPU over four seconds, as the kernel
    // counts it (10 ms ticks: ±0.5 % of one CPU over 4 s).
    std::thread::sleep(Duration::from_secs(5));
    let pid = agent.child.id();
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(4));
    let used = (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let ok = agent.stop();
    let text = agent.text();
    eprintln!("pyspy used {used:.2} % of one CPU against a budget of {budget} %:\n{text}");
    assert!(ok, "{text}");
    assert!(
        used <= budget * 1.5,
        "pyspy used {used:.2} % of one CPU, the budget is {budget} %"
    );
    assert!(!receiver.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The library: Discovery's limit, HostSampler's isolation of a failing process
// ---------------------------------------------------------------------------------------------

#[test]
fn discovery_waits_at_its_limit_and_hands_out_the_next_when_one_exits() {
    use pyspy_core::{Discovery, DiscoveryOptions, SkipReason};
    let _one = serial();
    let marker = marker("limit");
    let all = interpreters();
    let mut procs: Vec<Proc> = all
        .iter()
        .filter(|i| i.chroot.is_none())
        .take(3)
        .map(|i| start(i, &marker, Launch::Plain(&[], false)))
        .collect();
    assert_eq!(procs.len(), 3, "three host interpreters");
    for p in procs.iter_mut() {
        p.wait_ready(Duration::from_secs(30));
    }
    let m = marker.clone();
    let mut discovery = Discovery::new(
        DiscoveryOptions::default()
            .limit(2)
            .filter(move |l| l.command_line_string().contains(&m)),
    );
    let ours: Vec<i32> = procs.iter().map(|p| p.pid).collect();
    let first = discovery.scan().unwrap();
    let found: Vec<i32> = first.found.iter().map(|f| f.labels.pid).collect();
    let waiting: Vec<i32> = first
        .skipped
        .iter()
        .filter(|s| matches!(s.reason, SkipReason::Limit { limit: 2 }))
        .map(|s| s.labels.pid)
        .collect();
    assert_eq!(found.len(), 2, "{first:?}");
    assert_eq!(waiting.len(), 1, "{first:?}");
    assert!(found.iter().chain(&waiting).all(|p| ours.contains(p)));
    assert!(first
        .found
        .iter()
        .all(|f| f.labels.python_version.is_some()));
    // Nothing new: nothing reported (the waiting one is not reported again).
    let second = discovery.scan().unwrap();
    assert!(second.found.is_empty() && second.skipped.is_empty() && second.exited.is_empty());
    assert_eq!(discovery.stats().waiting, 1);
    // One exits: the next scan reports it and hands out the waiting one.
    let gone = procs.iter_mut().find(|p| p.pid == found[0]).unwrap();
    gone.kill();
    let third = discovery.scan().unwrap();
    assert_eq!(
        third.exited.iter().map(|l| l.pid).collect::<Vec<_>>(),
        [found[0]]
    );
    assert_eq!(
        third.found.iter().map(|f| f.labels.pid).collect::<Vec<_>>(),
        waiting
    );
    // A released process is looked at again at the next scan (and found again).
    discovery.release(found[1]);
    let fourth = discovery.scan().unwrap();
    assert_eq!(
        fourth
            .found
            .iter()
            .map(|f| f.labels.pid)
            .collect::<Vec<_>>(),
        [found[1]]
    );
}

#[test]
fn a_failing_process_is_detached_and_attached_again_while_the_others_go_on() {
    use pyspy_core::{
        AttachOptions, DetachReason, DiscoveryOptions, HostEvent, HostOptions, HostSampler,
    };
    let _one = serial();
    let marker = marker("failing");
    let all = interpreters();
    let mut procs: Vec<Proc> = all
        .iter()
        .filter(|i| i.chroot.is_none())
        .take(2)
        .map(|i| start(i, &marker, Launch::Plain(&[], false)))
        .collect();
    for p in procs.iter_mut() {
        p.wait_ready(Duration::from_secs(30));
    }
    let (bad, good) = (procs[0].pid, procs[1].pid);
    let m = marker.clone();
    let options = HostOptions::default()
        .rate(50.0)
        .scan_interval(Duration::from_millis(200))
        .cpu_budget(None)
        .skip_idle(false)
        .duration(Some(Duration::from_secs(8)))
        .discovery(
            DiscoveryOptions::default()
                .attach(AttachOptions::default())
                .filter(move |l| l.command_line_string().contains(&m)),
        );
    let mut sampler = HostSampler::new(options);
    let mut attached: HashMap<i32, u32> = HashMap::new();
    let mut injected = false;
    let mut injected_at = SystemTime::now();
    let mut failing_at = None;
    let mut good_while_failing = (0u32, 0u32); // (samples with threads, ticks)
    let mut detached = Vec::new();
    while let Some(event) = sampler.next() {
        match event {
            HostEvent::Attached(l) => *attached.entry(l.pid).or_default() += 1,
            HostEvent::Sample(s) => {
                let p = &s.processes[0];
                // Samples taken after the faults were injected, before the detach.
                let injected = injected && s.time > injected_at;
                if p.process.pid == good && injected && failing_at.is_none() {
                    good_while_failing.1 += 1;
                    if !p.snapshot.threads.is_empty() {
                        good_while_failing.0 += 1;
                    }
                }
                assert!(
                    !(p.process.pid == bad && injected && failing_at.is_none()),
                    "a sample of the process whose every read fails"
                );
            }
            HostEvent::Detached { labels, reason } => {
                detached.push((labels.pid, reason.clone()));
                if labels.pid == bad {
                    failing_at.get_or_insert(Instant::now());
                }
            }
            _ => {}
        }
        if !injected && attached.len() == 2 {
            // Every read of this process fails from now on (until it is attached again).
            sampler
                .session(bad)
                .unwrap()
                .hooks()
                .fail_reads_after(Some(0));
            injected = true;
            injected_at = SystemTime::now();
        }
    }
    assert!(injected, "both processes were attached: {attached:?}");
    let bad_detach = detached.iter().find(|(pid, _)| *pid == bad);
    assert!(
        matches!(bad_detach, Some((_, DetachReason::Failing { errors, .. })) if *errors >= 10),
        "{detached:?}"
    );
    assert!(
        !detached.iter().any(|(pid, _)| *pid == good),
        "{detached:?}"
    );
    assert_eq!(
        attached.get(&bad),
        Some(&2),
        "attached again after it was detached"
    );
    let (with_threads, ticks) = good_while_failing;
    assert!(
        ticks >= 50 && with_threads == ticks,
        "the other process: {with_threads} of {ticks} samples had its threads"
    );
    assert!(sampler.stats().errors >= 10);
}
