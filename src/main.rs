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
        return ExitCode::from(1);
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
