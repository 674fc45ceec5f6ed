//! `pyspy push` and `pyspy datakit` against local receivers on 127.0.0.1, `record --format
//! pstats`, and CPU weighting against the kernel's own count.
//!
//! Every request is decoded with the real schemas: Pyroscope's `PushRequest` and pprof by
//! decoders generated here from the same `.proto` files (`tests/build.rs`), every pprof also by
//! `go tool pprof`; OTLP by the `opentelemetry-proto` Python package (PyPI, in a venv the test
//! makes); DataKit's multipart body parsed and checked the way DataKit reads it (the `event`
//! part's JSON, its attachments, RFC 3339 times, `tags_profiler`). pstats files are loaded by
//! `pstats.Stats` of the interpreter that ran the target (2.7 and 3.x), by snakeviz and by
//! flameprof (both from PyPI).
//!
//! The protocol tests run on every interpreter (the CLI starts a busy target, `-- CMD`); the
//! fault and spool tests on one, since what they test does not depend on the interpreter.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use pyspy_tests::proto::opentelemetry::proto::profiles::v1development as otlp_pb;
use pyspy_tests::proto::{pprof as pprof_pb, pyroscope as pyroscope_pb};
use pyspy_tests::receiver::{Receiver, Request};
use pyspy_tests::{for_every_interpreter, interpreters, pyspy, run_bounded, Interpreter};
use serde_json::Value;

/// A CPU-bound target: `hot_loop` is where the time goes; a second thread sleeps.
const BUSY: &str = r#"
import sys, threading, time

def hot_loop(n):
    total = 0
    for i in range(n):
        total += i * i
    return total

def busy_main(seconds):
    end = time.time() + seconds
    while time.time() < end:
        hot_loop(20000)

def idle_worker():
    while True:
        time.sleep(0.05)

t = threading.Thread(target=idle_worker)
t.daemon = True
t.start()
busy_main(float(sys.argv[1]))
"#;

/// The same hot loop in `threads` threads, for as long as it is given.
const BUSY_THREADS: &str = r#"
import sys, threading, time

def hot_loop(n):
    total = 0
    for i in range(n):
        total += i * i
    return total

def spin(end):
    while time.time() < end:
        hot_loop(20000)

end = time.time() + float(sys.argv[1])
threads = [threading.Thread(target=spin, args=(end,)) for _ in range(int(sys.argv[2]))]
for t in threads:
    t.start()
for t in threads:
    t.join()
"#;

/// CPU-heavy runs one at a time: the two cores are shared with other tests.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A missing external consumer fails under CI and is a loud warning (the check skipped)
/// otherwise.
fn have_tool(tool: &str, package: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!("{tool} is missing: install {package} (scripts/provision.sh does)");
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("WARNING: {msg}; skipping that check");
    }
    ok
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pyspy-push-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `pyspy ARGS -- <interp> busy.py SECONDS`, with the script staged where the interpreter
/// sees it.
fn pyspy_on_busy(
    interp: &Interpreter,
    args: &[String],
    script: &str,
    script_args: &[&str],
) -> Output {
    let staged = interp.stage("busy.py", script);
    let py = interp.command();
    let mut cmd = Command::new(pyspy());
    cmd.args(args).arg("--");
    cmd.arg(py.get_program()).args(py.get_args());
    cmd.arg(&staged.path).args(script_args);
    for (k, v) in py.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    run_bounded(cmd, Duration::from_secs(120))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The numbers of pyspy push's summary line: (samples, profiles, sent, refused, dropped,
/// unsent).
fn summary(stderr: &str) -> Result<[u64; 6], String> {
    let line = stderr
        .lines()
        .find(|l| l.contains(" samples, ") && l.contains(" profiles: "))
        .ok_or_else(|| format!("no summary line in:\n{stderr}"))?;
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    // samples, errors, profiles, sent, refused, dropped, unsent (then maybe a pid).
    if nums.len() < 7 {
        return Err(format!("cannot read the summary line {line:?}"));
    }
    Ok([nums[0], nums[2], nums[3], nums[4], nums[5], nums[6]])
}

// ---------------------------------------------------------------------------------------------
// pprof, read by the generated decoder and by go tool pprof
// ---------------------------------------------------------------------------------------------

/// What a pprof says about the hot function.
#[derive(Debug, Default, Clone, Copy)]
struct PprofFacts {
    /// Sum of samples/count and of the time values.
    count: i64,
    time: i64,
    /// The same over stacks whose leaf is `hot_loop`.
    hot_count: i64,
    hot_time: i64,
    time_nanos: i64,
    duration_nanos: i64,
}

fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut raw)
        .map_err(|e| format!("not gzip: {e}"))?;
    Ok(raw)
}

/// Decodes a gzip'd pprof, checks its invariants, and has `go tool pprof -top` read it.
fn check_pprof(gz: &[u8], kind: &str, dir: &Path, name: &str) -> Result<PprofFacts, String> {
    let raw = gunzip(gz)?;
    let p =
        pprof_pb::Profile::decode(&raw[..]).map_err(|e| format!("pprof does not decode: {e}"))?;
    let s = |i: i64| {
        p.string_table
            .get(i as usize)
            .map(String::as_str)
            .unwrap_or("<bad index>")
    };
    if p.string_table.first().map(String::as_str) != Some("") {
        return Err("string_table[0] is not \"\"".into());
    }
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    if types != [("samples", "count"), (kind, "nanoseconds")] {
        return Err(format!(
            "sample types {types:?}, want samples/count and {kind}/nanoseconds"
        ));
    }
    let functions: HashMap<u64, &pprof_pb::Function> =
        p.function.iter().map(|f| (f.id, f)).collect();
    let locations: HashMap<u64, &pprof_pb::Location> =
        p.location.iter().map(|l| (l.id, l)).collect();
    let mut facts = PprofFacts {
        time_nanos: p.time_nanos,
        duration_nanos: p.duration_nanos,
        ..Default::default()
    };
    for sample in &p.sample {
        let leaf = sample
            .location_id
            .first()
            .and_then(|id| locations.get(id))
            .and_then(|l| l.line.first())
            .and_then(|line| functions.get(&line.function_id))
            .map(|f| s(f.name))
            .ok_or("a sample whose leaf does not resolve to a function")?;
        let (count, time) = (sample.value[0], sample.value[1]);
        facts.count += count;
        facts.time += time;
        if leaf == "hot_loop" {
            facts.hot_count += count;
            facts.hot_time += time;
        }
    }
    if have_tool("go", "golang-go") {
        let file = dir.join(format!("{name}.pb.gz"));
        std::fs::write(&file, gz).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("go");
        cmd.args(["tool", "pprof", "-top"]).arg(&file);
        let out = run_bounded(cmd, Duration::from_secs(60));
        let text = String::from_utf8_lossy(&out.stdout);
        // Where the decoded profile gives the hot function time, `go tool pprof` shows it
        // too. A last interval of one sample may hold none (the busy thread torn or off its
        // CPU at that sample): it must still load. check_plausible judges the run as a whole.
        if !out.status.success() || (facts.hot_time > 0 && !text.contains("hot_loop")) {
            return Err(format!(
                "go tool pprof -top {}: {}\n{text}{}",
                file.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(facts)
}

/// Over all profiles of a run: the hot function has most of the samples and of the time, and
/// the counted samples are plausible against the samples pyspy took.
fn check_plausible(all: &[PprofFacts], samples_taken: u64) -> Result<(), String> {
    let count: i64 = all.iter().map(|f| f.count).sum();
    let hot: i64 = all.iter().map(|f| f.hot_count).sum();
    let time: i64 = all.iter().map(|f| f.time).sum();
    let hot_time: i64 = all.iter().map(|f| f.hot_time).sum();
    if count <= 0 || time <= 0 {
        return Err(format!("empty profiles: {all:?}"));
    }
    // One busy thread, running in most samples; the sleeper rarely.
    if (count as u64) > samples_taken * 2 || (count as u64) < samples_taken / 3 {
        return Err(format!(
            "{count} counted samples of a target busy all the time, for {samples_taken} samples taken"
        ));
    }
    if hot * 2 < count || hot_time * 2 < time {
        return Err(format!(
            "hot_loop has {hot} of {count} samples and {hot_time} of {time} ns: not most of them"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pyroscope
// ---------------------------------------------------------------------------------------------

#[test]
fn pyroscope_receives_every_interval_with_labels_and_auth() {
    for_every_interpreter("push pyroscope", |interp| {
        let receiver = Receiver::start();
        let dir = scratch(&format!("pyroscope-{}", interp.label));
        let args: Vec<String> = [
            "push",
            "--protocol",
            "pyroscope",
            "--url",
            &receiver.url(),
            "--service",
            "shop",
            "--tag",
            "region=eu_1",
            "--interval",
            "0.7",
            "--basic-auth",
            "user:pw",
            "--tenant-id",
            "team-7",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = {
            let _one = serial();
            pyspy_on_busy(interp, &args, BUSY, &["2.5"])
        };
        let err = stderr(&out);
        if !out.status.success() {
            return Err(format!("pyspy push failed: {}\n{err}", out.status));
        }
        let [samples, profiles, sent, ..] = summary(&err)?;
        let requests = receiver.requests();
        if requests.len() as u64 != sent || sent != profiles || profiles < 3 {
            return Err(format!(
                "{} requests, {sent} sent, {profiles} profiles (want 3 or more, all sent):\n{err}",
                requests.len()
            ));
        }
        let mut facts = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            expect_request(r, "/push.v1.PusherService/Push", "application/proto")?;
            if r.header("authorization") != Some("Basic dXNlcjpwdw==")
                || r.header("x-scope-orgid") != Some("team-7")
            {
                return Err(format!("authentication headers missing: {:?}", r.headers));
            }
            let push = pyroscope_pb::PushRequest::decode(&r.body[..])
                .map_err(|e| format!("PushRequest does not decode: {e}"))?;
            let series = push.series.first().ok_or("no series")?;
            let labels: HashMap<&str, &str> = series
                .labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str()))
                .collect();
            for (k, v) in [
                ("__name__", "process_cpu"),
                ("service_name", "shop"),
                ("region", "eu_1"),
            ] {
                if labels.get(k) != Some(&v) {
                    return Err(format!("label {k} is not {v:?}: {labels:?}"));
                }
            }
            let sample = series.samples.first().ok_or("no raw sample")?;
            facts.push(check_pprof(
                &sample.raw_profile,
                "cpu",
                &dir,
                &format!("p{i}"),
            )?);
        }
        check_plausible(&facts, samples)?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    });
}

fn expect_request(r: &Request, path: &str, content_type: &str) -> Result<(), String> {
    if r.method != "POST" || r.path != path {
        return Err(format!("{} {}, want POST {path}", r.method, r.path));
    }
    match r.header("content-type") {
        Some(ct) if ct.starts_with(content_type) => Ok(()),
        other => Err(format!("Content-Type {other:?}, want {content_type}")),
    }
}

// ---------------------------------------------------------------------------------------------
// DataKit
// ---------------------------------------------------------------------------------------------

/// One part of a multipart/form-data body.
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

/// Parses a multipart/form-data body as Go's mime/multipart (what DataKit uses) does: the
/// boundary from the content type, parts between `--boundary` lines, headers, data.
fn parse_multipart(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let (mime, params) = content_type
        .split_once(';')
        .ok_or("no boundary parameter")?;
    if mime.trim() != "multipart/form-data" {
        return Err(format!("content type {mime}"));
    }
    let boundary = params
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .ok_or("no boundary parameter")?
        .trim_matches('"');
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(format!("boundary {boundary:?} is not 1 to 70 characters"));
    }
    let delim = format!("--{boundary}");
    let find = |hay: &[u8], from: usize, needle: &[u8]| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut at = find(body, 0, delim.as_bytes()).ok_or("no first boundary")?;
    let mut parts = Vec::new();
    loop {
        at += delim.len();
        if body[at..].starts_with(b"--") {
            break; // the closing delimiter
        }
        if !body[at..].starts_with(b"\r\n") {
            return Err("a boundary line is not followed by CRLF".into());
        }
        at += 2;
        let head_end = find(body, at, b"\r\n\r\n").ok_or("a part without a blank line")?;
        let head = std::str::from_utf8(&body[at..head_end]).map_err(|e| e.to_string())?;
        let next = find(body, head_end + 4, format!("\r\n{delim}").as_bytes())
            .ok_or("a part without a closing boundary")?;
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: body[head_end + 4..next].to_vec(),
        };
        for line in head.split("\r\n") {
            let (k, v) = line
                .split_once(':')
                .ok_or(format!("bad part header {line:?}"))?;
            match k.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for param in v.split(';').skip(1) {
                        let (pk, pv) = param.trim().split_once('=').ok_or("bad disposition")?;
                        let pv = pv.trim_matches('"').to_string();
                        match pk {
                            "name" => part.name = pv,
                            "filename" => part.filename = Some(pv),
                            _ => {}
                        }
                    }
                }
                "content-type" => part.content_type = Some(v.trim().to_string()),
                _ => {}
            }
        }
        parts.push(part);
        at = next + 2;
    }
    Ok(parts)
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-11-29T19:20:20.123456Z`).
fn parse_rfc3339(s: &str) -> Result<f64, String> {
    let bad = || format!("{s:?} is not an RFC 3339 UTC time");
    let s = s.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = s.split_once('T').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if d.len() != 3 || t.len() != 3 || !(1..=12).contains(&d[1]) || !(1..=31).contains(&d[2]) {
        return Err(bad());
    }
    // Days from civil (Howard Hinnant), independent of the encoder's inverse.
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let frac: f64 = format!("0.{frac}").parse().map_err(|_| bad())?;
    Ok((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) as f64 + frac)
}

/// Checks a DataKit request the way DataKit reads it; returns the pprof facts.
fn check_datakit(
    r: &Request,
    want: &HashMap<&str, String>,
    dir: &Path,
    name: &str,
) -> Result<PprofFacts, String> {
    expect_request(r, "/profiling/v1/input", "multipart/form-data")?;
    let parts = parse_multipart(r.header("content-type").unwrap_or(""), &r.body)?;
    let event = parts
        .iter()
        .find(|p| p.name == "event")
        .ok_or("no event part")?;
    if event.filename.as_deref() != Some("event.json") {
        return Err(format!(
            "the event part's file name is {:?}",
            event.filename
        ));
    }
    let json: Value =
        serde_json::from_slice(&event.data).map_err(|e| format!("event.json: {e}"))?;
    for (k, v) in [
        ("family", "python"),
        ("language", "python"),
        ("format", "pprof"),
    ] {
        if json[k] != v {
            return Err(format!("event {k} is {}, want {v}", json[k]));
        }
    }
    let start = parse_rfc3339(json["start"].as_str().ok_or("no start")?)?;
    let end = parse_rfc3339(json["end"].as_str().ok_or("no end")?)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    if !(start < end && end - start < 30.0 && (now - end).abs() < 120.0) {
        return Err(format!(
            "start {start} and end {end} (now {now}) are not a recent interval"
        ));
    }
    let tags: HashMap<&str, &str> = json["tags_profiler"]
        .as_str()
        .ok_or("no tags_profiler")?
        .split(',')
        .filter_map(|kv| kv.split_once(':'))
        .collect();
    for (k, v) in want {
        if tags.get(k) != Some(&v.as_str()) {
            return Err(format!(
                "tags_profiler {k} is {:?}, want {v:?}: {tags:?}",
                tags.get(k)
            ));
        }
    }
    for k in [
        "host",
        "profiler",
        "profiler_version",
        "runtime_version",
        "process_id",
    ] {
        if tags.get(k).is_none_or(|v| v.is_empty()) {
            return Err(format!("tags_profiler has no {k}: {tags:?}"));
        }
    }
    let attachments = json["attachments"].as_array().ok_or("no attachments")?;
    if attachments.is_empty() {
        return Err("no attachments".into());
    }
    let mut facts = None;
    for a in attachments {
        let a = a.as_str().ok_or("an attachment name is not a string")?;
        let part = parts
            .iter()
            .find(|p| p.name == a && p.filename.as_deref() == Some(a))
            .ok_or(format!("attachment {a} is not a part"))?;
        if part.content_type.is_none() {
            return Err(format!("attachment {a} has no content type"));
        }
        facts = Some(check_pprof(&part.data, "cpu", dir, name)?);
    }
    facts.ok_or_else(|| "no pprof attachment".into())
}

#[test]
fn datakit_subcommand_with_the_flags_of_datakits_py_spy() {
    for_every_interpreter("datakit", |interp| {
        let receiver = Receiver::start();
        let dir = scratch(&format!("datakit-{}", interp.label));
        let port = receiver.port().to_string();
        let args: Vec<String> = [
            "datakit",
            "-H",
            "127.0.0.1",
            "-P",
            &port,
            "-S",
            "shop",
            "-E",
            "test",
            "-V",
            "1.2.3",
            "-d",
            "1",
            "-r",
            "100",
            "--loop",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = {
            let _one = serial();
            pyspy_on_busy(interp, &args, BUSY, &["10"])
        };
        let err = stderr(&out);
        if !out.status.success() {
            return Err(format!("pyspy datakit failed: {}\n{err}", out.status));
        }
        let [samples, profiles, sent, ..] = summary(&err)?;
        let requests = receiver.requests();
        if requests.len() as u64 != sent || sent != profiles || profiles < 3 {
            return Err(format!(
                "{} requests for {profiles} profiles, {sent} sent:\n{err}",
                requests.len()
            ));
        }
        let pid = err
            .split("process ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .ok_or("no pid in pyspy's output")?
            .to_string();
        let want: HashMap<&str, String> = [
            ("service", "shop".to_string()),
            ("env", "test".into()),
            ("version", "1.2.3".into()),
            ("profiler", "pyspy".into()),
            ("process_id", pid),
        ]
        .into_iter()
        .collect();
        let mut facts = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            facts.push(check_datakit(r, &want, &dir, &format!("d{i}"))?);
        }
        check_plausible(&facts, samples)?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// OTLP, decoded by the opentelemetry-proto Python package
// ---------------------------------------------------------------------------------------------

/// A venv (in the target directory, made once) with opentelemetry-proto, snakeviz and
/// flameprof from PyPI.
fn venv() -> Option<&'static PathBuf> {
    static VENV: OnceLock<Option<PathBuf>> = OnceLock::new();
    VENV.get_or_init(|| {
        let python = interpreters()
            .into_iter()
            .filter(|i| i.chroot.is_none() && i.version >= (3, 9))
            .max_by_key(|i| i.version)?
            .host_executable();
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?.parent()?.join("push-venv");
        let bin = dir.join("bin/python");
        let ready = |bin: &Path| {
            Command::new(bin)
                .args(["-c", "import opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2, snakeviz, flameprof"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !ready(&bin) {
            let _ = std::fs::remove_dir_all(&dir);
            let made = Command::new(&python).args(["-m", "venv"]).arg(&dir).status();
            let installed = made.is_ok_and(|s| s.success())
                && Command::new(&bin)
                    .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                    .args(["opentelemetry-proto>=1.36", "snakeviz", "flameprof"])
                    .stdin(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            if !installed || !ready(&bin) {
                let msg = "cannot make a venv with opentelemetry-proto, snakeviz and flameprof from PyPI";
                if std::env::var_os("CI").is_some() {
                    panic!("{msg}");
                }
                eprintln!("WARNING: {msg}; skipping those checks");
                return None;
            }
        }
        Some(bin)
    })
    .as_ref()
}

/// Decodes an ExportProfilesServiceRequest with opentelemetry-proto, checks the dictionary's
/// zero entries, and prints a summary as JSON.
const OTLP_DECODER: &str = r#"
import json, sys
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as svc
from opentelemetry.proto.profiles.v1development import profiles_pb2 as pb

req = svc.ExportProfilesServiceRequest()
req.ParseFromString(open(sys.argv[1], 'rb').read())
d = req.dictionary
zero = [
    ('mapping_table', pb.Mapping()), ('location_table', pb.Location()),
    ('function_table', pb.Function()), ('link_table', pb.Link()),
    ('attribute_table', pb.KeyValueAndUnit()), ('stack_table', pb.Stack()),
]
for name, empty in zero:
    table = getattr(d, name)
    assert len(table) >= 1 and table[0] == empty, '%s[0] is not the zero value' % name
assert d.string_table[0] == '', 'string_table[0] is not ""'
s = lambda i: d.string_table[i]
out = {'resources': [], 'profiles': []}
for rp in req.resource_profiles:
    attrs = {}
    for kv in rp.resource.attributes:
        attrs[kv.key] = kv.value.string_value if kv.value.HasField('string_value') else kv.value.int_value
    out['resources'].append(attrs)
    for sp in rp.scope_profiles:
        for p in sp.profiles:
            st = p.sample_type
            leafs = {}
            total = 0
            for sample in p.samples:
                stack = d.stack_table[sample.stack_index]
                loc = d.location_table[stack.location_indices[0]]
                fn = d.function_table[loc.lines[0].function_index]
                name = s(fn.name_strindex)
                v = sum(sample.values)
                leafs[name] = leafs.get(name, 0) + v
                total += v
            out['profiles'].append({
                'scope': sp.scope.name, 'type': s(st.type_strindex), 'unit': s(st.unit_strindex),
                'period_type': s(p.period_type.type_strindex), 'period': p.period,
                'time': p.time_unix_nano, 'duration': p.duration_nano,
                'id': len(p.profile_id), 'total': total, 'leafs': leafs,
            })
print(json.dumps(out))
"#;

#[test]
fn otlp_requests_decode_with_opentelemetry_proto() {
    let venv = venv().cloned();
    for_every_interpreter("push otlp", |interp| {
        let receiver = Receiver::start();
        let dir = scratch(&format!("otlp-{}", interp.label));
        let args: Vec<String> = [
            "push",
            "--protocol",
            "otlp",
            "--url",
            &receiver.url(),
            "--service",
            "shop",
            "--service-version",
            "2.0",
            "--tag",
            "team=core",
            "--interval",
            "0.7",
            "--bearer-token",
            "s3cret",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = {
            let _one = serial();
            pyspy_on_busy(interp, &args, BUSY, &["2.5"])
        };
        let err = stderr(&out);
        if !out.status.success() {
            return Err(format!("pyspy push failed: {}\n{err}", out.status));
        }
        let [samples, profiles, sent, ..] = summary(&err)?;
        let requests = receiver.requests();
        if requests.len() as u64 != sent || sent != profiles || profiles < 3 {
            return Err(format!(
                "{} requests for {profiles} profiles, {sent} sent:\n{err}",
                requests.len()
            ));
        }
        let mut total_count = 0i64;
        let mut hot_count = 0i64;
        for (i, r) in requests.iter().enumerate() {
            expect_request(r, "/v1development/profiles", "application/x-protobuf")?;
            if r.header("content-encoding") != Some("gzip")
                || r.header("authorization") != Some("Bearer s3cret")
            {
                return Err(format!("headers {:?}", r.headers));
            }
            // Our own decoder first (same schema), then the reference one.
            let req = otlp_pb::ExportProfilesServiceRequest::decode(&r.body[..])
                .map_err(|e| format!("does not decode: {e}"))?;
            if req
                .dictionary
                .as_ref()
                .is_none_or(|d| d.string_table.first().map(String::as_str) != Some(""))
            {
                return Err("no dictionary, or string_table[0] is not \"\"".into());
            }
            let Some(python) = &venv else { continue };
            let body = dir.join(format!("o{i}.pb"));
            std::fs::write(&body, &r.body).map_err(|e| e.to_string())?;
            let script = dir.join("decode.py");
            std::fs::write(&script, OTLP_DECODER).map_err(|e| e.to_string())?;
            let mut cmd = Command::new(python);
            cmd.arg(&script).arg(&body);
            let out = run_bounded(cmd, Duration::from_secs(60));
            if !out.status.success() {
                return Err(format!(
                    "opentelemetry-proto decoder: {}\n{}",
                    out.status,
                    stderr(&out)
                ));
            }
            let summary: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            let res = &summary["resources"][0];
            for (k, v) in [
                ("service.name", "shop"),
                ("service.version", "2.0"),
                ("team", "core"),
                ("process.runtime.name", "cpython"),
            ] {
                if res[k] != v {
                    return Err(format!("resource {k} is {}, want {v}: {res}", res[k]));
                }
            }
            let version = res["process.runtime.version"].as_str().unwrap_or("");
            if !version.starts_with(&format!("{}.{}.", interp.version.0, interp.version.1)) {
                return Err(format!(
                    "process.runtime.version {version:?} on {}",
                    interp.label
                ));
            }
            if !res["process.pid"].is_i64() || !res["host.name"].is_string() {
                return Err(format!("no process.pid or host.name: {res}"));
            }
            let profiles = summary["profiles"].as_array().ok_or("no profiles")?;
            let types: Vec<(&str, &str)> = profiles
                .iter()
                .map(|p| {
                    (
                        p["type"].as_str().unwrap_or(""),
                        p["unit"].as_str().unwrap_or(""),
                    )
                })
                .collect();
            if types != [("cpu", "nanoseconds"), ("samples", "count")] {
                return Err(format!("profile types {types:?}"));
            }
            for p in profiles {
                if p["scope"] != "pyspy"
                    || p["id"] != 16
                    || p["period_type"] != "cpu"
                    || p["period"] != 10_000_000
                {
                    return Err(format!("profile fields: {p}"));
                }
            }
            total_count += profiles[1]["total"].as_i64().unwrap_or(0);
            hot_count += profiles[1]["leafs"]["hot_loop"].as_i64().unwrap_or(0);
        }
        if venv.is_some() && (hot_count * 2 < total_count || (total_count as u64) < samples / 3) {
            return Err(format!(
                "hot_loop has {hot_count} of {total_count} samples ({samples} taken)"
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Faults: a receiver that is down for a while, one that stays down
// ---------------------------------------------------------------------------------------------

fn host_interpreter() -> Interpreter {
    let all = interpreters();
    all.iter()
        .find(|i| i.chroot.is_none() && i.version >= (3, 11))
        .or_else(|| all.first())
        .cloned()
        .expect("no interpreter")
}

#[test]
fn a_receiver_down_for_a_while_loses_no_interval() {
    let interp = host_interpreter();
    let first: Mutex<Option<Instant>> = Mutex::new(None);
    // 503 for the first 2.5 s after the first request, then 200.
    let receiver = Receiver::with(move |_| {
        let mut f = first.lock().unwrap();
        let t0 = *f.get_or_insert_with(Instant::now);
        if t0.elapsed() < Duration::from_millis(2500) {
            503
        } else {
            200
        }
    });
    let dir = scratch("fault");
    let args: Vec<String> = [
        "push",
        "--protocol",
        "pyroscope",
        "--url",
        &receiver.url(),
        "--interval",
        "0.5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = {
        let _one = serial();
        pyspy_on_busy(&interp, &args, BUSY, &["4"])
    };
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "pyspy push failed: {}\n{err}",
        out.status
    );
    let [_, profiles, sent, refused, dropped, unsent] = summary(&err).unwrap();
    let requests = receiver.requests();
    let failed = requests.iter().filter(|r| r.status == 503).count();
    assert!(
        failed >= 2,
        "the receiver never failed ({failed} 503s):\n{err}"
    );
    assert!(
        err.contains("HTTP 503"),
        "no log line for the failures:\n{err}"
    );
    assert_eq!(
        (sent, refused, dropped, unsent),
        (profiles, 0, 0, 0),
        "every profile sent in the end:\n{err}"
    );
    // Each accepted request is a distinct profile, and together they cover the run without a
    // gap: every interval arrived, in order.
    let mut accepted: Vec<(String, PprofFacts)> = Vec::new();
    for (i, r) in requests.iter().filter(|r| r.status == 200).enumerate() {
        let push = pyroscope_pb::PushRequest::decode(&r.body[..]).unwrap();
        let sample = &push.series[0].samples[0];
        let facts = check_pprof(&sample.raw_profile, "cpu", &dir, &format!("f{i}")).unwrap();
        accepted.push((sample.id.clone(), facts));
    }
    assert_eq!(
        accepted.len() as u64,
        profiles,
        "one accepted request per profile"
    );
    let mut ids: Vec<&String> = accepted.iter().map(|(id, _)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), accepted.len(), "no profile sent twice");
    let mut spans: Vec<(i64, i64)> = accepted
        .iter()
        .map(|(_, f)| (f.time_nanos, f.duration_nanos))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        let gap = w[1].0 - (w[0].0 + w[0].1);
        assert!(
            gap < 200_000_000,
            "a gap of {} ms between two profiles: an interval is missing ({spans:?})",
            gap / 1_000_000
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_receiver_that_stays_down_fills_the_spool_and_drops_the_oldest() {
    let interp = host_interpreter();
    let receiver = Receiver::with(|_| 503);
    let args: Vec<String> = [
        "push",
        "--protocol",
        "otlp",
        "--url",
        &receiver.url(),
        "--interval",
        "0.3",
        "--spool",
        "2",
        "--timeout",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = {
        let _one = serial();
        pyspy_on_busy(&interp, &args, BUSY, &["2.5"])
    };
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "no profile arrived, yet pyspy succeeded:\n{err}"
    );
    assert!(
        err.contains("spool full (2 profiles): dropped the oldest"),
        "{err}"
    );
    assert!(err.contains("no profile reached"), "{err}");
    let [_, profiles, sent, _, dropped, unsent] = summary(&err).unwrap();
    assert_eq!(sent, 0);
    assert!(dropped >= 1 && dropped + unsent == profiles, "{err}");
    assert!(!receiver.requests().is_empty());
}

#[test]
fn bad_arguments_are_refused_with_the_fix() {
    for (args, want) in [
        (
            vec!["--url", "localhost:4040"],
            "must start with http:// or https://",
        ),
        (
            vec!["--url", "http://127.0.0.1:1", "--tag", "1x=y"],
            "is not a label name",
        ),
        (
            vec!["--url", "http://127.0.0.1:1", "--interval", "0"],
            "positive number of seconds",
        ),
        (
            vec!["--url", "http://127.0.0.1:1", "--basic-auth", "nocolon"],
            "USER:PASSWORD",
        ),
    ] {
        let mut cmd = Command::new(pyspy());
        cmd.args(["push", "--protocol", "pyroscope", "--pid", "1"])
            .args(&args);
        let out = run_bounded(cmd, Duration::from_secs(30));
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// CPU weighting against /proc, on a loaded machine
// ---------------------------------------------------------------------------------------------

/// user + system CPU ticks of a whole process.
fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn cpu_weighted_totals_agree_with_proc_on_a_loaded_machine() {
    use pyspy_core::{
        attach, AttachOptions, Profile, ProfileOptions, SampleOptions, Sampler, SamplerOptions,
    };
    let _one = serial();
    let hz = 100.0; // USER_HZ
                    // Load both cores with two busy processes besides the target's two busy threads.
    let load: Vec<std::process::Child> = (0..2)
        .map(|_| {
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap()
        })
        .collect();
    struct Kill(Vec<std::process::Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let _load = Kill(load);
    let mut failures = Vec::new();
    for interp in interpreters() {
        let staged = interp.stage("busy.py", BUSY_THREADS);
        let target = interp
            .command()
            .arg(&staged.path)
            .args(["30", "2"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let _target = Kill(vec![target]);
        let pid = _target.0[0].id();
        std::thread::sleep(Duration::from_millis(500));
        // What `pyspy record`/`push` sample for a CPU profile (see push::sample_options).
        let sample = SampleOptions::default()
            .idle(true)
            .active(true)
            .cpu_time(true);
        let session = match attach(
            pid as i32,
            &AttachOptions::default()
                .sample(sample)
                .wait_for_init(Duration::from_secs(10)),
        ) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("[{}] attach: {e}", interp.label));
                continue;
            }
        };
        let mut sampler = Sampler::new(session, SamplerOptions::default().rate(100.0));
        let mut profile = Profile::new(ProfileOptions::default().period(sampler.interval()));
        // The profile measures from its first sample to its last: read /proc right then.
        let mut first = None;
        let started = Instant::now();
        let mut last = 0;
        while started.elapsed() < Duration::from_secs(3) {
            let Some(s) = sampler.next() else { break };
            profile.add(&s);
            last = process_ticks(pid);
            first.get_or_insert(last);
        }
        let before = first.unwrap_or(last);
        let pprof = pyspy_core::export::pprof::encode(&profile);
        let p = pprof_pb::Profile::decode(&pprof[..]).unwrap();
        let measured: i64 = p.sample.iter().map(|s| s.value[1]).sum();
        let counted: i64 = p.sample.iter().map(|s| s.value[0]).sum();
        let comment = p
            .comment
            .first()
            .map(|c| p.string_table[*c as usize].clone())
            .unwrap_or_default();
        let proc_s = (last - before) as f64 / hz;
        let profile_s = measured as f64 / 1e9;
        let old_s = counted as f64 * p.period as f64 / 1e9;
        let ratio = profile_s / proc_s;
        eprintln!(
            "[{}] /proc: {proc_s:.2} s CPU in {} samples; profile (measured): {profile_s:.2} s ({:+.1} %); running-at-the-sample x period: {old_s:.2} s ({:+.1} %)",
            interp.label,
            profile.samples(),
            (ratio - 1.0) * 100.0,
            (old_s / proc_s - 1.0) * 100.0
        );
        // /proc counts in 10 ms ticks: allow two of them besides the 10 %.
        let tolerance = 0.10 + 0.02 / proc_s.max(0.01);
        if (ratio - 1.0).abs() > tolerance
            || !comment.starts_with("cpu time: each thread's CPU time")
        {
            failures.push(format!(
                "[{}] profile {profile_s:.3} s vs /proc {proc_s:.3} s (ratio {ratio:.3}); comment {comment:?}",
                interp.label
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "CPU totals disagree:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// pstats
// ---------------------------------------------------------------------------------------------

/// Loads a pstats file with `pstats.Stats` (2.7 and 3.x) and checks hot_loop's numbers.
const PSTATS_CHECK: &str = r#"
import pstats, sys
s = pstats.Stats(sys.argv[1])
s.sort_stats('cumulative')
s.print_stats(8)
hot = [k for k in s.stats if k[2] == 'hot_loop']
assert len(hot) == 1, 'hot_loop: %r' % (hot,)
cc, nc, tt, ct, callers = s.stats[hot[0]]
assert nc >= 10 and cc >= 10 and tt > 0 and ct >= tt, (cc, nc, tt, ct)
assert [c for c in callers if c[2] == 'busy_main'], callers
assert s.total_tt > 0 and tt > 0.5 * s.total_tt, (tt, s.total_tt)
sys.stdout.write('PSTATS OK %d %.3f %.3f\n' % (nc, tt, s.total_tt))
"#;

/// snakeviz's own loading of a profile (what its page shows), and its server's page for it.
const SNAKEVIZ_CHECK: &str = r#"
import json, pstats, sys
from snakeviz.stats import json_stats, table_rows
s = pstats.Stats(sys.argv[1])
rows = table_rows(s)
tree = json.loads(json.dumps(json_stats(s)))
assert rows and [k for k in tree if k.endswith('(hot_loop)')], 'hot_loop not in snakeviz data'
sys.stdout.write('SNAKEVIZ OK %d\n' % len(rows))
"#;

#[test]
fn pstats_files_load_in_pstats_and_snakeviz() {
    let venv = venv().cloned();
    for_every_interpreter("record pstats", |interp| {
        let dir = interp.stage_dir();
        let file_host = dir.host_path().join("out.pstats");
        let file_target = dir.path().join("out.pstats");
        let args: Vec<String> = vec![
            "record".into(),
            "--format".into(),
            "pstats".into(),
            "--duration".into(),
            "2".into(),
            "--output".into(),
            file_host.display().to_string(),
        ];
        let out = {
            let _one = serial();
            pyspy_on_busy(interp, &args, BUSY, &["10"])
        };
        if !out.status.success() {
            return Err(format!("pyspy record failed: {}", stderr(&out)));
        }
        let (script, _) = dir.write("check.py", PSTATS_CHECK);
        let out = interp
            .command()
            .arg(&script)
            .arg(&file_target)
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !text.contains("PSTATS OK") {
            return Err(format!(
                "pstats.Stats on {}: {}\n{text}\n{}",
                interp.label,
                out.status,
                stderr(&out)
            ));
        }
        if let Some(python) = &venv {
            let script = dir.host_path().join("snakeviz_check.py");
            std::fs::write(&script, SNAKEVIZ_CHECK).map_err(|e| e.to_string())?;
            let out = Command::new(python)
                .arg(&script)
                .arg(&file_host)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success()
                || !String::from_utf8_lossy(&out.stdout).contains("SNAKEVIZ OK")
            {
                return Err(format!("snakeviz: {}\n{}", out.status, stderr(&out)));
            }
            let out = Command::new(python)
                .args(["-m", "flameprof"])
                .arg(&file_host)
                .output()
                .map_err(|e| e.to_string())?;
            let svg = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() || !svg.starts_with("<?xml") || !svg.contains("hot_loop") {
                return Err(format!("flameprof: {}\n{}", out.status, stderr(&out)));
            }
        }
        Ok(())
    });
}

#[test]
fn snakeviz_serves_a_pstats_file() {
    let Some(python) = venv() else { return };
    let interp = host_interpreter();
    let dir = scratch("snakeviz");
    let file = dir.join("out.pstats");
    let args: Vec<String> = vec![
        "record".into(),
        "--format".into(),
        "pstats".into(),
        "--duration".into(),
        "1.5".into(),
        "--output".into(),
        file.display().to_string(),
    ];
    let out = {
        let _one = serial();
        pyspy_on_busy(&interp, &args, BUSY, &["10"])
    };
    assert!(out.status.success(), "{}", stderr(&out));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let snakeviz = python.parent().unwrap().join("snakeviz");
    let mut server = Command::new(&snakeviz)
        .args(["-s", "-H", "127.0.0.1", "-p", &port.to_string()])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!(
        "/snakeviz/{}",
        file.display().to_string().replace('/', "%2F")
    );
    let mut page = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            let _ = write!(s, "GET {url} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            let _ = s.read_to_string(&mut page);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        page.starts_with("HTTP/1.1 200") || page.starts_with("HTTP/1.0 200"),
        "{}",
        &page[..page.len().min(600)]
    );
    assert!(page.contains("hot_loop"), "the page does not show hot_loop");
}
