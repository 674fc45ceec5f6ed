//! `pyspy datakit`: `pyspy push --protocol datakit` with the flags DataKit's documentation
//! gives for its py-spy fork (`py-spy datakit -H HOST -P PORT -S SERVICE ...`), so existing
//! deployment scripts work with pyspy. `-V` is the service's version here, not pyspy's.

use std::time::Duration;

use pyspy_core::export::ProfileMeta;

use crate::host::HostArgs;
use crate::push::{self, Protocol, Settings};
use crate::target::TargetArgs;
use crate::upload::Endpoint;

#[derive(clap::Args, Debug)]
#[command(disable_version_flag = true)]
pub struct Args {
    /// DataKit's host.
    #[arg(short = 'H', long, default_value = "127.0.0.1")]
    host: String,
    /// DataKit's HTTP port.
    #[arg(short = 'P', long, default_value_t = 9529)]
    port: u16,
    /// Service name (default: python; with --all, each process's own).
    #[arg(short = 'S', long)]
    service: Option<String>,
    /// Deployment environment.
    #[arg(short = 'E', long)]
    env: Option<String>,
    /// The service's version.
    #[arg(short = 'V', long)]
    version: Option<String>,
    /// Seconds of samples per upload.
    #[arg(short = 'd', long, default_value_t = 60)]
    duration: u64,
    /// Samples per second.
    #[arg(short = 'r', long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rate: u32,
    /// Also sample child processes that run Python.
    #[arg(short = 's', long)]
    subprocesses: bool,
    /// Count idle threads too (wall-time profiles).
    #[arg(short = 'i', long)]
    idle: bool,
    /// Total seconds to run; 0 runs until the program exits or Ctrl-C.
    #[arg(long = "loop", default_value_t = 0)]
    total: u64,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    all: HostArgs,
}

pub fn run(args: &Args) -> Result<(), String> {
    if args.duration == 0 {
        return Err("-d/--duration must be at least 1 second".into());
    }
    let interval = Duration::from_secs(args.duration);
    let host = if args.host.contains(':') && !args.host.starts_with('[') {
        format!("[{}]", args.host) // an IPv6 address
    } else {
        args.host.clone()
    };
    let settings = Settings {
        protocol: Protocol::Datakit,
        endpoint: Endpoint {
            base_url: format!("http://{host}:{}", args.port),
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            spool: 30,
            backoff: Duration::from_millis(500),
            max_backoff: interval.min(Duration::from_secs(60)),
        },
        meta: ProfileMeta::default()
            .service(args.service.clone().unwrap_or_default())
            .env(args.env.clone())
            .version(args.version.clone()),
        interval,
        rate: args.rate,
        duration: (args.total > 0).then(|| Duration::from_secs(args.total)),
        idle: args.idle,
        subprocesses: args.subprocesses,
        host: args.all.settings()?,
    };
    push::push(&args.target, settings)
}
