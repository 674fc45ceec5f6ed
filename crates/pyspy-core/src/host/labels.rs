//! [`ProcessLabels`]: who a process is, for the labels, tags and resource attributes of its
//! profiles: pids, program, command line, service name, container, pod, Python version.

use std::sync::Arc;

use super::cgroup::{self, Container};
use super::procfs::{self, ProcStat};
use crate::attach::process::proc_path;
use crate::attach::version::Version;
use crate::error::{Error, Result};

/// Most of `/proc/PID/cmdline` read (it can be megabytes; labels need the start).
const MAX_CMDLINE: u64 = 64 << 10;
/// Most of `/proc/PID/environ` read.
const MAX_ENVIRON: u64 = 1 << 20;
/// Most of `/proc/PID/status` read (a few KiB).
const MAX_STATUS: u64 = 16 << 10;

/// The environment variables that name a service, in the order they are looked at.
pub const SERVICE_VARIABLES: [&str; 4] = [
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "DD_SERVICE",
    "PYROSCOPE_APPLICATION_NAME",
];

/// Where a process's service name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServiceSource {
    /// An environment variable of the process (one of [`SERVICE_VARIABLES`]; for
    /// `OTEL_RESOURCE_ATTRIBUTES`, its `service.name`).
    Environment(&'static str),
    /// The module run with `python -m MODULE`.
    Module,
    /// The script run (`python app.py` gives `app`; `python pkg/__main__.py` and
    /// `python pkg/` give `pkg`).
    Script,
    /// The program: the first word of a command line that does not start with a Python
    /// interpreter (an embedding program such as `uwsgi`, or a title set with
    /// `setproctitle`, such as `gunicorn: worker [app]`), else the executable's name.
    Program,
}

impl ServiceSource {
    /// `OTEL_SERVICE_NAME` (the variable's name), `module`, `script` or `program`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ServiceSource::Environment(name) => name,
            ServiceSource::Module => "module",
            ServiceSource::Script => "script",
            ServiceSource::Program => "program",
        }
    }
}

/// Who a process is: what its profiles are labelled with. [`ProcessLabels::read`] reads them
/// from `/proc` (the Python version is filled in once the process is attached).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessLabels {
    /// The pid, as this machine's `/proc` (the host) sees it.
    pub pid: i32,
    /// The pid inside the process's own pid namespace, for a process in a nested one (a
    /// container): the last `NSpid` of `/proc/PID/status`. `None` in the host's namespace.
    pub namespace_pid: Option<i32>,
    /// The parent's pid.
    pub parent_pid: Option<i32>,
    /// When the process started, in clock ticks after boot (`/proc/PID/stat`): with the pid,
    /// it names one process (pids are reused, this pair is not).
    pub start_time: u64,
    /// `/proc/PID/exe` as the kernel shows it (a process in another mount namespace: the path
    /// in its own; a chroot: the host path). Empty if it could not be read.
    pub executable: String,
    /// The arguments (`/proc/PID/cmdline`, its first 64 KiB).
    pub command_line: Vec<String>,
    /// The service name: from the process's environment (`OTEL_SERVICE_NAME`, `service.name`
    /// in `OTEL_RESOURCE_ATTRIBUTES`, `DD_SERVICE`, `PYROSCOPE_APPLICATION_NAME`, in that
    /// order), else the script or module it runs, else its program name.
    pub service: String,
    /// Where [`ProcessLabels::service`] came from.
    pub service_source: ServiceSource,
    /// The container the process runs in, from `/proc/PID/cgroup`.
    pub container: Option<Container>,
    /// The Kubernetes pod's uid, where the cgroup path has it.
    pub pod_uid: Option<String>,
    /// The cgroup path the container or pod was read from (else the v2 path, else the first
    /// v1 path).
    pub cgroup: Option<String>,
    /// The interpreter's version, once attached.
    pub python_version: Option<Version>,
}

impl ProcessLabels {
    /// Reads the labels of process `pid` from `/proc`. Only a process that is gone is an error
    /// ([`Error::NoSuchProcess`]); what cannot be read (the environment and executable of
    /// another user's process without the rights) is left empty.
    ///
    /// ```
    /// let labels = pyspy_core::ProcessLabels::read(std::process::id() as i32)?;
    /// assert!(!labels.service.is_empty());
    /// # Ok::<(), pyspy_core::Error>(())
    /// ```
    pub fn read(pid: i32) -> Result<ProcessLabels> {
        let stat = ProcStat::read(pid).ok_or(Error::NoSuchProcess { pid })?;
        Ok(ProcessLabels::read_with(pid, &stat))
    }

    /// [`ProcessLabels::read`] with the stat line already read.
    pub(crate) fn read_with(pid: i32, stat: &ProcStat) -> ProcessLabels {
        let executable = std::fs::read_link(proc_path(pid, "exe"))
            .map(|p| {
                let p = p.to_string_lossy();
                p.strip_suffix(" (deleted)").unwrap_or(&p).to_string()
            })
            .unwrap_or_default();
        let command_line = procfs::read_bytes_capped(&proc_path(pid, "cmdline"), MAX_CMDLINE)
            .map(|raw| procfs::split_nul(&raw))
            .unwrap_or_default();
        let environ = procfs::read_bytes_capped(&proc_path(pid, "environ"), MAX_ENVIRON)
            .map(|raw| procfs::split_nul(&raw))
            .unwrap_or_default();
        let namespace_pid = procfs::read_capped(&proc_path(pid, "status"), MAX_STATUS)
            .ok()
            .and_then(|s| procfs::namespace_pid(&s));
        let cgroup = cgroup::read(pid);
        let (service, service_source) = service_name(&environ, &command_line, &executable);
        ProcessLabels {
            pid,
            namespace_pid,
            parent_pid: Some(stat.parent_pid).filter(|p| *p > 0),
            start_time: stat.start_time,
            executable,
            command_line,
            service,
            service_source,
            container: cgroup.container,
            pod_uid: cgroup.pod_uid,
            cgroup: cgroup.path,
            python_version: None,
        }
    }

    /// The command line, arguments joined by spaces.
    pub fn command_line_string(&self) -> String {
        self.command_line.join(" ")
    }

    /// The [`ProcessDetails`](crate::ProcessDetails) a [`Sample`](crate::Sample) of this
    /// process carries.
    pub(crate) fn details(&self) -> Arc<crate::ProcessDetails> {
        Arc::new(crate::ProcessDetails {
            pid: self.pid,
            parent_pid: self.parent_pid,
            command_line: self.command_line_string().into(),
        })
    }
}

/// The service name and where it came from (see [`ProcessLabels::service`]).
pub(crate) fn service_name(
    environ: &[String],
    args: &[String],
    executable: &str,
) -> (String, ServiceSource) {
    for var in SERVICE_VARIABLES {
        let value = match var {
            "OTEL_RESOURCE_ATTRIBUTES" => procfs::env_value(environ, var)
                .and_then(otel_service_name),
            "PYROSCOPE_APPLICATION_NAME" => procfs::env_value(environ, var)
                .map(|v| v.split('{').next().unwrap_or(v).to_string()),
            _ => procfs::env_value(environ, var).map(str::to_string),
        };
        if let Some(v) = value.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) {
            return (v, ServiceSource::Environment(var));
        }
    }
    if let Some(found) = script_or_module(args) {
        return found;
    }
    let program = args
        .first()
        .filter(|a| !looks_like_python(a))
        .and_then(|a| program_word(a))
        .or_else(|| program_word(executable))
        .unwrap_or_else(|| "python".to_string());
    (program, ServiceSource::Program)
}

/// `service.name` in an `OTEL_RESOURCE_ATTRIBUTES` value (`k=v,k=v`, values percent-encoded).
fn otel_service_name(attributes: &str) -> Option<String> {
    attributes.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == "service.name").then(|| percent_decode(v.trim()))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a program path names a Python interpreter (`python`, `python3.12`, `pythonw`).
fn looks_like_python(program: &str) -> bool {
    program
        .rsplit('/')
        .next()
        .is_some_and(|name| name.starts_with("python"))
}

/// The program's name in an `argv[0]` or a path: the file name of its first word, without
/// the punctuation process titles put around it (`gunicorn: worker [app]` gives `gunicorn`).
fn program_word(s: &str) -> Option<String> {
    let first = s.split_whitespace().next()?;
    let name = first.rsplit('/').next().unwrap_or(first);
    let name = name.trim_matches(|c: char| matches!(c, '[' | ']' | '(' | ')' | ':' | '-'));
    (!name.is_empty()).then(|| name.to_string())
}

/// What a Python command line runs: `-m MODULE` or a script (options before it skipped);
/// `None` for `-c`, stdin, or a program that is not a Python interpreter.
fn script_or_module(args: &[String]) -> Option<(String, ServiceSource)> {
    if !looks_like_python(args.first()?) {
        return None;
    }
    let mut i = 1;
    while let Some(arg) = args.get(i) {
        match arg.as_str() {
            "-" => return None,
            "--" => return script_name(args.get(i + 1)?),
            "--check-hash-based-pycs" => i += 2,
            long if long.starts_with("--") => i += 1,
            short if short.starts_with('-') => {
                let flags = &short[1..];
                let mut skip_next = false;
                for (at, c) in flags.char_indices() {
                    let rest = &flags[at + c.len_utf8()..];
                    match c {
                        'c' => return None,
                        'm' => {
                            let module = if rest.is_empty() {
                                args.get(i + 1)?.as_str()
                            } else {
                                rest
                            };
                            return Some((module.to_string(), ServiceSource::Module));
                        }
                        // Options that take a value: the rest of this argument, or the next.
                        'W' | 'X' | 'Q' => {
                            skip_next = rest.is_empty();
                            break;
                        }
                        _ => {}
                    }
                }
                i += if skip_next { 2 } else { 1 };
            }
            script => return script_name(script),
        }
    }
    None
}

/// `app` for `/srv/app.py`, `pkg` for `pkg/__main__.py` or `pkg/`.
fn script_name(path: &str) -> Option<(String, ServiceSource)> {
    let mut parts = path.trim_end_matches('/').rsplit('/');
    let mut name = parts.next()?;
    if name == "__main__.py" {
        name = parts.next().unwrap_or(name);
    }
    let name = [".pyz", ".pyc", ".py"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name);
    (!name.is_empty()).then(|| (name.to_string(), ServiceSource::Script))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(env: &[&str], args: &[&str]) -> (String, &'static str) {
        let env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (name, source) = service_name(&env, &args, "/usr/bin/python3.12");
        (name, source.as_str())
    }

    #[test]
    fn services_from_the_environment_in_order() {
        let args = ["python", "app.py"];
        assert_eq!(
            service(&["DD_SERVICE=dd", "OTEL_SERVICE_NAME=otel"], &args),
            ("otel".into(), "OTEL_SERVICE_NAME")
        );
        assert_eq!(
            service(
                &["DD_SERVICE=dd", "OTEL_RESOURCE_ATTRIBUTES=team=a,service.name=shop%20eu"],
                &args
            ),
            ("shop eu".into(), "OTEL_RESOURCE_ATTRIBUTES")
        );
        assert_eq!(
            service(&["OTEL_RESOURCE_ATTRIBUTES=team=a", "DD_SERVICE=dd"], &args),
            ("dd".into(), "DD_SERVICE")
        );
        assert_eq!(
            service(&["PYROSCOPE_APPLICATION_NAME=ride.sharing{region=eu}"], &args),
            ("ride.sharing".into(), "PYROSCOPE_APPLICATION_NAME")
        );
        // Empty values do not count.
        assert_eq!(
            service(&["OTEL_SERVICE_NAME= ", "DD_SERVICE="], &args),
            ("app".into(), "script")
        );
    }

    #[test]
    fn services_from_the_command_line() {
        let cases: &[(&[&str], &str, &str)] = &[
            (&["python3", "/srv/app.py", "--port", "80"], "app", "script"),
            (&["/usr/bin/python3.12", "-u", "-W", "ignore", "-X", "dev", "run.py"], "run", "script"),
            (&["python", "-Wignore", "-OO", "tool.pyc"], "tool", "script"),
            (&["python", "-m", "gunicorn", "app:app"], "gunicorn", "module"),
            (&["python", "-um", "http.server"], "http.server", "module"),
            (&["python", "-mcelery", "worker"], "celery", "module"),
            (&["python", "--check-hash-based-pycs", "never", "x.py"], "x", "script"),
            (&["python", "--", "-odd.py"], "-odd", "script"),
            (&["python", "/srv/pkg/__main__.py"], "pkg", "script"),
            (&["python", "/srv/pkg/"], "pkg", "script"),
            (&["python2.7", "-Q", "new", "old.py"], "old", "script"),
            // No script: the program (the executable's name when argv[0] is python).
            (&["python", "-c", "import x"], "python3.12", "program"),
            (&["python", "-"], "python3.12", "program"),
            (&["python"], "python3.12", "program"),
            (&[], "python3.12", "program"),
            // Not a python command line: the program, process titles included.
            (&["/usr/bin/uwsgi", "--ini", "app.ini"], "uwsgi", "program"),
            (&["gunicorn: worker [app:app]"], "gunicorn", "program"),
            (&["[celeryd: w@h:MainProcess] -active- (worker)"], "celeryd", "program"),
        ];
        for (args, name, source) in cases {
            assert_eq!(service(&[], args), (name.to_string(), *source), "{args:?}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Cc"), "a b,c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn labels_of_this_process() {
        let me = std::process::id() as i32;
        let labels = ProcessLabels::read(me).unwrap();
        assert_eq!(labels.pid, me);
        assert!(labels.start_time > 0);
        assert!(labels.executable.ends_with(
            std::env::current_exe().unwrap().file_name().unwrap().to_str().unwrap()
        ));
        assert!(!labels.command_line.is_empty());
        assert_eq!(labels.python_version, None);
        assert!(matches!(
            ProcessLabels::read(i32::MAX),
            Err(Error::NoSuchProcess { .. })
        ));
    }
}
