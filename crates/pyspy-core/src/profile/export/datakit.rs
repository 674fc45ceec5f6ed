//! Guance DataKit: the multipart body of `POST {URL}/profiling/v1/input` and its content type,
//! as DataKit's profile input (and the Datadog-style profilers it accepts) expect:
//!
//! - a part named `event` (file `event.json`, `application/json`): `attachments` (the names of
//!   the profile parts), `start` and `end` (RFC 3339, UTC), `family` and `language`
//!   (`python`), `runtime` (`cpython`), `format` (`pprof`) and `tags_profiler`, comma-separated
//!   `key:value` pairs: `service`, `env`, `version`, `host`, `process_id`,
//!   `runtime_version`, `profiler` (`pyspy`), `profiler_version`, then where known
//!   `container_id`, `container_runtime`, `pod_uid`, `namespace_pid`, `executable` and
//!   `cmdline`, then the user tags;
//! - a part named `profile.pprof` (the one attachment): the profile as gzip'd pprof.

use std::time::SystemTime;

use super::meta::{random_id, rfc3339, ProfileMeta};
use crate::profile::Profile;

/// The name of the pprof part, listed in `attachments`.
pub const PPROF_PART: &str = "profile.pprof";

/// A request body and the `Content-Type` that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Multipart {
    /// `multipart/form-data; boundary=...`.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// The `tags_profiler` value: `key:value` pairs joined by commas (commas in keys and values,
/// and colons in keys, become `_`).
pub fn tags_profiler(meta: &ProfileMeta) -> String {
    let mut tags: Vec<(String, String)> = vec![("service".into(), meta.service_name().into())];
    let mut add = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            tags.push((k.into(), v.clone()));
        }
    };
    add("env", &meta.env);
    add("version", &meta.version);
    add("host", &meta.host);
    add("process_id", &meta.pid.map(|p| p.to_string()));
    add("runtime_version", &meta.runtime_version);
    add("profiler", &Some("pyspy".into()));
    add("profiler_version", &Some(env!("CARGO_PKG_VERSION").into()));
    add("container_id", &meta.container_id);
    add("container_runtime", &meta.container_runtime);
    add("pod_uid", &meta.pod_uid);
    add("namespace_pid", &meta.namespace_pid.map(|p| p.to_string()));
    add("executable", &meta.executable);
    add("cmdline", &meta.command_line);
    tags.extend(meta.tags.iter().cloned());
    tags.iter()
        .map(|(k, v)| format!("{}:{}", k.replace([',', ':'], "_"), v.replace(',', "_")))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `event.json` part's text.
pub fn event_json(profile: &Profile, meta: &ProfileMeta) -> String {
    let start = profile.start_time().unwrap_or_else(SystemTime::now);
    let end = start + profile.duration();
    let mut json = String::from("{\"attachments\":[");
    super::json_string(&mut json, PPROF_PART);
    json.push(']');
    let fields = [
        ("start", rfc3339(start)),
        ("end", rfc3339(end)),
        ("family", "python".into()),
        ("language", "python".into()),
        ("runtime", "cpython".into()),
        ("format", "pprof".into()),
        ("tags_profiler", tags_profiler(meta)),
    ];
    for (k, v) in fields {
        json.push(',');
        super::json_string(&mut json, k);
        json.push(':');
        super::json_string(&mut json, &v);
    }
    json.push('}');
    json
}

/// The multipart body (the event and the gzip'd pprof) and its content type.
pub fn encode(profile: &Profile, meta: &ProfileMeta) -> Multipart {
    let event = event_json(profile, meta);
    let pprof = super::pprof::to_bytes(profile);
    // A boundary that occurs in neither part (random: a clash is astronomically unlikely, and
    // checked anyway).
    let mut boundary = String::new();
    for _ in 0..8 {
        boundary = random_id().iter().map(|b| format!("{b:02x}")).collect();
        boundary.insert_str(0, "pyspy-");
        let b = boundary.as_bytes();
        let clash = |data: &[u8]| data.windows(b.len()).any(|w| w == b);
        if !clash(event.as_bytes()) && !clash(&pprof) {
            break;
        }
    }
    let mut body = Vec::with_capacity(pprof.len() + event.len() + 512);
    let mut part = |name: &str, file: &str, content_type: &str, data: &[u8]| {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{file}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    };
    part("event", "event.json", "application/json", event.as_bytes());
    part(PPROF_PART, PPROF_PART, "application/octet-stream", &pprof);
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Multipart {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::small_profile;
    use crate::profile::ProfileOptions;

    #[test]
    fn event_and_tags() {
        let profile = small_profile(ProfileOptions::default());
        let meta = ProfileMeta::default()
            .service("shop")
            .env(Some("prod".into()))
            .pid(Some(42))
            .tags(vec![("team".into(), "a,b".into())]);
        let tags = tags_profiler(&meta);
        assert!(
            tags.starts_with(
                "service:shop,env:prod,process_id:42,profiler:pyspy,profiler_version:"
            ),
            "{tags}"
        );
        assert!(tags.ends_with(",team:a_b"), "{tags}");
        let process = ProfileMeta::default()
            .pod_uid(Some("u-1".into()))
            .namespace_pid(Some(1))
            .command_line(Some("python a.py --x=1,2".into()));
        let tags = tags_profiler(&process);
        assert!(
            tags.ends_with(",pod_uid:u-1,namespace_pid:1,cmdline:python a.py --x=1_2"),
            "{tags}"
        );
        let event = event_json(&profile, &meta);
        assert!(event.starts_with(r#"{"attachments":["profile.pprof"],"start":"2023-11-14T22:13:20.000000Z","end":"2023-11-14T22:13:20.040000Z","family":"python""#), "{event}");
    }

    #[test]
    fn multipart_shape() {
        let profile = small_profile(ProfileOptions::default());
        let m = encode(&profile, &ProfileMeta::default());
        let boundary = m
            .content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let text = String::from_utf8_lossy(&m.body);
        assert!(text.starts_with(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"event\"; filename=\"event.json\"\r\n")));
        assert!(text.contains("name=\"profile.pprof\"; filename=\"profile.pprof\""));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
        assert_eq!(text.matches(&format!("--{boundary}")).count(), 3);
    }
}
