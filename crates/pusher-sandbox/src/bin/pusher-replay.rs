//! `pusher-replay`: publish a captured Kamailio message to RabbitMQ, as Kamailio would.

use clap::Parser;

/// Publish a captured Kamailio message (reg_success or push_req) to the broker.
#[derive(Debug, Parser)]
struct Args {
    /// Broker URI.
    #[arg(
        long,
        env = "PUSHER_AMQP_URI",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp: String,
    /// Capture file (JSON lines with exchange, routing_key, body).
    #[arg(long)]
    fixture: std::path::PathBuf,
    /// Event-Name to pick.
    #[arg(long, default_value = "reg_success")]
    event: String,
    /// Which message of that event (0 = first).
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// Field overrides, KEY=JSON (repeatable), e.g. 'Custom-Channel-Vars={"Account-ID":"…"}'.
    #[arg(long = "set")]
    set: Vec<String>,
    /// Print the body that was published.
    #[arg(long)]
    print: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.fixture)?;
    let mut msg = pusher_sandbox::replay::pick(&text, &args.event, args.index)?;
    pusher_sandbox::replay::apply_overrides(&mut msg.body, &args.set)?;
    msg.routing_key = pusher_sandbox::replay::routing_key_for(&msg);
    let body = serde_json::to_vec(&msg.body)?;
    let conn = pusher_io::amqp::connect(&args.amqp, "pusher-replay").await?;
    let publisher = pusher_io::amqp::Publisher::new(&conn).await?;
    publisher
        .publish_json(
            &msg.exchange,
            &msg.routing_key,
            &body,
            lapin::BasicProperties::default(),
        )
        .await?;
    if args.print {
        println!("{}", serde_json::to_string_pretty(&msg.body)?);
    }
    eprintln!(
        "published {} to {} ({})",
        args.event, msg.exchange, msg.routing_key
    );
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}
