//! The `trainerd` binary: parse flags, run the library with the OS's stop
//! signals, and map its outcome or error to an exit status (see `exit`).

use std::io::Write as _;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use trainerd::cli::Cli;
use trainerd::control::stops::StopSource;
use trainerd::control::Ending;
use trainerd::exit::{self, Outcome};

fn main() -> ExitCode {
    // Before libtorch allocates anything (see train/malloc.rs).
    let _ = trainerd::train::malloc::tune();
    install_panic_hook();
    // Before clap reads them: a variable trainerd reads that is not UTF-8 is
    // named here (exit 78), not reported as a usage error that names nothing.
    if let Err(e) = trainerd::cli::check_environment() {
        eprintln!("trainerd: error: {e}");
        return ExitCode::from(exit::CONFIG);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => exit::OK,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => exit::USAGE,
                ErrorKind::InvalidValue | ErrorKind::ValueValidation => exit::CONFIG,
                _ => exit::USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if cli.command.only_prints() {
        end_quietly_on_a_closed_pipe();
    }
    match trainerd::app::run(cli.command, StopSource::Signals) {
        Ok(ending) => end(ending),
        Err(err) => {
            let code = code_for(&err);
            let chain: Vec<String> = err.chain().map(|c| c.to_string()).collect();
            tracing::error!(exit_code = code, "{}", chain.join(": "));
            eprintln!("trainerd: error: {}", chain.join(": "));
            ExitCode::from(code)
        }
    }
}

/// A panic on any thread (a bug, or an error raised inside libtorch, which
/// tch turns into a panic) ends the process with exit 1 and one line naming
/// where and why: the first line of the message, without libtorch's C++
/// backtrace (set `RUST_BACKTRACE=1` for Rust's). A half-finished trainer is
/// not left running; saved checkpoints are intact and a restart resumes.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let first = message.lines().next().unwrap_or("").trim();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        tracing::error!(
            exit_code = exit::INTERNAL,
            thread,
            "internal error{at}: {first}"
        );
        eprintln!(
            "trainerd: internal error{at} (thread {thread}): {first}; saved checkpoints are \
             intact and a restart resumes from the newest"
        );
        let trace = std::backtrace::Backtrace::capture();
        if trace.status() == std::backtrace::BacktraceStatus::Captured {
            eprintln!("{trace}");
        }
        std::process::exit(i32::from(exit::INTERNAL));
    }));
}

/// The exit status of an outcome.
fn outcome_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Done => exit::OK,
        Outcome::BelowTarget => exit::BELOW_TARGET,
        // `health` unhealthy, nothing to roll back: a plain "no".
        Outcome::Declined => exit::INTERNAL,
        Outcome::Stopped => exit::STOPPED,
        Outcome::Stalled => exit::STALLED,
    }
}

/// Walks an error chain and returns the first known exit status (else
/// [`exit::INTERNAL`]): the one place an error becomes an exit status.
fn code_for(err: &anyhow::Error) -> u8 {
    use trainerd::{
        config, data, export, pipeline, predict, search, store, telemetry, train, versions,
    };
    err.chain()
        .find_map(|cause| {
            let known: [Option<&dyn trainerd::exit::ExitStatus>; 11] = [
                cause.downcast_ref::<config::ConfigError>().map(|e| e as _),
                cause.downcast_ref::<data::DataError>().map(|e| e as _),
                cause.downcast_ref::<store::StoreError>().map(|e| e as _),
                cause.downcast_ref::<train::TrainError>().map(|e| e as _),
                cause
                    .downcast_ref::<telemetry::http::HttpError>()
                    .map(|e| e as _),
                cause
                    .downcast_ref::<search::journal::JournalError>()
                    .map(|e| e as _),
                cause
                    .downcast_ref::<pipeline::events::EventError>()
                    .map(|e| e as _),
                cause
                    .downcast_ref::<predict::PredictError>()
                    .map(|e| e as _),
                cause.downcast_ref::<export::ExportError>().map(|e| e as _),
                cause
                    .downcast_ref::<pipeline::rollback::RollbackError>()
                    .map(|e| e as _),
                cause
                    .downcast_ref::<versions::VersionError>()
                    .map(|e| e as _),
            ];
            known.into_iter().flatten().next().map(|e| e.exit_code())
        })
        .unwrap_or(exit::INTERNAL)
}

/// The exit status of `ending`. When the trainer was abandoned (a second
/// SIGTERM, or a stall it did not come back from) it may be inside a
/// libtorch call, and running destructors under it (what returning from
/// `main` or `process::exit` do) crashes: the logs are flushed and the
/// process ends with `_exit`.
fn end(ending: Ending) -> ExitCode {
    let code = outcome_code(ending.outcome);
    if ending.outcome == Outcome::Stopped && !ending.abandon {
        tracing::info!("stopped; exiting {code}");
    }
    if ending.abandon {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: `_exit` ends the process at once; nothing runs after it.
        unsafe { libc::_exit(i32::from(code)) }
    }
    ExitCode::from(code)
}

/// Rust ignores SIGPIPE, so printing to a closed pipe is an error `println!`
/// turns into a panic; a printing command takes the default action instead
/// and ends quietly (status 141), as `cat` or `ls` do.
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: setting a signal's disposition to the default has no
    // preconditions; no handler of trainerd's is replaced (it installs none
    // for SIGPIPE).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
