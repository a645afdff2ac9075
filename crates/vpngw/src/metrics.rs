//! The optional Prometheus endpoint (`gateway.metrics_listen`, off by
//! default): `GET /metrics` in the text exposition format.
//!
//! It asks the daemon the same questions as the CLI (status, SAs, BGP)
//! through the control channel, so the numbers on a dashboard are the
//! numbers `vpngw status` prints. A minimal HTTP/1.0 responder: one
//! request per connection, no keep-alive, nothing but `/metrics`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::control::{BgpReport, Incoming, Reply, Request, SasReport, StatusReport};

/// Binds `addr` and returns the server future.
pub fn serve(
    addr: SocketAddr,
    daemon: mpsc::UnboundedSender<Incoming>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let std_listener = std::net::TcpListener::bind(addr).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("metrics endpoint {addr} (gateway.metrics_listen): {e}"),
        )
    })?;
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    tracing::info!(%addr, "Prometheus metrics at http://{addr}/metrics");
    Ok(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let daemon = daemon.clone();
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), respond(stream, &daemon)).await;
            });
        }
    })
}

async fn respond(
    mut stream: tokio::net::TcpStream,
    daemon: &mpsc::UnboundedSender<Incoming>,
) -> std::io::Result<()> {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    // Read the request head (we only need its first line).
    while n < buf.len() {
        let Some(free) = buf.get_mut(n..) else { break };
        let got = stream.read(free).await?;
        if got == 0 {
            break;
        }
        n += got;
        if buf
            .get(..n)
            .is_some_and(|b| b.windows(4).any(|w| w == b"\r\n\r\n"))
        {
            break;
        }
    }
    let head = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
    let first = head.lines().next().unwrap_or_default();
    let (status, body) = if first.starts_with("GET /metrics ") || first == "GET /metrics" {
        match collect(daemon).await {
            Ok(body) => ("200 OK", body),
            Err(e) => ("503 Service Unavailable", format!("{e}\n")),
        }
    } else {
        (
            "404 Not Found",
            "only /metrics is served here\n".to_string(),
        )
    };
    let response = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn ask<T: serde::de::DeserializeOwned>(
    daemon: &mpsc::UnboundedSender<Incoming>,
    request: Request,
) -> Result<T, String> {
    let (reply, rx) = oneshot::channel();
    daemon
        .send(Incoming { request, reply })
        .map_err(|_| "the daemon is stopping".to_string())?;
    match rx.await.map_err(|_| "no answer".to_string())? {
        Reply::Ok(v) => serde_json::from_value(v).map_err(|e| e.to_string()),
        Reply::Error(e) => Err(e),
    }
}

async fn collect(daemon: &mpsc::UnboundedSender<Incoming>) -> Result<String, String> {
    let status: StatusReport = ask(daemon, Request::Status).await?;
    let sas: SasReport = ask(daemon, Request::Sas).await?;
    let bgp: BgpReport = ask(daemon, Request::Bgp { neighbor: None }).await?;
    Ok(render(&status, &sas, &bgp))
}

/// One metric family: its HELP and TYPE lines, then its samples (labels
/// already formatted, without braces; empty for none).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text for these reports.
pub fn render(status: &StatusReport, sas: &SasReport, bgp: &BgpReport) -> String {
    let mut out = String::new();
    let conn = |n: &str| format!("connection=\"{}\"", esc(n));
    let per_conn = |f: &dyn Fn(&crate::control::ConnectionStatus) -> u64| -> Vec<(String, u64)> {
        status
            .connections
            .iter()
            .map(|c| (conn(&c.name), f(c)))
            .collect()
    };
    family(
        &mut out,
        "vpngw_tunnel_up",
        "gauge",
        "1 while the tunnel has a child SA installed.",
        &per_conn(&|c| u64::from(c.tunnel_up)),
    );
    family(
        &mut out,
        "vpngw_tunnel_in_service",
        "gauge",
        "1 while the tunnel is up and carries its routes and BGP session (not held down, BFD not down, no ICMP hint pending).",
        &per_conn(&|c| u64::from(c.tunnel_up && c.out_of_service.is_none())),
    );
    family(
        &mut out,
        "vpngw_tunnel_routes",
        "gauge",
        "Kernel routes through the tunnel.",
        &per_conn(&|c| c.routes as u64),
    );
    family(
        &mut out,
        "vpngw_kernel_routes",
        "gauge",
        "Routes of ours in the kernel table.",
        &[(String::new(), status.kernel_routes as u64)],
    );
    let mut packets = Vec::new();
    let mut bytes = Vec::new();
    let mut drops = Vec::new();
    let mut sa_bytes = Vec::new();
    let mut unreachable = Vec::new();
    for s in &sas.connections {
        let d = &s.datapath;
        let n = conn(&s.name);
        packets.push((format!("{n},direction=\"rx\""), d.rx_packets));
        packets.push((format!("{n},direction=\"tx\""), d.tx_packets));
        bytes.push((format!("{n},direction=\"rx\""), d.rx_bytes));
        bytes.push((format!("{n},direction=\"tx\""), d.tx_bytes));
        for (reason, v) in [
            ("replay", d.drop_replay),
            ("auth", d.drop_auth),
            ("malformed", d.drop_malformed),
            ("no_sa", d.drop_no_sa),
            ("tx_error", d.drop_tx_error),
        ] {
            drops.push((format!("{n},reason=\"{reason}\""), v));
        }
        unreachable.push((n.clone(), d.peer_unreachable));
        if let Some(c) = &s.child {
            sa_bytes.push((format!("{n},direction=\"in\""), c.bytes_in));
            sa_bytes.push((format!("{n},direction=\"out\""), c.bytes_out));
        }
    }
    family(
        &mut out,
        "vpngw_tunnel_packets_total",
        "counter",
        "Packets through the tunnel's datapath.",
        &packets,
    );
    family(
        &mut out,
        "vpngw_tunnel_bytes_total",
        "counter",
        "Inner bytes through the tunnel's datapath.",
        &bytes,
    );
    family(
        &mut out,
        "vpngw_tunnel_drops_total",
        "counter",
        "Packets the tunnel's datapath dropped, by reason.",
        &drops,
    );
    family(
        &mut out,
        "vpngw_tunnel_peer_unreachable_total",
        "counter",
        "ICMP port unreachable from the peer about our ESP, verified by SPI and sequence number (its IKE daemon was gone).",
        &unreachable,
    );
    family(
        &mut out,
        "vpngw_child_sa_bytes",
        "gauge",
        "Inner bytes on the current child SA, by direction.",
        &sa_bytes,
    );
    family(
        &mut out,
        "vpngw_unmatched_datagrams_total",
        "counter",
        "Datagrams on UDP 4500 of no connection, by reason.",
        &[
            ("reason=\"unknown_spi\"".into(), sas.unmatched.unknown_spi),
            ("reason=\"malformed\"".into(), sas.unmatched.malformed),
        ],
    );
    let mut established = Vec::new();
    let mut prefixes = Vec::new();
    for n in &bgp.neighbors {
        let peer = format!("peer=\"{}\"", esc(&n.name));
        established.push((peer.clone(), u64::from(n.state == "Established")));
        for (kind, v) in [
            ("accepted", n.accepted_count),
            ("refused", n.refused_count),
            ("advertised", n.advertised_count),
        ] {
            prefixes.push((format!("{peer},kind=\"{kind}\""), v as u64));
        }
    }
    family(
        &mut out,
        "vpngw_bgp_session_established",
        "gauge",
        "1 while the BGP session is Established.",
        &established,
    );
    family(
        &mut out,
        "vpngw_bgp_prefixes",
        "gauge",
        "Prefixes per BGP neighbor: accepted, refused, advertised.",
        &prefixes,
    );
    family(
        &mut out,
        "vpngw_bgp_loc_rib_prefixes",
        "gauge",
        "Prefixes in the BGP Loc-RIB.",
        &[(String::new(), bgp.loc_rib as u64)],
    );
    out
}
