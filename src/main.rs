//! The `embedgate` command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use embedgate::config::Config;
use embedgate::gateway::Gateway;
use embedgate::{demo, server};
use tracing_subscriber::EnvFilter;

/// Edge gateway that admits only allowlisted sessions to pages with protected
/// video embeds, and mints a fresh per-visitor token into every embed.
#[derive(Parser)]
#[command(name = "embedgate", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Args, Clone)]
struct ConfigArg {
    /// Path to the config file.
    #[arg(long, short, global = true, default_value = "gateway.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default when no subcommand is given).
    Run,
    /// Start the built-in sample CMS on loopback with the gateway in front of it, and print how to try it.
    Demo {
        /// Listen here instead of `server.listen` (port 0 picks a free one).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Run the sample CMS here instead of at `upstream.url` (port 0 picks a free one).
        #[arg(long)]
        cms_listen: Option<std::net::SocketAddr>,
    },
    /// Validate the config file and exit: 0 if it is good, 1 with the file, line, column and reason if not.
    Check,
    /// Print an embed URL with a freshly minted token, as a visitor would get it.
    Mint {
        /// The iframe URL, e.g. https://api.vod2.infomaniak.com/res/embed/1jhvl2uqa5rdf.html
        url: String,
    },
    /// Check a token against each embed's key: signature, start and expiry.
    Verify {
        /// The token (the value of the `token` query parameter).
        token: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    let config_path = cli.config.config;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let config = load(&config_path)?;
            runtime(config.server.workers)?.block_on(run(config))
        }
        Command::Demo { listen, cms_listen } => {
            let config = load(&config_path)?;
            runtime(config.server.workers)?.block_on(demo::run(config, listen, cms_listen))
        }
        Command::Check => {
            let config = load(&config_path)?;
            println!(
                "{}: ok ({} routes, {} embeds, {} allowlisted sessions)",
                config_path.display(),
                config.routes.len(),
                config.embeds.len(),
                config.allowlist.len()
            );
            Ok(())
        }
        Command::Mint { url } => {
            let config = load(&config_path)?;
            let now = embedgate::token::unix_now();
            for embed in &config.embeds {
                match embed.rewrite(&url, now) {
                    Some(Ok(with_token)) => {
                        println!("{with_token}");
                        return Ok(());
                    }
                    Some(Err(err)) => bail!("{err}"),
                    None => {}
                }
            }
            bail!(
                "{url} matches no [[embed]] src pattern in {}",
                config_path.display()
            )
        }
        Command::Verify { token } => {
            let config = load(&config_path)?;
            let now = embedgate::token::unix_now();
            let mut last_error = None;
            for (index, embed) in config.embeds.iter().enumerate() {
                match embed.minter().verify(&token, now) {
                    Ok(valid) => {
                        println!(
                            "valid for embed[{index}]: acl={} start={} expires={} ({}s left)",
                            valid.acl,
                            valid.start,
                            valid.end,
                            valid.end - now
                        );
                        return Ok(());
                    }
                    Err(err) => last_error = Some(err),
                }
            }
            match last_error {
                Some(err) => bail!("not valid: {err}"),
                None => bail!(
                    "no [[embed]] in {} to verify against",
                    config_path.display()
                ),
            }
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    // The error already names file, line and column.
    Config::load(path).map_err(anyhow::Error::from)
}

fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn run(config: Config) -> anyhow::Result<()> {
    let addr = config.server.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    server::serve(
        listener,
        Arc::new(Gateway::new(config)),
        server::shutdown_signal(),
    )
    .await;
    Ok(())
}

fn init_logging() {
    let filter =
        EnvFilter::try_from_env("EMBEDGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
