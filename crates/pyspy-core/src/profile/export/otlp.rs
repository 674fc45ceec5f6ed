//! OpenTelemetry profiles: an `ExportProfilesServiceRequest` (profiles `v1development`, as in
//! opentelemetry-proto 1.10), the body of `POST {URL}/v1development/profiles`
//! (`Content-Type: application/x-protobuf`).
//!
//! What is written:
//! - one `ProfilesDictionary` shared by the profiles; each of its tables starts with the
//!   zero-value entry the specification asks for (`string_table[0]` is `""`, and so on);
//!   one `Function` per (name, file), one `Location` per (function, line) without a mapping,
//!   one `Stack` per distinct stack (leaf first);
//! - one `ResourceProfiles` whose resource attributes are `service.name`, `service.version`,
//!   `deployment.environment.name`, `process.pid`, `process.runtime.name` (`cpython`),
//!   `process.runtime.version`, `host.name`, `container.id`, `container.runtime.name`,
//!   `k8s.pod.uid`, `process.vpid`, `process.executable.path`, `process.command_line`
//!   (those known) and the user tags;
//! - one `ScopeProfiles` (scope `pyspy` and its version) with two profiles: first the time
//!   (`cpu`/`nanoseconds` or `wall`/`nanoseconds`, as in [`super::pprof`]), then the sample
//!   counts (`samples`/`count`), each with `period_type`/`period`, `time_unix_nano`,
//!   `duration_nano` and a random `profile_id`; samples carry the attributes `thread.id`,
//!   `thread.name` and `process.pid` when the profile keeps threads or processes apart.

use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use prost::Message as _;

use super::meta::{random_id, ProfileMeta};
use super::proto::opentelemetry::proto::common::v1 as common;
use super::proto::opentelemetry::proto::profiles::v1development as pb;
use crate::profile::Profile;

/// The `ExportProfilesServiceRequest`, encoded (not compressed).
pub fn export_request(profile: &Profile, meta: &ProfileMeta) -> Vec<u8> {
    build(profile, meta).encode_to_vec()
}

/// Interning tables of the dictionary.
struct Dictionary {
    dict: pb::ProfilesDictionary,
    strings: HashMap<String, i32>,
    attributes: HashMap<(i32, AttrValue), i32>,
    stacks: HashMap<Vec<i32>, i32>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum AttrValue {
    Str(String),
    Int(i64),
}

impl Dictionary {
    fn new() -> Dictionary {
        let mut strings = HashMap::new();
        strings.insert(String::new(), 0);
        Dictionary {
            dict: pb::ProfilesDictionary {
                mapping_table: vec![pb::Mapping::default()],
                location_table: vec![pb::Location::default()],
                function_table: vec![pb::Function::default()],
                link_table: vec![pb::Link::default()],
                string_table: vec![String::new()],
                attribute_table: vec![pb::KeyValueAndUnit::default()],
                stack_table: vec![pb::Stack::default()],
            },
            strings,
            attributes: HashMap::new(),
            stacks: HashMap::new(),
        }
    }

    fn string(&mut self, s: &str) -> i32 {
        if let Some(i) = self.strings.get(s) {
            return *i;
        }
        let i = self.dict.string_table.len() as i32;
        self.dict.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn attribute(&mut self, key: &str, value: AttrValue) -> i32 {
        let key = self.string(key);
        if let Some(i) = self.attributes.get(&(key, value.clone())) {
            return *i;
        }
        let i = self.dict.attribute_table.len() as i32;
        self.dict.attribute_table.push(pb::KeyValueAndUnit {
            key_strindex: key,
            value: Some(any_value(&value)),
            unit_strindex: 0,
        });
        self.attributes.insert((key, value), i);
        i
    }

    fn stack(&mut self, locations: Vec<i32>) -> i32 {
        if let Some(i) = self.stacks.get(&locations) {
            return *i;
        }
        let i = self.dict.stack_table.len() as i32;
        self.dict.stack_table.push(pb::Stack {
            location_indices: locations.clone(),
        });
        self.stacks.insert(locations, i);
        i
    }
}

fn any_value(v: &AttrValue) -> common::AnyValue {
    common::AnyValue {
        value: Some(match v {
            AttrValue::Str(s) => common::any_value::Value::StringValue(s.clone()),
            AttrValue::Int(i) => common::any_value::Value::IntValue(*i),
        }),
    }
}

fn key_value(key: &str, value: AttrValue) -> common::KeyValue {
    common::KeyValue {
        key: key.to_string(),
        value: Some(any_value(&value)),
    }
}

/// The resource attributes of `meta` (those known), then the user tags.
fn resource(meta: &ProfileMeta) -> common::Resource {
    use AttrValue::{Int, Str};
    let mut attributes = vec![
        key_value("service.name", Str(meta.service_name().into())),
        key_value("process.runtime.name", Str("cpython".into())),
    ];
    let mut add = |key: &str, value: Option<AttrValue>| {
        if let Some(v) = value {
            attributes.push(key_value(key, v));
        }
    };
    add("service.version", meta.version.clone().map(Str));
    add("deployment.environment.name", meta.env.clone().map(Str));
    add("process.pid", meta.pid.map(|p| Int(i64::from(p))));
    add(
        "process.runtime.version",
        meta.runtime_version.clone().map(Str),
    );
    add("host.name", meta.host.clone().map(Str));
    add("container.id", meta.container_id.clone().map(Str));
    add(
        "container.runtime.name",
        meta.container_runtime.clone().map(Str),
    );
    add("k8s.pod.uid", meta.pod_uid.clone().map(Str));
    add(
        "process.vpid",
        meta.namespace_pid.map(|p| Int(i64::from(p))),
    );
    add("process.executable.path", meta.executable.clone().map(Str));
    add("process.command_line", meta.command_line.clone().map(Str));
    for (k, v) in &meta.tags {
        attributes.push(key_value(k, Str(v.clone())));
    }
    common::Resource { attributes }
}

fn build(profile: &Profile, meta: &ProfileMeta) -> pb::ExportProfilesServiceRequest {
    let mut d = Dictionary::new();
    let (kind, _) = super::pprof::time_kind(profile);

    // Functions per (name, file), locations per (function, line), in frame order.
    let mut functions: HashMap<(&str, &str), i32> = HashMap::new();
    let mut location_ids: HashMap<(i32, i32), i32> = HashMap::new();
    let mut locations: Vec<i32> = Vec::with_capacity(profile.frames().len());
    for f in profile.frames() {
        let fid = match functions.get(&(&*f.name, &*f.filename)) {
            Some(id) => *id,
            None => {
                let id = d.dict.function_table.len() as i32;
                let name = d.string(&f.name);
                let file = d.string(&f.filename);
                d.dict.function_table.push(pb::Function {
                    name_strindex: name,
                    system_name_strindex: name,
                    filename_strindex: file,
                    start_line: 0,
                });
                functions.insert((&f.name, &f.filename), id);
                id
            }
        };
        let lid = *location_ids.entry((fid, f.line)).or_insert_with(|| {
            d.dict.location_table.push(pb::Location {
                lines: vec![pb::Line {
                    function_index: fid,
                    line: i64::from(f.line),
                    column: 0,
                }],
                ..Default::default()
            });
            d.dict.location_table.len() as i32 - 1
        });
        locations.push(lid);
    }

    let mut time_samples = Vec::new();
    let mut count_samples = Vec::new();
    for stack in profile.stacks() {
        let leaf_first: Vec<i32> = stack
            .frames
            .iter()
            .rev()
            .map(|f| locations[*f as usize])
            .collect();
        let stack_index = d.stack(leaf_first);
        let mut attribute_indices = Vec::new();
        if let Some(p) = stack.process {
            attribute_indices.push(d.attribute("process.pid", AttrValue::Int(i64::from(p.pid))));
        }
        if let Some(t) = stack.thread {
            let id = t.native_thread_id.unwrap_or(t.thread_id) as i64;
            attribute_indices.push(d.attribute("thread.id", AttrValue::Int(id)));
            if let Some(name) = &t.name {
                attribute_indices
                    .push(d.attribute("thread.name", AttrValue::Str(name.to_string())));
            }
        }
        let sample = |value: i64| pb::Sample {
            stack_index,
            attribute_indices: attribute_indices.clone(),
            link_index: 0,
            values: vec![value],
            timestamps_unix_nano: Vec::new(),
        };
        time_samples.push(sample(
            i64::try_from(stack.time.as_nanos()).unwrap_or(i64::MAX),
        ));
        count_samples.push(sample(i64::try_from(stack.count).unwrap_or(i64::MAX)));
    }

    let start = profile
        .start_time()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX));
    let duration = u64::try_from(profile.duration().as_nanos()).unwrap_or(u64::MAX);
    let period = i64::try_from(profile.options().period.as_nanos()).unwrap_or(i64::MAX);
    let period_type = pb::ValueType {
        type_strindex: d.string(kind),
        unit_strindex: d.string("nanoseconds"),
    };
    let mut one = |(ty, unit): (&str, &str), samples: Vec<pb::Sample>| pb::Profile {
        sample_type: Some(pb::ValueType {
            type_strindex: d.string(ty),
            unit_strindex: d.string(unit),
        }),
        samples,
        time_unix_nano: start,
        duration_nano: duration,
        period_type: Some(period_type),
        period,
        profile_id: random_id().to_vec(),
        ..Default::default()
    };
    let profiles = vec![
        one((kind, "nanoseconds"), time_samples),
        one(("samples", "count"), count_samples),
    ];
    pb::ExportProfilesServiceRequest {
        resource_profiles: vec![pb::ResourceProfiles {
            resource: Some(resource(meta)),
            scope_profiles: vec![pb::ScopeProfiles {
                scope: Some(common::InstrumentationScope {
                    name: "pyspy".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                }),
                profiles,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
        dictionary: Some(d.dict),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::small_profile;
    use crate::profile::ProfileOptions;

    #[test]
    fn dictionary_and_profiles() {
        let profile = small_profile(ProfileOptions::default().threads(true));
        let meta = ProfileMeta::default().service("shop").pid(Some(42));
        let req =
            pb::ExportProfilesServiceRequest::decode(&export_request(&profile, &meta)[..]).unwrap();
        let d = req.dictionary.as_ref().unwrap();
        assert_eq!(d.string_table[0], "");
        assert_eq!(d.mapping_table[0], pb::Mapping::default());
        assert_eq!(d.location_table[0], pb::Location::default());
        assert_eq!(d.function_table[0], pb::Function::default());
        assert_eq!(d.stack_table[0], pb::Stack::default());
        assert_eq!(d.attribute_table[0], pb::KeyValueAndUnit::default());
        assert_eq!(
            d.function_table.len(),
            5,
            "zero entry + main, work, hot, other"
        );
        let scope = &req.resource_profiles[0].scope_profiles[0];
        let s = |i: i32| d.string_table[i as usize].as_str();
        let types: Vec<&str> = scope
            .profiles
            .iter()
            .map(|p| s(p.sample_type.unwrap().type_strindex))
            .collect();
        assert_eq!(types, ["cpu", "samples"]);
        let time = &scope.profiles[0];
        let hot = time
            .samples
            .iter()
            .find(|x| d.stack_table[x.stack_index as usize].location_indices.len() == 3)
            .unwrap();
        assert_eq!(hot.values, [30_000_000]);
        let leaf =
            &d.location_table[d.stack_table[hot.stack_index as usize].location_indices[0] as usize];
        assert_eq!(
            s(d.function_table[leaf.lines[0].function_index as usize].name_strindex),
            "hot"
        );
        let attrs: Vec<&str> = hot
            .attribute_indices
            .iter()
            .map(|i| s(d.attribute_table[*i as usize].key_strindex))
            .collect();
        assert_eq!(attrs, ["thread.id", "thread.name"]);
        let resource = req.resource_profiles[0].resource.as_ref().unwrap();
        let keys: Vec<&str> = resource.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            ["service.name", "process.runtime.name", "process.pid"]
        );
    }

    #[test]
    fn process_and_container_attributes() {
        let profile = small_profile(ProfileOptions::default());
        let meta = ProfileMeta::default()
            .pid(Some(42))
            .namespace_pid(Some(1))
            .container_id(Some("ab".repeat(32)))
            .container_runtime(Some("containerd".into()))
            .pod_uid(Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()))
            .executable(Some("/usr/bin/python3".into()))
            .command_line(Some("python3 app.py".into()));
        let req =
            pb::ExportProfilesServiceRequest::decode(&export_request(&profile, &meta)[..]).unwrap();
        let resource = req.resource_profiles[0].resource.as_ref().unwrap();
        let value = |key: &str| {
            resource
                .attributes
                .iter()
                .find(|a| a.key == key)
                .and_then(|a| a.value.clone())
                .and_then(|v| v.value)
        };
        use common::any_value::Value::{IntValue, StringValue};
        assert_eq!(value("process.vpid"), Some(IntValue(1)));
        assert_eq!(
            value("container.runtime.name"),
            Some(StringValue("containerd".into()))
        );
        assert_eq!(
            value("k8s.pod.uid"),
            Some(StringValue("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()))
        );
        assert_eq!(
            value("process.executable.path"),
            Some(StringValue("/usr/bin/python3".into()))
        );
        assert_eq!(
            value("process.command_line"),
            Some(StringValue("python3 app.py".into()))
        );
        assert_eq!(value("container.id"), Some(StringValue("ab".repeat(32))));
    }
}
