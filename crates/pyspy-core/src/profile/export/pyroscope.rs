//! Grafana Pyroscope: a `push.v1.PushRequest`, the body of
//! `POST {URL}/push.v1.PusherService/Push` (`Content-Type: application/proto`).
//!
//! One series whose labels are `__name__` (`process_cpu` for a CPU profile, `wall` for a
//! wall-time one), `service_name`, `pyroscope_spy` = `pyspy`, the process's labels that are
//! known (`pid`, `namespace_pid`, `python_version`, `executable`, `command_line`,
//! `container_id`, `container_runtime`, `k8s_pod_uid`; values cut to
//! [`MAX_LABEL_VALUE`] bytes) and the user tags, sorted by name, with one raw sample: the
//! profile as gzip'd pprof ([`super::pprof`]) and a random id.

use prost::Message as _;

use super::meta::{random_id, ProfileMeta};
use super::proto::pyroscope as pb;
use crate::profile::Profile;

/// The profile type Pyroscope files the profile under: `process_cpu` or `wall`.
pub fn profile_name(profile: &Profile) -> &'static str {
    if profile.options().idle {
        "wall"
    } else {
        "process_cpu"
    }
}

/// The longest label value sent: Pyroscope refuses a whole push with a longer one (its
/// `max_label_value_length` defaults to 2048); a longer command line is cut.
pub const MAX_LABEL_VALUE: usize = 1024;

/// The `PushRequest` message, encoded (not compressed: the pprof inside is).
pub fn push_request(profile: &Profile, meta: &ProfileMeta) -> Vec<u8> {
    let mut labels = vec![
        ("__name__".to_string(), profile_name(profile).to_string()),
        ("service_name".to_string(), meta.service_name().to_string()),
        ("pyroscope_spy".to_string(), "pyspy".to_string()),
    ];
    let process = [
        ("pid", meta.pid.map(|p| p.to_string())),
        ("namespace_pid", meta.namespace_pid.map(|p| p.to_string())),
        ("python_version", meta.runtime_version.clone()),
        ("executable", meta.executable.clone()),
        ("command_line", meta.command_line.clone()),
        ("container_id", meta.container_id.clone()),
        ("container_runtime", meta.container_runtime.clone()),
        ("k8s_pod_uid", meta.pod_uid.clone()),
    ];
    for (name, value) in process {
        if let Some(mut value) = value {
            if value.len() > MAX_LABEL_VALUE {
                let mut end = MAX_LABEL_VALUE;
                while !value.is_char_boundary(end) {
                    end -= 1;
                }
                value.truncate(end);
            }
            labels.push((name.to_string(), value));
        }
    }
    for (k, v) in &meta.tags {
        match labels.iter_mut().find(|(name, _)| name == k) {
            Some(existing) => existing.1 = v.clone(),
            None => labels.push((k.clone(), v.clone())),
        }
    }
    labels.sort();
    let id: String = random_id().iter().map(|b| format!("{b:02x}")).collect();
    pb::PushRequest {
        series: vec![pb::RawProfileSeries {
            labels: labels
                .into_iter()
                .map(|(name, value)| pb::LabelPair { name, value })
                .collect(),
            samples: vec![pb::RawSample {
                raw_profile: super::pprof::to_bytes(profile),
                id,
            }],
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::small_profile;
    use crate::profile::ProfileOptions;

    #[test]
    fn labels_and_raw_pprof() {
        let profile = small_profile(ProfileOptions::default());
        let meta = ProfileMeta::default()
            .service("shop")
            .tags(vec![("region".into(), "eu".into())]);
        let req = pb::PushRequest::decode(&push_request(&profile, &meta)[..]).unwrap();
        let series = &req.series[0];
        let labels: Vec<(&str, &str)> = series
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("__name__", "process_cpu"),
                ("pyroscope_spy", "pyspy"),
                ("region", "eu"),
                ("service_name", "shop")
            ]
        );
        let raw = &series.samples[0].raw_profile;
        assert_eq!(&raw[..2], [0x1f, 0x8b], "gzip'd pprof");
        assert_eq!(series.samples[0].id.len(), 32);
    }

    #[test]
    fn process_labels_when_known() {
        let profile = small_profile(ProfileOptions::default());
        let meta = ProfileMeta::default()
            .pid(Some(42))
            .namespace_pid(Some(1))
            .runtime_version(Some("3.12.1".into()))
            .container_id(Some("ab".repeat(32)))
            .container_runtime(Some("docker".into()))
            .pod_uid(Some("u".into()))
            .executable(Some("/usr/bin/python3.12".into()))
            .command_line(Some(format!("python app.py {}", "é".repeat(600))));
        let req = pb::PushRequest::decode(&push_request(&profile, &meta)[..]).unwrap();
        let labels: std::collections::HashMap<&str, &str> = req.series[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(labels["pid"], "42");
        assert_eq!(labels["namespace_pid"], "1");
        assert_eq!(labels["python_version"], "3.12.1");
        assert_eq!(labels["container_runtime"], "docker");
        assert_eq!(labels["k8s_pod_uid"], "u");
        assert_eq!(labels["executable"], "/usr/bin/python3.12");
        let cmd = labels["command_line"];
        assert!(
            cmd.starts_with("python app.py é") && cmd.len() <= MAX_LABEL_VALUE,
            "{}",
            cmd.len()
        );
    }
}
