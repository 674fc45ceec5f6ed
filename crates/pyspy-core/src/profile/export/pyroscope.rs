//! Grafana Pyroscope: a `push.v1.PushRequest`, the body of
//! `POST {URL}/push.v1.PusherService/Push` (`Content-Type: application/proto`).
//!
//! One series whose labels are `__name__` (`process_cpu` for a CPU profile, `wall` for a
//! wall-time one), `service_name`, `pyroscope_spy` = `pyspy` and the user tags, sorted by
//! name, with one raw sample: the profile as gzip'd pprof ([`super::pprof`]) and a random id.

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

/// The `PushRequest` message, encoded (not compressed: the pprof inside is).
pub fn push_request(profile: &Profile, meta: &ProfileMeta) -> Vec<u8> {
    let mut labels = vec![
        ("__name__".to_string(), profile_name(profile).to_string()),
        ("service_name".to_string(), meta.service_name().to_string()),
        ("pyroscope_spy".to_string(), "pyspy".to_string()),
    ];
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
}
