//! Readable tables for the show commands, rendered from the same reports
//! `--json` prints.

use std::fmt::Write as _;

use crate::control::{BgpReport, Neighbor, ReloadReport, RoutesReport, SasReport, StatusReport};

/// Left-aligned columns, two spaces apart, with a header row.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            let _ = write!(l, "{cell:<w$}  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `3d4h`, `5m12s`, `40s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// `1.2 MB`, `532 B`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    let u = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{n} {u}")
    } else {
        format!("{v:.1} {u}")
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `vpngw status`.
pub fn status(r: &StatusReport) -> String {
    let mut out = format!(
        "vpngw {}, pid {}, up {}, config {}\nAS {}, router id {}, own prefixes {}; kernel table {}: {} route(s) of ours\n\n",
        r.version,
        r.pid,
        duration(r.uptime_secs),
        r.config_file,
        r.asn,
        r.router_id,
        list(&r.local_prefixes),
        r.kernel_table,
        r.kernel_routes
    );
    let rows: Vec<Vec<String>> = r
        .connections
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                format!("{} -> {}", c.local, c.remote),
                c.tun.clone(),
                match (c.tunnel_up, &c.out_of_service) {
                    (true, Some(why)) => format!("up, out: {why}"),
                    (true, None) => "up".into(),
                    (false, _) => "down".into(),
                },
                c.up_secs.map_or_else(|| "-".into(), duration),
                c.ike.clone(),
                c.routing.clone(),
                c.bgp_state.clone().unwrap_or_else(|| "-".into()),
                c.prefixes.to_string(),
                c.routes.to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("no connections\n");
    } else {
        out.push_str(&table(
            &[
                "CONNECTION",
                "OUTER",
                "TUN",
                "TUNNEL",
                "SINCE",
                "IKE",
                "ROUTING",
                "BGP",
                "PREFIXES",
                "ROUTES",
            ],
            &rows,
        ));
    }
    out
}

/// `vpngw sas`.
pub fn sas(r: &SasReport) -> String {
    let mut out = String::new();
    for c in &r.connections {
        let _ = writeln!(out, "{}:", c.name);
        match &c.ike {
            Some(i) => {
                let _ = writeln!(
                    out,
                    "  IKE SA    {} {}{}, {} <-> {}{}\n            SPIs {}_i {}_r{}",
                    i.role,
                    i.phase,
                    i.established_secs
                        .map_or_else(String::new, |s| format!(" {} ago", duration(s))),
                    i.local,
                    i.remote,
                    if i.nat { ", NAT-T" } else { "" },
                    i.spi_i,
                    i.spi_r,
                    i.algorithms
                        .as_ref()
                        .map_or_else(String::new, |a| format!(", {a}")),
                );
            }
            None => out.push_str("  IKE SA    none\n"),
        }
        match &c.child {
            Some(ch) => {
                let _ = writeln!(
                    out,
                    "  child SA  in {} out {}, {}\n            in {} pkts / {}, out {} pkts / {}",
                    ch.spi_in,
                    ch.spi_out,
                    ch.algorithms,
                    ch.packets_in,
                    bytes(ch.bytes_in),
                    ch.packets_out,
                    bytes(ch.bytes_out)
                );
                if !ch.selectors_local.is_empty() {
                    let _ = writeln!(
                        out,
                        "            {} === {}",
                        ch.selectors_local.join(" "),
                        ch.selectors_remote.join(" ")
                    );
                }
            }
            None => out.push_str("  child SA  none\n"),
        }
        let d = &c.datapath;
        let _ = writeln!(
            out,
            "  datapath  rx {} pkts / {}, tx {} pkts / {}; drops: replay {}, auth {}, malformed {}, no SA {}, tx error {}; peer unreachable (ICMP) {}",
            d.rx_packets,
            bytes(d.rx_bytes),
            d.tx_packets,
            bytes(d.tx_bytes),
            d.drop_replay,
            d.drop_auth,
            d.drop_malformed,
            d.drop_no_sa,
            d.drop_tx_error,
            d.peer_unreachable
        );
    }
    if r.connections.is_empty() {
        out.push_str("no connections\n");
    }
    let _ = writeln!(
        out,
        "UDP 4500 of no connection: unknown SPI {}, malformed {}",
        r.unmatched.unknown_spi, r.unmatched.malformed
    );
    let i = &r.ike;
    let _ = writeln!(
        out,
        "IKE messages: accepted {}, from unknown peers {}, unknown SPI {}, malformed {}, answered with a cookie {}, send errors {}",
        i.accepted, i.unknown_peer, i.unknown_spi, i.malformed, i.cookie_challenges, i.send_errors
    );
    out
}

/// `vpngw bgp`: the neighbor summary.
pub fn bgp(r: &BgpReport) -> String {
    let mut out = format!(
        "BGP AS {}, router id {}, own prefixes {}, {} prefix(es) in the Loc-RIB\n\n",
        r.asn,
        r.router_id,
        list(&r.local_prefixes),
        r.loc_rib
    );
    let rows: Vec<Vec<String>> = r
        .neighbors
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.address.to_string(),
                n.asn.to_string(),
                n.state.clone(),
                (n.accepted_count + n.refused_count).to_string(),
                n.accepted_count.to_string(),
                n.refused_count.to_string(),
                n.advertised_count.to_string(),
                n.last_down.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    if rows.is_empty() {
        out.push_str("no BGP neighbors\n");
    } else {
        out.push_str(&table(
            &[
                "NEIGHBOR",
                "ADDRESS",
                "AS",
                "STATE",
                "RECEIVED",
                "ACCEPTED",
                "REFUSED",
                "ADVERTISED",
                "LAST DOWN",
            ],
            &rows,
        ));
        out.push_str("\n(vpngw bgp NEIGHBOR lists its routes)\n");
    }
    out
}

/// `vpngw bgp NEIGHBOR`: its routes, received (accepted and refused, with
/// the reason) and advertised.
pub fn neighbor(n: &Neighbor) -> String {
    let mut out = format!(
        "{} {} AS {}: {}{}{}\n",
        n.name,
        n.address,
        n.asn,
        n.state,
        n.router_id
            .map_or_else(String::new, |id| format!(", router id {id}")),
        n.hold_time
            .map_or_else(String::new, |h| format!(", hold time {h} s")),
    );
    if let Some(d) = &n.last_down {
        let _ = writeln!(out, "last down: {d}");
    }
    let _ = writeln!(out, "\naccepted ({}):", n.accepted.len());
    let rows: Vec<Vec<String>> = n
        .accepted
        .iter()
        .map(|r| {
            vec![
                if r.best { "*" } else { " " }.into(),
                r.prefix.to_string(),
                r.next_hop.map_or_else(|| "-".into(), |h| h.to_string()),
                r.as_path.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&table(&["", "PREFIX", "NEXT HOP", "AS PATH"], &rows));
    }
    let _ = writeln!(out, "\nrefused ({}):", n.refused.len());
    let rows: Vec<Vec<String>> = n
        .refused
        .iter()
        .map(|r| {
            vec![
                r.prefix.to_string(),
                r.as_path.clone().unwrap_or_else(|| "-".into()),
                r.reason.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&table(&["PREFIX", "AS PATH", "REASON"], &rows));
    }
    let _ = writeln!(out, "\nadvertised ({}):", n.advertised.len());
    let rows: Vec<Vec<String>> = n
        .advertised
        .iter()
        .map(|r| {
            vec![
                r.prefix.to_string(),
                r.next_hop.map_or_else(|| "-".into(), |h| h.to_string()),
                r.as_path.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&table(&["PREFIX", "NEXT HOP", "AS PATH"], &rows));
    }
    out.push_str("\n* best path (or equal to it: ECMP)\n");
    out
}

/// `vpngw routes [PREFIX]`.
pub fn routes(r: &RoutesReport) -> String {
    if let Some(e) = &r.explain {
        let mut out = format!("{}:\n", e.prefix);
        let rows: Vec<Vec<String>> = e
            .steps
            .iter()
            .map(|s| {
                vec![
                    if s.ok { "ok" } else { "NO" }.into(),
                    s.layer.clone(),
                    s.connection.clone().unwrap_or_else(|| "-".into()),
                    s.detail.clone(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&table(&["", "LAYER", "CONNECTION", "DETAIL"], &rows));
        }
        let _ = writeln!(out, "=> {}", e.verdict);
        return out;
    }
    let mut out = format!("table {}: {} route(s) of ours\n", r.table, r.routes.len());
    let rows: Vec<Vec<String>> = r
        .routes
        .iter()
        .map(|k| {
            vec![
                k.prefix.to_string(),
                k.source.clone(),
                k.tunnels.join(", "),
                if k.tunnels.len() > 1 { "ECMP" } else { "" }.into(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&table(&["PREFIX", "SOURCE", "THROUGH", ""], &rows));
    }
    out
}

/// `vpngw reload`.
pub fn reload(r: &ReloadReport) -> String {
    let mut out = String::from("configuration reloaded\n");
    for (what, names) in [
        ("added", &r.added),
        ("removed", &r.removed),
        ("changed (restarted)", &r.changed),
        ("unchanged (kept SAs and sessions)", &r.unchanged),
    ] {
        let _ = writeln!(out, "  {what}: {}", list(names));
    }
    for g in &r.gateway {
        let _ = writeln!(out, "  gateway: {g}");
    }
    out
}
