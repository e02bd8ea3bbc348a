//! The `sessionkit` binary: parses the command line and reports failures
//! with their causes (exit code 1; clap's usage errors exit with 2).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use sessionkit_cli::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("sessionkit: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    match runtime.block_on(sessionkit_cli::run(args, &mut out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = format!("sessionkit: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
