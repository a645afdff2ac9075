//! The IKE sockets: UDP 500 and 4500 on one local address, feeding the
//! [`Endpoint`] and sending what it produces.
//!
//! On port 4500 IKE messages carry the non-ESP marker (RFC 3948); the
//! driver adds and removes it. When an ESP datapath is attached it owns the
//! receiving side of port 4500 (ESP is its business) and forwards the IKE
//! messages it finds there through a channel ([`IkeSockets::attach_datapath`]);
//! otherwise this driver reads 4500 itself and counts the ESP it cannot use.
//! NAT keepalives that arrive are ignored; the endpoint's own go out as the
//! bare octet 0xFF (no marker).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use super::SystemRandom;
use crate::esp::natt::{classify, Natt, NON_ESP_MARKER};
use crate::ike::endpoint::{ConnId, Endpoint, EndpointOutput};
use crate::ike::sa::{Event, SaConfig, IKE_PORT, NATT_PORT};
use crate::ike::wire::IkeSpi;

/// An IKE message the datapath found on port 4500: (peer, message without marker).
pub type NattIke = (SocketAddr, Vec<u8>);

/// Port 4500: read by this driver, or (once the datapath is attached) only
/// sent on. A socket the datapath reads must not stay registered with
/// tokio's epoll: every arriving datagram would wake the runtime for
/// nothing.
#[derive(Debug)]
enum NattSocket {
    Polled(UdpSocket),
    SendOnly(std::net::UdpSocket),
}

/// The two IKE sockets of one local address.
#[derive(Debug)]
pub struct IkeSockets {
    ike: UdpSocket,
    natt: Option<NattSocket>,
    local: IpAddr,
    /// IKE from port 4500, when the datapath reads that port.
    natt_from_datapath: Option<mpsc::Receiver<NattIke>>,
}

impl IkeSockets {
    /// Binds UDP 500 and 4500 on `local`.
    pub async fn bind(local: IpAddr) -> io::Result<IkeSockets> {
        let ike = UdpSocket::bind(SocketAddr::new(local, IKE_PORT)).await?;
        let natt = UdpSocket::bind(SocketAddr::new(local, NATT_PORT)).await?;
        Ok(IkeSockets {
            ike,
            natt: Some(NattSocket::Polled(natt)),
            local,
            natt_from_datapath: None,
        })
    }

    /// Hands the receiving side of port 4500 to the ESP datapath: returns a
    /// blocking duplicate of the socket for it to read (and send ESP on) and
    /// the sender through which it passes back the IKE messages it finds.
    pub fn attach_datapath(&mut self) -> io::Result<(std::net::UdpSocket, mpsc::Sender<NattIke>)> {
        let send_only = match self.natt.take() {
            Some(NattSocket::Polled(socket)) => socket.into_std()?,
            Some(NattSocket::SendOnly(socket)) => socket,
            None => return Err(io::Error::other("port 4500 socket missing")),
        };
        let for_datapath = send_only.try_clone()?;
        self.natt = Some(NattSocket::SendOnly(send_only));
        let (tx, rx) = mpsc::channel(256);
        self.natt_from_datapath = Some(rx);
        Ok((for_datapath, tx))
    }

    async fn natt_send(&self, data: &[u8], remote: SocketAddr) -> io::Result<()> {
        match &self.natt {
            Some(NattSocket::Polled(socket)) => socket.send_to(data, remote).await.map(drop),
            // Non-blocking; a full socket buffer loses this one (IKE
            // retransmits).
            Some(NattSocket::SendOnly(socket)) => socket.send_to(data, remote).map(drop),
            None => Err(io::Error::other("port 4500 socket missing")),
        }
    }

    async fn natt_recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match &self.natt {
            Some(NattSocket::Polled(socket)) => socket.recv_from(buf).await,
            Some(NattSocket::SendOnly(_)) | None => std::future::pending().await,
        }
    }

    async fn send(&self, local: SocketAddr, remote: SocketAddr, data: &[u8]) -> io::Result<()> {
        if local.port() == NATT_PORT {
            let mut framed = Vec::with_capacity(data.len() + 4);
            framed.extend_from_slice(&NON_ESP_MARKER);
            framed.extend_from_slice(data);
            self.natt_send(&framed, remote).await?;
        } else {
            self.ike.send_to(data, remote).await?;
        }
        Ok(())
    }

    /// A NAT keepalive (RFC 3948 §2.3): the single octet 0xFF from port
    /// 4500, without the non-ESP marker.
    async fn send_keepalive(&self, remote: SocketAddr) -> io::Result<()> {
        self.natt_send(&[0xFF], remote).await?;
        Ok(())
    }
}

/// An event of one connection, with the peer's current address (where ESP
/// goes: the IKE SA's remote, port 4500 with NAT-T).
#[derive(Debug)]
pub struct IkeEvent {
    /// The connection.
    pub conn: ConnId,
    /// What happened.
    pub event: Event,
    /// The peer's address as the IKE SA knows it now.
    pub peer: Option<SocketAddr>,
    /// The connection's current IKE SA (initiator's and responder's SPI),
    /// for the daemon's log span.
    pub ike_sa: Option<(IkeSpi, IkeSpi)>,
}

/// One connection as [`IkeCommand::Status`] reports it.
#[derive(Debug, Clone)]
pub struct ConnStatus {
    /// The connection.
    pub conn: ConnId,
    /// Its name.
    pub name: String,
    /// Its current IKE SA, if any.
    pub sa: Option<crate::ike::sa::Status>,
}

/// What the daemon asks of the IKE endpoint. `Debug` never shows a
/// connection's [`SaConfig`] (it holds the PSK).
pub enum IkeCommand {
    /// The datapath's byte count of the connection's current child SA
    /// (for the byte lifetime).
    ChildBytes {
        /// The connection.
        conn: ConnId,
        /// Inner bytes both ways since the child was installed.
        bytes: u64,
        /// Packets both ways since the child was installed.
        packets: u64,
    },
    /// ESP arrived on the connection's child SA since the last report: the
    /// peer is alive, no DPD probe needed.
    InboundTraffic(ConnId),
    /// Check the connection's peer is alive now (the datapath saw a hint
    /// that it is gone).
    CheckLiveness(ConnId),
    /// Rekey the connection's child SA now.
    RekeyChild(ConnId),
    /// Rekey the connection's IKE SA now.
    RekeyIke(ConnId),
    /// Add a connection ([`Endpoint::add_connection`]); an initiator
    /// starts at once. Its id comes back through `reply` (ids are never
    /// reused, see [`ConnId`]).
    AddConnection {
        /// Its name.
        name: String,
        /// How its IKE SAs behave (holds the PSK).
        cfg: Box<SaConfig>,
        /// Our address (IKE port 500, normally).
        local: SocketAddr,
        /// The peer's.
        remote: SocketAddr,
        /// Whether we initiate (and restart) its IKE SA.
        initiate: bool,
        /// Receives the new connection's id.
        reply: oneshot::Sender<ConnId>,
    },
    /// Remove a connection ([`Endpoint::remove_connection`]): its SAs are
    /// deleted (DELETE sent); their `ChildDeleted` and `Closed` events
    /// still come with its id.
    RemoveConnection(ConnId),
    /// Report every connection and its current IKE SA.
    Status(oneshot::Sender<Vec<ConnStatus>>),
    /// Report the driver's counters, the endpoint's included.
    Counters(oneshot::Sender<DriverCounters>),
}

impl std::fmt::Debug for IkeCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IkeCommand::ChildBytes {
                conn,
                bytes,
                packets,
            } => f
                .debug_struct("ChildBytes")
                .field("conn", conn)
                .field("bytes", bytes)
                .field("packets", packets)
                .finish(),
            IkeCommand::RekeyChild(conn) => f.debug_tuple("RekeyChild").field(conn).finish(),
            IkeCommand::CheckLiveness(conn) => f.debug_tuple("CheckLiveness").field(conn).finish(),
            IkeCommand::InboundTraffic(conn) => {
                f.debug_tuple("InboundTraffic").field(conn).finish()
            }
            IkeCommand::RekeyIke(conn) => f.debug_tuple("RekeyIke").field(conn).finish(),
            IkeCommand::AddConnection {
                name,
                cfg: _,
                local,
                remote,
                initiate,
                reply: _,
            } => f
                .debug_struct("AddConnection")
                .field("name", name)
                .field("local", local)
                .field("remote", remote)
                .field("initiate", initiate)
                .finish_non_exhaustive(),
            IkeCommand::RemoveConnection(conn) => {
                f.debug_tuple("RemoveConnection").field(conn).finish()
            }
            IkeCommand::Status(_) => f.write_str("Status"),
            IkeCommand::Counters(_) => f.write_str("Counters"),
        }
    }
}

/// Every connection of `endpoint` with its current IKE SA.
pub fn conn_status(endpoint: &Endpoint) -> Vec<ConnStatus> {
    endpoint
        .status()
        .into_iter()
        .map(|(conn, name, sa)| ConnStatus {
            conn,
            name: name.to_string(),
            sa,
        })
        .collect()
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
    /// What the endpoint dropped or accepted, by reason.
    pub endpoint: crate::ike::endpoint::Counters,
}

/// Runs the endpoint on `sockets` until `stop` turns true; then deletes
/// every SA (sending DELETE) and returns. Events go to `events`.
pub async fn run(
    mut endpoint: Endpoint,
    mut sockets: IkeSockets,
    events: mpsc::UnboundedSender<IkeEvent>,
    mut stop: watch::Receiver<bool>,
    mut commands: mpsc::UnboundedReceiver<IkeCommand>,
) -> io::Result<DriverCounters> {
    let mut from_datapath = sockets.natt_from_datapath.take();
    let datapath_attached = from_datapath.is_some();
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
            Some((from, d)) = recv_natt(&mut from_datapath) => {
                endpoint.handle(Instant::now(), local_natt, from, &d, &mut rng);
            }
            r = sockets.natt_recv(&mut buf_natt), if !datapath_attached => {
                let (n, from) = r?;
                match buf_natt.get(..n).map(classify) {
                    Some(Natt::Ike(d)) => endpoint.handle(Instant::now(), local_natt, from, d, &mut rng),
                    Some(Natt::Esp(_)) => counters.esp_unhandled += 1,
                    Some(Natt::Keepalive) => {}
                    Some(Natt::Malformed) | None => counters.malformed += 1,
                }
            }
            Some(command) = commands.recv() => {
                apply_command(&mut endpoint, command, &counters, &mut rng);
            }
            () = sleep => endpoint.handle_timeout(Instant::now(), &mut rng),
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    endpoint.close_all(Instant::now());
                    flush(&mut endpoint, &sockets, &events, &mut counters).await;
                    counters.endpoint = endpoint.counters();
                    return Ok(counters);
                }
            }
        }
        flush(&mut endpoint, &sockets, &events, &mut counters).await;
    }
}

/// Carries out one command of the daemon.
fn apply_command(
    endpoint: &mut Endpoint,
    command: IkeCommand,
    counters: &DriverCounters,
    rng: &mut SystemRandom,
) {
    match command {
        IkeCommand::ChildBytes {
            conn,
            bytes,
            packets,
        } => endpoint.note_child_usage(conn, Instant::now(), bytes, packets),
        IkeCommand::RekeyChild(conn) => endpoint.rekey_child(conn, Instant::now(), rng),
        IkeCommand::CheckLiveness(conn) => endpoint.check_liveness(conn, Instant::now()),
        IkeCommand::InboundTraffic(conn) => endpoint.note_inbound_traffic(conn, Instant::now()),
        IkeCommand::RekeyIke(conn) => endpoint.rekey_ike(conn, Instant::now(), rng),
        IkeCommand::AddConnection {
            name,
            cfg,
            local,
            remote,
            initiate,
            reply,
        } => {
            let now = Instant::now();
            let conn = endpoint.add_connection(&name, *cfg, local, remote, initiate, now);
            if initiate {
                // Start it now rather than at the next timer.
                endpoint.handle_timeout(now, rng);
            }
            let _ = reply.send(conn);
        }
        IkeCommand::RemoveConnection(conn) => endpoint.remove_connection(conn, Instant::now()),
        IkeCommand::Status(reply) => {
            let _ = reply.send(conn_status(endpoint));
        }
        IkeCommand::Counters(reply) => {
            let _ = reply.send(DriverCounters {
                endpoint: endpoint.counters(),
                ..*counters
            });
        }
    }
}

async fn recv_natt(rx: &mut Option<mpsc::Receiver<NattIke>>) -> Option<NattIke> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn flush(
    endpoint: &mut Endpoint,
    sockets: &IkeSockets,
    events: &mpsc::UnboundedSender<IkeEvent>,
    counters: &mut DriverCounters,
) {
    // Events first: the daemon installs new SAs in the datapath before the
    // datagrams that let the peer use them leave (a rekey response, an
    // IKE_AUTH response), so no packet under a new SPI finds it missing.
    let mut sends = Vec::new();
    let mut delivered = false;
    while let Some(out) = endpoint.poll_output() {
        match out {
            EndpointOutput::Event(conn, event) => {
                let status = endpoint
                    .status()
                    .into_iter()
                    .find(|(c, _, _)| *c == conn)
                    .and_then(|(_, _, status)| status);
                let _ = events.send(IkeEvent {
                    conn,
                    event,
                    peer: status.as_ref().map(|s| s.remote),
                    ike_sa: status.map(|s| (s.spi_i, s.spi_r)),
                });
                delivered = true;
            }
            other @ (EndpointOutput::Transmit(_) | EndpointOutput::NatKeepalive { .. }) => {
                sends.push(other)
            }
        }
    }
    if delivered {
        // Let the daemon's task take the events (same runtime thread).
        tokio::task::yield_now().await;
    }
    for out in sends {
        match out {
            EndpointOutput::Transmit(t) => {
                if sockets.send(t.local, t.remote, &t.data).await.is_err() {
                    counters.send_errors += 1;
                }
            }
            EndpointOutput::NatKeepalive { local: _, remote } => {
                if sockets.send_keepalive(remote).await.is_err() {
                    counters.send_errors += 1;
                }
            }
            EndpointOutput::Event(..) => {}
        }
    }
}
