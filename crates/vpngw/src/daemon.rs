//! The daemon: builds the drivers from the configuration and passes their
//! events between them.
//!
//! Today it runs the IKE endpoint: every configured connection's IKE SA
//! and child SA are negotiated, kept alive (DPD) and restarted, and each
//! change is logged. The ESP datapath, BGP and kernel routes join as their
//! issues land.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use vpngw_tunnel::driver::ike::{self as ike_driver, IkeSockets};
use vpngw_tunnel::ike::endpoint::{ConnId, Endpoint};
use vpngw_tunnel::ike::sa::{Event, SaConfig, IKE_PORT};
use vpngw_tunnel::ike::wire::Identification;

use crate::config::{Config, Connection};

/// How long IKE waits for the first answer before retransmitting; doubles
/// with each of the retries.
const RETRANSMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const RETRANSMIT_TRIES: u32 = 5;

/// An IKE identity from the configuration: an IP address, `keyid:...`,
/// `user@domain`, or an FQDN.
pub fn identity(id: &str) -> Identification {
    if let Ok(ip) = id.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(a) => Identification::ipv4(a),
            IpAddr::V6(a) => Identification::ipv6(a),
        };
    }
    if let Some(key) = id.strip_prefix("keyid:") {
        return Identification::key_id(key.as_bytes());
    }
    if id.contains('@') && !id.starts_with('@') {
        return Identification::rfc822(id);
    }
    Identification::fqdn(id.trim_start_matches('@'))
}

fn sa_config(c: &Connection) -> SaConfig {
    SaConfig {
        local_id: identity(&c.local_id),
        remote_id: identity(&c.remote_id),
        psk: zeroize::Zeroizing::new(c.psk.bytes().to_vec()),
        ike_proposals: c.ike_proposals.clone(),
        esp_proposals: c.esp_proposals.clone(),
        dpd_interval: c.dpd_interval,
        dpd_timeout: c.dpd_timeout,
        retransmit_timeout: RETRANSMIT_TIMEOUT,
        retransmit_tries: RETRANSMIT_TRIES,
        // Our ESP runs in user space over UDP 4500 only.
        force_encap: true,
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(config: Config) -> std::io::Result<()> {
    let now = Instant::now();
    let mut endpoint = Endpoint::new();
    let Some(local) = config.connections.first().map(|c| c.local_address) else {
        warn!("no connections configured; nothing to do");
        return Ok(());
    };
    for c in &config.connections {
        if c.local_address != local {
            return Err(std::io::Error::other(format!(
                "connection {}: all connections must share one local_address for now ({local})",
                c.name
            )));
        }
        endpoint.add_connection(
            &c.name,
            sa_config(c),
            SocketAddr::new(c.local_address, IKE_PORT),
            SocketAddr::new(c.remote_address, IKE_PORT),
            c.initiate,
            now,
        );
        info!(
            connection = %c.name,
            remote = %c.remote_address,
            role = if c.initiate { "initiator" } else { "responder" },
            "connection loaded"
        );
    }
    let names: Vec<String> = config.connections.iter().map(|c| c.name.clone()).collect();
    let sockets = IkeSockets::bind(local).await?;
    info!(%local, "IKE listening on UDP 500 and 4500");
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let driver = tokio::spawn(ike_driver::run(endpoint, sockets, events_tx, stop_rx));

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            Some((conn, event)) = events_rx.recv() => log_event(&names, conn, &event),
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    info!("stopping: deleting SAs");
    let _ = stop_tx.send(true);
    match driver.await {
        Ok(Ok(counters)) => info!(?counters, "stopped"),
        Ok(Err(e)) => warn!("IKE driver failed: {e}"),
        Err(e) => warn!("IKE driver task failed: {e}"),
    }
    while let Ok((conn, event)) = events_rx.try_recv() {
        log_event(&names, conn, &event);
    }
    Ok(())
}

fn log_event(names: &[String], conn: ConnId, event: &Event) {
    let name = names.get(conn.0).map_or("?", String::as_str);
    match event {
        Event::Established(algs) => {
            info!(connection = name, algorithms = ?algs, "IKE SA established")
        }
        Event::ChildInstalled(child) => info!(
            connection = name,
            spi_in = %format_args!("{:08x}", child.spi_in),
            spi_out = %format_args!("{:08x}", child.spi_out),
            algorithms = ?child.algorithms,
            udp_encap = child.udp_encap,
            "child SA installed"
        ),
        Event::ChildDeleted { spi_in, spi_out } => info!(
            connection = name,
            spi_in = %format_args!("{spi_in:08x}"),
            spi_out = %format_args!("{spi_out:08x}"),
            "child SA deleted"
        ),
        Event::Closed(reason) => warn!(connection = name, "IKE SA closed: {reason}"),
    }
}
