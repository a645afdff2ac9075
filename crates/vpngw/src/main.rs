//! `vpngw`: the daemon and its command line.
//!
//! The daemon composes the three driver crates — tunnels (`vpngw-tunnel`),
//! BGP (`vpngw-bgp`) and kernel routes (`vpngw-routes`) — passing their
//! events and commands between them. It owns the clock, the timers, the
//! signals, the config and the control socket. Subcommands arrive with the
//! capabilities behind them; until then the binary answers `--help` and
//! `--version`.

use clap::Parser;

/// Route-based IPsec site-to-site VPN gateway with an integrated BGP speaker.
#[derive(Debug, Parser)]
#[command(name = "vpngw", version, about, long_about = None, arg_required_else_help = true)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
