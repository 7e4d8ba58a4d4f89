//! Real server processes (the built binary) forming a cluster on one test database.

use super::{Api, TestDb};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Lease settings short enough for tests to watch a node die.
pub const LEASE_MS: u64 = 1500;

/// One `bedda-collab serve` process.
pub struct Node {
    pub api: Api,
    child: Child,
    /// Every line the node wrote to standard output (its log included).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl std::ops::Deref for Node {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Node {
    /// Starts a node on a free port against `db`, with `extra` flags.
    pub async fn start(db: &TestDb, extra: &[&str]) -> Node {
        Self::start_with_env(db, extra, &[]).await
    }

    /// Starts a node with extra environment variables too.
    pub async fn start_with_env(db: &TestDb, extra: &[&str], env: &[(&str, &str)]) -> Node {
        Self::start_on(&db.url, extra, env).await
    }

    /// Starts a node against any database URL (e.g. a Postgres of the test's own). A flag in
    /// `extra` replaces the test default of the same name.
    pub async fn start_on(database_url: &str, extra: &[&str], env: &[(&str, &str)]) -> Node {
        let lease = LEASE_MS.to_string();
        let defaults = [
            ("--node-lease-ms", lease.as_str()),
            ("--node-heartbeat-ms", "250"),
            ("--argon2-memory-kib", "4096"),
            ("--ws-frames-per-second", "1000"),
            ("--ws-artifact-frames-per-second", "1000"),
            // Quiet unless the test asks for a log level of its own.
            ("--log", "warn"),
        ];
        let mut child = Command::new(env!("CARGO_BIN_EXE_bedda-collab"))
            // Tests register many users from 127.0.0.1; a `--register-rate-per-address` flag
            // (tests/foundation/auth_limits.rs) overrides this.
            .env("REGISTER_RATE_PER_ADDRESS", "100000")
            .envs(env.iter().copied())
            .args(["serve", "--bind", "127.0.0.1:0", "--database-url", database_url])
            .args(
                defaults
                    .iter()
                    .filter(|(flag, _)| !extra.contains(flag))
                    .flat_map(|(flag, value)| [*flag, *value]),
            )
            .args(extra)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the server binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
                .await
                .expect("the node reports its port in time")
                .unwrap()
                .expect("the node printed its address");
            if let Some(rest) = line.strip_prefix("bedda-collab listening on http://") {
                break rest.rsplit(':').next().unwrap().parse::<u16>().unwrap();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        Node {
            api: Api::new(port),
            child,
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    /// Sends a signal by name (`STOP`, `CONT`, …).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL: the process dies at once, cleaning nothing up.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM; returns how long the process took to exit.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, std::time::Duration) {
        let started = std::time::Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(std::time::Duration::from_secs(20), self.child.wait())
            .await
            .expect("the node exits after SIGTERM")
            .unwrap();
        (exit, started.elapsed())
    }
}
