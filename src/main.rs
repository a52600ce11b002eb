//! swipeguard's entry point: parse the command line, load the configuration, run the command.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use swipeguard::cli::{Cli, Command, DiffArgs, InputArgs, ReplayArgs, SimulateArgs};
use swipeguard::config::Config;
use swipeguard::replay::input::Format;
use swipeguard::replay::{replay, ReplayOptions};
use swipeguard::simulate::{simulate, Scenario, SimOptions};
use swipeguard_detectors::DetectorName;

/// Events and window entries are many small, short-lived allocations: mimalloc's thread-local
/// free lists beat glibc's malloc on them (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the command; an error is printed with its causes and ends the process with the exit code
/// its kind calls for (`swipeguard::exit`: a service manager retries some and not others).
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::from(swipeguard::exit::OK),
        Err(e) => {
            eprintln!("Error: {}", one_line(&e));
            std::process::ExitCode::from(exit_code(&e))
        }
    }
}

/// The error and its causes on one line (for the journal), leaving out a cause whose text the
/// message already quotes.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(e) = e.downcast_ref::<swipeguard::daemon::DaemonError>() {
        e.exit_code()
    } else if e
        .downcast_ref::<swipeguard::config::ConfigError>()
        .is_some()
        || e.downcast_ref::<MissingKey>().is_some()
    {
        swipeguard::exit::CONFIG
    } else {
        swipeguard::exit::FAILURE
    }
}

/// A key that the command needs and the configuration lacks.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct MissingKey(String);

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { config, log_json } => run_daemon(&config, log_json),
        Command::Produce {
            file,
            topic,
            rate,
            mapping,
            config,
            brokers,
        } => {
            let mut config = Config::load(config.as_deref()).context("invalid configuration")?;
            if brokers.is_some() {
                config.kafka.brokers = brokers;
            }
            let opts = swipeguard::produce::ProduceOptions {
                file,
                topic,
                rate,
                mapping,
            };
            let stats = swipeguard::produce::produce(&config, &opts)?;
            eprintln!(
                "produced {} messages to {} in {:.1} s ({} acknowledged, {} rows skipped)",
                stats.sent,
                opts.topic,
                stats.wall.as_secs_f64(),
                stats.delivered,
                stats.skipped
            );
            Ok(())
        }
        Command::Replay(args) => run_replay(args),
        Command::Diff(args) => run_diff(args),
        Command::Simulate(args) => run_simulate(args),
        Command::CheckConfig { file } => {
            let config = Config::load(Some(&file))
                .with_context(|| format!("{} is not a valid configuration", file.display()))?;
            print!("{}", config.to_toml_masked());
            eprintln!("{}: ok", file.display());
            Ok(())
        }
    }
}

fn run_daemon(path: &std::path::Path, log_json: bool) -> Result<()> {
    let config = Config::load(Some(path))
        .with_context(|| format!("{} is not a valid configuration", path.display()))?;
    if config.kafka.brokers.is_none() {
        return Err(MissingKey(format!("kafka.brokers: required by `swipeguard run` (set it in {} or SWIPEGUARD_KAFKA__BROKERS)", path.display())).into());
    }
    swipeguard::telemetry::init(&config.log, log_json);
    {
        // Before any thread exists: the runtime's and librdkafka's threads inherit these.
        use swipeguard::daemon::os_tuning;
        if config.daemon.batch_other_threads {
            os_tuning::apply_or_log("SCHED_BATCH", os_tuning::batch_this_thread());
        }
        if !config.daemon.transparent_huge_pages {
            os_tuning::apply_or_log("no huge pages", os_tuning::small_pages_only());
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let metrics = swipeguard::metrics::Metrics::new()?;
        let health =
            std::sync::Arc::new(swipeguard::health::Health::new(config.daemon.ready_max_lag));
        let shutdown = swipeguard::shutdown::on_signals();
        swipeguard::daemon::run(
            std::sync::Arc::new(config),
            Some(path.to_path_buf()),
            metrics,
            health,
            shutdown,
        )
        .await?;
        Ok(())
    });
    // A metadata request still waiting on an absent broker must not hold up the exit.
    runtime.shutdown_timeout(Duration::from_secs(3));
    result
}

/// `--allowed-lateness` and `--detectors` applied to a loaded configuration.
fn with_overrides(mut config: Config, args: &ReplayArgs) -> Result<Config> {
    if let Some(l) = &args.allowed_lateness {
        config.engine.allowed_lateness = humantime::parse_duration(l)
            .with_context(|| format!("--allowed-lateness {l:?} is not a duration"))?;
    }
    if let Some(names) = &args.detectors {
        let mut keep = Vec::new();
        for n in names {
            keep.push(
                DetectorName::parse(n)
                    .with_context(|| format!("--detectors: unknown detector {n:?}"))?,
            );
        }
        config.detectors = config.detectors.only(&keep);
    }
    config.validate().context("invalid configuration")?;
    Ok(config)
}

fn run_replay(args: ReplayArgs) -> Result<()> {
    let config = Config::load(args.config.as_deref()).context("invalid configuration")?;
    let config = with_overrides(config, &args)?;
    if args.sweep.is_some() && !args.reconfigure_at.is_empty() {
        bail!("--sweep and --reconfigure-at cannot be combined: the sweep's points would not follow the change");
    }
    let opts = ReplayOptions {
        report: args.report.clone(),
        decode_threads: args.decode_threads,
        stage_threads: args.stage_threads,
        sweep: args
            .sweep
            .as_deref()
            .map(swipeguard::replay::sweep::Sweep::parse)
            .transpose()?,
        reconfigure: args
            .reconfigure_at
            .iter()
            .map(|arg| reconfigure_at(arg, &config, &args))
            .collect::<Result<_>>()?,
        ..input_options(args.input)?
    };
    let mut sink: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let summary = replay(&config, &opts, &mut *sink)?;
    drop(sink);
    eprint!("{summary}");
    if let Some(dir) = &args.report {
        eprintln!(
            "report written to {}",
            dir.join(swipeguard::replay::report::PAGE).display()
        );
    }
    Ok(())
}

fn run_diff(args: DiffArgs) -> Result<()> {
    let [a, b] = args.configs.as_slice() else {
        bail!(
            "diff takes exactly two configurations (--config A.toml --config B.toml), not {}",
            args.configs.len()
        );
    };
    let load = |p: &std::path::Path| {
        Config::load(Some(p))
            .with_context(|| format!("{} is not a valid configuration", p.display()))
    };
    let (config_a, config_b) = (load(a)?, load(b)?);
    let opts = input_options(args.input)?;
    let names = (a.display().to_string(), b.display().to_string());
    let (d, sides) =
        swipeguard::replay::diff::diff(&config_a, &config_b, (&names.0, &names.1), &opts)?;
    print!("{d}");
    if let Some(path) = &args.out {
        let mut out = BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        );
        swipeguard::replay::diff::write_differing(&sides, &mut out)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(dir) = &args.report {
        swipeguard::replay::diff::write_report(dir, &d)?;
        eprintln!(
            "report written to {}",
            dir.join(swipeguard::replay::report::PAGE).display()
        );
    }
    eprintln!(
        "replayed {} rows once under both configurations in {:.2} s",
        d.summary.rows,
        d.summary.wall.as_secs_f64()
    );
    Ok(())
}

/// `--reconfigure-at POSITION=FILE`, under the same command-line overrides as the replay's own
/// configuration; like a SIGHUP, it may change `[detectors]` only.
fn reconfigure_at(
    arg: &str,
    running: &Config,
    args: &ReplayArgs,
) -> Result<swipeguard::replay::ReconfigureAt> {
    let (position, file) = arg
        .split_once('=')
        .with_context(|| format!("--reconfigure-at {arg:?}: expected POSITION=FILE"))?;
    let position: u64 = position
        .trim()
        .parse()
        .with_context(|| format!("--reconfigure-at {arg:?}: {position:?} is not a row count"))?;
    let path = std::path::Path::new(file.trim());
    let config = Config::load(Some(path))
        .with_context(|| format!("{} is not a valid configuration", path.display()))?;
    let config = with_overrides(config, args)?;
    if let Some(key) = swipeguard::daemon::reload::outside_detectors(running, &config) {
        bail!("--reconfigure-at {arg:?}: {key} changed: only [detectors] tables change at a position (as on SIGHUP)");
    }
    Ok(swipeguard::replay::ReconfigureAt {
        position,
        config: config.engine_config(),
        name: path.display().to_string(),
    })
}

/// The input half of replay's options, as `replay` and `diff` take it.
fn input_options(input: InputArgs) -> Result<ReplayOptions> {
    Ok(ReplayOptions {
        format: forced_format(input.format.as_deref(), input.delimiter.as_deref())?,
        files: input.files,
        mapping: input.mapping,
        sort: input.sort,
        rejects: input.rejects,
        progress: !input.no_progress,
        ..ReplayOptions::default()
    })
}

/// `--format` / `--delimiter` as a forced input format.
fn forced_format(format: Option<&str>, delimiter: Option<&str>) -> Result<Option<Format>> {
    Ok(match (format, delimiter) {
        (Some("jsonl"), _) => Some(Format::Jsonl),
        (_, Some(d)) => Some(Format::Csv {
            delimiter: parse_delimiter(d)?,
        }),
        (Some("csv"), None) => Some(Format::Csv { delimiter: b',' }),
        _ => None,
    })
}

fn parse_delimiter(d: &str) -> Result<u8> {
    match d {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        d if d.len() == 1 => Ok(d.as_bytes()[0]),
        _ => bail!("--delimiter must be one character or `tab`, not {d:?}"),
    }
}

fn run_simulate(args: SimulateArgs) -> Result<()> {
    let scenarios = match args.scenarios.as_slice() {
        [one] if one == "all" => Scenario::ALL.to_vec(),
        [one] if one == "none" => Vec::new(),
        names => names
            .iter()
            .map(|n| {
                Scenario::parse(n).with_context(|| format!("--scenarios: unknown scenario {n:?}"))
            })
            .collect::<Result<_>>()?,
    };
    let start = chrono::NaiveDate::parse_from_str(&args.start, "%Y-%m-%d")
        .with_context(|| format!("--start {:?} is not YYYY-MM-DD", args.start))?;
    let start_ms = start
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_millis()
        - 8 * 3_600_000;
    let opts = SimOptions {
        cards: args.cards,
        days: args.days,
        seed: args.seed,
        start_ms,
        scenarios,
        fraud_share: args.fraud_share,
    };
    let mut sink: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let started = std::time::Instant::now();
    let stats = simulate(&opts, &mut *sink)?;
    let elapsed: Duration = started.elapsed();
    eprintln!(
        "simulated {} cards over {} days: {} events in {:.1} s",
        stats.cards,
        args.days,
        stats.events,
        elapsed.as_secs_f64()
    );
    for (name, (cards, events)) in &stats.scenarios {
        eprintln!("  {name:<18} {cards} cards, {events} events");
    }
    Ok(())
}
