//! `pyspy push --all` and `pyspy datakit --all`: every Python process of the machine, in
//! every container, as they come and go. The library's `HostSampler` finds, attaches and
//! samples them (within the CPU budget); here each process gets its own `Pipeline` (its
//! profile and labels), cut every interval into one payload per process, all sent by one
//! uploader.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pyspy_core::export::ProfileMeta;
use pyspy_core::{
    AttachOptions, DiscoveryOptions, EndReason, HostEvent, HostOptions, HostSampler, ProcessLabels,
    ProfileOptions, RateChange, Sample, SkipReason,
};
use regex::Regex;

use crate::push::{Pipeline, Settings};
use crate::upload::{Sender, Uploader};

/// `--all` and what goes with it, shared by `push` and `datakit`.
#[derive(clap::Args, Debug)]
pub struct HostArgs {
    /// Profile every Python process on the machine, in every container, as they come and
    /// go: one profile per process per interval, labelled with its pid, service, container,
    /// pod and Python version. Needs root (or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH).
    #[arg(long, group = "target", conflicts_with = "subprocesses")]
    pub all: bool,
    /// With --all: only processes whose command line matches REGEX (repeatable: any of them).
    #[arg(long, value_name = "REGEX")]
    pub include: Vec<String>,
    /// With --all: not the processes whose command line matches REGEX (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,
    /// With --all: at most N processes at once (default 64); more wait for one of them to
    /// exit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_processes: Option<u32>,
    /// With --all: the CPU pyspy may use, in percent of one CPU (default 5); over it, the
    /// sampling rate is lowered until it is under (0: no budget).
    #[arg(long, value_name = "PERCENT")]
    pub cpu_budget: Option<f64>,
    /// With --all: seconds between two looks at /proc for new processes (default 1).
    #[arg(long, value_name = "SECS")]
    pub scan_interval: Option<f64>,
}

/// [`HostArgs`], checked.
pub struct HostSettings {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    max_processes: usize,
    /// A share of one CPU.
    cpu_budget: Option<f64>,
    scan_interval: Duration,
}

impl HostArgs {
    /// The settings of `--all`, or `None` without it.
    pub fn settings(&self) -> Result<Option<HostSettings>, String> {
        if !self.all {
            let given = !self.include.is_empty()
                || !self.exclude.is_empty()
                || self.max_processes.is_some()
                || self.cpu_budget.is_some()
                || self.scan_interval.is_some();
            if given {
                return Err("--include, --exclude, --max-processes, --cpu-budget and --scan-interval go with --all".into());
            }
            return Ok(None);
        }
        let cpu_budget = self.cpu_budget.unwrap_or(5.0);
        let scan_interval = self.scan_interval.unwrap_or(1.0);
        let compile = |flag: &str, patterns: &[String]| {
            patterns
                .iter()
                .map(|p| {
                    Regex::new(p)
                        .map_err(|e| format!("--{flag} {p:?} is not a regular expression: {e}"))
                })
                .collect::<Result<Vec<Regex>, String>>()
        };
        if !(cpu_budget.is_finite() && (0.0..=100_000.0).contains(&cpu_budget)) {
            return Err(format!(
                "--cpu-budget is a percentage of one CPU (0 for none), not {cpu_budget}"
            ));
        }
        if !(scan_interval.is_finite() && (0.05..=3600.0).contains(&scan_interval)) {
            return Err(format!(
                "--scan-interval must be between 0.05 and 3600 seconds, not {scan_interval}"
            ));
        }
        Ok(Some(HostSettings {
            include: compile("include", &self.include)?,
            exclude: compile("exclude", &self.exclude)?,
            max_processes: self.max_processes.unwrap_or(64) as usize,
            cpu_budget: (cpu_budget > 0.0).then_some(cpu_budget / 100.0),
            scan_interval: Duration::from_secs_f64(scan_interval),
        }))
    }
}

impl HostSettings {
    /// Whether `--include`/`--exclude` let a command line through.
    fn accepts(&self, command_line: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(command_line)))
            && !self.exclude.iter().any(|r| r.is_match(command_line))
    }
}

/// Samples every Python process and uploads a profile per process every interval until the
/// duration is over or Ctrl-C; then sends the last, partial intervals and what is spooled.
pub fn push_all(settings: Settings, host: HostSettings) -> Result<(), String> {
    let sample_options = crate::record::sample_options(settings.idle);
    let max_processes = host.max_processes;
    let (cpu_budget, scan_interval) = (host.cpu_budget, host.scan_interval);
    let filters = (host.include.len(), host.exclude.len());
    let discovery = DiscoveryOptions::default()
        .limit(max_processes)
        .attach(AttachOptions::default().sample(sample_options))
        .filter(move |labels: &ProcessLabels| host.accepts(&labels.command_line_string()));
    let options = HostOptions::default()
        .rate(f64::from(settings.rate))
        .duration(settings.duration)
        .scan_interval(scan_interval)
        .cpu_budget(cpu_budget)
        .discovery(discovery);
    let sampler = HostSampler::new(options);
    let mut endpoint = settings.endpoint.clone();
    // The spool holds `--spool` intervals' worth of profiles: one per process per interval.
    endpoint.spool = endpoint.spool.saturating_mul(max_processes);
    let uploader = Uploader::start(endpoint)?;
    let mut state = State {
        settings: &settings,
        sender: uploader.sender(),
        pipelines: BTreeMap::new(),
        period: sampler.interval(),
        profiles: 0,
    };
    let thread = sampler.spawn();
    let stop = thread.stop_handle();
    let _ = ctrlc::set_handler(move || stop.stop());
    eprintln!(
        "pyspy: pushing {} profiles of every Python process{} (at most {max_processes} at once) at {} Hz to {} ({}), one per process per {} s{}; looking for new processes every {} s; CPU budget {}; Ctrl-C to stop",
        if settings.idle { "wall-time" } else { "CPU" },
        match filters {
            (0, 0) => String::new(),
            (i, e) => format!(
                " whose command line matches {}",
                [
                    (i > 0).then(|| "--include".to_string()),
                    (e > 0).then(|| "not --exclude".to_string())
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" and ")
            ),
        },
        settings.rate,
        settings.endpoint.base_url,
        settings.protocol.name(),
        settings.interval.as_secs_f64(),
        settings
            .duration
            .map(|d| format!(", for {} s", d.as_secs_f64()))
            .unwrap_or_default(),
        scan_interval.as_secs_f64(),
        match cpu_budget {
            Some(b) => format!("{} % of one CPU", percent(b)),
            None => "none".into(),
        }
    );
    let mut next_cut = Instant::now() + settings.interval;
    loop {
        let wait = next_cut.saturating_duration_since(Instant::now());
        match thread.recv_timeout(wait) {
            Ok(event) => {
                if let Some(sample) = state.handle(event) {
                    thread.recycle(sample);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_cut {
            next_cut += settings.interval;
            state.cut_all();
        }
    }
    let (ended, stats, rest) = thread.join();
    for event in rest {
        let _ = state.handle(event); // the sampler has ended: nothing to hand back to
    }
    state.cut_all();
    let State {
        sender, profiles, ..
    } = state;
    drop(sender);
    let outcome = uploader.finish(settings.endpoint.timeout * 2);
    let why = match ended {
        EndReason::Duration => "duration over",
        _ => "interrupted",
    };
    eprintln!(
        "pyspy: {} samples, {} errors, {profiles} profiles: {} sent, {} refused, {} dropped (spool full), {} unsent ({why}); {} processes profiled, {} scans, {} ticks missed, max lag {:.1} ms",
        stats.snapshots,
        stats.errors,
        outcome.sent,
        outcome.rejected,
        outcome.dropped,
        outcome.unsent,
        stats.attached,
        stats.discovery.scans,
        stats.missed,
        stats.max_lag.as_secs_f64() * 1e3
    );
    if outcome.sent == 0 && profiles > 0 {
        return Err(format!(
            "no profile reached {}: see the messages above",
            settings.endpoint.base_url
        ));
    }
    Ok(())
}

/// The pipelines of the processes sampled now.
struct State<'a> {
    settings: &'a Settings,
    sender: Sender,
    pipelines: BTreeMap<i32, Pipeline>,
    /// The mean interval between samples now (a wall-time profile weighs each sample by it).
    period: Duration,
    profiles: u64,
}

impl State<'_> {
    /// Takes one event; returns a sample once it is added, to be handed back.
    fn handle(&mut self, event: HostEvent) -> Option<Sample> {
        match event {
            HostEvent::Attached(labels) => {
                eprintln!("pyspy: profiling process {}", describe(&labels));
                let mut meta = ProfileMeta::for_labels(&labels)
                    .tags(self.settings.meta.tags.clone())
                    .env(self.settings.meta.env.clone())
                    .version(self.settings.meta.version.clone());
                if !self.settings.meta.service.is_empty() {
                    meta.service = self.settings.meta.service.clone();
                }
                self.pipelines.insert(
                    labels.pid,
                    Pipeline::new(self.settings.protocol, meta, self.profile_options()),
                );
            }
            HostEvent::Sample(sample) => {
                if let Some(p) = sample
                    .processes
                    .first()
                    .and_then(|p| self.pipelines.get_mut(&p.process.pid))
                {
                    p.add(&sample);
                }
                return Some(sample);
            }
            HostEvent::Detached { labels, reason } => {
                eprintln!(
                    "pyspy: process {} ({}) {}",
                    labels.pid,
                    labels.service,
                    match &reason {
                        pyspy_core::DetachReason::Exited => "exited".to_string(),
                        other => format!("is no longer profiled: {other}; it is tried again later"),
                    }
                );
                if let Some(mut p) = self.pipelines.remove(&labels.pid) {
                    self.send(p.cut());
                }
            }
            HostEvent::Skipped(skipped) => {
                let what = match &skipped.reason {
                    SkipReason::Limit { .. } => "not profiling",
                    _ => "cannot profile",
                };
                eprintln!(
                    "pyspy: {what} process {} ({}): {}",
                    skipped.labels.pid,
                    skipped.labels.service,
                    match &skipped.reason {
                        SkipReason::Limit { limit } => format!(
                            "{limit} processes are profiled already (--max-processes); it is profiled when one of them exits"
                        ),
                        other => other.to_string(),
                    }
                );
            }
            HostEvent::Rate(change) => self.rate_changed(&change),
            HostEvent::ScanFailed(e) => eprintln!("pyspy: looking for processes failed: {e}"),
            _ => {}
        }
        None
    }

    fn profile_options(&self) -> ProfileOptions {
        ProfileOptions::default()
            .idle(self.settings.idle)
            .period(self.period)
    }

    fn rate_changed(&mut self, change: &RateChange) {
        if change.to == change.from {
            eprintln!(
                "pyspy: over the CPU budget even at the lowest rate, {:.0} Hz: pyspy used {} % of one CPU, the budget is {} % (fewer processes, --max-processes or --include, or a larger --cpu-budget)",
                change.to,
                percent(change.cpu),
                percent(change.budget)
            );
            return;
        }
        eprintln!(
            "pyspy: {} the CPU budget (pyspy used {} % of one CPU, the budget is {} %): sampling at {:.0} Hz instead of {:.0} Hz{}",
            if change.over_budget() { "over" } else { "well under" },
            percent(change.cpu),
            percent(change.budget),
            change.to,
            change.from,
            if change.from != f64::from(self.settings.rate) {
                format!(" (asked for {} Hz)", self.settings.rate)
            } else {
                String::new()
            }
        );
        self.period = Duration::from_secs_f64(1.0 / change.to);
        if self.settings.idle {
            // A wall-time profile weighs every sample by one period: its profiles so far are
            // sent with the old period, the next ones use the new.
            let options = self.profile_options();
            for p in self.pipelines.values_mut() {
                let payload = p.cut_with(options.clone());
                self.profiles += u64::from(payload.is_some());
                if let Some(payload) = payload {
                    self.sender.send(payload);
                }
            }
        }
    }

    fn send(&mut self, payload: Option<crate::upload::Payload>) {
        if let Some(payload) = payload {
            self.profiles += 1;
            self.sender.send(payload);
        }
    }

    fn cut_all(&mut self) {
        let payloads: Vec<_> = self.pipelines.values_mut().map(Pipeline::cut).collect();
        for p in payloads {
            self.send(p);
        }
    }
}

/// `1234: service shop (OTEL_SERVICE_NAME), Python 3.12.1, container 3f2a1b4c5d6e (docker),
/// pod 0f1e..., pid 1 in its namespace: python app.py`.
fn describe(labels: &ProcessLabels) -> String {
    let mut s = format!(
        "{}: service {} ({})",
        labels.pid,
        labels.service,
        labels.service_source.as_str()
    );
    if let Some(v) = labels.python_version {
        s.push_str(&format!(", Python {v}"));
    }
    if let Some(c) = &labels.container {
        s.push_str(&format!(", container {}", &c.id[..12.min(c.id.len())]));
        if let Some(r) = c.runtime {
            s.push_str(&format!(" ({})", r.as_str()));
        }
    }
    if let Some(pod) = &labels.pod_uid {
        s.push_str(&format!(", pod {pod}"));
    }
    if let Some(ns) = labels.namespace_pid {
        s.push_str(&format!(", pid {ns} in its namespace"));
    }
    let cmd: String = labels
        .command_line_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cut: String = cmd.chars().take(120).collect();
    s.push_str(&format!(
        ": {cut}{}",
        if cut.len() < cmd.len() { "..." } else { "" }
    ));
    s
}

/// A share of one CPU in percent, with a sensible number of digits.
fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p >= 10.0 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    }
}
