//! `pusher-bench` (`make bench`, issue #6): the real `pusherd` binary against raw
//! baselines measured in the same run on the same local services (RabbitMQ,
//! pouchdb-server, the mock APNs with 20 ms added latency), scenarios P1–P10.
//!
//! It starts nothing but `pusherd` children, the bare baseline consumer (this binary's
//! `amqp-consumer` subcommand) and an in-process mock APNs; the services come from
//! `scripts/services.sh up` (run by `scripts/bench.sh`). Prints one Markdown table.

mod baseline;
mod env;
mod load;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Benchmark pusherd against raw baselines (issue #6)")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Multiply every message count by this (0.1 for a quick smoke run).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// The service binary under test.
    #[arg(long, default_value = "target/release/pusherd")]
    pusherd: PathBuf,
    /// Logs, PKI and the result table go here.
    #[arg(long, default_value = ".run/bench")]
    run_dir: PathBuf,
    /// PUSHER_PREFETCH for pusherd, and the baseline consumer's prefetch.
    #[arg(long, default_value_t = 200)]
    prefetch: u16,
    /// P10's account databases (default 2,000 × scale).
    #[arg(long)]
    p10_dbs: Option<u64>,
    /// Scenario groups to run: p1, p23, p456, p8, p9, p10 (default: all; P7 comes from
    /// every start).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// (internal) the bare lapin consume-and-ack loop, run as a child process.
    AmqpConsumer {
        #[arg(long)]
        uri: String,
        #[arg(long)]
        prefetch: u16,
        #[command(flatten)]
        pipeline: baseline::PipelineArgs,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BENCH_LOG")
                .unwrap_or_else(|_| "warn,lapin=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(Cmd::AmqpConsumer {
        uri,
        prefetch,
        pipeline,
    }) = &cli.cmd
    {
        return baseline::consumer_main(uri, *prefetch, pipeline).await;
    }
    run(cli).await
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem_gib:.1} GiB RAM, load average before the run: {load}")
}

async fn run(cli: Cli) -> Result<()> {
    let root = std::env::current_dir()?;
    let bin = env::repo_path(&root, &cli.pusherd);
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p pusher --bins` (scripts/bench.sh does)",
            bin.display()
        );
    }
    let run_dir = env::repo_path(&root, &cli.run_dir);
    let amqp = std::env::var("PUSHER_TEST_AMQP_URI")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let couch =
        std::env::var("PUSHER_TEST_COUCH_URL").unwrap_or_else(|_| "http://127.0.0.1:15984".into());
    let all = cli.only.is_empty();
    let has = |g: &str| all || cli.only.iter().any(|o| o.eq_ignore_ascii_case(g));
    let select = scenarios::Select {
        p1: has("p1") || has("p23") || has("p8"),
        p23: has("p23"),
        p456: has("p456") || has("p8"),
        p8: has("p8"),
        p9: has("p9"),
        p10: has("p10"),
    };
    let machine = machine();
    let started = Instant::now();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    eprintln!(
        "==> bench: setting up (vhost, account, {} devices, mock APNs)",
        1000
    );
    let mut counts = scenarios::Counts::scaled(cli.scale);
    if let Some(dbs) = cli.p10_dbs {
        counts.p10_dbs = dbs;
    }
    let mut bench = scenarios::Bench::setup(
        &amqp,
        &couch,
        bin,
        run_dir.clone(),
        cli.prefetch,
        counts.clone(),
    )
    .await
    .context("Failed to set up the bench")?;
    let result = async {
        if select.p1 {
            eprintln!("==> P1: no-rule reg_success vs the bare consumer");
            bench.p1().await.context("P1")?;
        }
        if select.p23 {
            eprintln!("==> P2/P3: matching reg_success (unchanged, changed) vs bare PUT loop");
            bench.p23().await.context("P2/P3")?;
        }
        if select.p456 {
            eprintln!("==> P4/P5/P6: push_req to the mock APNs vs bare HTTP/2 and the broker");
            bench.p456().await.context("P4/P5/P6")?;
        }
        if select.p8 {
            eprintln!("==> P8: three instances");
            bench.p8().await.context("P8")?;
        }
        if select.p9 {
            eprintln!("==> P9: registration storm on a cold cache with a CouchDB outage");
            bench.p9().await.context("P9")?;
        }
        if select.p10 {
            eprintln!("==> P10: many account databases");
            bench.p10().await.context("P10")?;
        }
        anyhow::Ok(())
    }
    .await;
    bench.p7();
    let mut rows = bench.rows.clone();
    // By number: P10 after P9.
    rows.sort_by_key(|r| {
        r.id.trim_start_matches('P')
            .parse::<u32>()
            .unwrap_or(u32::MAX)
    });
    let mut out = String::new();
    out.push_str(&format!(
        "Run {date}, {:.0} s, scale {}, prefetch {}; {machine}.\n\n",
        started.elapsed().as_secs_f64(),
        cli.scale,
        cli.prefetch
    ));
    out.push_str(&report::table(&rows));
    out.push('\n');
    out.push_str("`dropped`: messages the shared queue dropped (dead-lettered by a bench-only policy) or published but never processed; `a / b` = ours / baseline.\n\n");
    for n in &bench.notes {
        out.push_str(&format!("- {n}\n"));
    }
    println!("{out}");
    std::fs::write(run_dir.join("results.md"), &out)?;
    eprintln!("==> table also in {}", run_dir.join("results.md").display());
    bench.cleanup().await;
    result
}
