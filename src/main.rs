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
                tracing::info!(port = app.port, "listening");
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
