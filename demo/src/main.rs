//! `sessionkit-demo`: parses the flags, starts the server, prints where it
//! listens, and stops cleanly on Ctrl-C or SIGTERM.
//!
//! Failures are reported as a message and its causes on stderr, never as
//! a panic: exit code 2 for a bad command line (clap's convention), 1 for
//! anything that stopped the demo from starting or running.

#![forbid(unsafe_code)]

use std::error::Error;
use std::io::Write as _;
use std::process::ExitCode;

use sessionkit_demo::{Args, Server, StartError};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = match Args::try_parse_checked(std::env::args_os()) {
        Ok(args) => args,
        Err(err) => {
            // Usage errors and --help/--version alike: clap prints them to
            // the right stream and says which exit code they mean.
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    // Fails only if a logger is already installed, which nothing here does.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .try_init();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            report(&StartError::Serve(err), None);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err, err.hint());
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), StartError> {
    // Before the first line: whoever reads it may send Ctrl-C at once, and
    // an uninstalled handler would let that kill the process uncleanly.
    let signalled = shutdown_signal()?;
    let server = Server::start(&args).await?;
    say(format_args!("sessionkit demo listening on {} (store: {})", server.url(), server.store_label()));
    let expiry = if args.rolling { "rolling" } else { "fixed at creation" };
    say(format_args!("sessions last {} s ({expiry}); press Ctrl-C to stop", args.ttl));
    if !args.addr.ip().is_loopback() && !args.insecure_cookies {
        say(format_args!(
            "note: browsers keep Secure cookies over plain http only from localhost; from other \
             machines, serve it behind https (or, for a trial, add --insecure-cookies)"
        ));
    }
    let signalled = signalled.await;
    say(format_args!("shutting down"));
    let stopped = server.shutdown().await;
    signalled.and(stopped)
}

/// A line on stdout. Unlike `println!`, a closed stdout (`| head -1`) is
/// no panic: the server goes on serving.
fn say(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

/// Installs the handlers of Ctrl-C (SIGINT) and, on Unix, SIGTERM (what
/// `kill` and service managers send), and returns what waits for either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = Result<(), StartError>>, StartError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // `signal` installs its handler when called, unlike `ctrl_c`, which
        // does so when first polled.
        let mut interrupt = signal(SignalKind::interrupt()).map_err(StartError::Serve)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(StartError::Serve)?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => Ok(()),
                _ = terminate.recv() => Ok(()),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async { tokio::signal::ctrl_c().await.map_err(StartError::Serve) })
    }
}

/// `error: <what failed>`, one `caused by:` line per source, and a hint.
fn report(err: &dyn Error, hint: Option<&str>) {
    let mut text = format!("error: {err}\n");
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!("  caused by: {cause}\n"));
        source = cause.source();
    }
    if let Some(hint) = hint {
        text.push_str(&format!("hint: {hint}\n"));
    }
    // Nowhere left to report a failure to write to stderr.
    let _ = std::io::stderr().write_all(text.as_bytes());
}
