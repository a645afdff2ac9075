//! The IKE driver's runtime commands, two drivers in a network namespace
//! (needs root): connections added and removed while running, status and
//! counters on request.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::NetNs;
use tokio::sync::{mpsc, oneshot, watch};
use vpngw_tunnel::driver::ike::{
    self, ConnStatus, DriverCounters, IkeCommand, IkeEvent, IkeSockets,
};
use vpngw_tunnel::ike::endpoint::{ConnId, Endpoint};
use vpngw_tunnel::ike::proposal::{parse_esp, parse_ike};
use vpngw_tunnel::ike::sa::{CloseReason, Event, Phase, SaConfig, IKE_PORT};
use vpngw_tunnel::ike::wire::Identification;
use zeroize::Zeroizing;

const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const PSK: &str = "a shared secret of decent length";

fn cfg(local: Ipv4Addr, remote: Ipv4Addr) -> Box<SaConfig> {
    Box::new(SaConfig {
        local_id: Identification::ipv4(local),
        remote_id: Identification::ipv4(remote),
        psk: Zeroizing::new(PSK.as_bytes().to_vec()),
        ike_proposals: vec![parse_ike("aes256gcm16-prfsha256-x25519").unwrap()],
        esp_proposals: vec![parse_esp("aes256gcm16-x25519").unwrap()],
        dpd_interval: Duration::from_secs(10),
        dpd_timeout: Duration::from_secs(45),
        retransmit_timeout: Duration::from_millis(500),
        retransmit_tries: 5,
        // As the daemon does (UDP 4500 from the start).
        force_encap: true,
        ike_lifetime: Duration::from_secs(3600),
        child_lifetime: Duration::from_secs(3600),
        child_lifetime_bytes: 1 << 40,
        child_lifetime_packets: 0,
    })
}

fn addr(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), IKE_PORT)
}

/// One running driver.
struct Driver {
    commands: mpsc::UnboundedSender<IkeCommand>,
    events: mpsc::UnboundedReceiver<IkeEvent>,
    task: tokio::task::JoinHandle<std::io::Result<DriverCounters>>,
}

impl Driver {
    async fn start(local: Ipv4Addr, stop: watch::Receiver<bool>) -> Driver {
        let sockets = IkeSockets::bind(IpAddr::V4(local)).await.unwrap();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(ike::run(
            Endpoint::new(),
            sockets,
            events_tx,
            stop,
            commands_rx,
        ));
        Driver {
            commands,
            events,
            task,
        }
    }

    async fn add(&self, name: &str, local: Ipv4Addr, remote: Ipv4Addr, initiate: bool) -> ConnId {
        let (reply, id) = oneshot::channel();
        let command = IkeCommand::AddConnection {
            name: name.to_string(),
            cfg: cfg(local, remote),
            local: addr(local),
            remote: addr(remote),
            initiate,
            reply,
        };
        let shown = format!("{command:?}");
        assert!(shown.contains(name) && !shown.contains(PSK), "{shown}");
        self.commands.send(command).unwrap();
        id.await.unwrap()
    }

    async fn status(&self) -> Vec<ConnStatus> {
        let (reply, status) = oneshot::channel();
        self.commands.send(IkeCommand::Status(reply)).unwrap();
        status.await.unwrap()
    }

    async fn counters(&self) -> DriverCounters {
        let (reply, counters) = oneshot::channel();
        self.commands.send(IkeCommand::Counters(reply)).unwrap();
        counters.await.unwrap()
    }

    /// Events until one of `conn` matches `done` (10 s at most).
    async fn until(&mut self, conn: ConnId, done: impl Fn(&Event) -> bool) -> Vec<IkeEvent> {
        let mut seen = Vec::new();
        let wait = async {
            while let Some(e) = self.events.recv().await {
                let last = e.conn == conn && done(&e.event);
                seen.push(e);
                if last {
                    return;
                }
            }
        };
        let finished = tokio::time::timeout(Duration::from_secs(10), wait).await;
        assert!(finished.is_ok(), "waited in vain; saw {seen:?}");
        seen
    }
}

fn installed(e: &Event) -> bool {
    matches!(e, Event::ChildInstalled(_))
}

fn closed(e: &Event) -> bool {
    matches!(e, Event::Closed(_))
}

#[test]
fn connections_come_and_go_while_the_driver_runs() {
    let _ns = NetNs::enter("ike-cmd");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (stop_tx, stop) = watch::channel(false);
        let mut a = Driver::start(A, stop.clone()).await;
        let mut b = Driver::start(B, stop).await;
        assert!(a.status().await.is_empty());

        // Added while running: the initiator starts at once.
        assert_eq!(b.add("to-a", B, A, false).await, ConnId(0));
        assert_eq!(a.add("to-b", A, B, true).await, ConnId(0));
        a.until(ConnId(0), installed).await;
        b.until(ConnId(0), installed).await;
        let status = a.status().await;
        assert_eq!(status.len(), 1, "{status:?}");
        assert_eq!(
            (status[0].conn, status[0].name.as_str()),
            (ConnId(0), "to-b")
        );
        let sa = status[0].sa.clone().expect("an SA");
        assert_eq!(sa.phase, Phase::Established);
        assert!(sa.child.is_some());
        let counters = a.counters().await;
        assert!(counters.endpoint.accepted >= 2, "{counters:?}");

        // Removed: DELETE goes out, the events still name the connection.
        a.commands
            .send(IkeCommand::RemoveConnection(ConnId(0)))
            .unwrap();
        let seen = a.until(ConnId(0), closed).await;
        assert!(
            seen.iter()
                .any(|e| e.conn == ConnId(0) && matches!(e.event, Event::ChildDeleted { .. })),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .any(|e| matches!(&e.event, Event::Closed(CloseReason::DeletedLocally))),
            "{seen:?}"
        );
        let seen = b.until(ConnId(0), closed).await;
        assert!(
            seen.iter()
                .any(|e| matches!(&e.event, Event::Closed(CloseReason::DeletedByPeer))),
            "{seen:?}"
        );
        assert!(a.status().await.is_empty());
        let b_status = b.status().await;
        assert_eq!(b_status.len(), 1);
        assert!(b_status[0].sa.is_none(), "{b_status:?}");

        // Added again: a fresh id, and it comes up.
        assert_eq!(a.add("to-b-again", A, B, true).await, ConnId(1));
        a.until(ConnId(1), installed).await;
        b.until(ConnId(0), installed).await;
        let status = a.status().await;
        assert_eq!(status.len(), 1);
        assert_eq!(status[0].conn, ConnId(1));
        assert_eq!(
            status[0].sa.as_ref().map(|s| s.phase),
            Some(Phase::Established)
        );

        stop_tx.send(true).unwrap();
        let (ra, rb) = (
            a.task.await.unwrap().unwrap(),
            b.task.await.unwrap().unwrap(),
        );
        assert_eq!(ra.endpoint.unknown_peer, 0, "{ra:?}");
        assert_eq!(rb.endpoint.unknown_peer, 0, "{rb:?}");
    });
}
