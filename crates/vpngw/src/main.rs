//! `vpngw`: the command line. Subcommands arrive with the capabilities
//! behind them; the work is done in the `vpngw` library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vpngw::config;

/// Route-based IPsec site-to-site VPN gateway with an integrated BGP speaker.
#[derive(Debug, Parser)]
#[command(name = "vpngw", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway daemon.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Build a demo topology in network namespaces from real vpngw
    /// processes (two active-active tunnels), then fail a tunnel under
    /// traffic. Needs root; removes everything it made.
    Demo,
    /// Validate a configuration file (and read its PSKs) without running.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Run { config } => run(&config),
        Command::Demo => demo(),
    }
}

fn run(file: &std::path::Path) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cfg = match config::load(file) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(vpngw::daemon::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpngw: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> ExitCode {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "vpngw demo builds network namespaces, TUN devices and routes: run it as root \
             (sudo cargo run -p vpngw -- demo)"
        );
        return ExitCode::FAILURE;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("vpngw demo: cannot find this binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    match vpngw::demo::run(&exe) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpngw demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::load(file) {
        Ok(cfg) => {
            let g = &cfg.gateway;
            println!(
                "{}: ok: AS {}, router id {}, {} local prefix(es), table {}, ECMP {}",
                file.display(),
                g.asn,
                g.router_id,
                g.local_prefixes.len(),
                g.kernel_table,
                if g.ecmp { "on" } else { "off" }
            );
            for c in &cfg.connections {
                let routing = match &c.routing {
                    config::Routing::Bgp(b) => {
                        format!("BGP AS {} at {}", b.peer_asn, b.peer_address)
                    }
                    config::Routing::Static(r) => format!("{} static route(s)", r.len()),
                };
                println!(
                    "  {}: {} -> {} ({}), {}, {}",
                    c.name,
                    c.local_address,
                    c.remote_address,
                    if c.initiate { "initiator" } else { "responder" },
                    c.tun_name,
                    routing
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
