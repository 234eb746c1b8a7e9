//! The `embedgate` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use embedgate::allowlist::{Principal, SessionKey};
use embedgate::config::{Loaded, Settings};
use embedgate::embed::EmbedRewrite;
use embedgate::gateway::Gateway;
use embedgate::listeners::{self, Listeners};
use embedgate::reload::{self, Reloader};
use embedgate::runtime::Runtime;
use embedgate::token::{Minter, Visitor};
use embedgate::{demo, logging, server};

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
    /// Start the sample CMS (with sign-in) and a sample video host on loopback, the gateway in front, and print how to try it in a browser.
    Demo {
        /// Listen here instead of `server.listen` (port 0 picks a free one).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Run the sample CMS here instead of at `upstream.url` (port 0 picks a free one).
        #[arg(long)]
        cms_listen: Option<std::net::SocketAddr>,
        /// Run the sample video host here instead of the port after the CMS's (port 0 picks a free one).
        #[arg(long)]
        video_listen: Option<std::net::SocketAddr>,
    },
    /// Validate the config file and exit: 0 if it is good, 1 with the file, line, column and reason if not.
    Check,
    /// Print an embed URL with a freshly minted token (local or remote), as a visitor would get it.
    Mint {
        /// The iframe URL, e.g. https://api.vod2.infomaniak.com/res/embed/1jhvl2uqa5rdf.html
        #[arg(required_unless_present = "share", conflicts_with_all = ["embed", "share"])]
        url: Option<String>,
        /// The embed, by its `name` (or its index in the config), whose src pattern makes the URL.
        #[arg(long, requires = "share")]
        embed: Option<String>,
        /// The video id put in the pattern's {share}.
        #[arg(long)]
        share: Option<String>,
        /// Mint for a visitor at this address (for `ip = true` tokens).
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
        /// Mint for this session id (for `id = true` tokens and per-visitor reuse).
        #[arg(long)]
        session: Option<String>,
    },
    /// Check a token: with --path, every check the route protecting that path
    /// makes (signature, window, ACL, ip); without, against each embed's key.
    Verify {
        /// The token (the value of the `token` query parameter).
        token: String,
        /// The request path the token is presented for, e.g. /hls/abc/seg1.ts.
        #[arg(long)]
        path: Option<String>,
        /// The client address the request comes from.
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
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
        Command::Demo {
            listen,
            cms_listen,
            video_listen,
        } => {
            let workers = loaded.settings.server.workers;
            async_runtime(workers)?.block_on(demo::run(loaded, listen, cms_listen, video_listen))
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
        Command::Mint {
            url,
            embed,
            share,
            ip,
            session,
        } => {
            let runtime = build_once(loaded)?;
            let url = match (url, share) {
                (Some(url), _) => url,
                (None, Some(share)) => embed_url(&runtime, embed.as_deref(), &share)?,
                (None, None) => bail!("give an embed URL, or --share (and --embed)"),
            };
            let principal = match &session {
                Some(id) => Principal::of(&SessionKey::new(id)),
                None => Principal::operator(),
            };
            println!("{}", mint(&runtime, &url, &principal, ip)?);
            Ok(())
        }
        Command::Verify { token, path, ip } => {
            let runtime = build_once(loaded)?;
            match path {
                Some(path) => verify_for_path(&runtime, &token, &path, ip),
                None => verify_against_embeds(&runtime, &token, &config_path),
            }
        }
    }
}

/// The URL of `share` under the src pattern of the embed named (or numbered) `embed`.
fn embed_url(runtime: &Runtime, embed: Option<&str>, share: &str) -> anyhow::Result<String> {
    let embeds = &runtime.settings().embeds;
    let found = match embed {
        None if embeds.len() == 1 => embeds.first(),
        None => bail!("several [[embed]]s: say which with --embed NAME"),
        Some(name) => embeds
            .iter()
            .find(|e| e.name.as_deref() == Some(name))
            .or_else(|| name.parse::<usize>().ok().and_then(|i| embeds.get(i))),
    };
    let Some(settings) = found else {
        bail!("no [[embed]] named {:?}", embed.unwrap_or_default());
    };
    let placeholder = format!("{{{}}}", settings.entitled_by);
    if !settings.src.contains(&placeholder) {
        bail!("the embed's src has no {placeholder}: give the full URL instead");
    }
    let url = settings.src.replace(&placeholder, share);
    if url.contains('{') {
        bail!(
            "the embed's src has more placeholders than {placeholder}: give the full URL instead"
        );
    }
    Ok(url)
}

/// `url` with a token minted for `principal` at `ip`, fetched from the video host if remote.
fn mint(
    runtime: &Runtime,
    url: &str,
    principal: &Principal,
    ip: Option<std::net::IpAddr>,
) -> anyhow::Result<String> {
    let visitor = Visitor {
        principal,
        addr: ip,
        now: embedgate::token::unix_now(),
    };
    match runtime.embeds.rewrite(url, &visitor) {
        Some((_, EmbedRewrite::Minted(with_token))) => Ok(with_token),
        Some((index, EmbedRewrite::Deferred(deferred))) => {
            let minter = runtime
                .embeds
                .get(index)
                .and_then(|e| e.remote())
                .context("remote embed without a minter")?;
            let token = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(minter.token(&deferred.call, principal))
                .with_context(|| format!("{} {}", "calling", deferred.call.url))?;
            Ok(format!(
                "{}{}{}{}",
                deferred.head, deferred.param, token, deferred.tail
            ))
        }
        Some((_, EmbedRewrite::Unsafe(err))) => bail!("{err}"),
        Some((_, EmbedRewrite::Unentitled(_))) => bail!("this session may not watch that video"),
        None => bail!("{url} matches no [[embed]] src pattern"),
    }
}

/// Prints each check the route protecting `path` makes of `token`; fails if one fails.
fn verify_for_path(
    runtime: &Runtime,
    token: &str,
    path: &str,
    ip: Option<std::net::IpAddr>,
) -> anyhow::Result<()> {
    let route = runtime.routes.lookup(path, None)?;
    let Some(verifier) = route
        .spec
        .and_then(|index| runtime.route_tokens.get(index))
        .and_then(Option::as_ref)
    else {
        bail!(
            "{path} is under {} access, not a route with access = \"token\"",
            route.access.as_str()
        );
    };
    let normal = route
        .normal
        .as_deref()
        .and_then(|p| std::str::from_utf8(p).ok())
        .context("the path is not UTF-8")?;
    let checks = verifier.check(token, normal, ip, embedgate::token::unix_now());
    println!("signature: {}", checks.signature);
    println!("window:    {}", checks.window);
    println!("acl:       {}", checks.acl);
    println!("ip:        {}", checks.ip);
    match checks.verdict() {
        Ok(()) => {
            println!("valid for {normal}");
            Ok(())
        }
        Err(rejection) => bail!("not valid: {rejection}"),
    }
}

/// Checks `token`'s signature and window against each locally minting embed's key.
fn verify_against_embeds(
    runtime: &Runtime,
    token: &str,
    config_path: &std::path::Path,
) -> anyhow::Result<()> {
    let now = embedgate::token::unix_now();
    let mut last_error = None;
    for (index, embed) in runtime.embeds.iter().enumerate() {
        let Minter::Local(minter) = embed.minter() else {
            continue;
        };
        match minter.signer().verify_with(token, now, 0, "") {
            Ok(valid) => {
                println!(
                    "valid for embed[{index}]: acl={} start={} expires={} ({}s left)",
                    valid.acl.unwrap_or("-"),
                    valid.start.map_or("-".to_string(), |s| s.to_string()),
                    valid.end,
                    valid.end.saturating_sub(now)
                );
                return Ok(());
            }
            Err(err) => last_error = Some(err),
        }
    }
    match last_error {
        Some(err) => bail!("not valid: {err}"),
        None => bail!(
            "no locally minting [[embed]] in {} to verify against",
            config_path.display()
        ),
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
    // One worker: everything on this thread, without the work-stealing
    // scheduler's hand-offs (measured in bench/README.md).
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if workers > 1 {
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
    let mut listeners = Listeners {
        main: listener,
        redirect: None,
        admin: None,
    };
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
        listeners.redirect = Some(redirect_listener);
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
        listeners.admin = Some(admin_listener);
    }
    #[cfg(unix)]
    if settings.log.access_file.is_some() {
        // Listening now: a SIGUSR1 from here on must reopen, not end the process.
        let usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
            .context("cannot listen for SIGUSR1")?;
        tasks.push(tokio::spawn(reopen_access_log_on_sigusr1(usr1)));
    }
    listeners::serve(listeners, gateway, server::shutdown_signal()).await;
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
