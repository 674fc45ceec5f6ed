//! Payloads for continuous-profiling backends: a profile encoded as the request body that
//! Grafana Pyroscope, Guance DataKit or an OpenTelemetry collector takes, in a `pyspy_buffer`.
//! Sending it is the caller's business (the library has no network code): the header says the
//! endpoint path and content type of each.

use std::ffi::{c_char, c_int};

use pyspy_core::export::{datakit, otlp, pyroscope, ProfileMeta};

use crate::error::{pyspy_error, Failure};
use crate::ffi::{self, Castable, Out, OwnedBox};
use crate::panic::ffi_boundary;
use crate::profile::{pyspy_buffer, pyspy_profile};
use crate::status::pyspy_status;

/// Who a profile is from: service name, tags, environment, version, host, pid, Python
/// version, container id, for the backends' labels and attributes. Make one with
/// `pyspy_profile_meta_new`, fill it with the `pyspy_profile_meta_set_*` functions and
/// `pyspy_profile_meta_add_tag`, free it with `pyspy_profile_meta_free`. Every string is
/// copied. Not thread-safe for writing.
pub struct pyspy_profile_meta {
    _private: [u8; 0],
}

impl Castable for pyspy_profile_meta {
    type Ownership = OwnedBox;
    type Rust = ProfileMeta;
}

/// A `pyspy_payload` as C passes it (any `int`: see "Enum parameters" in [`crate::ffi`]). The
/// header spells it `pyspy_payload`.
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
pub struct PayloadArg(pub(crate) c_int);

/// A backend payload (`pyspy_profile_encode_payload`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum pyspy_payload {
    /// Grafana Pyroscope: a `push.v1.PushRequest` (gzip'd pprof inside, series labels
    /// `__name__`, `service_name`, `pyroscope_spy` and the tags). `POST
    /// {URL}/push.v1.PusherService/Push`, `Content-Type: application/proto`.
    Pyroscope = 0,
    /// Guance DataKit: a multipart body (`event.json` and gzip'd pprof). `POST
    /// {URL}/profiling/v1/input`, with the content type the function returns (it names the
    /// multipart boundary).
    Datakit = 1,
    /// OpenTelemetry: an `ExportProfilesServiceRequest` (profiles v1development, uncompressed
    /// protobuf). `POST {URL}/v1development/profiles`, `Content-Type: application/x-protobuf`.
    Otlp = 2,
}

/// A new, empty metadata object (service name `python`, no tags). NULL only if memory ran out.
/// Free it with `pyspy_profile_meta_free`.
#[no_mangle]
pub extern "C" fn pyspy_profile_meta_new() -> *mut pyspy_profile_meta {
    ffi_boundary!({ ffi::to_box_ptr::<pyspy_profile_meta>(ProfileMeta::default()) })
}

/// A new metadata object with what the machine shows about process `pid`: its pid, the host
/// name and, in a container, the container id. NULL only if memory ran out.
#[no_mangle]
pub extern "C" fn pyspy_profile_meta_for_process(pid: i32) -> *mut pyspy_profile_meta {
    ffi_boundary!({ ffi::to_box_ptr::<pyspy_profile_meta>(ProfileMeta::for_process(pid)) })
}

/// Frees a metadata object. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_meta_free(meta: *mut pyspy_profile_meta) {
    ffi_boundary!({
        // SAFETY: per the header, meta is NULL or live and not used after this.
        unsafe { ffi::free_box(meta) }
    })
}

/// Changes a metadata object with a string argument.
///
/// # Safety
/// `meta` is NULL or live and used by no other thread; `value` is NULL or a NUL-terminated
/// string.
unsafe fn set_str(
    meta: *mut pyspy_profile_meta,
    value: *const c_char,
    what: &str,
    f: impl FnOnce(&mut ProfileMeta, String),
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the contract.
        let m = unsafe { ffi::arg_mut(meta, "meta") }?;
        // SAFETY: per the contract.
        let v = unsafe { ffi::str_arg(value, what) }?;
        f(m, v.to_string());
        Ok(())
    })
}

/// Sets the service name (UTF-8, copied). `PYSPY_STATUS_INVALID_ARGUMENT` for NULL or
/// invalid UTF-8.
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_meta_set_service(
    meta: *mut pyspy_profile_meta,
    service: *const c_char,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set_str(meta, service, "service", |m, v| m.service = v, err) }
}

/// Sets the deployment environment (copied).
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_meta_set_env(
    meta: *mut pyspy_profile_meta,
    env: *const c_char,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set_str(meta, env, "env", |m, v| m.env = Some(v), err) }
}

/// Sets the service's version (copied).
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_meta_set_version(
    meta: *mut pyspy_profile_meta,
    version: *const c_char,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set_str(meta, version, "version", |m, v| m.version = Some(v), err) }
}

/// Sets the host name (copied).
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_meta_set_host(
    meta: *mut pyspy_profile_meta,
    host: *const c_char,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe { set_str(meta, host, "host", |m, v| m.host = Some(v), err) }
}

/// Sets the Python version of the profiled process, e.g. `pyspy_session_version`'s (copied).
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_meta_set_runtime_version(
    meta: *mut pyspy_profile_meta,
    version: *const c_char,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe {
        set_str(
            meta,
            version,
            "runtime_version",
            |m, v| m.runtime_version = Some(v),
            err,
        )
    }
}

/// Sets the container id (copied).
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_meta_set_container_id(
    meta: *mut pyspy_profile_meta,
    container_id: *const c_char,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    // SAFETY: forwarded contract.
    unsafe {
        set_str(
            meta,
            container_id,
            "container_id",
            |m, v| m.container_id = Some(v),
            err,
        )
    }
}

/// Sets the profiled process's id. `PYSPY_STATUS_INVALID_ARGUMENT` for NULL `meta`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_meta_set_pid(
    meta: *mut pyspy_profile_meta,
    pid: i32,
) -> pyspy_status {
    ffi_boundary!({
        // SAFETY: per the header, meta is NULL or live and used by no other thread.
        match unsafe { ffi::try_mut(meta) } {
            Some(m) => {
                m.pid = Some(pid);
                pyspy_status::Ok
            }
            None => pyspy_status::InvalidArgument,
        }
    })
}

/// Adds a tag (both strings copied). The key must be a label name (letters, digits and `_`,
/// not starting with a digit, not `__...` or `service_name`):
/// `PYSPY_STATUS_INVALID_ARGUMENT` otherwise, with the rule in the error.
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_meta_add_tag(
    meta: *mut pyspy_profile_meta,
    key: *const c_char,
    value: *const c_char,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, meta is NULL or live and used by no other thread.
        let m = unsafe { ffi::arg_mut(meta, "meta") }?;
        // SAFETY: per the header, NULL or NUL-terminated.
        let key = unsafe { ffi::str_arg(key, "key") }?;
        // SAFETY: as above.
        let value = unsafe { ffi::str_arg(value, "value") }?;
        let one = ProfileMeta::default().tags(vec![(key.to_string(), value.to_string())]);
        one.check_tags().map_err(Failure::invalid)?;
        m.tags.push((key.to_string(), value.to_string()));
        Ok(())
    })
}

/// Encodes `profile` as the request body of the backend `payload` (a `pyspy_payload`),
/// described by `meta` (NULL: service `python`, nothing else).
///
/// On success writes a new buffer with the body to `*body_out` and, if `content_type_out` is
/// not NULL, a new buffer with the `Content-Type` to send it with (text, no NUL) to
/// `*content_type_out`; both are owned by the caller (`pyspy_buffer_free`). On failure
/// returns the status, writes an error to `*err` if `err` is not NULL, and writes no output.
#[no_mangle]
pub unsafe extern "C" fn pyspy_profile_encode_payload(
    profile: *const pyspy_profile,
    payload: PayloadArg,
    meta: *const pyspy_profile_meta,
    body_out: *mut *mut pyspy_buffer,
    content_type_out: *mut *mut pyspy_buffer,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, profile is NULL or live.
        let p = unsafe { ffi::arg_ref(profile, "profile") }?;
        let out = Out::new(body_out, "body_out")?;
        let default = ProfileMeta::default();
        // SAFETY: per the header, meta is NULL or live.
        let meta = unsafe { ffi::try_ref(meta) }.unwrap_or(&default);
        let (body, content_type) = match payload.0 {
            x if x == pyspy_payload::Pyroscope as c_int => (pyroscope::push_request(&p.profile, meta), "application/proto".to_string()),
            x if x == pyspy_payload::Datakit as c_int => {
                let m = datakit::encode(&p.profile, meta);
                (m.body, m.content_type)
            }
            x if x == pyspy_payload::Otlp as c_int => (otlp::export_request(&p.profile, meta), "application/x-protobuf".to_string()),
            other => {
                return Err(Failure::invalid(format!(
                    "unknown payload {other} (want a pyspy_payload value)"
                )))
            }
        };
        if !content_type_out.is_null() {
            // SAFETY: not NULL, and writable per the header.
            unsafe {
                ffi::write_optional(
                    content_type_out,
                    ffi::to_box_ptr::<pyspy_buffer>(content_type.into_bytes().into()),
                );
            }
        }
        // SAFETY: body_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(ffi::to_box_ptr::<pyspy_buffer>(body.into())) };
        Ok(())
    })
}
