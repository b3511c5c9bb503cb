//! The `trainerd` binary: parse flags, install signal handlers, run the
//! library, and map errors to exit codes (see `exit`).

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use trainerd::config::Cli;
use trainerd::exit;
use trainerd::train::StopFlag;

fn main() -> ExitCode {
    // Before libtorch allocates anything (see train/malloc.rs).
    let _ = trainerd::train::malloc::tune();
    install_panic_hook();
    // Before clap reads them: a variable trainerd reads that is not UTF-8 is
    // named here (exit 78), not reported as a usage error that names nothing.
    if let Err(e) = trainerd::config::check_environment() {
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
    let stop = StopFlag::default();
    if let Err(e) = install_signals(&stop) {
        eprintln!("trainerd: cannot install signal handlers: {e}");
        return ExitCode::from(exit::INTERNAL);
    }
    match trainerd::app::run(cli.command, stop) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = exit::code_for(&err);
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

/// First SIGTERM/SIGINT raises the stop flag (finish the step, checkpoint,
/// exit 143); a second one exits at once.
fn install_signals(stop: &StopFlag) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(
            sig,
            i32::from(exit::STOPPED),
            stop.0.clone(),
        )?;
        signal_hook::flag::register(sig, stop.0.clone())?;
    }
    Ok(())
}
