//! `pyspy record`: sample a program for a while and write a profile file.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pyspy_core::export::{self, chrometrace::ChromeTrace, collapsed, pprof, pstats, speedscope};
use pyspy_core::{AttachOptions, Profile, ProfileOptions, SampleOptions, Sampler, SamplerOptions};
use pyspy_core::{EndReason, SamplerStats};

use crate::target::{Target, TargetArgs};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An interactive flame graph (SVG; open it in a browser).
    Flamegraph,
    /// Folded stacks, `a (file:line);b (file:line) COUNT` per line.
    Collapsed,
    /// speedscope JSON (<https://www.speedscope.app>).
    Speedscope,
    /// gzip'd pprof protobuf (go tool pprof, Grafana Pyroscope, Guance DataKit).
    Pprof,
    /// Chrome trace event JSON: a timeline per thread (Perfetto UI, chrome://tracing).
    Chrometrace,
    /// cProfile's pstats file (python -m pstats, snakeviz, flameprof).
    Pstats,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Flamegraph => "svg",
            Format::Collapsed => "txt",
            Format::Speedscope => "speedscope.json",
            Format::Pprof => "pb.gz",
            Format::Chrometrace => "trace.json",
            Format::Pstats => "pstats",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Format::Flamegraph => "flame graph",
            Format::Collapsed => "collapsed stacks",
            Format::Speedscope => "speedscope profile",
            Format::Pprof => "pprof profile",
            Format::Chrometrace => "Chrome trace",
            Format::Pstats => "pstats profile",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// Samples per second.
    #[arg(long, short, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: u32,
    /// Stop after this many seconds (default: until the program exits or Ctrl-C).
    #[arg(long, short)]
    duration: Option<f64>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Flamegraph)]
    format: Format,
    /// Output file (default: pyspy-PID.EXT in the current directory).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Count only the thread holding the GIL.
    #[arg(long)]
    gil: bool,
    /// Count idle threads too (sleeping, waiting on I/O or a lock).
    #[arg(long)]
    idle: bool,
    /// Count only threads handling an exception (inside `except` or a `finally` run by one)
    /// or propagating one: where exception-heavy code spends its time.
    #[arg(long)]
    exceptions: bool,
    /// Never pause the target: read while it runs (record does not pause it at present either;
    /// a stack torn by the target changing it is retried or counted as an error).
    #[arg(long)]
    nonblocking: bool,
    /// Also sample child processes that run Python (multiprocessing, worker pools).
    #[arg(long, short)]
    subprocesses: bool,
    /// Keep threads apart (one tower per thread in a flame graph).
    #[arg(long, short)]
    threads: bool,
    /// Also sample native (C, C++, Rust) frames, merged with the Python ones. Pauses the
    /// target's threads for every sample (which `--nonblocking` forbids).
    #[arg(long)]
    native: bool,
    /// With --native, also keep the interpreter's own frames.
    #[arg(long)]
    native_all: bool,
    /// Aggregate by function, without line numbers.
    #[arg(long, short = 'F')]
    function: bool,
    /// Attribute each sample of a thread running an asyncio task to the task's logical stack:
    /// the task's frames, then the tasks awaiting it (each marked by a `<task>` frame with its
    /// name) instead of the event loop below it.
    #[arg(long = "async")]
    async_stacks: bool,
}

pub fn run(args: &Args) -> Result<(), String> {
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0) {
            return Err(format!(
                "--duration must be a positive number of seconds, not {d}"
            ));
        }
    }
    let native = args.native || args.native_all;
    crate::dump::check_native(native, args.nonblocking).map_err(|e| e.to_string())?;
    // Check an output given can be written before starting anything.
    if let Some(output) = &args.output {
        File::create(output).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    }
    let Target {
        pid,
        session,
        child: mut launched,
    } = Target::open(&args.target, args.subprocesses)?;
    let what = match &session {
        Some(session) => format!("process {pid} (Python {})", session.version()),
        None => format!(
            "the Python child processes of process {pid} ({}, which runs no Python) as they start",
            executable(pid)
        ),
    };
    // A version read from its own debug offsets says so (not for children found later).
    let layout_note = session.as_ref().map(|s| (s.version(), s.layout_source()));
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("pyspy-{pid}.{}", args.format.extension())));
    File::create(&output).map_err(|e| format!("cannot write {}: {e}", output.display()))?;

    let mut options = SamplerOptions::default();
    options.rate = f64::from(args.rate);
    options.duration = args.duration.map(Duration::from_secs_f64);
    options.subprocesses = args.subprocesses;
    let sample_options = sample_options(args.idle)
        .gil_only(args.gil)
        .pause(native)
        .native(native)
        .native_all(args.native_all)
        .exceptions(args.exceptions)
        .async_stacks(args.async_stacks);
    options.attach = AttachOptions::default().sample(sample_options);
    let mut sampler = match session {
        Some(mut session) => {
            session.set_sample_options(sample_options);
            Sampler::new(session, options)
        }
        None => Sampler::attach(pid, options).map_err(|e| e.to_string())?,
    };
    pyspy_core::precise_timers();
    let stop = sampler.stop_handle();
    let _ = ctrlc::set_handler(move || stop.stop());

    let per_thread = args.threads || args.format == Format::Speedscope;
    let profile_options = ProfileOptions::default()
        .lines(!args.function)
        .threads(per_thread)
        .processes(args.subprocesses)
        .idle(args.idle)
        .gil_only(args.gil)
        .exceptions_only(args.exceptions)
        .period(sampler.interval());
    let mut profile = Profile::new(profile_options.clone());
    let mut trace =
        (args.format == Format::Chrometrace).then(|| ChromeTrace::new(profile_options.clone()));

    let tty = std::io::stderr().is_terminal();
    eprintln!(
        "pyspy: sampling {what} at {} Hz{}; Ctrl-C to stop and write {}",
        args.rate,
        args.duration
            .map(|d| format!(" for {d} s"))
            .unwrap_or_default(),
        output.display()
    );
    if let Some((version, pyspy_core::LayoutSource::DebugOffsets { format })) = layout_note {
        eprintln!(
            "pyspy: this pyspy has no table for Python {}.{}: its memory layout was read from \
             the target's _Py_DebugOffsets (in the {}.{} format)",
            version.major, version.minor, format.0, format.1
        );
    }
    let started = Instant::now();
    let mut last_progress = Instant::now();
    while let Some(sample) = sampler.next() {
        match trace.as_mut() {
            Some(t) => {
                t.add(&sample);
                profile.add(&sample);
            }
            None => profile.add(&sample),
        }
        // Its frames serve the next sample where stacks did not change.
        sampler.recycle(sample);
        if tty && last_progress.elapsed() >= Duration::from_millis(250) {
            last_progress = Instant::now();
            eprint!(
                "\r\x1b[K{}",
                progress(sampler.stats(), started.elapsed(), sampler.interval())
            );
        }
    }
    let stats = sampler.stats().clone();
    let ended = sampler.end_reason();
    if tty {
        eprint!("\r\x1b[K");
    }
    let why = match ended {
        Some(EndReason::Duration) => "duration over".to_string(),
        Some(EndReason::ProcessExited) => format!("process {pid} exited"),
        Some(EndReason::Exec) => format!(
            "process {pid} replaced its program with {} (exec), which runs no Python",
            executable(pid)
        ),
        Some(EndReason::Stopped) => "interrupted".to_string(),
        Some(other) => format!("{other:?}"),
        None => "stopped".to_string(),
    };
    drop(sampler);
    if launched.stop() {
        eprintln!("pyspy: stopped the program it started (pid {pid})");
    }
    eprintln!(
        "{} ({why})",
        progress(&stats, started.elapsed(), Duration::ZERO)
    );

    if stats.samples == 0 {
        let _ = std::fs::remove_file(&output);
        return Err(match &stats.last_error {
            Some(e) => format!("no sample could be taken ({e}): nothing written"),
            None => "no sample could be taken: nothing written".to_string(),
        });
    }
    if profile.unreadable() > 0 {
        eprintln!(
            "pyspy: {} thread stacks could not be read (corrupt, or changing faster than they \
             could be read) and are left out",
            profile.unreadable()
        );
    }
    if profile.is_empty() {
        // Samples were taken and none counted: an empty profile is the answer.
        eprintln!("pyspy: {}: the profile is empty", empty_reason(args));
    }
    write_output(args, &output, &profile, trace)?;
    eprintln!(
        "pyspy: wrote {} to {}\n{}",
        args.format.description(),
        output.display(),
        how_to_view(args.format, &output)
    );
    Ok(())
}

/// The executable of `pid` as it sees it (inside its chroot), for messages.
pub fn executable(pid: i32) -> String {
    let link = |what: &str| {
        std::fs::read_link(format!("/proc/{pid}/{what}")).map(|p| p.to_string_lossy().into_owned())
    };
    let Ok(exe) = link("exe") else {
        return "an unknown program".into();
    };
    match link("root").map(|r| r.trim_end_matches('/').to_string()) {
        Ok(root) if !root.is_empty() && exe.starts_with(&format!("{root}/")) => {
            exe[root.len()..].to_string()
        }
        _ => exe,
    }
}

/// What each sample of a profile reads (`record`, `push` and the whole-host agent alike; with
/// `--gil`, `record` adds `gil_only`): idle threads are left out by the core already when not
/// wanted (the profile filters the same way).
///
/// The target is not paused, with or without `--nonblocking`: pausing at 100 Hz interrupts a
/// sleeping thread's system call every sample, and on 3.13+ such a thread then shows as
/// running in the next sample almost every time, so idle threads (a main thread in
/// `time.sleep`) would dominate the profile. `--nonblocking` is accepted for py-spy
/// compatibility; pausing comes back as the default once the state read survives it.
///
/// Whether a thread is running, and its CPU time, are read from `/proc` only when idle threads
/// are left out: with `--idle` nothing uses them, and those reads would be most of a sample's
/// cost. Without `--idle` the running threads are read and the idle ones that ran since the
/// previous sample (`idle_if_ran`; the profile counts only the running ones), so a thread that
/// used CPU since the previous sample gets that time even if it sleeps at this one, while a
/// thread asleep throughout costs no read of its stack.
pub fn sample_options(idle: bool) -> SampleOptions {
    SampleOptions::default()
        .idle(idle)
        .idle_if_ran(!idle)
        .active(!idle)
        .cpu_time(!idle)
        .pause(false)
}

/// Why samples were taken but nothing counted, in terms of the options given.
fn empty_reason(args: &Args) -> &'static str {
    match (args.gil, args.idle) {
        (true, true) => "no thread held the GIL in any sample",
        (true, false) => {
            "no running thread held the GIL in any sample (add --idle to count threads that \
             hold it while waiting)"
        }
        (false, true) => "no thread had a Python stack in any sample",
        (false, false) => {
            "no thread was running Python code in any sample (every thread was idle; use \
             --idle to count idle threads)"
        }
    }
}

fn progress(stats: &SamplerStats, elapsed: Duration, interval: Duration) -> String {
    let mut line = format!(
        "pyspy: {} samples, {} errors, {:.1} s",
        stats.samples,
        stats.errors,
        elapsed.as_secs_f64()
    );
    if stats.processes > 1 {
        line.push_str(&format!(", {} processes", stats.processes));
    }
    let behind = Duration::from_millis(100).max(interval * 10);
    if !interval.is_zero() && stats.lag > behind {
        line.push_str(&format!(
            " — behind schedule by {} ms: results may be skewed, lower --rate",
            stats.lag.as_millis()
        ));
    } else if interval.is_zero() && stats.missed > 0 {
        line.push_str(&format!(
            ", {} scheduled samples missed (max lag {} ms): lower --rate for even sampling",
            stats.missed,
            stats.max_lag.as_millis()
        ));
    }
    line
}

fn write_output(
    args: &Args,
    output: &Path,
    profile: &Profile,
    trace: Option<ChromeTrace>,
) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", output.display());
    let file = File::create(output).map_err(fail)?;
    let mut out = BufWriter::new(file);
    let title = title(args);
    match args.format {
        Format::Flamegraph if profile.is_empty() => {
            out.write_all(empty_svg(&title, empty_reason(args)).as_bytes())
                .map_err(fail)?;
        }
        Format::Flamegraph => {
            let folded = flame_graph_lines(profile);
            let mut options = inferno::flamegraph::Options::default();
            options.title = title;
            options.subtitle = Some(subtitle(profile));
            options.count_name = "samples".into();
            options.name_type = "Function:".into();
            options.colors = inferno::flamegraph::color::Palette::Multi(
                inferno::flamegraph::color::MultiPalette::Python,
            );
            options.hash = true;
            // Keep the function name visible when a frame is too narrow for its whole label.
            options.text_truncate_direction = inferno::flamegraph::TextTruncateDirection::Right;
            inferno::flamegraph::from_lines(
                &mut options,
                folded.iter().map(String::as_str),
                &mut out,
            )
            .map_err(|e| format!("rendering the flame graph: {e}"))?;
        }
        Format::Collapsed => collapsed::write(profile, &mut out).map_err(fail)?,
        Format::Speedscope => speedscope::write(profile, &title, &mut out).map_err(fail)?,
        Format::Pprof => pprof::write(profile, &mut out).map_err(fail)?,
        Format::Pstats => pstats::write(profile, &mut out).map_err(fail)?,
        Format::Chrometrace => trace
            .expect("a trace is built for chrometrace")
            .write(&mut out)
            .map_err(fail)?,
    }
    out.flush().map_err(fail)
}

/// An SVG saying that nothing was counted, and why (inferno draws no graph without stacks).
fn empty_svg(title: &str, why: &str) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"1200\" height=\"90\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <text x=\"600\" y=\"30\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"17\">{}</text>\n\
         <text x=\"600\" y=\"60\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"12\">Empty profile: {}</text>\n\
         </svg>\n",
        escape(title),
        escape(why)
    )
}

/// Collapsed stacks for the flame graph, with file names shortened to their last two path
/// components (`examples/demo.py`, `python3.12/threading.py`) so labels fit in their boxes.
fn flame_graph_lines(profile: &Profile) -> Vec<String> {
    let short = |path: &str| -> String {
        let mut parts = path.rsplitn(3, '/');
        match (parts.next(), parts.next()) {
            (Some(file), Some(dir)) if !dir.is_empty() => format!("{dir}/{file}"),
            (Some(file), _) => file.to_string(),
            _ => path.to_string(),
        }
    };
    profile
        .stacks()
        .iter()
        .filter(|stack| stack.count > 0)
        .map(|stack| {
            let mut labels = Vec::new();
            if let Some(p) = stack.process {
                labels.push(export::process_label(p));
            }
            if let Some(t) = stack.thread {
                labels.push(export::thread_label(t));
            }
            for f in stack.frames {
                let f = profile.frame(*f);
                labels.push(if f.line > 0 {
                    format!("{} ({}:{})", f.name, short(&f.filename), f.line)
                } else {
                    format!("{} ({})", f.name, short(&f.filename))
                });
            }
            let labels: Vec<String> = labels.iter().map(|l| l.replace(';', ":")).collect();
            format!("{} {}", labels.join(";"), stack.count)
        })
        .collect()
}

fn title(args: &Args) -> String {
    match (&args.target.pid, args.target.command.is_empty()) {
        (Some(pid), _) => format!("pyspy record --pid {pid}"),
        (None, false) => format!("pyspy record -- {}", args.target.command.join(" ")),
        (None, true) => "pyspy record".into(),
    }
}

fn subtitle(profile: &Profile) -> String {
    let o = profile.options();
    let mut what = vec![if o.idle {
        "all threads"
    } else {
        "running threads"
    }];
    if o.gil_only {
        what.push("holding the GIL");
    }
    if o.exceptions_only {
        what.push("handling an exception");
    }
    format!(
        "{} samples over {:.1} s at {:.0} Hz, {}; width = share of samples",
        profile.samples(),
        profile.duration().as_secs_f64(),
        1.0 / o.period.as_secs_f64(),
        what.join(", ")
    )
}

fn how_to_view(format: Format, output: &Path) -> String {
    let abs = std::fs::canonicalize(output).unwrap_or_else(|_| output.to_path_buf());
    let abs = abs.display();
    match format {
        Format::Flamegraph => {
            format!("Open it in a browser (click to zoom, Ctrl-F to search): file://{abs}")
        }
        Format::Collapsed => format!(
            "Render it with inferno-flamegraph < {abs} > flame.svg (or flamegraph.pl), or load it in speedscope"
        ),
        Format::Speedscope => {
            format!("Open https://www.speedscope.app and drop {abs} on it (or: speedscope {abs})")
        }
        Format::Pprof => format!("View it with: go tool pprof -http=localhost:8080 {abs}"),
        Format::Chrometrace => {
            format!("Open https://ui.perfetto.dev (or chrome://tracing) and load {abs}")
        }
        Format::Pstats => format!(
            "Read it with: python -m pstats {abs} (or snakeviz {abs}, flameprof {abs})"
        ),
    }
}
