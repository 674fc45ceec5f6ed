//! Errors a user meets: a pid with no process, a process that is not Python, a Python process
//! that exits while pyspy is attached. Each must be one clear line (CLI) or the right error kind
//! (library), never a panic or a hang.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pyspy_core::{attach, AttachOptions, Error};
use pyspy_tests::scenarios::spawn_idle;
use pyspy_tests::{for_every_interpreter, run_pyspy};

/// A child process killed and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pid no process has: one of ours that exited and was reaped.
fn dead_pid() -> i32 {
    for _ in 0..10 {
        let mut child = Command::new("true").spawn().expect("run true");
        let pid = child.id() as i32;
        child.wait().expect("reap true");
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return pid;
        }
    }
    panic!("could not find a dead pid");
}

/// The CLI failed (non-zero, nothing on stdout) with exactly one line on stderr; returns it.
fn one_line_failure(args: &[&str], out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "`pyspy {}` succeeded; stdout:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stdout.is_empty(),
        "`pyspy {}` failed but printed to stdout:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "`pyspy {}` should fail with one line on stderr, got:\n{stderr}",
        args.join(" ")
    );
    lines[0].to_string()
}

#[test]
fn dump_of_a_dead_pid_says_no_process() {
    let pid = dead_pid().to_string();
    for json in [false, true] {
        let mut args = vec!["dump", "--pid", &pid];
        if json {
            args.push("--json");
        }
        let out = run_pyspy(&args);
        let line = one_line_failure(&args, &out);
        assert!(
            line.to_lowercase().contains("no process"),
            "`pyspy {}`: the error should mention \"no process\": {line}",
            args.join(" ")
        );
    }
}

#[test]
fn dump_of_a_non_python_process_says_not_python() {
    let sleep = Guard(
        Command::new("/bin/sleep")
            .arg("100")
            .stdin(Stdio::null())
            .spawn()
            .expect("run /bin/sleep"),
    );
    let pid = sleep.0.id().to_string();
    let args = ["dump", "--pid", pid.as_str()];
    let out = run_pyspy(&args);
    let line = one_line_failure(&args, &out);
    assert!(
        line.contains("not a Python process"),
        "`pyspy {}` on /bin/sleep: the error should say \"not a Python process\": {line}",
        args.join(" ")
    );
}

#[test]
fn attach_to_a_dead_pid_is_no_such_process() {
    let pid = dead_pid();
    match attach(pid, &AttachOptions::default()) {
        Err(Error::NoSuchProcess { pid: p }) => assert_eq!(p, pid),
        Err(e) => panic!("attach to dead pid {pid}: want NoSuchProcess, got {e:?}"),
        Ok(_) => panic!("attach to dead pid {pid} succeeded"),
    }
}

#[test]
fn attach_to_a_non_python_process_is_not_python() {
    let sleep = Guard(
        Command::new("/bin/sleep")
            .arg("100")
            .stdin(Stdio::null())
            .spawn()
            .expect("run /bin/sleep"),
    );
    let pid = sleep.0.id() as i32;
    match attach(pid, &AttachOptions::default()) {
        Err(Error::NotPython { pid: p, .. }) => assert_eq!(p, pid),
        Err(e) => panic!("attach to /bin/sleep: want NotPython, got {e:?}"),
        Ok(_) => panic!("attach to /bin/sleep ({pid}) succeeded"),
    }
}

/// The scheduler state of `pid` (`R`, `S`, `Z`...), `None` once it is gone.
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// A Python process that exits while we are attached: the next sample is `ProcessExited`, both
/// while the dead process is a zombie (not yet reaped by its parent) and once it is reaped.
#[test]
fn sample_after_the_target_exits_is_process_exited() {
    for_every_interpreter("ProcessExited after the target dies", |interp| {
        let mut target = spawn_idle(interp, None);
        let pid = target.pid();
        let mut session = attach(pid, &AttachOptions::default())
            .map_err(|e| format!("attach to a live target failed: {e} ({e:?})"))?;
        session
            .snapshot()
            .map_err(|e| format!("sampling a live target failed: {e} ({e:?})"))?;

        let mut problems = Vec::new();
        // Killed, not reaped yet: a zombie.
        // SAFETY: kill(2) on our own child's pid, which we have not reaped (so not reused).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_state(pid) != Some('Z') {
            assert!(
                Instant::now() < deadline,
                "target {pid} did not become a zombie"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        match session.snapshot() {
            Err(Error::ProcessExited { pid: p }) if p == pid => {}
            Err(e) => problems.push(format!(
                "sample of a zombie (killed, not reaped): want ProcessExited {{ pid: {pid} }}, got {e:?} ({e})"
            )),
            Ok(s) => problems.push(format!(
                "sample of a zombie (killed, not reaped) succeeded with {} threads",
                s.threads.len()
            )),
        }
        // Reaped: the pid is gone.
        target.kill();
        match session.snapshot() {
            Err(Error::ProcessExited { pid: p }) if p == pid => {}
            Err(e) => problems.push(format!(
                "sample of a reaped process: want ProcessExited {{ pid: {pid} }}, got {e:?} ({e})"
            )),
            Ok(s) => problems.push(format!(
                "sample of a reaped process succeeded with {} threads",
                s.threads.len()
            )),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    });
}

/// Sixteen threads, each 100 frames deep, asleep: a snapshot reads many frames, so a kill
/// lands inside one.
const MANY_DEEP_THREADS: &str = r#"
import json, os, sys, threading, time

def down(n):
    if n:
        return down(n - 1)
    while True:
        time.sleep(3600)

for _ in range(16):
    t = threading.Thread(target=down, args=(100,))
    t.daemon = True
    t.start()
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump({"threads": []}, f)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(3600)
"#;

/// A target killed while it is being sampled: every snapshot that comes back is whole (no
/// thread cut short by the exit), and the first one that is not is `ProcessExited`. Sampled
/// back to back, one snapshot of the twenty rounds per interpreter straddles the kill most
/// times; before pyspy checked, such a snapshot came back with the threads read after the exit
/// failed ("the process exited (reading 8 bytes ...)").
#[test]
fn a_target_killed_mid_sample_gives_whole_snapshots_then_process_exited() {
    for_every_interpreter("killed mid-sample", |interp| {
        for round in 0..20 {
            let mut target = pyspy_tests::Target::spawn(interp, MANY_DEEP_THREADS, &[]);
            let pid = target.pid();
            let mut session = attach(pid, &AttachOptions::default())
                .map_err(|e| format!("attach failed: {e} ({e:?})"))?;
            let mut taken = 0;
            let end = loop {
                if taken == 3 {
                    // SAFETY: kill(2) on our own child, not reaped yet (its pid is not reused).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                match session.snapshot() {
                    Ok(s) => {
                        if let Some(t) = s.threads.iter().find(|t| t.error.is_some()) {
                            return Err(format!(
                                "round {round}, snapshot {taken}: thread {} came back cut short \
                                 ({:?}) beside {} other threads",
                                t.thread_id,
                                t.error,
                                s.threads.len() - 1
                            ));
                        }
                        taken += 1;
                        if taken > 10_000 {
                            return Err(format!("round {round}: the killed target still reads"));
                        }
                    }
                    Err(e) => break e,
                }
            };
            target.kill();
            if taken < 3 || !matches!(end, Error::ProcessExited { pid: p } if p == pid) {
                return Err(format!(
                    "round {round}: after {taken} snapshots: want ProcessExited {{ pid: {pid} }}, \
                     got {end:?} ({end})"
                ));
            }
        }
        Ok(())
    });
}
