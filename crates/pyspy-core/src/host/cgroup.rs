//! Containers and Kubernetes pods, from a process's `/proc/PID/cgroup`.
//!
//! Container runtimes name the cgroup of a container after its id, a 64-digit hex string, in
//! a few shapes (cgroup v1 lines `N:controllers:/path`, the v2 line `0::/path`):
//!
//! | runtime | cgroupfs driver | systemd driver |
//! |---|---|---|
//! | docker | `/docker/<id>` | `/system.slice/docker-<id>.scope` |
//! | containerd (CRI) | `/kubepods/<qos>/pod<uid>/<id>` | `.../kubepods-<qos>-pod<uid>.slice/cri-containerd-<id>.scope` |
//! | cri-o | `/kubepods/<qos>/pod<uid>/<id>` | `.../crio-<id>.scope` |
//! | podman | `/libpod_parent/libpod-<id>` | `/machine.slice/libpod-<id>.scope` (rootless: under `user@UID.service`) |
//!
//! Kubernetes pods add a `pod<uid>` segment (cgroupfs) or `kubepods[-<qos>]-pod<uid>.slice`
//! with the uid's dashes written as underscores (systemd). The deepest container segment of
//! a path wins (docker in docker), `conmon` scopes (podman's and cri-o's monitors) are not
//! containers, and a bare 64-digit segment elsewhere (ECS, containerd namespaces) is taken as
//! an id of an unknown runtime.
//!
//! Paths are read as the host sees them: an agent whose own cgroup namespace is private (a
//! container without `--cgroupns=host`) sees paths relative to its own cgroup instead.

/// The runtime that made a container, as its cgroup path tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContainerRuntime {
    /// Docker (`docker-<id>.scope`, `/docker/<id>`).
    Docker,
    /// containerd through its CRI plugin (`cri-containerd-<id>.scope`).
    Containerd,
    /// CRI-O (`crio-<id>.scope`).
    CriO,
    /// Podman (`libpod-<id>.scope`, `/libpod_parent/libpod-<id>`).
    Podman,
}

impl ContainerRuntime {
    /// The name OpenTelemetry's `container.runtime.name` uses: `docker`, `containerd`,
    /// `cri-o`, `podman`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ContainerRuntime::Docker => "docker",
            ContainerRuntime::Containerd => "containerd",
            ContainerRuntime::CriO => "cri-o",
            ContainerRuntime::Podman => "podman",
        }
    }
}

/// The container a process runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Container {
    /// The full container id: 64 lowercase hex digits.
    pub id: String,
    /// The runtime, where the cgroup path's shape names it (`None` for the cgroupfs layout of
    /// Kubernetes, which does not).
    pub runtime: Option<ContainerRuntime>,
}

/// What a `/proc/PID/cgroup` text says about containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CgroupFacts {
    /// The path the container or pod was found in; else the cgroup v2 path; else the first
    /// v1 path.
    pub path: Option<String>,
    pub container: Option<Container>,
    /// The Kubernetes pod's uid, with dashes (`8-4-4-4-12` hex digits).
    pub pod_uid: Option<String>,
}

/// Longest `/proc/PID/cgroup` text read (a v1 system lists a dozen hierarchies).
pub(crate) const MAX_CGROUP_TEXT: u64 = 64 << 10;

/// Reads `/proc/PID/cgroup`; empty facts if it cannot be read.
pub(crate) fn read(pid: i32) -> CgroupFacts {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(crate::attach::process::proc_path(pid, "cgroup"))
        .and_then(|f| f.take(MAX_CGROUP_TEXT).read_to_string(&mut text));
    match read {
        Ok(_) => parse(&text),
        Err(_) => CgroupFacts::default(),
    }
}

/// Parses a `/proc/PID/cgroup` text. The v2 line (`0::/path`) is looked at first, then the
/// v1 lines in order; the first path that names a container (or, failing that, a pod) wins.
pub(crate) fn parse(text: &str) -> CgroupFacts {
    let mut paths: Vec<&str> = Vec::new();
    let mut v2 = None;
    for line in text.lines() {
        // hierarchy-ID:controller-list:cgroup-path (the path may contain ':').
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(_controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" {
            v2 = Some(path);
        } else {
            paths.push(path);
        }
    }
    if let Some(p) = v2 {
        paths.insert(0, p);
    }
    let found = paths
        .iter()
        .find_map(|p| container_in(p).map(|c| (p, Some(c))))
        .or_else(|| paths.iter().find(|p| pod_uid_in(p).is_some()).map(|p| (p, None)));
    match found {
        Some((path, container)) => CgroupFacts {
            path: Some(path.to_string()),
            container,
            pod_uid: pod_uid_in(path),
        },
        None => CgroupFacts {
            path: paths.first().map(|p| p.to_string()),
            ..CgroupFacts::default()
        },
    }
}

/// A container id: 64 hex digits.
fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The deepest container a cgroup path names.
fn container_in(path: &str) -> Option<Container> {
    let mut found = None;
    let mut parent = "";
    for segment in path.split('/') {
        let base = segment.strip_suffix(".scope").unwrap_or(segment);
        if let Some((prefix, id)) = base.rsplit_once('-') {
            if is_id(id) && !prefix.ends_with("conmon") {
                let runtime = match prefix {
                    "docker" => Some(ContainerRuntime::Docker),
                    "cri-containerd" => Some(ContainerRuntime::Containerd),
                    "crio" => Some(ContainerRuntime::CriO),
                    "libpod" => Some(ContainerRuntime::Podman),
                    _ => None,
                };
                found = Some(Container {
                    id: id.to_ascii_lowercase(),
                    runtime,
                });
            }
        } else if is_id(base) {
            found = Some(Container {
                id: base.to_ascii_lowercase(),
                runtime: (parent == "docker").then_some(ContainerRuntime::Docker),
            });
        }
        parent = segment;
    }
    found
}

/// The Kubernetes pod uid in a cgroup path: `pod<uid>` (cgroupfs) or
/// `kubepods[-<qos>]-pod<uid_with_underscores>.slice` (systemd), under a `kubepods` cgroup.
fn pod_uid_in(path: &str) -> Option<String> {
    if !path.contains("kubepods") {
        return None;
    }
    path.split('/').find_map(|segment| {
        let base = segment.strip_suffix(".slice").unwrap_or(segment);
        let at = base.rfind("pod")?;
        let uid = &base[at + 3..];
        let starts_segment = at == 0 || base[..at].ends_with('-');
        (starts_segment && is_uid(uid)).then(|| uid.replace('_', "-").to_ascii_lowercase())
    })
}

/// A uid as Kubernetes writes it: 8-4-4-4-12 hex digits, separated by `-` (or `_`).
fn is_uid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-' || c == b'_',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708";
    const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    fn container(text: &str) -> Option<(String, Option<&'static str>)> {
        parse(text)
            .container
            .map(|c| (c.id, c.runtime.map(|r| r.as_str())))
    }

    #[test]
    fn docker_cgroup_v1_and_v2() {
        let v1 = format!(
            "12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n"
        );
        assert_eq!(container(&v1), Some((ID.into(), Some("docker"))));
        assert_eq!(parse(&v1).path.as_deref(), Some(&*format!("/docker/{ID}")));
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(container(&v2), Some((ID.into(), Some("docker"))));
        // A hybrid system with the container in the unified hierarchy only.
        let hybrid = format!("4:memory:/\n1:name=systemd:/\n0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(container(&hybrid), Some((ID.into(), Some("docker"))));
    }

    #[test]
    fn kubernetes_shapes_with_pod_uids() {
        let underscored = UID.replace('-', "_");
        let systemd = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{underscored}.slice/cri-containerd-{ID}.scope\n"
        );
        let f = parse(&systemd);
        assert_eq!(container(&systemd), Some((ID.into(), Some("containerd"))));
        assert_eq!(f.pod_uid.as_deref(), Some(UID));
        let guaranteed = format!("0::/kubepods.slice/kubepods-pod{underscored}.slice/crio-{ID}.scope\n");
        assert_eq!(container(&guaranteed), Some((ID.into(), Some("cri-o"))));
        assert_eq!(parse(&guaranteed).pod_uid.as_deref(), Some(UID));
        let cgroupfs = format!("5:cpu,cpuacct:/kubepods/burstable/pod{UID}/{ID}\n");
        assert_eq!(container(&cgroupfs), Some((ID.into(), None)));
        assert_eq!(parse(&cgroupfs).pod_uid.as_deref(), Some(UID));
        // The pod's own cgroup (no container yet): the pod uid alone.
        let pod_only = format!("0::/kubepods/besteffort/pod{UID}\n");
        let f = parse(&pod_only);
        assert_eq!((f.container, f.pod_uid.as_deref()), (None, Some(UID)));
        assert_eq!(f.path.as_deref(), Some(&*format!("/kubepods/besteffort/pod{UID}")));
    }

    #[test]
    fn podman_and_monitors() {
        let rootless = format!(
            "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"
        );
        assert_eq!(container(&rootless), Some((ID.into(), Some("podman"))));
        let cgroupfs = format!("3:pids:/libpod_parent/libpod-{ID}\n");
        assert_eq!(container(&cgroupfs), Some((ID.into(), Some("podman"))));
        // conmon watches a container from outside it: not in the container.
        assert_eq!(container(&format!("0::/machine.slice/libpod-conmon-{ID}.scope\n")), None);
        assert_eq!(container(&format!("0::/system.slice/crio-conmon-{ID}.scope\n")), None);
    }

    #[test]
    fn the_deepest_container_wins_and_ids_are_lowercased() {
        let outer = "a".repeat(64);
        let nested = format!("0::/docker/{outer}/docker/{}\n", ID.to_ascii_uppercase());
        assert_eq!(container(&nested), Some((ID.into(), Some("docker"))));
        let ecs = format!("3:cpu:/ecs/5a3b2c1d/{ID}\n");
        assert_eq!(container(&ecs), Some((ID.into(), None)));
    }

    #[test]
    fn no_container() {
        for text in [
            "0::/user.slice/user-0.slice/session-2.scope\n",
            "0::/\n",
            "12:pids:/\n0::/init.scope\n",
            "",
            "garbage without colons",
            // 63 and 65 digits, a uid outside kubepods
            &format!("0::/docker/{}\n", &ID[1..]),
            &format!("0::/docker/{ID}0\n"),
            &format!("0::/system.slice/pod{UID}\n"),
        ] {
            let f = parse(text);
            assert_eq!((f.container, f.pod_uid), (None, None), "{text:?}");
        }
        assert_eq!(
            parse("4:memory:/process_api/x\n0::/init.scope\n").path.as_deref(),
            Some("/init.scope"),
            "the v2 path first"
        );
    }

    #[test]
    fn this_process() {
        // Whatever this machine shows, reading it must not fail or invent a pod.
        let f = read(std::process::id() as i32);
        assert!(f.path.is_some());
    }
}
