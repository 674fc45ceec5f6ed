//! The whole machine: process labels and discovery, so C and Go agents can build their own
//! policies over every Python process of the host (which to profile, how often, where to send).
//!
//! `pyspy_process_labels_read` reads who a process is (pids in and out of its pid namespace,
//! program, command line, service, container, pod); a `pyspy_discovery` scans `/proc` and hands
//! out an attached `pyspy_session` for each new Python process, with its labels, and reports
//! exits (also reused pids) and processes it skipped.

use std::ffi::{c_char, c_void, CString};
use std::sync::{Arc, Mutex};

use pyspy_core::{Discovery, DiscoveryOptions, ProcessLabels, SkipReason};

use crate::error::{pyspy_error, Failure};
use crate::ffi::{self, Castable, Out, OwnedBox};
use crate::options::{pyspy_options, Options};
use crate::panic::ffi_boundary;
use crate::session::{pyspy_session, SessionObject};
use crate::status::pyspy_status;

/// Who a process is: what its profiles are labelled with. Read by
/// `pyspy_process_labels_read` (owned: free with `pyspy_process_labels_free`), or lent by a
/// `pyspy_scan` (valid until the scan is freed; never freed on its own) and by a
/// `pyspy_process_filter` (valid during the call).
pub struct pyspy_process_labels {
    _private: [u8; 0],
}

impl Castable for pyspy_process_labels {
    type Ownership = OwnedBox;
    type Rust = LabelsObject;
}

/// What a `pyspy_process_labels` holds: the labels and their C strings.
pub struct LabelsObject {
    labels: Arc<ProcessLabels>,
    executable: CString,
    command_line: CString,
    service: CString,
    service_source: CString,
    container_id: Option<CString>,
    container_runtime: Option<CString>,
    pod_uid: Option<CString>,
    cgroup: Option<CString>,
    python_version: Option<CString>,
}

impl LabelsObject {
    fn new(labels: Arc<ProcessLabels>) -> LabelsObject {
        let c = |s: &str| ffi::c_string(s);
        LabelsObject {
            executable: c(&labels.executable),
            command_line: c(&labels.command_line_string()),
            service: c(&labels.service),
            service_source: c(labels.service_source.as_str()),
            container_id: labels.container.as_ref().map(|k| c(&k.id)),
            container_runtime: labels
                .container
                .as_ref()
                .and_then(|k| k.runtime)
                .map(|r| c(r.as_str())),
            pod_uid: labels.pod_uid.as_deref().map(c),
            cgroup: labels.cgroup.as_deref().map(c),
            python_version: labels.python_version.map(|v| c(&v.to_string())),
            labels,
        }
    }
}

/// Reads the labels of process `pid` from `/proc` (the Python version is only known once
/// attached: `pyspy_process_labels_python_version` is NULL here). Works for any process, Python
/// or not. What cannot be read (another user's environment without the rights) is left empty.
///
/// On success writes new labels to `*labels_out` (owned by the caller: free with
/// `pyspy_process_labels_free`). Fails with `PYSPY_STATUS_NO_SUCH_PROCESS` if there is no
/// process `pid`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_read(
    pid: i32,
    labels_out: *mut *mut pyspy_process_labels,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        let out = Out::new(labels_out, "labels_out")?;
        if pid <= 0 {
            return Err(Failure::invalid(format!("pid must be positive, got {pid}")));
        }
        let labels = ProcessLabels::read(pid)?;
        let handle = ffi::to_box_ptr::<pyspy_process_labels>(LabelsObject::new(Arc::new(labels)));
        // SAFETY: labels_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Frees labels read by `pyspy_process_labels_read`. NULL is a no-op. Never pass labels lent by
/// a scan or a filter.
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_free(labels: *mut pyspy_process_labels) {
    ffi_boundary!({
        // SAFETY: per the header, labels is NULL or owned, live and not used after this.
        unsafe { ffi::free_box(labels) }
    })
}

/// The labels behind a handle, or `None` for NULL.
///
/// # Safety
/// `labels` is NULL or live.
unsafe fn labels_ref<'a>(labels: *const pyspy_process_labels) -> Option<&'a LabelsObject> {
    // SAFETY: forwarded contract.
    unsafe { ffi::try_ref(labels) }
}

/// The pid as this machine's `/proc` sees it (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_pid(labels: *const pyspy_process_labels) -> i32 {
    // SAFETY: per the header, labels is NULL or live.
    ffi_boundary!({ unsafe { labels_ref(labels) }.map_or(0, |l| l.labels.pid) })
}

/// The pid inside the process's own pid namespace (a container's), or 0 for a process in the
/// host's pid namespace (and for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_namespace_pid(
    labels: *const pyspy_process_labels,
) -> i32 {
    ffi_boundary!({
        // SAFETY: per the header, labels is NULL or live.
        unsafe { labels_ref(labels) }
            .and_then(|l| l.labels.namespace_pid)
            .unwrap_or(0)
    })
}

/// When the process started, in clock ticks after boot: with the pid, it names one process
/// (pids are reused, this pair is not). 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_start_time(
    labels: *const pyspy_process_labels,
) -> u64 {
    // SAFETY: per the header, labels is NULL or live.
    ffi_boundary!({ unsafe { labels_ref(labels) }.map_or(0, |l| l.labels.start_time) })
}

/// `/proc/PID/exe` as the kernel shows it (for a process in another mount namespace, the
/// path in its own); "" if it could not be read. Borrowed from `labels`; NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_executable(
    labels: *const pyspy_process_labels,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, labels is NULL or live.
        unsafe { labels_ref(labels) }.map_or(std::ptr::null(), |l| l.executable.as_ptr())
    })
}
/// The command line, arguments joined by spaces (its first 64 KiB). Borrowed from
/// `labels`; NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_command_line(
    labels: *const pyspy_process_labels,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, labels is NULL or live.
        unsafe { labels_ref(labels) }.map_or(std::ptr::null(), |l| l.command_line.as_ptr())
    })
}
/// The service name: from the process's environment (`OTEL_SERVICE_NAME`, `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`, `DD_SERVICE`, `PYROSCOPE_APPLICATION_NAME`), else the module
/// or script it runs, else its program. Borrowed from `labels`; NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_service(
    labels: *const pyspy_process_labels,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, labels is NULL or live.
        unsafe { labels_ref(labels) }.map_or(std::ptr::null(), |l| l.service.as_ptr())
    })
}
/// Where the service name came from: the environment variable's name, `module`, `script`
/// or `program`. Borrowed from `labels`; NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_service_source(
    labels: *const pyspy_process_labels,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, labels is NULL or live.
        unsafe { labels_ref(labels) }.map_or(std::ptr::null(), |l| l.service_source.as_ptr())
    })
}
/// The id of the container the process runs in (64 hex digits), from `/proc/PID/cgroup`;
/// NULL if none. Borrowed from `labels`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_container_id(
    labels: *const pyspy_process_labels,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, labels is NULL or live.
        let l = unsafe { labels_ref(labels) };
        ffi::opt_c_str(l.and_then(|l| l.container_id.as_deref()))
    })
}
/// The container runtime the cgroup path names: `docker`, `containerd`, `cri-o` or
/// `podman`; NULL if none or not named. Borrowed from `labels`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_container_runtime(
    labels: *const pyspy_process_labels,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, labels is NULL or live.
        let l = unsafe { labels_ref(labels) };
        ffi::opt_c_str(l.and_then(|l| l.container_runtime.as_deref()))
    })
}
/// The Kubernetes pod's uid, where the cgroup path has it; NULL if none. Borrowed from
/// `labels`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_pod_uid(
    labels: *const pyspy_process_labels,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, labels is NULL or live.
        let l = unsafe { labels_ref(labels) };
        ffi::opt_c_str(l.and_then(|l| l.pod_uid.as_deref()))
    })
}
/// The cgroup path the container or pod was read from (else the v2 path, else the first
/// v1 one); NULL if none. Borrowed from `labels`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_cgroup(
    labels: *const pyspy_process_labels,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, labels is NULL or live.
        let l = unsafe { labels_ref(labels) };
        ffi::opt_c_str(l.and_then(|l| l.cgroup.as_deref()))
    })
}
/// The interpreter's version (`3.12.1`) once attached (labels of a scan's found
/// processes); NULL otherwise. Borrowed from `labels`.
#[no_mangle]
pub unsafe extern "C" fn pyspy_process_labels_python_version(
    labels: *const pyspy_process_labels,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, labels is NULL or live.
        let l = unsafe { labels_ref(labels) };
        ffi::opt_c_str(l.and_then(|l| l.python_version.as_deref()))
    })
}

/// Decides whether a Python process is profiled, from its labels (lent for the call; the
/// Python version is not known yet). Return true to attach to it; asked again after the
/// attach if the labels read then differ (a process caught in `exec` shows no arguments or
/// environment yet), and false then drops the process. Called by
/// `pyspy_discovery_scan` on the thread that called it, during that call, with the `userdata`
/// given to `pyspy_discovery_new`. It must not call the discovery that called it, nor unwind.
pub type pyspy_process_filter = Option<
    unsafe extern "C" fn(userdata: *mut c_void, labels: *const pyspy_process_labels) -> bool,
>;

/// A filter function and its userdata.
#[derive(Clone, Copy)]
struct Filter {
    function: unsafe extern "C" fn(*mut c_void, *const pyspy_process_labels) -> bool,
    userdata: *mut c_void,
}

// SAFETY: the header's contract (`pyspy_process_filter`): the filter is only called during
// `pyspy_discovery_scan`, on the caller's thread, with the caller's userdata; the library never
// dereferences userdata. Discovery only needs these bounds to be shareable in Rust.
unsafe impl Send for Filter {}
// SAFETY: as above.
unsafe impl Sync for Filter {}

impl Filter {
    fn accepts(&self, labels: &ProcessLabels) -> bool {
        let object = LabelsObject::new(Arc::new(labels.clone()));
        // SAFETY: the header's contract for the filter and its userdata; the labels are lent
        // for the call only.
        unsafe { (self.function)(self.userdata, ffi::lend::<pyspy_process_labels>(&object)) }
    }
}

/// Finds every Python process of the machine, as they come and go. Made by
/// `pyspy_discovery_new`, freed by `pyspy_discovery_free`.
///
/// Thread safety: calls on one discovery from several threads are serialised (a lock inside).
pub struct pyspy_discovery {
    _private: [u8; 0],
}

impl Castable for pyspy_discovery {
    type Ownership = OwnedBox;
    type Rust = Mutex<Discovery>;
}

/// A new discovery, which has seen nothing yet (its first scan looks at every process).
/// `options` (NULL for the defaults; only read during the call) say how to attach; at most
/// `limit` processes are handed out at once (0 for the default, 64): more are reported as
/// skipped and handed out as others exit. `filter` (NULL: every Python process) decides which
/// processes are attached to, from their labels; it is called with `userdata`.
///
/// On success writes the discovery to `*discovery_out` (owned by the caller: free with
/// `pyspy_discovery_free`).
#[no_mangle]
pub unsafe extern "C" fn pyspy_discovery_new(
    options: *const pyspy_options,
    limit: usize,
    filter: pyspy_process_filter,
    userdata: *mut c_void,
    discovery_out: *mut *mut pyspy_discovery,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        let out = Out::new(discovery_out, "discovery_out")?;
        let default = Options::default();
        // SAFETY: per the header, options is NULL or a live pyspy_options.
        let options = unsafe { ffi::try_ref(options) }.unwrap_or(&default);
        let mut discovery = DiscoveryOptions::default().attach(options.attach.clone());
        if limit > 0 {
            discovery = discovery.limit(limit);
        }
        if let Some(function) = filter {
            let filter = Filter { function, userdata };
            discovery = discovery.filter(move |labels| filter.accepts(labels));
        }
        let handle = ffi::to_box_ptr::<pyspy_discovery>(Mutex::new(Discovery::new(discovery)));
        // SAFETY: discovery_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Frees a discovery. NULL is a no-op. Sessions it handed out stay valid.
#[no_mangle]
pub unsafe extern "C" fn pyspy_discovery_free(discovery: *mut pyspy_discovery) {
    ffi_boundary!({
        // SAFETY: per the header, discovery is NULL or live and not used after this.
        unsafe { ffi::free_box(discovery) }
    })
}

/// The caller no longer profiles `pid` (its session failed, or it was not wanted): it no
/// longer counts against the limit and is looked at again at a later scan (with a backoff if
/// it keeps being released). A process that exits needs no release. Returns false for a NULL
/// discovery.
#[no_mangle]
pub unsafe extern "C" fn pyspy_discovery_release(
    discovery: *mut pyspy_discovery,
    pid: i32,
) -> bool {
    ffi_boundary!({
        // SAFETY: per the header, discovery is NULL or live.
        match unsafe { ffi::try_ref(discovery.cast_const()) } {
            Some(d) => {
                d.lock().unwrap_or_else(|e| e.into_inner()).release(pid);
                true
            }
            None => false,
        }
    })
}

/// What one scan found: new Python processes (attached), exits, skipped processes.
/// Made by `pyspy_discovery_scan`, freed by `pyspy_scan_free`.
pub struct pyspy_scan {
    _private: [u8; 0],
}

impl Castable for pyspy_scan {
    type Ownership = OwnedBox;
    type Rust = ScanObject;
}

/// What a `pyspy_scan` holds.
pub struct ScanObject {
    /// Found processes, their sessions until taken.
    found: Vec<(LabelsObject, Mutex<Option<pyspy_core::Session>>)>,
    exited: Vec<LabelsObject>,
    skipped: Vec<(LabelsObject, CString)>,
}

/// Lists `/proc` and looks at what is new (cheap tests first; a full attach only for
/// candidates; a process seen not to be Python costs one `readlink` per scan after). Call it
/// every few seconds. Fails only if `/proc` cannot be listed.
///
/// On success writes the scan to `*scan_out` (owned by the caller: free with
/// `pyspy_scan_free`).
#[no_mangle]
pub unsafe extern "C" fn pyspy_discovery_scan(
    discovery: *mut pyspy_discovery,
    scan_out: *mut *mut pyspy_scan,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, discovery is NULL or live.
        let discovery = unsafe { ffi::arg_ref(discovery.cast_const(), "discovery") }?;
        let out = Out::new(scan_out, "scan_out")?;
        let scan = discovery.lock().unwrap_or_else(|e| e.into_inner()).scan()?;
        let object = ScanObject {
            found: scan
                .found
                .into_iter()
                .map(|f| (LabelsObject::new(f.labels), Mutex::new(Some(f.session))))
                .collect(),
            exited: scan.exited.into_iter().map(LabelsObject::new).collect(),
            skipped: scan
                .skipped
                .into_iter()
                .map(|s| {
                    let reason = match &s.reason {
                        SkipReason::Limit { .. } => format!("limit: {}", s.reason),
                        _ => s.reason.to_string(),
                    };
                    (LabelsObject::new(s.labels), ffi::c_string(&reason))
                })
                .collect(),
        };
        let handle = ffi::to_box_ptr::<pyspy_scan>(object);
        // SAFETY: scan_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Frees a scan, with the sessions of found processes not taken (which detaches from them;
/// the discovery still counts them against its limit until they exit or are released). NULL
/// is a no-op.
#[no_mangle]
pub unsafe extern "C" fn pyspy_scan_free(scan: *mut pyspy_scan) {
    ffi_boundary!({
        // SAFETY: per the header, scan is NULL or live and not used after this.
        unsafe { ffi::free_box(scan) }
    })
}

/// The scan behind a handle, or `None` for NULL.
///
/// # Safety
/// `scan` is NULL or live.
unsafe fn scan_ref<'a>(scan: *const pyspy_scan) -> Option<&'a ScanObject> {
    // SAFETY: forwarded contract.
    unsafe { ffi::try_ref(scan) }
}

/// How many new Python processes the scan attached to (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_scan_found_count(scan: *const pyspy_scan) -> usize {
    // SAFETY: per the header, scan is NULL or live.
    ffi_boundary!({ unsafe { scan_ref(scan) }.map_or(0, |s| s.found.len()) })
}

/// The labels of found process `index` (Python version set). Lent: valid until the scan is
/// freed. NULL for a NULL scan or an index out of range.
#[no_mangle]
pub unsafe extern "C" fn pyspy_scan_found_labels(
    scan: *const pyspy_scan,
    index: usize,
) -> *const pyspy_process_labels {
    ffi_boundary!({
        // SAFETY: per the header, scan is NULL or live.
        let s = unsafe { scan_ref(scan) };
        s.and_then(|s| s.found.get(index))
            .map_or(std::ptr::null(), |(l, _)| {
                ffi::lend::<pyspy_process_labels>(l)
            })
    })
}

/// Takes the session attached to found process `index`: on success writes it to
/// `*session_out` (owned by the caller: free with `pyspy_session_free`). Each session can be
/// taken once: `PYSPY_STATUS_INVALID_ARGUMENT` after that, or for an index out of range.
#[no_mangle]
pub unsafe extern "C" fn pyspy_scan_take_session(
    scan: *const pyspy_scan,
    index: usize,
    session_out: *mut *mut pyspy_session,
    err: *mut *mut pyspy_error,
) -> pyspy_status {
    ffi_boundary!(err; {
        // SAFETY: per the header, scan is NULL or live.
        let scan = unsafe { ffi::arg_ref(scan, "scan") }?;
        let out = Out::new(session_out, "session_out")?;
        let (_, slot) = scan.found.get(index).ok_or_else(|| {
            Failure::invalid(format!(
                "index {index} is out of range: the scan found {} processes",
                scan.found.len()
            ))
        })?;
        let session = slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| Failure::invalid(format!("the session of found process {index} was taken already")))?;
        let handle = ffi::to_box_ptr::<pyspy_session>(SessionObject::new(session));
        // SAFETY: session_out is non-NULL (checked) and writable per the header.
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// How many processes handed out by earlier scans exited, or now have their pid reused by
/// another process (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_scan_exited_count(scan: *const pyspy_scan) -> usize {
    // SAFETY: per the header, scan is NULL or live.
    ffi_boundary!({ unsafe { scan_ref(scan) }.map_or(0, |s| s.exited.len()) })
}

/// The labels of exited process `index`. Lent: valid until the scan is freed. NULL for a NULL
/// scan or an index out of range.
#[no_mangle]
pub unsafe extern "C" fn pyspy_scan_exited_labels(
    scan: *const pyspy_scan,
    index: usize,
) -> *const pyspy_process_labels {
    ffi_boundary!({
        // SAFETY: per the header, scan is NULL or live.
        let s = unsafe { scan_ref(scan) };
        s.and_then(|s| s.exited.get(index))
            .map_or(std::ptr::null(), ffi::lend::<pyspy_process_labels>)
    })
}

/// How many Python processes the scan did not hand out (each reported once; 0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn pyspy_scan_skipped_count(scan: *const pyspy_scan) -> usize {
    // SAFETY: per the header, scan is NULL or live.
    ffi_boundary!({ unsafe { scan_ref(scan) }.map_or(0, |s| s.skipped.len()) })
}

/// The labels of skipped process `index`. Lent: valid until the scan is freed. NULL for a NULL
/// scan or an index out of range.
#[no_mangle]
pub unsafe extern "C" fn pyspy_scan_skipped_labels(
    scan: *const pyspy_scan,
    index: usize,
) -> *const pyspy_process_labels {
    ffi_boundary!({
        // SAFETY: per the header, scan is NULL or live.
        let s = unsafe { scan_ref(scan) };
        s.and_then(|s| s.skipped.get(index))
            .map_or(std::ptr::null(), |(l, _)| {
                ffi::lend::<pyspy_process_labels>(l)
            })
    })
}

/// Why skipped process `index` was not handed out: `limit: ...` when the limit was reached
/// (it is handed out when a slot frees), else the error that attaching gave. Borrowed from the
/// scan. NULL for a NULL scan or an index out of range.
#[no_mangle]
pub unsafe extern "C" fn pyspy_scan_skipped_reason(
    scan: *const pyspy_scan,
    index: usize,
) -> *const c_char {
    ffi_boundary!({
        // SAFETY: per the header, scan is NULL or live.
        let s = unsafe { scan_ref(scan) };
        s.and_then(|s| s.skipped.get(index))
            .map_or(std::ptr::null(), |(_, r)| r.as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    /// A C string as `&str` (NULL as `None`).
    fn text<'a>(p: *const c_char) -> Option<&'a str> {
        // SAFETY: the pointers tested come from live labels.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_str().unwrap())
    }

    #[test]
    fn labels_of_this_process_and_nulls() {
        let mut labels = std::ptr::null_mut();
        let me = std::process::id() as i32;
        // SAFETY: valid out-pointer; labels freed below.
        unsafe {
            assert_eq!(
                pyspy_process_labels_read(me, &mut labels, std::ptr::null_mut()),
                pyspy_status::Ok
            );
            assert_eq!(pyspy_process_labels_pid(labels), me);
            assert_eq!(pyspy_process_labels_namespace_pid(labels), 0);
            assert!(pyspy_process_labels_start_time(labels) > 0);
            let exe = std::env::current_exe().unwrap();
            assert_eq!(text(pyspy_process_labels_executable(labels)), exe.to_str());
            assert!(!text(pyspy_process_labels_service(labels))
                .unwrap()
                .is_empty());
            assert!(pyspy_process_labels_python_version(labels).is_null());
            pyspy_process_labels_free(labels);

            assert!(pyspy_process_labels_service(std::ptr::null()).is_null());
            assert_eq!(pyspy_process_labels_pid(std::ptr::null()), 0);
            let mut none = std::ptr::null_mut();
            assert_eq!(
                pyspy_process_labels_read(-1, &mut none, std::ptr::null_mut()),
                pyspy_status::InvalidArgument
            );
            assert!(none.is_null());
            assert_eq!(pyspy_scan_found_count(std::ptr::null()), 0);
            assert!(pyspy_scan_found_labels(std::ptr::null(), 0).is_null());
            assert!(!pyspy_discovery_release(std::ptr::null_mut(), 1));
        }
    }
}
