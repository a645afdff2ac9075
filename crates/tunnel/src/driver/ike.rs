//! The IKE sockets: UDP 500 and 4500 on one local address, feeding the
//! [`Endpoint`] and sending what it produces.
//!
//! On port 4500 IKE messages carry the non-ESP marker (RFC 3948); the
//! driver adds and removes it. ESP arriving on 4500 goes to the datapath
//! through `esp_tx` when one is attached, and is counted otherwise; NAT
//! keepalives are ignored.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::SystemRandom;
use crate::esp::natt::{classify, Natt, NON_ESP_MARKER};
use crate::ike::endpoint::{ConnId, Endpoint, EndpointOutput};
use crate::ike::sa::{Event, IKE_PORT, NATT_PORT};

/// The two IKE sockets of one local address.
#[derive(Debug)]
pub struct IkeSockets {
    ike: UdpSocket,
    natt: UdpSocket,
    local: IpAddr,
}

impl IkeSockets {
    /// Binds UDP 500 and 4500 on `local`.
    pub async fn bind(local: IpAddr) -> io::Result<IkeSockets> {
        let ike = UdpSocket::bind(SocketAddr::new(local, IKE_PORT)).await?;
        let natt = UdpSocket::bind(SocketAddr::new(local, NATT_PORT)).await?;
        Ok(IkeSockets { ike, natt, local })
    }

    async fn send(&self, local: SocketAddr, remote: SocketAddr, data: &[u8]) -> io::Result<()> {
        if local.port() == NATT_PORT {
            let mut framed = Vec::with_capacity(data.len() + 4);
            framed.extend_from_slice(&NON_ESP_MARKER);
            framed.extend_from_slice(data);
            self.natt.send_to(&framed, remote).await?;
        } else {
            self.ike.send_to(data, remote).await?;
        }
        Ok(())
    }
}

/// Counters of the driver itself (the endpoint counts IKE-level drops).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverCounters {
    /// Datagrams on 4500 too short to be anything.
    pub malformed: u64,
    /// ESP with no datapath attached.
    pub esp_unhandled: u64,
    /// Send errors (unreachable peer, no route).
    pub send_errors: u64,
}

/// Runs the endpoint on `sockets` until `stop` turns true; then deletes
/// every SA (sending DELETE) and returns. Events go to `events`.
pub async fn run(
    mut endpoint: Endpoint,
    sockets: IkeSockets,
    events: mpsc::UnboundedSender<(ConnId, Event)>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<DriverCounters> {
    let mut rng = SystemRandom::new();
    let mut counters = DriverCounters::default();
    let mut buf_ike = vec![0u8; 65536];
    let mut buf_natt = vec![0u8; 65536];
    let local_ike = SocketAddr::new(sockets.local, IKE_PORT);
    let local_natt = SocketAddr::new(sockets.local, NATT_PORT);
    endpoint.handle_timeout(Instant::now(), &mut rng);
    flush(&mut endpoint, &sockets, &events, &mut counters).await;
    loop {
        let deadline = endpoint.poll_timeout().map(tokio::time::Instant::from_std);
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = sockets.ike.recv_from(&mut buf_ike) => {
                let (n, from) = r?;
                if let Some(d) = buf_ike.get(..n) {
                    endpoint.handle(Instant::now(), local_ike, from, d, &mut rng);
                }
            }
            r = sockets.natt.recv_from(&mut buf_natt) => {
                let (n, from) = r?;
                match buf_natt.get(..n).map(classify) {
                    Some(Natt::Ike(d)) => endpoint.handle(Instant::now(), local_natt, from, d, &mut rng),
                    Some(Natt::Esp(_)) => counters.esp_unhandled += 1,
                    Some(Natt::Keepalive) => {}
                    Some(Natt::Malformed) | None => counters.malformed += 1,
                }
            }
            () = sleep => endpoint.handle_timeout(Instant::now(), &mut rng),
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    endpoint.close_all(Instant::now());
                    flush(&mut endpoint, &sockets, &events, &mut counters).await;
                    return Ok(counters);
                }
            }
        }
        flush(&mut endpoint, &sockets, &events, &mut counters).await;
    }
}

async fn flush(
    endpoint: &mut Endpoint,
    sockets: &IkeSockets,
    events: &mpsc::UnboundedSender<(ConnId, Event)>,
    counters: &mut DriverCounters,
) {
    while let Some(out) = endpoint.poll_output() {
        match out {
            EndpointOutput::Transmit(t) => {
                if sockets.send(t.local, t.remote, &t.data).await.is_err() {
                    counters.send_errors += 1;
                }
            }
            EndpointOutput::Event(conn, event) => {
                let _ = events.send((conn, event));
            }
        }
    }
}
