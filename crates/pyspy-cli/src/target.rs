//! The process `record` and `top` sample: an existing pid, or a command pyspy starts.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pyspy_core::{AttachOptions, Error, Session};

/// How long a started command may take to become an initialised Python interpreter.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// `--pid PID` or `-- CMD ARGS...`, shared by `record` and `top`.
#[derive(clap::Args, Debug)]
#[group(id = "target", required = true, multiple = false)]
pub struct TargetArgs {
    /// Process id of a running Python program.
    #[arg(long, short)]
    pub pid: Option<i32>,
    /// A Python program to start and sample: `-- python app.py ARGS`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// An attached target, and the child process when pyspy started it.
pub struct Target {
    /// The process asked for (or started).
    pub pid: i32,
    /// Its session; `None` when it runs no Python and `--subprocesses` lets pyspy wait for
    /// Python child processes instead.
    pub session: Option<Session>,
    pub child: Launched,
}

/// The child process pyspy started, if any. Stopped and reaped on drop.
pub struct Launched(Option<Child>);

impl Target {
    /// Attaches to `--pid`, or starts the command and attaches once its interpreter is
    /// initialised (retrying while it is not Python yet or not initialised, for up to 10 s).
    ///
    /// With `subprocesses`, a process that runs no Python (a shell, a launcher) is fine: the
    /// target then has no session, and the sampler waits for Python in its process tree.
    pub fn open(args: &TargetArgs, subprocesses: bool) -> Result<Target, String> {
        if let Some(pid) = args.pid {
            let session = match pyspy_core::attach(pid, &AttachOptions::default()) {
                Ok(session) => Some(session),
                Err(Error::NotPython { .. } | Error::NotInitialised { .. }) if subprocesses => None,
                Err(e) => return Err(e.to_string()),
            };
            return Ok(Target {
                pid,
                session,
                child: Launched(None),
            });
        }
        let (program, rest) = args
            .command
            .split_first()
            .ok_or("give --pid PID or a command after --")?;
        let mut child = Command::new(program)
            .args(rest)
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let pid = child.id() as i32;
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    return Err(format!(
                        "{program} exited ({status}) before pyspy could attach to it"
                    ))
                }
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for {program}: {e}")),
            }
            // The core waits a little for an initialising interpreter; between its waits this
            // loop notices a command that exited (a zombie looks "not initialised" forever).
            let options = AttachOptions::default().wait_for_init(Duration::from_millis(250));
            match pyspy_core::attach(pid, &options) {
                Ok(mut session) => {
                    // Attached, but the first frames may not exist yet: a sample proves the
                    // interpreter is initialised.
                    match session.snapshot() {
                        Ok(_) => {
                            return Ok(Target {
                                pid,
                                session: Some(session),
                                child: Launched(Some(child)),
                            })
                        }
                        Err(e) if start.elapsed() < INIT_TIMEOUT && retryable(&e) => {}
                        Err(e) => return Err(give_up(&mut child, program, e)),
                    }
                }
                // No interpreter after the wait (libpython is mapped within milliseconds of
                // the start): a shell or a launcher, whose Python children are sampled.
                Err(Error::NotPython { .. }) if subprocesses => {
                    return Ok(Target {
                        pid,
                        session: None,
                        child: Launched(Some(child)),
                    })
                }
                Err(e) if start.elapsed() < INIT_TIMEOUT && retryable(&e) => {}
                Err(e) => return Err(give_up(&mut child, program, e)),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Launched {
    /// Stops the child pyspy started, if it still runs: SIGTERM, then SIGKILL after a second.
    /// Returns whether it had to be stopped.
    pub fn stop(&mut self) -> bool {
        let Some(child) = self.0.as_mut() else {
            return false;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet, so not reused.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        true
    }
}

/// A started program is not left running when pyspy stops early (an error, a panic).
impl Drop for Launched {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Errors that a starting interpreter shows before it is ready.
fn retryable(e: &Error) -> bool {
    // A program still starting maps libpython late, and its first frames may be read torn
    // (memory freed or half written under the read): all worth another try.
    matches!(e, Error::NotPython { .. }) || e.is_transient()
}

/// Stops the started child after a failed attach; says so, or how it ended by itself.
fn give_up(child: &mut Child, program: &str, e: Error) -> String {
    if let Ok(Some(status)) = child.try_wait() {
        return format!("{program} exited ({status}) before pyspy could attach to it");
    }
    let _ = child.kill();
    let _ = child.wait();
    format!("{e} (pyspy started {program} and stopped it again)")
}
