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
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    bedda_collab::sys::raise_fd_limit();
    let config = match &cli.command {
        Command::Serve(c) | Command::Migrate(c) => c.clone(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| "info".into()))
        // No credential in any log line (issue 11).
        .with_writer(|| bedda_collab::redact::Stdout)
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
