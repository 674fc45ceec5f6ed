//! [`ProfileMeta`]: who a profile is from, for the labels, tags and resource attributes of the
//! backends' payloads ([`pyroscope`](super::pyroscope), [`datakit`](super::datakit),
//! [`otlp`](super::otlp)).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::host::cgroup;
use crate::host::ProcessLabels;

/// Who a profile is from. Start from `ProfileMeta::default()` (or
/// [`ProfileMeta::for_process`], which reads the host name and container id) and set fields.
///
/// ```
/// use pyspy_core::export::ProfileMeta;
/// let meta = ProfileMeta::default()
///     .service("checkout")
///     .env(Some("prod".into()))
///     .tags(vec![("region".into(), "eu-1".into())]);
/// assert_eq!(meta.service, "checkout");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProfileMeta {
    /// The service name (Pyroscope's `service_name`, DataKit's `service`, OTLP's
    /// `service.name`). Empty: the encoders use `python`.
    pub service: String,
    /// User tags, in order. Pyroscope needs keys that are Prometheus label names
    /// (`[A-Za-z_][A-Za-z0-9_]*`); [`ProfileMeta::check_tags`] says whether they are.
    pub tags: Vec<(String, String)>,
    /// The deployment environment (DataKit's `env`, OTLP's `deployment.environment.name`).
    pub env: Option<String>,
    /// The service's version (DataKit's `version`, OTLP's `service.version`).
    pub version: Option<String>,
    /// The host name (DataKit's `host`, OTLP's `host.name`).
    pub host: Option<String>,
    /// The profiled process (DataKit's `process_id`, OTLP's `process.pid`).
    pub pid: Option<i32>,
    /// The Python version (DataKit's `runtime_version`, OTLP's `process.runtime.version`).
    pub runtime_version: Option<String>,
    /// The container the process runs in, where known (OTLP's `container.id`, a DataKit tag).
    pub container_id: Option<String>,
    /// The pid inside the process's own pid namespace, for a process in a container (OTLP's
    /// `process.vpid`, Pyroscope's `namespace_pid`, DataKit's `namespace_pid`).
    pub namespace_pid: Option<i32>,
    /// The process's executable (OTLP's `process.executable.path`, Pyroscope's and
    /// DataKit's `executable`).
    pub executable: Option<String>,
    /// The process's command line (OTLP's `process.command_line`, Pyroscope's
    /// `command_line`, DataKit's `cmdline`).
    pub command_line: Option<String>,
    /// The container's runtime, `docker`, `containerd`, `cri-o` or `podman` (OTLP's
    /// `container.runtime.name`, Pyroscope's and DataKit's `container_runtime`).
    pub container_runtime: Option<String>,
    /// The Kubernetes pod's uid (OTLP's `k8s.pod.uid`, Pyroscope's `k8s_pod_uid`, DataKit's
    /// `pod_uid`).
    pub pod_uid: Option<String>,
}

impl ProfileMeta {
    /// The facts about process `pid` that the machine shows: the host name
    /// (`/proc/sys/kernel/hostname`) and, for a process in a container, its id, runtime and
    /// pod (from `/proc/PID/cgroup`). Nothing else is set.
    pub fn for_process(pid: i32) -> ProfileMeta {
        let facts = cgroup::read(pid);
        let (container_id, container_runtime) = match facts.container {
            Some(c) => (Some(c.id), c.runtime.map(|r| r.as_str().to_string())),
            None => (None, None),
        };
        ProfileMeta {
            host: host_name(),
            pid: Some(pid),
            container_id,
            container_runtime,
            pod_uid: facts.pod_uid,
            ..ProfileMeta::default()
        }
    }

    /// Everything [`ProcessLabels`] know about a process (service name, pids, executable,
    /// command line, container, pod, Python version), and the host name.
    ///
    /// ```
    /// use pyspy_core::{export::ProfileMeta, ProcessLabels};
    /// let labels = ProcessLabels::read(std::process::id() as i32)?;
    /// let meta = ProfileMeta::for_labels(&labels).env(Some("prod".into()));
    /// assert_eq!((meta.service.as_str(), meta.pid), (labels.service.as_str(), Some(labels.pid)));
    /// # Ok::<(), pyspy_core::Error>(())
    /// ```
    pub fn for_labels(labels: &ProcessLabels) -> ProfileMeta {
        let command_line = labels.command_line_string();
        ProfileMeta {
            service: labels.service.clone(),
            host: host_name(),
            pid: Some(labels.pid),
            namespace_pid: labels.namespace_pid,
            runtime_version: labels.python_version.map(|v| v.to_string()),
            executable: Some(labels.executable.clone()).filter(|e| !e.is_empty()),
            command_line: Some(command_line).filter(|c| !c.is_empty()),
            container_id: labels.container.as_ref().map(|c| c.id.clone()),
            container_runtime: labels
                .container
                .as_ref()
                .and_then(|c| c.runtime)
                .map(|r| r.as_str().to_string()),
            pod_uid: labels.pod_uid.clone(),
            ..ProfileMeta::default()
        }
    }

    /// Sets [`ProfileMeta::service`].
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = name.into();
        self
    }
    /// Sets [`ProfileMeta::tags`].
    pub fn tags(mut self, tags: Vec<(String, String)>) -> Self {
        self.tags = tags;
        self
    }
    /// Sets [`ProfileMeta::env`].
    pub fn env(mut self, env: Option<String>) -> Self {
        self.env = env;
        self
    }
    /// Sets [`ProfileMeta::version`].
    pub fn version(mut self, version: Option<String>) -> Self {
        self.version = version;
        self
    }
    /// Sets [`ProfileMeta::host`].
    pub fn host(mut self, host: Option<String>) -> Self {
        self.host = host;
        self
    }
    /// Sets [`ProfileMeta::pid`].
    pub fn pid(mut self, pid: Option<i32>) -> Self {
        self.pid = pid;
        self
    }
    /// Sets [`ProfileMeta::runtime_version`].
    pub fn runtime_version(mut self, version: Option<String>) -> Self {
        self.runtime_version = version;
        self
    }
    /// Sets [`ProfileMeta::container_id`].
    pub fn container_id(mut self, id: Option<String>) -> Self {
        self.container_id = id;
        self
    }
    /// Sets [`ProfileMeta::namespace_pid`].
    pub fn namespace_pid(mut self, pid: Option<i32>) -> Self {
        self.namespace_pid = pid;
        self
    }
    /// Sets [`ProfileMeta::executable`].
    pub fn executable(mut self, path: Option<String>) -> Self {
        self.executable = path;
        self
    }
    /// Sets [`ProfileMeta::command_line`].
    pub fn command_line(mut self, command_line: Option<String>) -> Self {
        self.command_line = command_line;
        self
    }
    /// Sets [`ProfileMeta::container_runtime`].
    pub fn container_runtime(mut self, runtime: Option<String>) -> Self {
        self.container_runtime = runtime;
        self
    }
    /// Sets [`ProfileMeta::pod_uid`].
    pub fn pod_uid(mut self, uid: Option<String>) -> Self {
        self.pod_uid = uid;
        self
    }

    /// The service name, `python` if none was given.
    pub fn service_name(&self) -> &str {
        if self.service.is_empty() {
            "python"
        } else {
            &self.service
        }
    }

    /// Checks that every tag key is a Prometheus label name (what Pyroscope accepts) and not
    /// one the encoders set themselves; the error names the tag and the rule.
    pub fn check_tags(&self) -> Result<(), String> {
        for (key, _) in &self.tags {
            let mut chars = key.chars();
            let valid = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "tag key {key:?} is not a label name: use letters, digits and _, not starting with a digit"
                ));
            }
            if key.starts_with("__") || key == "service_name" {
                return Err(format!("tag key {key:?} is reserved: choose another name"));
            }
        }
        Ok(())
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`).
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// 16 random bytes (from `/dev/urandom`; the clock and pid if it cannot be read): profile ids.
pub(crate) fn random_id() -> [u8; 16] {
    use std::io::Read;
    let mut id = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut id));
    if read.is_err() {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        id[..8].copy_from_slice(&t.to_le_bytes());
        id[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    id
}

/// `2026-11-29T19:20:20.123456Z`: RFC 3339 in UTC with microseconds.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_709_251_199_500_001); // leap year, Feb 29
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.500001Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_868_800); // 2000-03-01
        assert_eq!(rfc3339(t), "2000-03-01T00:00:00.000000Z");
    }

    #[test]
    fn meta_of_labels() {
        let mut labels = ProcessLabels::read(std::process::id() as i32).unwrap();
        labels.namespace_pid = Some(7);
        labels.pod_uid = Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into());
        labels.container = Some(crate::Container {
            id: "ab".repeat(32),
            runtime: Some(crate::ContainerRuntime::CriO),
        });
        labels.python_version = crate::Version::from_hex(0x030c01f0);
        let meta = ProfileMeta::for_labels(&labels);
        assert_eq!(meta.service, labels.service);
        assert_eq!(meta.namespace_pid, Some(7));
        assert_eq!(meta.container_runtime.as_deref(), Some("cri-o"));
        assert_eq!(meta.container_id, Some("ab".repeat(32)));
        assert_eq!(meta.runtime_version.as_deref(), Some("3.12.1"));
        assert_eq!(meta.command_line, Some(labels.command_line_string()));
        assert!(meta.pod_uid.is_some() && meta.executable.is_some());
        assert_eq!(ProfileMeta::for_process(labels.pid).pid, Some(labels.pid));
    }

    #[test]
    fn tag_keys_are_checked() {
        let ok = ProfileMeta::default().tags(vec![("region_1".into(), "a,b".into())]);
        assert!(ok.check_tags().is_ok());
        for bad in ["1x", "a-b", "", "__name__", "service_name"] {
            let m = ProfileMeta::default().tags(vec![(bad.into(), "v".into())]);
            assert!(m.check_tags().is_err(), "{bad}");
        }
        assert_eq!(ProfileMeta::default().service_name(), "python");
    }
}
