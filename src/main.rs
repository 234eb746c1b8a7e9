//! The `embedgate` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use embedgate::allowlist::Principal;
use embedgate::config::{Loaded, Settings};
use embedgate::embed::EmbedRewrite;
use embedgate::gateway::Gateway;
use embedgate::reload::{self, Reloader};
use embedgate::runtime::Runtime;
use embedgate::{admin, demo, logging, server};

/// Edge gateway that admits only allowlisted sessions to pages with protected
/// video embeds, and mints a token for each page view into every embed.
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
    let config_path = cli.config.config;
    // The error of a failed load already names file, line and column.
    let loaded = Settings::load(&config_path)?;
    // Held to the end: dropping it flushes the log writers.
    let _logs = logging::init(&loaded.settings.log).context("cannot start logging")?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let workers = loaded.settings.server.workers;
            async_runtime(workers)?.block_on(run(loaded))
        }
        Command::Demo { listen, cms_listen } => {
            let workers = loaded.settings.server.workers;
            async_runtime(workers)?.block_on(demo::run(loaded, listen, cms_listen))
        }
        Command::Check => {
            let runtime = build_once(loaded)?;
            println!(
                "{}: ok ({} routes, {} embeds, {} allowlisted sessions)",
                config_path.display(),
                runtime.routes.len(),
                runtime.embeds.len(),
                runtime.gate.sessions().known_sessions().unwrap_or(0)
            );
            Ok(())
        }
        Command::Mint { url } => {
            let runtime = build_once(loaded)?;
            let now = embedgate::token::unix_now();
            match runtime
                .embeds
                .rewrite(&url, now, &Principal::operator())
                .map(|(_, rewrite)| rewrite)
            {
                Some(EmbedRewrite::Minted(with_token)) => {
                    println!("{with_token}");
                    Ok(())
                }
                Some(EmbedRewrite::Unsafe(err)) => bail!("{err}"),
                Some(EmbedRewrite::Unentitled(_)) => bail!("the operator may mint every video"),
                None => bail!(
                    "{url} matches no [[embed]] src pattern in {}",
                    config_path.display()
                ),
            }
        }
        Command::Verify { token } => {
            let runtime = build_once(loaded)?;
            let now = embedgate::token::unix_now();
            let mut last_error = None;
            for (index, embed) in runtime.embeds.iter().enumerate() {
                match embed.minter().signer().verify(&token, now) {
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

/// Builds the runtime on a one-thread async runtime, for the commands that do not serve.
fn build_once(loaded: Loaded) -> anyhow::Result<Runtime> {
    let builder = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(builder.block_on(Runtime::from_loaded(loaded, None))?)
}

fn async_runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn run(loaded: Loaded) -> anyhow::Result<()> {
    let runtime = Runtime::from_loaded(loaded, None).await?;
    let settings = runtime.settings().clone();
    reload::warn_if_nobody_gets_in(&runtime);
    let gateway = Arc::new(Gateway::new(runtime));
    // Listening for SIGHUP before the listener is announced: a reload
    // requested from then on must not end the process.
    let reloader = Reloader::new(gateway.clone()).context("cannot listen for SIGHUP")?;
    let addr = settings.server.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let mut tasks = vec![tokio::spawn(reloader.run())];
    if let Some(redirect) = settings
        .server
        .tls
        .as_ref()
        .and_then(|t| t.redirect.as_ref())
    {
        let redirect_listener = tokio::net::TcpListener::bind(redirect.listen)
            .await
            .with_context(|| format!("cannot listen on {} (redirect)", redirect.listen))?;
        tracing::info!(
            "redirecting http://{} to https",
            redirect_listener.local_addr().unwrap_or(redirect.listen)
        );
        let https_port = listener.local_addr().map_or(addr.port(), |a| a.port());
        tasks.push(tokio::spawn(server::serve_redirect(
            redirect_listener,
            gateway.clone(),
            https_port,
        )));
    }
    if let Some(admin_settings) = &settings.admin {
        let admin_addr = admin_settings.listen;
        let admin_listener = tokio::net::TcpListener::bind(admin_addr)
            .await
            .with_context(|| format!("cannot listen on {admin_addr} (admin)"))?;
        tracing::info!(
            "admin endpoints on http://{}",
            admin_listener.local_addr().unwrap_or(admin_addr)
        );
        let readiness = Arc::new(admin::Readiness::default());
        tasks.push(tokio::spawn(admin::check_readiness(
            gateway.clone(),
            readiness.clone(),
        )));
        tasks.push(tokio::spawn(admin::serve(
            admin_listener,
            gateway.clone(),
            readiness,
        )));
    }
    #[cfg(unix)]
    if settings.log.access_file.is_some() {
        // Listening now: a SIGUSR1 from here on must reopen, not end the process.
        let usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
            .context("cannot listen for SIGUSR1")?;
        tasks.push(tokio::spawn(reopen_access_log_on_sigusr1(usr1)));
    }
    server::serve(listener, gateway, server::shutdown_signal()).await;
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// Reopens the access log file on each SIGUSR1 (after logrotate moved it).
#[cfg(unix)]
async fn reopen_access_log_on_sigusr1(mut usr1: tokio::signal::unix::Signal) {
    while usr1.recv().await.is_some() {
        match logging::reopen_access_file() {
            Ok(()) => tracing::info!("SIGUSR1: access log reopened"),
            Err(err) => tracing::error!(error = %err, "SIGUSR1: cannot reopen the access log"),
        }
    }
}
