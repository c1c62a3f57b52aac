//! The kernel datapath at the instant an uplink becomes one of its ports.
//!
//! Adding node-if to the kernel datapath has two moments where a packet from the peer is lost,
//! both measured in the VM with a 1 ms ping and the `skb:kfree_skb` tracepoint:
//!
//! 1. The kernel registers the port's receive hook, then switches the NIC to promiscuous mode
//!    (a round trip to the NIC, its firmware or, in a VM, the hypervisor), and only then marks
//!    the device as an OVS port; a packet arriving in between is dropped in
//!    `netdev_frame_hook`. The uplink step holds the promiscuous flag on across the add, so
//!    the switch is only a count and the window is much shorter, not gone: that drop went
//!    from seven attaches in ten to one in ten.
//! 2. ovs-vswitchd maps the new datapath port to its OpenFlow port a moment after the kernel
//!    created it. A packet that misses the datapath's flows in between reaches ovs-vswitchd on
//!    a port it does not know; it is dropped, and ovs-vswitchd installs an exact-match flow
//!    with no actions for its headers ("received packet on unassociated datapath port").
//!    Nothing revalidates that flow while packets keep hitting it, so a ping, or any steady
//!    flow, can stay black-holed for seconds after the attach (measured: 1500 probes at 1 ms).
//!    `clear_stale_drops` removes those flows once the port is mapped. The packets lost before
//!    that are below what a tool outside ovs-vswitchd controls: a datapath flow installed in
//!    advance for the new port is itself deleted by the revalidators, which own the table.

use crate::host::run;
use anyhow::Result;

/// ovs-vswitchd's one kernel datapath, shared by all its bridges.
const DATAPATH: &str = "system@ovs-system";

/// Deletes the datapath's drop flows for packets from `port` (those ovs-vswitchd installed for
/// packets it got before it had mapped the port among them), so that the switch decides again
/// now that it knows the port; a drop the OpenFlow tables mean is installed again by the next
/// packet. Returns how many were removed.
pub fn clear_stale_drops(port: &str) -> Result<usize> {
    let dpctl = run::find_tool("ovs-dpctl", "clear the datapath's stale drop flows")?;
    let mut removed = 0;
    for key in stale_drops_with(&dpctl, port)? {
        // A flow is deleted by its key and mask; without a mask the kernel takes the printed
        // fields as exact, which names these flows (a flow with a partial mask prints `/`
        // and is left). One that expired meanwhile is not an error.
        if run::run(&dpctl, ["del-flow", DATAPATH, key.as_str()]).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// The keys of the datapath's stale drop flows for packets from `port` (see `clear_stale_drops`);
/// empty when the datapath does not have the port. For health: while one is there, what it
/// matches (a peer's ping, a steady stream) is black-holed though both daemons answer.
pub fn stale_drops(port: &str) -> Result<Vec<String>> {
    let dpctl = run::find_tool("ovs-dpctl", "read the datapath's flows")?;
    stale_drops_with(&dpctl, port)
}

fn stale_drops_with(dpctl: &std::path::Path, port: &str) -> Result<Vec<String>> {
    let show = run::run(dpctl, ["show", DATAPATH])?;
    let Some(number) = parse_ports(&show.stdout)
        .into_iter()
        .find(|(_, n)| n == port)
        .map(|(p, _)| p)
    else {
        return Ok(Vec::new());
    };
    let dump = run::run(dpctl, ["dump-flows", DATAPATH])?;
    Ok(drop_flows(&dump.stdout, number)
        .into_iter()
        .map(String::from)
        .collect())
}

/// The keys of flows from datapath port `number` whose action is drop and whose printed key
/// has no partially masked field.
fn drop_flows(dump: &str, number: u32) -> Vec<&str> {
    let in_port = format!("in_port({number})");
    dump.lines()
        .filter_map(|l| {
            let (key, rest) = l.split_once(", packets:")?;
            let unmasked = !key.contains('/');
            let ours = key.split(',').any(|f| f == in_port);
            (unmasked && ours && rest.trim_end().ends_with("actions:drop")).then_some(key)
        })
        .collect()
}

/// Takes `dev` out of the kernel datapath when ovs-vswitchd is not there to do it: a NIC that
/// stays a datapath port hands every packet it receives to a switch that no longer runs, so
/// the host's stack never sees them (addresses put back on it would not answer); an internal
/// port (a bridge's own device) is destroyed by it. Returns whether it was a port; a host
/// without the kernel datapath (no module, the userspace datapath) has none.
pub fn release_port(dev: &str) -> Result<bool> {
    let Ok(dpctl) = run::find_tool("ovs-dpctl", "take a port out of the kernel datapath") else {
        return Ok(false);
    };
    let Ok(show) = run::run(&dpctl, ["show", DATAPATH]) else {
        return Ok(false);
    };
    if !parse_ports(&show.stdout).iter().any(|(_, n)| n == dev) {
        return Ok(false);
    }
    run::run(&dpctl, ["del-if", DATAPATH, dev])?;
    Ok(true)
}

/// Deletes the kernel datapaths left without an ovs-vswitchd (one stopped with its bridges
/// kept): each holds a reference on the `openvswitch` module, so the module cannot be unloaded
/// while one exists. Call only once nothing uses them (no switch runs, no address on a port).
/// Returns the datapaths deleted.
pub fn delete_orphans() -> Result<Vec<String>> {
    let dpctl = run::find_tool("ovs-dpctl", "delete the kernel datapath")?;
    let dps = run::run(&dpctl, ["dump-dps"])?;
    let mut deleted = Vec::new();
    for dp in dps
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("system@"))
    {
        run::run(&dpctl, ["del-dp", dp])?;
        deleted.push(dp.to_string());
    }
    Ok(deleted)
}

/// `port N: NAME[ (type)]` lines of `ovs-dpctl show`.
fn parse_ports(show: &str) -> Vec<(u32, String)> {
    show.lines()
        .filter_map(|l| {
            let (num, rest) = l.trim().strip_prefix("port ")?.split_once(": ")?;
            let name = rest.split_whitespace().next()?;
            Some((num.parse().ok()?, name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_from_dpctl_show() {
        let show = "system@ovs-system:
  lookups: hit:1 missed:1 lost:0
  flows: 1
  port 0: ovs-system (internal)
  port 1: br-int (internal)
  port 2: eth1
  port 3: genev_sys_6081 (geneve: packet_type=ptap)
";
        assert_eq!(
            parse_ports(show),
            vec![
                (0, "ovs-system".to_string()),
                (1, "br-int".to_string()),
                (2, "eth1".to_string()),
                (3, "genev_sys_6081".to_string())
            ]
        );
    }

    #[test]
    fn only_drop_flows_of_the_port_are_taken() {
        // As ovs-dpctl prints them: the unassociated-port drop (exact, no actions), a drop
        // megaflow of the same port, one with a partial mask, a drop from another port, and
        // a forwarding flow.
        let dump = "\
recirc_id(0),dp_hash(0),skb_priority(0),in_port(2),skb_mark(0),ct_state(0),ct_zone(0),ct_mark(0),ct_label(0),eth(src=0a:37:a2:54:c8:23,dst=52:54:00:12:34:57),eth_type(0x0800),ipv4(src=192.168.76.1,dst=192.168.76.10,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0), packets:812, bytes:79576, used:0.001s, actions:drop
recirc_id(0),in_port(2),eth(src=0a:37:a2:54:c8:23,dst=33:33:00:00:00:01),eth_type(0x86dd),ipv6(frag=no), packets:0, bytes:0, used:never, actions:drop
recirc_id(0),in_port(2),eth(src=0a:37:a2:54:c8:23/ff:ff:ff:00:00:00,dst=52:54:00:12:34:57),eth_type(0x0806), packets:1, bytes:42, used:0.5s, actions:drop
recirc_id(0),dp_hash(0),skb_priority(0),in_port(12),skb_mark(0),eth(src=0a:37:a2:54:c8:23,dst=52:54:00:12:34:57),eth_type(0x0806), packets:1, bytes:42, used:0.5s, actions:drop
recirc_id(0),in_port(2),eth(src=0a:37:a2:54:c8:23,dst=52:54:00:12:34:57),eth_type(0x0800),ipv4(frag=no), packets:570, bytes:55860, used:0.004s, actions:1
";
        let keys = drop_flows(dump, 2);
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(keys[0].contains("icmp(type=8,code=0)"));
        assert!(keys[1].contains("33:33:00:00:00:01"));
    }
}
