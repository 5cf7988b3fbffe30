//! Every setting `pusherd` and `pusherctl` read: TOML key, environment variable,
//! default and one line of help ([`KEYS`], in `--print-config` order).

/// Default broker URI (Kazoo's default `amqp_uri`).
pub const DEFAULT_AMQP_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Default CouchDB URL.
pub const DEFAULT_COUCH_URL: &str = "http://127.0.0.1:5984";
/// Default listen address of `/health` and `/ready`.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8099";
/// Default prefetch: unacked deliveries per instance. Kazoo's shared queue keeps at most
/// 100 ready messages and drops the oldest beyond that; when an instance dies, its unacked
/// deliveries go back to the queue on top of the backlog, so prefetch + backlog must stay
/// ≤ 100 or the broker drops messages. 64 leaves room for a backlog of 36 (a SIGKILL of one
/// of two saturated instances lost 0 at 64 and 48, 114 at 200: BENCHMARKS.md, "SIGKILL and
/// the prefetch"); pushes per app in flight default to ¾ of it (48); a stalled app defers its pushes
/// beyond that plus 4 waiters, so the others keep the rest of the window.
pub const DEFAULT_PREFETCH: u16 = 64;
/// Where Kazoo looks for its `config.ini` when `KAZOO_CONFIG` is unset, in its order
/// (`kazoo_config_init`): the Kazoo 3 path, then the Kazoo 4 one.
pub const DEFAULT_KAZOO_CONFIG_PATHS: &[&str] =
    &["/etc/kazoo/config.ini", "/etc/kazoo/core/config.ini"];

/// One setting: its TOML key, its environment variable, its default (as text) and meaning.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Key in the `PUSHER_CONFIG` TOML file.
    pub key: &'static str,
    /// Environment variable.
    pub env: &'static str,
    /// Default, as text (`None`: computed, see `help`).
    pub default: Option<&'static str>,
    /// One line for `--help`.
    pub help: &'static str,
}

/// Every setting, in the order `--print-config` shows them.
pub const KEYS: &[Key] = &[
    Key {
        key: "amqp_uri",
        env: "PUSHER_AMQP_URI",
        default: Some(DEFAULT_AMQP_URI),
        help: "RabbitMQ broker: amqp:// or amqps:// (TLS options as query parameters)",
    },
    Key {
        key: "couch_url",
        env: "PUSHER_COUCH_URL",
        default: Some(DEFAULT_COUCH_URL),
        help: "CouchDB, credentials allowed (http://user:pass@host:5984)",
    },
    Key {
        key: "zone",
        env: "PUSHER_ZONE",
        default: Some("local"),
        help: "zone scope in system_config lookups",
    },
    Key {
        key: "node",
        env: "PUSHER_NODE",
        default: None,
        help: "node scope in system_config lookups (default pusher@<hostname>)",
    },
    Key {
        key: "http_addr",
        env: "PUSHER_HTTP_ADDR",
        default: Some(DEFAULT_HTTP_ADDR),
        help: "/health, /ready and /metrics listen address, or off",
    },
    Key {
        key: "prefetch",
        env: "PUSHER_PREFETCH",
        default: Some("64"),
        help: "unacked deliveries = concurrent handlers",
    },
    Key {
        key: "retry_budget_ms",
        env: "PUSHER_RETRY_BUDGET_MS",
        default: Some("45000"),
        help: "transient-failure retry time per message",
    },
    Key {
        key: "shutdown_grace_ms",
        env: "PUSHER_SHUTDOWN_GRACE_MS",
        default: Some("4000"),
        help: "drain time after SIGTERM",
    },
    Key {
        key: "couch_timeout_ms",
        env: "PUSHER_COUCH_TIMEOUT_MS",
        default: Some("5000"),
        help: "per-request CouchDB timeout",
    },
    Key {
        key: "log_format",
        env: "PUSHER_LOG_FORMAT",
        default: Some("text"),
        help: "text or json; RUST_LOG sets levels",
    },
    Key {
        key: "extra_ca_file",
        env: "PUSHER_EXTRA_CA_FILE",
        default: None,
        help: "PEM roots added to the system roots for provider TLS (default none)",
    },
    Key {
        key: "fcm_url",
        env: "PUSHER_FCM_URL",
        default: Some(pusher_io::fcm::DEFAULT_BASE_URL),
        help: "FCM base URL",
    },
    Key {
        key: "push_deadline_ms",
        env: "PUSHER_PUSH_DEADLINE_MS",
        default: Some("20000"),
        help: "time a push may take, retries included",
    },
    Key {
        key: "provider_timeout_ms",
        env: "PUSHER_PROVIDER_TIMEOUT_MS",
        default: Some("10000"),
        help: "per-request APNs/FCM timeout",
    },
    Key {
        key: "max_in_flight_per_app",
        env: "PUSHER_MAX_IN_FLIGHT_PER_APP",
        default: None,
        help: "in-flight pushes per app (default 3/4 of prefetch)",
    },
    Key {
        key: "extra_bindings",
        env: "PUSHER_EXTRA_BINDINGS",
        default: None,
        help: "more bindings of pusher_shared_listener: exchange:routing_key, comma-separated (default none)",
    },
];
