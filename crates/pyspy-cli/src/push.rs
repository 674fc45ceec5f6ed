//! `pyspy push`: sample continuously and upload one profile per interval to Grafana Pyroscope,
//! Guance DataKit or an OpenTelemetry collector (see `upload` for retries and the spool).
//!
//! The work is split so that a whole-host mode can run one [`Pipeline`] per process into one
//! shared uploader: a pipeline owns a process's profile and metadata and turns each interval
//! into a [`Payload`]; the uploader only sends payloads.

use std::time::{Duration, Instant, SystemTime};

use pyspy_core::export::{datakit, otlp, pyroscope, ProfileMeta};
use pyspy_core::{AttachOptions, EndReason, Profile, ProfileOptions, Sampler, SamplerOptions};

use crate::host::{self, HostArgs, HostSettings};
use crate::target::{Target, TargetArgs};
use crate::upload::{self, Endpoint, Payload, Uploader};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Grafana Pyroscope: POST {URL}/push.v1.PusherService/Push (a PushRequest, pprof inside).
    Pyroscope,
    /// Guance DataKit: POST {URL}/profiling/v1/input (multipart: event.json and pprof).
    Datakit,
    /// OpenTelemetry: POST {URL}/v1development/profiles (OTLP profiles, gzip'd protobuf).
    Otlp,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The receiver's base URL, e.g. http://localhost:4040 (Pyroscope), http://localhost:9529
    /// (DataKit), http://localhost:4318 (an OpenTelemetry collector).
    #[arg(long)]
    pub url: String,
    /// The receiver's protocol.
    #[arg(long, value_enum)]
    pub protocol: Protocol,
    /// Service name (Pyroscope's service_name, DataKit's service, OTLP's service.name).
    /// Default: python; with --all, each process's own (its OTEL_SERVICE_NAME, DD_SERVICE or
    /// PYROSCOPE_APPLICATION_NAME, else its script or module).
    #[arg(long)]
    pub service: Option<String>,
    /// A tag for every profile, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// Deployment environment (DataKit's env, OTLP's deployment.environment.name).
    #[arg(long)]
    pub env: Option<String>,
    /// The service's version (DataKit's version, OTLP's service.version).
    #[arg(long = "service-version", value_name = "VERSION")]
    pub service_version: Option<String>,
    /// Seconds of samples per uploaded profile.
    #[arg(long, default_value_t = 10.0)]
    pub interval: f64,
    /// Samples per second.
    #[arg(long, short, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate: u32,
    /// Stop after this many seconds (default: until the program exits or Ctrl-C).
    #[arg(long, short)]
    pub duration: Option<f64>,
    /// Wall-time profiles: count idle threads too (default: CPU profiles, weighted by the CPU
    /// time each thread used).
    #[arg(long)]
    pub idle: bool,
    /// Also sample child processes that run Python.
    #[arg(long, short)]
    pub subprocesses: bool,
    /// HTTP basic authentication, USER:PASSWORD (Grafana Cloud: instance id and API token).
    /// Also read from $PYSPY_BASIC_AUTH.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub basic_auth: Option<String>,
    /// A bearer token (Authorization: Bearer TOKEN). Also read from $PYSPY_BEARER_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    pub bearer_token: Option<String>,
    /// The tenant of a multi-tenant receiver (X-Scope-OrgID).
    #[arg(long, value_name = "ID")]
    pub tenant_id: Option<String>,
    /// An extra request header, 'NAME: VALUE' (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Seconds each upload attempt may take.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Profiles kept while the receiver does not take them; beyond, the oldest is dropped.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub spool: u32,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub host: HostArgs,
}

impl Protocol {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Pyroscope => "Pyroscope",
            Protocol::Datakit => "DataKit",
            Protocol::Otlp => "OTLP",
        }
    }
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("a tag is KEY=VALUE, not {s:?}"))?;
    let meta = ProfileMeta::default().tags(vec![(k.to_string(), v.to_string())]);
    meta.check_tags()?;
    Ok((k.to_string(), v.to_string()))
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("a header is 'NAME: VALUE', not {s:?}"))?;
    let k = k.trim();
    if k.is_empty()
        || !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("{k:?} is not a header name"));
    }
    Ok((k.to_string(), v.trim().to_string()))
}

fn seconds(name: &str, v: f64) -> Result<Duration, String> {
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!(
            "--{name} must be a positive number of seconds, not {v}"
        ))
    }
}

/// One sampled process's profile, turned into a payload per interval.
pub struct Pipeline {
    protocol: Protocol,
    meta: ProfileMeta,
    profile: Profile,
    started: SystemTime,
}

impl Pipeline {
    pub fn new(protocol: Protocol, meta: ProfileMeta, options: ProfileOptions) -> Pipeline {
        Pipeline {
            protocol,
            meta,
            profile: Profile::new(options),
            started: SystemTime::now(),
        }
    }

    pub fn add(&mut self, sample: &pyspy_core::Sample) {
        self.profile.add(sample);
    }

    /// The interval's profile as a payload (`None` if nothing was sampled); starts the next.
    pub fn cut(&mut self) -> Option<Payload> {
        let profile = self.profile.take();
        self.payload(profile)
    }

    /// [`Pipeline::cut`], the next profile made with `options` (a wall-time profile's new
    /// period; nothing is carried over).
    pub fn cut_with(&mut self, options: ProfileOptions) -> Option<Payload> {
        let profile = std::mem::replace(&mut self.profile, Profile::new(options));
        self.payload(profile)
    }

    fn payload(&mut self, profile: Profile) -> Option<Payload> {
        let from = profile.start_time().unwrap_or(self.started);
        self.started = SystemTime::now();
        if profile.samples() == 0 {
            return None;
        }
        let label = format!(
            "{}–{} (pid {}, {} samples)",
            upload::clock(from),
            upload::clock(from + profile.duration()),
            self.meta.pid.unwrap_or(0),
            profile.samples()
        );
        Some(match self.protocol {
            Protocol::Pyroscope => Payload {
                path: "/push.v1.PusherService/Push",
                content_type: "application/proto".into(),
                gzip: false, // the pprof inside is gzip'd already
                body: pyroscope::push_request(&profile, &self.meta),
                label,
            },
            Protocol::Datakit => {
                let m = datakit::encode(&profile, &self.meta);
                Payload {
                    path: "/profiling/v1/input",
                    content_type: m.content_type,
                    gzip: false, // the pprof part is gzip'd already
                    body: m.body,
                    label,
                }
            }
            Protocol::Otlp => Payload {
                path: "/v1development/profiles",
                content_type: "application/x-protobuf".into(),
                gzip: true,
                body: upload::gzip(&otlp::export_request(&profile, &self.meta)),
                label,
            },
        })
    }
}

/// What `run` needs besides the target: shared with `pyspy datakit`.
pub struct Settings {
    pub protocol: Protocol,
    pub endpoint: Endpoint,
    pub meta: ProfileMeta,
    pub interval: Duration,
    pub rate: u32,
    pub duration: Option<Duration>,
    pub idle: bool,
    pub subprocesses: bool,
    /// `--all`: every Python process of the machine.
    pub host: Option<HostSettings>,
}

pub fn run(args: &Args) -> Result<(), String> {
    let interval = seconds("interval", args.interval)?;
    if interval < Duration::from_millis(100) {
        return Err("--interval must be at least 0.1 seconds".into());
    }
    let timeout = seconds("timeout", args.timeout)?;
    let duration = args.duration.map(|d| seconds("duration", d)).transpose()?;
    let base_url = args.url.trim_end_matches('/').to_string();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(format!(
            "--url must start with http:// or https://, not {:?}",
            args.url
        ));
    }
    let mut headers = Vec::new();
    let basic = args
        .basic_auth
        .clone()
        .or_else(|| std::env::var("PYSPY_BASIC_AUTH").ok());
    let bearer = args
        .bearer_token
        .clone()
        .or_else(|| std::env::var("PYSPY_BEARER_TOKEN").ok());
    match (basic, bearer) {
        (Some(_), Some(_)) => {
            return Err("give either basic authentication or a bearer token, not both".into())
        }
        (Some(b), None) => {
            if !b.contains(':') {
                return Err("--basic-auth is USER:PASSWORD".into());
            }
            headers.push(("Authorization".to_string(), upload::basic_auth(&b)));
        }
        (None, Some(t)) => headers.push(("Authorization".to_string(), format!("Bearer {t}"))),
        (None, None) => {}
    }
    if let Some(t) = &args.tenant_id {
        headers.push(("X-Scope-OrgID".to_string(), t.clone()));
    }
    headers.extend(args.headers.iter().cloned());
    let settings = Settings {
        protocol: args.protocol,
        endpoint: Endpoint {
            base_url,
            headers,
            timeout,
            spool: args.spool as usize,
            backoff: Duration::from_millis(500),
            max_backoff: interval
                .max(Duration::from_secs(1))
                .min(Duration::from_secs(60)),
        },
        meta: ProfileMeta::default()
            .service(args.service.clone().unwrap_or_default())
            .tags(args.tags.clone())
            .env(args.env.clone())
            .version(args.service_version.clone()),
        interval,
        rate: args.rate,
        duration,
        idle: args.idle,
        subprocesses: args.subprocesses,
        host: args.host.settings()?,
    };
    push(&args.target, settings)
}

/// Samples the target and uploads a profile every interval until the duration is over, the
/// program exits or Ctrl-C; then sends the last, partial interval and what is spooled.
pub fn push(target: &TargetArgs, mut settings: Settings) -> Result<(), String> {
    if let Some(host) = settings.host.take() {
        return host::push_all(settings, host);
    }
    let Target {
        pid,
        session,
        child: mut launched,
    } = Target::open(target, settings.subprocesses)?;
    // With --subprocesses the root may run no Python (a shell): its children are found later.
    let version = session.as_ref().map(|s| s.version());
    let found = ProfileMeta::for_process(pid);
    let meta = settings
        .meta
        .clone()
        .pid(Some(pid))
        .runtime_version(version.map(|v| v.to_string()))
        .host(found.host)
        .container_id(found.container_id);

    let sample_options = crate::record::sample_options(settings.idle);
    let mut options = SamplerOptions::default()
        .rate(f64::from(settings.rate))
        .duration(settings.duration)
        .subprocesses(settings.subprocesses);
    options.attach = AttachOptions::default().sample(sample_options);
    let sampler = match session {
        Some(mut session) => {
            session.set_sample_options(sample_options);
            Sampler::new(session, options)
        }
        None => Sampler::attach(pid, options).map_err(|e| e.to_string())?,
    };
    let profile_options = ProfileOptions::default()
        .idle(settings.idle)
        .processes(settings.subprocesses)
        .period(sampler.interval());
    let sampler = sampler.spawn();
    let stop = sampler.stop_handle();
    let _ = ctrlc::set_handler(move || stop.stop());

    let uploader = Uploader::start(settings.endpoint.clone())?;
    let sender = uploader.sender();
    let mut pipeline = Pipeline::new(settings.protocol, meta, profile_options);
    eprintln!(
        "pyspy: pushing {} profiles of process {pid} ({}) at {} Hz to {} ({}), one per {} s{}; Ctrl-C to stop",
        if settings.idle { "wall-time" } else { "CPU" },
        version.map_or_else(
            || "no Python yet: its Python children as they start".to_string(),
            |v| format!("Python {v}")
        ),
        settings.rate,
        settings.endpoint.base_url,
        settings.protocol.name(),
        settings.interval.as_secs_f64(),
        settings
            .duration
            .map(|d| format!(", for {} s", d.as_secs_f64()))
            .unwrap_or_default()
    );
    let mut next_cut = Instant::now() + settings.interval;
    let mut intervals = 0u64;
    loop {
        let wait = next_cut.saturating_duration_since(Instant::now());
        match sampler.recv_timeout(wait) {
            Ok(sample) => {
                pipeline.add(&sample);
                sampler.recycle(sample);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_cut {
            next_cut += settings.interval;
            if let Some(p) = pipeline.cut() {
                intervals += 1;
                sender.send(p);
            }
        }
    }
    let (ended, stats) = sampler.join();
    if let Some(p) = pipeline.cut() {
        intervals += 1;
        sender.send(p);
    }
    drop(sender);
    if launched.stop() {
        eprintln!("pyspy: stopped the program it started (pid {pid})");
    }
    let outcome = uploader.finish(settings.endpoint.timeout * 2);
    let why = match ended {
        EndReason::Duration => "duration over".to_string(),
        EndReason::ProcessExited => format!("process {pid} exited"),
        _ => "interrupted".to_string(),
    };
    eprintln!(
        "pyspy: {} samples, {} errors, {intervals} profiles: {} sent, {} refused, {} dropped (spool full), {} unsent ({why})",
        stats.samples, stats.errors, outcome.sent, outcome.rejected, outcome.dropped, outcome.unsent
    );
    if outcome.sent == 0 && intervals > 0 {
        return Err(format!(
            "no profile reached {}: see the messages above",
            settings.endpoint.base_url
        ));
    }
    Ok(())
}
