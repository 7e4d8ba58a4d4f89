//! Command line: `bedda-collab serve` runs the server.

use bedda_collab::app::Application;
use bedda_collab::config::Config;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bedda-collab",
    version,
    about = "Real-time collaboration server for bedda.ai"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create/migrate the database if needed and serve HTTP and WebSocket clients.
    Serve(Config),
    /// Create/migrate the database and exit.
    Migrate(Config),
}

fn main() {
    let cli = Cli::parse();
    raise_fd_limit();
    let config = match &cli.command {
        Command::Serve(c) | Command::Migrate(c) => c.clone(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| "info".into()))
        .init();
    let result = actix_web::rt::System::new().block_on(async move {
        match cli.command {
            Command::Serve(config) => {
                let app = Application::build(config).await?;
                // One machine-readable line on stdout, for scripts and the cluster tests.
                println!(
                    "bedda-collab listening on http://{}:{}",
                    app.state.config.bind.ip(),
                    app.port
                );
                tracing::info!(port = app.port, "listening");
                let handle = app.server.handle();
                let state = app.state.clone();
                actix_web::rt::spawn(async move {
                    shutdown_signal().await;
                    tracing::info!("shutting down");
                    state.shutdown().await;
                    handle.stop(true).await;
                });
                app.server.await?;
            }
            Command::Migrate(config) => {
                bedda_collab::db::ensure_database(&config.database_url).await?;
                bedda_collab::db::run_migrations(&config.database_url).await?;
            }
        }
        anyhow::Ok(())
    });
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Every WebSocket is a file descriptor: lift the open-file limit as far as allowed (past
/// the hard limit when privileged, up to the kernel's `nr_open`).
fn raise_fd_limit() {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    // SAFETY: plain libc calls on stack values.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let wanted = libc::rlimit {
            rlim_cur: nr_open.max(lim.rlim_max),
            rlim_max: nr_open.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
