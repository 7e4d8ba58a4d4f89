//! Server settings: command-line flags with environment-variable fallbacks (clap).

use clap::Args;
use std::net::SocketAddr;

/// Settings for `bedda-collab serve`. Every flag can also be set through the environment
/// variable named next to it.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address and port to listen on (port 0 picks a free port).
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Postgres connection URL. The database is created if missing and migrated on start.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/bedda_collab"
    )]
    pub database_url: String,

    /// Maximum number of pooled database connections.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,

    /// Longest wait for a pooled connection (or for opening one), in milliseconds; past it
    /// the request fails with `service_unavailable` instead of waiting on.
    #[arg(long, env = "DATABASE_CHECKOUT_TIMEOUT_MS", default_value_t = 5_000)]
    pub database_checkout_timeout_ms: u64,

    /// Public base URL of the web app, used to build invitation links.
    #[arg(long, env = "PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    pub public_url: String,

    /// SMTP server for outgoing mail, e.g. `smtps://user:pass@mail.example.com` or
    /// `smtp://127.0.0.1:2525`. Without it, invitation links are written to the log.
    #[arg(long, env = "SMTP_URL")]
    pub smtp_url: Option<String>,

    /// Sender address of outgoing mail.
    #[arg(long, env = "SMTP_FROM", default_value = "bedda-collab <no-reply@bedda.ai>")]
    pub smtp_from: String,

    /// How often the mail outbox is polled for unsent mail, in milliseconds.
    #[arg(long, env = "OUTBOX_POLL_MS", default_value_t = 2000)]
    pub outbox_poll_ms: u64,

    /// Lifetime of a login session, in hours.
    #[arg(long, env = "SESSION_TTL_HOURS", default_value_t = 24 * 30)]
    pub session_ttl_hours: i64,

    /// Login attempts allowed per account from one client address per minute, counted
    /// across the cluster.
    #[arg(long, env = "LOGIN_RATE_PER_ACCOUNT", default_value_t = 10)]
    pub login_rate_per_account: u32,

    /// Login attempts allowed per client address per minute, counted across the cluster.
    #[arg(long, env = "LOGIN_RATE_PER_ADDRESS", default_value_t = 30)]
    pub login_rate_per_address: u32,

    /// Failed logins per account from all addresses in 15 minutes before the account backs
    /// off exponentially (up to 15 minutes) for every address it has not logged in from.
    #[arg(long, env = "LOGIN_ACCOUNT_FAILURES", default_value_t = 50)]
    pub login_account_failures: u32,

    /// Registrations allowed per client address per hour, counted across the cluster.
    #[arg(long, env = "REGISTER_RATE_PER_ADDRESS", default_value_t = 20)]
    pub register_rate_per_address: u32,

    /// Argon2id memory cost in KiB (OWASP minimum is 19456).
    #[arg(long, env = "ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,

    /// Threads that hash and verify passwords, each holding one Argon2 buffer
    /// (`--argon2-memory-kib`) for good; 0 = one per core.
    #[arg(long, env = "PASSWORD_HASH_WORKERS", default_value_t = 0)]
    pub password_hash_workers: usize,

    /// Password checks that may wait for a hashing thread; more are refused with
    /// `service_unavailable` and `Retry-After`.
    #[arg(long, env = "PASSWORD_HASH_QUEUE", default_value_t = 64)]
    pub password_hash_queue: usize,

    /// Browser origins allowed to open WebSockets (comma-separated; `*` = any). Default:
    /// the origin of `--public-url` (for a loopback URL, every loopback spelling on its port).
    /// Requests without `Origin` (non-browsers) are allowed.
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Server ping interval on WebSockets, in milliseconds.
    #[arg(long, env = "WS_HEARTBEAT_MS", default_value_t = 15_000)]
    pub ws_heartbeat_ms: u64,

    /// A WebSocket client silent for this long is dropped, in milliseconds.
    #[arg(long, env = "WS_CLIENT_TIMEOUT_MS", default_value_t = 45_000)]
    pub ws_client_timeout_ms: u64,

    /// Largest WebSocket frame accepted from a client, in bytes.
    #[arg(long, env = "WS_MAX_FRAME_BYTES", default_value_t = 131_072)]
    pub ws_max_frame_bytes: usize,

    /// Outbound bytes queued for one client before it is disconnected as too slow
    /// (close code 4008); it can reconnect and resume.
    #[arg(long, env = "WS_OUTBOUND_BUFFER_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub ws_outbound_buffer_bytes: usize,

    /// Frames a client may send per second (bursts of twice that).
    #[arg(long, env = "WS_FRAMES_PER_SECOND", default_value_t = 20)]
    pub ws_frames_per_second: u32,

    /// Client frames per second on `/ws/artifacts` (y-websocket updates and awareness; bursts
    /// of twice that). Over it the socket closes with 4429 and the client resyncs on reconnect.
    #[arg(long, env = "WS_ARTIFACT_FRAMES_PER_SECOND", default_value_t = 60)]
    pub ws_artifact_frames_per_second: u32,

    /// A session actor with no subscribers stops after this long, in milliseconds.
    #[arg(long, env = "SESSION_IDLE_MS", default_value_t = 30_000)]
    pub session_idle_ms: u64,

    /// Replays of missed events (a `subscribe` with `after_seq` more than a page behind)
    /// running at once on this node; more wait their turn.
    #[arg(long, env = "REPLAYS_PER_NODE", default_value_t = 8)]
    pub replays_per_node: usize,

    /// Replays running at once for one user on this node; their further sockets wait.
    #[arg(long, env = "REPLAYS_PER_USER", default_value_t = 2)]
    pub replays_per_user: usize,

    /// A typing indicator expires after this long without a refresh, in milliseconds.
    #[arg(long, env = "TYPING_TTL_MS", default_value_t = 5_000)]
    pub typing_ttl_ms: u64,

    /// Emails of server administrators (comma-separated): they may read `/api/admin/*`.
    #[arg(long, env = "ADMIN_EMAILS", value_delimiter = ',')]
    pub admin_emails: Vec<String>,

    /// The address other nodes and operators know this node by (default: http://<bind>).
    #[arg(long, env = "ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// A node whose heartbeat stops is considered dead after this long, in milliseconds.
    #[arg(long, env = "NODE_LEASE_MS", default_value_t = 10_000)]
    pub node_lease_ms: u64,

    /// How often a node renews its lease and looks for dead nodes, in milliseconds.
    #[arg(long, env = "NODE_HEARTBEAT_MS", default_value_t = 2_000)]
    pub node_heartbeat_ms: u64,

    /// Ephemeral traffic (typing, presence) is batched into one NOTIFY per this many
    /// milliseconds.
    #[arg(long, env = "BUS_TICK_MS", default_value_t = 50)]
    pub bus_tick_ms: u64,

    /// Most writes a topic's group-commit writer puts in one transaction (chat messages,
    /// document updates).
    #[arg(long, env = "GROUP_COMMIT_MAX", default_value_t = 64)]
    pub group_commit_max: usize,

    /// How long a topic actor waits for a missing event before reading it from the log, in
    /// milliseconds.
    #[arg(long, env = "GAP_FILL_MS", default_value_t = 250)]
    pub gap_fill_ms: u64,

    /// Base URL of an OpenAI-compatible API (OpenAI, vLLM, Ollama, llama.cpp server), e.g.
    /// `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`. Unset: the built-in
    /// offline model answers.
    #[arg(long, env = "AI_BASE_URL")]
    pub ai_base_url: Option<String>,

    /// API key sent as `Authorization: Bearer` to the AI provider.
    #[arg(long, env = "AI_API_KEY", hide_env_values = true)]
    pub ai_api_key: Option<String>,

    /// Models offered (comma-separated; the first is the default).
    #[arg(long, env = "AI_MODELS", value_delimiter = ',', default_value = "gpt-4o-mini")]
    pub ai_models: Vec<String>,

    /// A reply that stays silent this long fails, in milliseconds.
    #[arg(long, env = "AI_TIMEOUT_MS", default_value_t = 60_000)]
    pub ai_timeout_ms: u64,

    /// Reply text is sent to clients in chunks at most this often, in milliseconds.
    #[arg(long, env = "AI_CHUNK_MS", default_value_t = 75)]
    pub ai_chunk_ms: u64,

    /// The partial reply is checkpointed in Postgres this often, in milliseconds.
    #[arg(long, env = "AI_CHECKPOINT_MS", default_value_t = 1_000)]
    pub ai_checkpoint_ms: u64,

    /// Recent history sent with a question, in estimated tokens.
    #[arg(long, env = "AI_HISTORY_TOKENS", default_value_t = 3_000)]
    pub ai_history_tokens: usize,

    /// Most tokens a reply may have.
    #[arg(long, env = "AI_MAX_TOKENS", default_value_t = 1_024)]
    pub ai_max_tokens: u32,

    /// Delay between the offline model's words, in milliseconds.
    #[arg(long, env = "AI_OFFLINE_WORD_MS", default_value_t = 30)]
    pub ai_offline_word_ms: u64,

    /// For tests: wait this long before starting each AI reply, in milliseconds (0 = no
    /// wait). It widens the window between the commit of a question and the start of its
    /// reply, so a test can kill the node inside it. Never set it in production.
    #[arg(long, env = "AI_START_DELAY_MS", default_value_t = 0, hide = true)]
    pub ai_start_delay_ms: u64,

    /// Tries of an AI reply's start (the first, then one per heartbeat that takes it up
    /// again) before the reply ends `failed` for everyone in the session.
    #[arg(long, env = "AI_START_ATTEMPTS", default_value_t = 3)]
    pub ai_start_attempts: u32,

    /// For tests: how long an AI reply its node has not started waits before that node's
    /// heartbeat tries it again, in milliseconds.
    #[arg(long, env = "AI_RETRY_AFTER_MS", default_value_t = 30_000, hide = true)]
    pub ai_retry_after_ms: u64,

    /// How often the cluster's janitor runs, in milliseconds (one node at a time, under a
    /// Postgres advisory lock): it prunes expired connect tickets, artifact tokens and login
    /// sessions, and sent mail past `--outbox-retention-hours`.
    #[arg(long, env = "JANITOR_INTERVAL_MS", default_value_t = 300_000)]
    pub janitor_interval_ms: u64,

    /// How long sent mail stays in the outbox (for operators to check), in hours.
    #[arg(long, env = "OUTBOX_RETENTION_HOURS", default_value_t = 24 * 7)]
    pub outbox_retention_hours: u64,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info,bedda_collab=debug`.
    #[arg(long, env = "LOG", default_value = "info")]
    pub log: String,
}

impl Config {
    /// Settings for tests and embedding: defaults, with the given database.
    pub fn for_database(database_url: &str) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let mut config = Wrapper::parse_from(["bedda-collab"]).config;
        config.database_url = database_url.to_owned();
        config
    }
}
