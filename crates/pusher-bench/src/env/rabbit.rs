//! The broker side: a vhost of our own (made and removed with `rabbitmqctl`), and the
//! bench's control connection that publishes, reads queue depth and counts drops.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ExchangeKind};
use serde_json::json;

use super::rand_hex;

/// Where the shared queue dead-letters what it drops (bench vhost only, via a policy).
pub const DROPPED_EXCHANGE: &str = "bench.dropped";
/// Queue counting the dropped messages.
pub const DROPPED_QUEUE: &str = "bench.dropped";

/// Runs `rabbitmqctl` (stdin closed) and returns its stdout.
pub fn rabbitmqctl(args: &[&str]) -> Result<String> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("Failed to run rabbitmqctl (scripts/services.sh installs RabbitMQ)")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A vhost of our own with a policy that dead-letters everything the shared queue drops
/// (x-max-length overflow or TTL) into [`DROPPED_QUEUE`]; deleted on drop.
#[derive(Debug)]
pub struct Vhost {
    /// Name.
    pub name: String,
    base_uri: String,
}

impl Vhost {
    /// Creates it (three `rabbitmqctl` calls, ~1 s each).
    pub fn create(base_uri: &str) -> Result<Self> {
        let name = format!("pusher-bench-{}", rand_hex(8));
        rabbitmqctl(&["-q", "add_vhost", &name])?;
        let vhost = Self {
            name,
            base_uri: base_uri.to_string(),
        };
        rabbitmqctl(&[
            "-q",
            "set_permissions",
            "-p",
            &vhost.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ])?;
        let policy = json!({ "dead-letter-exchange": DROPPED_EXCHANGE }).to_string();
        rabbitmqctl(&[
            "-q",
            "set_policy",
            "-p",
            &vhost.name,
            "--apply-to",
            "queues",
            "bench-count-drops",
            &format!("^{}$", pusher_io::amqp::QUEUE),
            &policy,
        ])?;
        Ok(vhost)
    }

    /// Broker URI of this vhost.
    pub fn uri(&self) -> String {
        let root = self
            .base_uri
            .rsplit_once('/')
            .map(|(r, _)| r)
            .unwrap_or(&self.base_uri);
        format!("{root}/{}", self.name)
    }

    /// Bytes the broker sent to each connection, with the connection's client properties
    /// (they hold its name) (for per-instance
    /// shares: every delivery of the same message costs the same bytes).
    pub fn send_octets(&self) -> Result<Vec<(String, u64)>> {
        let out = rabbitmqctl(&[
            "-q",
            "list_connections",
            "-p",
            &self.name,
            "client_properties",
            "send_oct",
            "--no-table-headers",
        ])?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let (name, oct) = l.trim().rsplit_once(char::is_whitespace)?;
                Some((name.trim().to_string(), oct.trim().parse().ok()?))
            })
            .collect())
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_vhost", &self.name])
            .stdin(Stdio::null())
            .output();
    }
}

/// The bench's control connection: publishing, queue depth, drop counting.
#[derive(Debug)]
pub struct Broker {
    /// Connection (kept open).
    pub conn: Connection,
    /// Confirm-mode publishing channel.
    pub publish: Channel,
    /// Channel for passive declares (queue depth) and the drop counter.
    pub control: Channel,
}

impl Broker {
    /// Connects and declares the exchanges and the drop counter.
    pub async fn connect(uri: &str) -> Result<Self> {
        let conn = pusher_io::amqp::connect(uri, "pusher-bench").await?;
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await?;
        let control = conn.create_channel().await?;
        pusher_io::amqp::declare_exchanges(&control).await?;
        control
            .exchange_declare(
                DROPPED_EXCHANGE.into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        control
            .queue_declare(
                DROPPED_QUEUE.into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        control
            .queue_bind(
                DROPPED_QUEUE.into(),
                DROPPED_EXCHANGE.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            conn,
            publish,
            control,
        })
    }

    /// Ready messages in the shared queue (passive declare), `None` if it does not exist.
    pub async fn ready(&self) -> Result<u32> {
        let q = passive_declare(&self.control, pusher_io::amqp::QUEUE)
            .await
            .context("the shared queue does not exist (no consumer?)")?;
        Ok(q.message_count())
    }

    /// Waits until the shared queue exists and has `consumers` consumers.
    pub async fn wait_consumers(&self, consumers: u32, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            // A failed passive declare closes the channel: probe on a throwaway one.
            let ch = self.conn.create_channel().await?;
            let got = passive_declare(&ch, pusher_io::amqp::QUEUE)
                .await
                .map(|q| q.consumer_count())
                .unwrap_or(0);
            let _ = ch.close(200, "probe".into()).await;
            if got >= consumers {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the shared queue has {got} consumers, wanted {consumers}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Messages dead-lettered by the shared queue since the last [`Broker::reset_dropped`].
    pub async fn dropped(&self) -> Result<u32> {
        let q = passive_declare(&self.control, DROPPED_QUEUE).await?;
        Ok(q.message_count())
    }

    /// Empties the drop counter.
    pub async fn reset_dropped(&self) -> Result<()> {
        self.control
            .queue_purge(DROPPED_QUEUE.into(), QueuePurgeOptions::default())
            .await?;
        Ok(())
    }
}

/// A passive `queue.declare`: the queue's message and consumer counts. If the queue does
/// not exist the broker refuses it and closes `channel`.
async fn passive_declare(channel: &Channel, queue: &str) -> lapin::Result<lapin::Queue> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}
