//! `vpngw`: the command line. Subcommands arrive with the capabilities
//! behind them; the work is done in the `vpngw` library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vpngw::config;
use vpngw::control::{self, Request};

/// Route-based IPsec site-to-site VPN gateway with an integrated BGP speaker.
#[derive(Debug, Parser)]
#[command(name = "vpngw", version, about, long_about = None)]
struct Cli {
    /// The daemon's control socket (for status, sas, bgp, routes, reload,
    /// rekey).
    #[arg(long, short, global = true, env = "VPNGW_SOCKET", default_value = config::DEFAULT_CONTROL_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

/// Output options of the show commands.
#[derive(Debug, clap::Args)]
struct Show {
    /// Print the report as JSON (stable field names) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway daemon.
    Run {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Build two sites in network namespaces, each a real vpngw with a LAN,
    /// joined by two active-active tunnels with BGP; fail one tunnel under
    /// traffic and restore it. Needs root; removes everything it made
    /// unless --keep.
    Demo {
        /// Leave the topology running and print how to look around.
        #[arg(long)]
        keep: bool,
    },
    /// Validate a configuration file (and read its PSKs) without running.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// The gateway and its connections: tunnel, IKE, BGP, routes.
    Status(Show),
    /// IKE and child SAs: SPIs, algorithms, traffic, drops by reason.
    Sas(Show),
    /// BGP neighbors; with a neighbor, its received (accepted and refused,
    /// with the reason) and advertised routes.
    Bgp {
        /// A neighbor (connection name) to list the routes of.
        neighbor: Option<String>,
        #[command(flatten)]
        show: Show,
    },
    /// The kernel routes vpngw owns; with a prefix, why it is or is not
    /// installed (tunnel -> SA -> BGP -> policy -> kernel).
    Routes {
        /// A prefix (or address) to explain.
        prefix: Option<String>,
        #[command(flatten)]
        show: Show,
    },
    /// Re-read the configuration and apply the difference (as SIGHUP does):
    /// unchanged connections keep their SAs and BGP sessions.
    Reload(Show),
    /// Rekey a connection's child SA now (or its IKE SA with --ike).
    Rekey {
        /// The connection.
        connection: String,
        /// Rekey the IKE SA instead of the child SA.
        #[arg(long)]
        ike: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = cli.socket;
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Run { config } => run(&config),
        Command::Demo { keep } => demo(keep),
        Command::Status(show) => ask(&socket, Request::Status, show.json, |v| {
            Ok(vpngw::show::status(&serde_json::from_value(v)?))
        }),
        Command::Sas(show) => ask(&socket, Request::Sas, show.json, |v| {
            Ok(vpngw::show::sas(&serde_json::from_value(v)?))
        }),
        Command::Bgp { neighbor, show } => bgp(&socket, neighbor.as_deref(), show.json),
        Command::Routes { prefix, show } => {
            let prefix = match prefix.as_deref().map(parse_prefix).transpose() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("vpngw routes: {e}");
                    return ExitCode::from(2);
                }
            };
            ask(&socket, Request::Routes { prefix }, show.json, |v| {
                Ok(vpngw::show::routes(&serde_json::from_value(v)?))
            })
        }
        Command::Reload(show) => ask(&socket, Request::Reload, show.json, |v| {
            Ok(vpngw::show::reload(&serde_json::from_value(v)?))
        }),
        Command::Rekey { connection, ike } => {
            ask(&socket, Request::Rekey { connection, ike }, false, |v| {
                Ok(format!("{}\n", v.as_str().unwrap_or_default()))
            })
        }
    }
}

/// A prefix, or an address taken as its host prefix.
fn parse_prefix(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is neither a prefix (10.2.0.0/16) nor an address"))
}

/// Sends `request` and prints the answer: JSON, or rendered by `render`.
fn ask(
    socket: &std::path::Path,
    request: Request,
    json: bool,
    render: impl FnOnce(serde_json::Value) -> Result<String, serde_json::Error>,
) -> ExitCode {
    let value = match control::request(socket, &request) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vpngw: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&value) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("vpngw: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    match render(value) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vpngw: the daemon's answer is not what this CLI expects ({e}); is it the same version?");
            ExitCode::FAILURE
        }
    }
}

fn bgp(socket: &std::path::Path, neighbor: Option<&str>, json: bool) -> ExitCode {
    let Some(name) = neighbor else {
        return ask(socket, Request::Bgp { neighbor: None }, json, |v| {
            Ok(vpngw::show::bgp(&serde_json::from_value(v)?))
        });
    };
    let request = Request::Bgp {
        neighbor: Some(name.to_string()),
    };
    let report: vpngw::control::BgpReport = match control::request(socket, &request)
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vpngw: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(n) = report.neighbors.iter().find(|n| n.name == name) else {
        let names: Vec<&str> = report.neighbors.iter().map(|n| n.name.as_str()).collect();
        eprintln!(
            "vpngw: no BGP neighbor named {name} (neighbors: {})",
            names.join(", ")
        );
        return ExitCode::FAILURE;
    };
    if json {
        match serde_json::to_string_pretty(n) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("vpngw: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", vpngw::show::neighbor(n));
    }
    ExitCode::SUCCESS
}

fn run(file: &std::path::Path) -> ExitCode {
    // Levels per subsystem through RUST_LOG (`info,vpngw_bgp=debug`). Under
    // systemd (JOURNAL_STREAM set) journald stamps the time itself.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
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
    match runtime.block_on(vpngw::daemon::run(cfg, file.to_path_buf())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpngw: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(keep: bool) -> ExitCode {
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
    match vpngw::demo::run(&exe, keep) {
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
