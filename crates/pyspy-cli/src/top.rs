//! `pyspy top`: a live, sortable view of where a program spends its time, like py-spy's.
//!
//! Percentages are over the last refresh (one second), times are totals since the start.
//! Keys: 1–4 sort by %Own, %Total, OwnTime, TotalTime; `L` toggles line numbers; `R` resets the
//! totals; `q`, Esc or Ctrl-C quit. The terminal is restored on every way out (also a panic).

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::style::{Attribute, Print, SetAttribute};
use crossterm::terminal::{self, ClearType};
use crossterm::{cursor, execute, queue};
use pyspy_core::FrameKey;
use pyspy_core::{
    AttachOptions, ProfileOptions, SampleOptions, Sampler, SamplerOptions, ThreadStack,
};
use pyspy_core::{EndReason, Sample, SamplerThread};

use crate::target::{Target, TargetArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// Samples per second.
    #[arg(long, short, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rate: u32,
    /// Count idle threads too.
    #[arg(long)]
    idle: bool,
    /// Count only the thread holding the GIL.
    #[arg(long)]
    gil: bool,
    /// Count only threads handling or propagating an exception.
    #[arg(long)]
    exceptions: bool,
    /// Also sample child processes that run Python.
    #[arg(long, short)]
    subprocesses: bool,
    /// Never pause the target: read while it runs (top does not pause it at present either).
    #[arg(long)]
    nonblocking: bool,
    /// Also count native (C, C++, Rust) functions. Pauses the target's threads for every
    /// sample (which `--nonblocking` forbids).
    #[arg(long)]
    native: bool,
    /// With --native, also count the interpreter's own functions.
    #[arg(long)]
    native_all: bool,
    /// Count the time of threads running an asyncio task in the task's logical stack (the
    /// tasks awaiting it instead of the event loop).
    #[arg(long = "async")]
    async_stacks: bool,
}

const REFRESH: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Own,
    Total,
    OwnTime,
    TotalTime,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    own: u64,
    total: u64,
}

/// Function statistics: per refresh window (percentages) and cumulative (times).
struct Stats {
    lines: bool,
    options: ProfileOptions,
    window: HashMap<FrameKey, Counts>,
    window_stacks: u64,
    window_ticks: u64,
    window_gil: u64,
    window_active: u64,
    cumulative: HashMap<FrameKey, Counts>,
    samples: u64,
    threads: usize,
    processes: usize,
    /// The last window, shown until the next is complete.
    shown: Vec<(FrameKey, Counts, Counts)>,
    shown_stacks: u64,
    shown_gil: f64,
    shown_active: f64,
}

impl Stats {
    fn new(options: ProfileOptions) -> Stats {
        Stats {
            lines: false,
            options,
            window: HashMap::new(),
            window_stacks: 0,
            window_ticks: 0,
            window_gil: 0,
            window_active: 0,
            cumulative: HashMap::new(),
            samples: 0,
            threads: 0,
            processes: 0,
            shown: Vec::new(),
            shown_stacks: 0,
            shown_gil: 0.0,
            shown_active: 0.0,
        }
    }

    fn add(&mut self, sample: &Sample) {
        self.samples += 1;
        self.window_ticks += 1;
        let threads: Vec<&ThreadStack> = sample
            .processes
            .iter()
            .flat_map(|p| &p.snapshot.threads)
            .collect();
        self.threads = threads.len();
        self.processes = sample.processes.len();
        if threads.iter().any(|t| t.owns_gil) {
            self.window_gil += 1;
        }
        if threads.iter().any(|t| t.active == Some(true)) {
            self.window_active += 1;
        }
        for t in threads {
            if !self.options.counts(t) {
                continue;
            }
            self.window_stacks += 1;
            let mut seen: Vec<FrameKey> = Vec::with_capacity(t.frames.len());
            for (depth, f) in t.frames.iter().enumerate() {
                let key = FrameKey::new(f, self.lines);
                // Recursion: a function counts once per stack in "total".
                let first = !seen.contains(&key);
                for map in [&mut self.window, &mut self.cumulative] {
                    let c = map.entry(key.clone()).or_default();
                    if depth == 0 {
                        c.own += 1;
                    }
                    if first {
                        c.total += 1;
                    }
                }
                if first {
                    seen.push(key);
                }
            }
        }
    }

    /// Ends the refresh window: what is shown next.
    fn roll(&mut self) {
        let ticks = self.window_ticks.max(1) as f64;
        self.shown_gil = self.window_gil as f64 / ticks * 100.0;
        self.shown_active = self.window_active as f64 / ticks * 100.0;
        self.shown_stacks = self.window_stacks;
        self.shown = self
            .cumulative
            .iter()
            .map(|(k, cum)| {
                let win = self.window.get(k).copied().unwrap_or_default();
                (k.clone(), win, *cum)
            })
            .collect();
        self.window.clear();
        self.window_stacks = 0;
        self.window_ticks = 0;
        self.window_gil = 0;
        self.window_active = 0;
    }

    fn reset(&mut self) {
        self.cumulative.clear();
        self.window.clear();
        self.window_stacks = 0;
        self.samples = 0;
        self.shown.clear();
    }
}

/// Restores the terminal when dropped (also while unwinding from a panic).
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        terminal::enable_raw_mode()?;
        let guard = TerminalGuard;
        execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = execute!(io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

pub fn run(args: &Args) -> Result<(), String> {
    let native = args.native || args.native_all;
    crate::dump::check_native(native, args.nonblocking).map_err(|e| e.to_string())?;
    if !io::stdout().is_terminal() {
        return Err("pyspy top needs a terminal; use pyspy record or pyspy dump instead".into());
    }
    let Target {
        pid,
        session,
        child: mut launched,
    } = Target::open(&args.target, args.subprocesses)?;
    let program = match (&session, args.target.command.is_empty()) {
        (_, false) => args.target.command.join(" "),
        (Some(session), true) => session.executable().to_string(),
        (None, true) => crate::record::executable(pid),
    };
    let title = match &session {
        Some(session) => format!(
            "Collecting samples from '{program}' (pid {pid}, Python {})",
            session.version()
        ),
        None => {
            format!("Collecting samples from the Python child processes of '{program}' (pid {pid})")
        }
    };
    let mut options = SamplerOptions::default();
    options.rate = f64::from(args.rate);
    options.subprocesses = args.subprocesses;
    // Every thread, with its activity: the header's GIL and active shares need all of them, and
    // the idle/GIL filtering is done here. Not paused (see record::sample_options).
    let sample_options = SampleOptions::default()
        .idle(true)
        .active(true)
        .gil_only(false)
        .exceptions(args.exceptions)
        .pause(native)
        .native(native)
        .native_all(args.native_all)
        .async_stacks(args.async_stacks);
    options.attach = AttachOptions::default().sample(sample_options);
    let sampler = match session {
        Some(mut session) => {
            session.set_sample_options(sample_options);
            Sampler::new(session, options)
        }
        None => Sampler::attach(pid, options).map_err(|e| e.to_string())?,
    };
    let interval = sampler.interval();
    let sampler = sampler.spawn();

    // SIGINT from outside (kill -INT) also quits; Ctrl-C at the keyboard arrives as a key.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));

    let profile_options = ProfileOptions::default()
        .idle(args.idle)
        .gil_only(args.gil)
        .exceptions_only(args.exceptions);
    let mut stats = Stats::new(profile_options);
    let result = {
        let _guard = TerminalGuard::enter().map_err(|e| format!("terminal: {e}"))?;
        ui_loop(&sampler, &mut stats, &title, interval, &interrupted)
    };
    let (reason, final_stats) = sampler.join();
    launched.stop();
    match result {
        Ok(Some(_)) if reason == EndReason::Exec => {
            eprintln!(
                "pyspy: process {pid} replaced its program with {} (exec), which runs no Python \
                 ({} samples)",
                crate::record::executable(pid),
                final_stats.samples
            );
            Ok(())
        }
        Ok(Some(msg)) => {
            eprintln!("pyspy: {msg} ({} samples)", final_stats.samples);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(format!("terminal: {e}")),
    }
}

/// Returns a message to print after the terminal is restored (why it ended), if any.
fn ui_loop(
    sampler: &SamplerThread,
    stats: &mut Stats,
    title: &str,
    interval: Duration,
    interrupted: &AtomicBool,
) -> io::Result<Option<String>> {
    let mut sort = SortBy::Own;
    // The first numbers after half a refresh, so the screen is not empty for long.
    let mut next_refresh = Instant::now() + REFRESH / 2;
    let mut ended = false;
    draw(stats, title, sort, interval, sampler, false)?;
    loop {
        // Take what the sampler produced.
        loop {
            match sampler.recv_timeout(Duration::ZERO) {
                Ok(sample) => {
                    stats.add(&sample);
                    sampler.recycle(sample);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    ended = true;
                    break;
                }
            }
        }
        if interrupted.load(Ordering::SeqCst) {
            return Ok(None);
        }
        if ended {
            stats.roll();
            draw(stats, title, sort, interval, sampler, true)?;
            return Ok(Some("the program exited".into()));
        }
        let mut redraw = false;
        if Instant::now() >= next_refresh {
            stats.roll();
            next_refresh = Instant::now() + REFRESH;
            redraw = true;
        }
        if event::poll(Duration::from_millis(50))? {
            match event::read()? {
                Event::Key(k) if k.kind != KeyEventKind::Release => match k.code {
                    KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => return Ok(None),
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(None)
                    }
                    KeyCode::Char('1') => sort = SortBy::Own,
                    KeyCode::Char('2') => sort = SortBy::Total,
                    KeyCode::Char('3') => sort = SortBy::OwnTime,
                    KeyCode::Char('4') => sort = SortBy::TotalTime,
                    KeyCode::Char('l') | KeyCode::Char('L') => {
                        stats.lines = !stats.lines;
                        stats.reset();
                    }
                    KeyCode::Char('r') | KeyCode::Char('R') => stats.reset(),
                    _ => continue,
                },
                Event::Resize(..) => {}
                _ => continue,
            }
            redraw = true;
        }
        if redraw {
            draw(stats, title, sort, interval, sampler, false)?;
        }
    }
}

fn draw(
    stats: &mut Stats,
    title: &str,
    sort: SortBy,
    interval: Duration,
    sampler: &SamplerThread,
    ended: bool,
) -> io::Result<()> {
    let (width, height) = terminal::size().unwrap_or((100, 30));
    let width = usize::from(width.max(20));
    let sstats = sampler.stats();
    let mut out = io::stdout().lock();
    queue!(out, cursor::MoveTo(0, 0), terminal::Clear(ClearType::All))?;
    let mut row: u16 = 0;
    let mut line = |out: &mut io::StdoutLock<'_>, text: &str, bold: bool| -> io::Result<()> {
        let text: String = text.chars().take(width).collect();
        queue!(out, cursor::MoveTo(0, row))?;
        if bold {
            queue!(out, SetAttribute(Attribute::Reverse))?;
        }
        queue!(out, Print(text))?;
        if bold {
            queue!(out, SetAttribute(Attribute::Reset))?;
        }
        row += 1;
        Ok(())
    };
    line(&mut out, title, false)?;
    let mut summary = format!(
        "Total Samples {}  Errors {}  GIL: {:.2}%, Active: {:.2}%, Threads: {}",
        stats.samples, sstats.errors, stats.shown_gil, stats.shown_active, stats.threads
    );
    if stats.processes > 1 {
        summary.push_str(&format!(", Processes: {}", stats.processes));
    }
    if sstats.lag > Duration::from_millis(100).max(interval * 10) {
        summary.push_str(&format!("  (behind by {} ms)", sstats.lag.as_millis()));
    }
    line(&mut out, &summary, false)?;
    line(
        &mut out,
        if ended {
            "The program exited."
        } else {
            "Keys: 1-4 sort by column, L toggle lines, R reset, q quit"
        },
        false,
    )?;
    line(&mut out, "", false)?;

    let headers = [
        format!("{:>7}", "%Own"),
        format!("{:>8}", "%Total"),
        format!("{:>9}", "OwnTime"),
        format!("{:>11}", "TotalTime"),
    ];
    let selected = match sort {
        SortBy::Own => 0,
        SortBy::Total => 1,
        SortBy::OwnTime => 2,
        SortBy::TotalTime => 3,
    };
    queue!(out, cursor::MoveTo(0, row))?;
    for (i, h) in headers.iter().enumerate() {
        if i == selected {
            queue!(out, SetAttribute(Attribute::Reverse), Print(h.as_str()))?;
            queue!(out, SetAttribute(Attribute::Reset))?;
        } else {
            queue!(out, Print(h.as_str()))?;
        }
    }
    queue!(out, Print("  Function (filename)"))?;
    row += 1;

    let rows = &mut stats.shown;
    rows.sort_by(|a, b| {
        let key = |r: &(FrameKey, Counts, Counts)| match sort {
            SortBy::Own => (r.1.own, r.1.total),
            SortBy::Total => (r.1.total, r.1.own),
            SortBy::OwnTime => (r.2.own, r.2.total),
            SortBy::TotalTime => (r.2.total, r.2.own),
        };
        key(b).cmp(&key(a)).then_with(|| a.0.cmp(&b.0))
    });
    let denom = stats.shown_stacks.max(1) as f64;
    let secs = |n: u64| interval.as_secs_f64() * n as f64;
    for (key, win, cum) in rows
        .iter()
        .take(usize::from(height.saturating_sub(row + 1)))
    {
        let location = if key.line > 0 {
            format!("{} ({}:{})", key.name, key.filename, key.line)
        } else {
            format!("{} ({})", key.name, key.filename)
        };
        let text = format!(
            "{:>7}{:>8}{:>9}{:>11}  {location}",
            format!("{:.2}%", win.own as f64 / denom * 100.0),
            format!("{:.2}%", win.total as f64 / denom * 100.0),
            format!("{:.2}s", secs(cum.own)),
            format!("{:.2}s", secs(cum.total)),
        );
        let text: String = text.chars().take(width).collect();
        queue!(out, cursor::MoveTo(0, row), Print(text))?;
        row += 1;
    }
    out.flush()
}
