//! The uplink move: node-if's addresses, routes and rules to the OVS bridge (`attach`) and
//! back (`detach`), make-before-break, with the pre-state journaled before the first change,
//! connectivity probes around the move, and a rollback when the probes fail.
//!
//! The operations themselves come from `netmodel::plan_move` (pure, unit-tested); this module
//! observes the host, records, drives OVS and netlink, and verifies.

use super::Ctx;
use crate::error::{input, precondition, Error, Kind};
use crate::fault::fault;
use crate::host::netlink::Netlink;
use crate::host::ovs::{mac_string, Ovs};
use crate::host::probe::{self, Target};
use crate::host::sysctl;
use crate::host::HostRoot;
use crate::ledger::{Entry, Ledger, UplinkPreState};
use crate::netmodel::{self as nm, Carried, End, Op};
use crate::report::{Change, StepReport};
use anyhow::{anyhow, Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const NAME: &str = "uplink";

pub struct Names {
    pub uplink: String,
    pub bridge: String,
}

impl Names {
    pub fn from_ctx(ctx: &Ctx) -> Result<Names> {
        let uplink = ctx.settings.uplink.clone().ok_or_else(|| {
            precondition(
                "no uplink configured: pass --uplink IF, or set node.uplink (config file, \
                 NCP_BOOTSTRAP_NODE_UPLINK) or ovs_uplink_port in ncp.ini [nsx_node_agent]",
            )
        })?;
        let bridge = ctx.settings.bridge.clone();
        if uplink == bridge {
            return Err(precondition(format!(
                "the uplink and the bridge are both `{uplink}`; node.uplink must name the NIC"
            )));
        }
        Ok(Names { uplink, bridge })
    }
}

fn ovs_dir(ctx: &Ctx) -> Result<PathBuf> {
    Ok(crate::host::ovs::OvsDirs::from_settings(ctx.host, ctx.settings)?.run)
}

struct Live {
    addrs: Vec<netlink_packet_route::address::AddressMessage>,
    routes: Vec<netlink_packet_route::route::RouteMessage>,
    rules: Vec<netlink_packet_route::rule::RuleMessage>,
}

fn dump(nl: &mut Netlink) -> Result<Live> {
    Ok(Live {
        addrs: nl.addresses()?,
        routes: nl.routes()?,
        rules: nl.rules()?,
    })
}

/// The netlink operations that put `carried` from `from` onto `to`, against the links as they
/// are now.
fn plan_now(nl: &mut Netlink, carried: &Carried, from: End, to: End) -> Result<Vec<Op>> {
    let live = dump(nl)?;
    Ok(nm::plan_move(
        carried,
        from,
        to,
        &live.addrs,
        &live.routes,
        &live.rules,
    ))
}

/// How many times a move is planned again against the links as they are when a network
/// manager changed them under it.
const CONVERGE_TRIES: usize = 3;

/// Plans and applies the move until nothing is left to do. A network manager given the uplink
/// back works beside us (networkd configures it again as soon as its runtime file goes): an op
/// it made stale between the dump and the apply fails (`File exists`, `No such process`), and
/// the next plan starts from what is there. Returns the switch window in ms of the first burst.
fn converge(nl: &mut Netlink, carried: &Carried, from: End, to: End) -> Result<f64> {
    let mut window = None;
    let mut tries = 0;
    loop {
        let ops = plan_now(nl, carried, from, to)?;
        if ops.is_empty() {
            return Ok(window.unwrap_or(0.0));
        }
        tries += 1;
        crate::fault::hook("move-planned");
        let t = Instant::now();
        let (make, brk) = nm::make_then_break(&ops);
        let res = nl.apply(make).and_then(|()| nl.apply(brk));
        window.get_or_insert(t.elapsed().as_secs_f64() * 1000.0);
        match res {
            Ok(()) => return Ok(window.unwrap_or(0.0)),
            Err(e) if tries >= CONVERGE_TRIES => {
                return Err(e.context(format!(
                    "the move from {} to {} did not converge in {CONVERGE_TRIES} tries",
                    from.name, to.name
                )))
            }
            Err(_) => {}
        }
    }
}

/// What the pre-state says the uplink carried, expressed as it must be on the bridge.
fn restore_carried(pre: &UplinkPreState, bridge: End) -> Result<Carried> {
    let uplink = End {
        index: pre.uplink_index,
        name: &pre.uplink,
    };
    Ok(pre.carried()?.moved(uplink, bridge))
}

fn describe_ops(ops: &[Op], ends: &[End]) -> Vec<String> {
    ops.iter().map(|o| named(&o.describe(), ends)).collect()
}

/// A description with the links it names by index (`dev#9`) named as people know them
/// (`dev br-int`), for the two ends of a move; other indexes stay as they are.
fn named(text: &str, ends: &[End]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("dev#") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 4..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let end = after[..digits]
            .parse::<u32>()
            .ok()
            .and_then(|i| ends.iter().find(|e| e.index == i));
        match end {
            Some(e) => out.push_str(&format!("dev {}", e.name)),
            None => out.push_str(&rest[at..at + 4 + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// Addresses a DHCP client or SLAAC keeps alive, on an uplink whose renewals nothing here can
/// carry over to the bridge (networkd's are: see `host::networkd`). Moving them lets them
/// expire on the bridge, so the move is refused unless the operator accepts that.
fn check_dynamic(ctx: &Ctx, names: &Names, c: &Carried, warnings: &mut Vec<String>) -> Result<()> {
    let (uplink, bridge) = (&names.uplink, &names.bridge);
    let dynamic: Vec<String> = c
        .addresses
        .iter()
        .filter(|a| nm::is_dynamic(a))
        .map(|a| {
            let (valid, _) = nm::lifetimes(a);
            let ip = nm::address_ip(a).map_or("an address".into(), |i| i.to_string());
            format!("{ip} (valid for {valid} s more)")
        })
        .collect();
    if dynamic.is_empty() {
        return Ok(());
    }
    let renewer = client_pidfile(ctx, uplink)
        .map(|p| format!("the DHCP client of {p} renews them on {uplink} only"))
        .or_else(|| {
            crate::host::nm::running(ctx.host)
                .unwrap_or(false)
                .then(|| {
                    format!(
                        "NetworkManager renews them only while it manages {uplink}, and it must \
                     leave an attached uplink unmanaged"
                    )
                })
        })
        .unwrap_or_else(|| {
            format!("a DHCP client or router advertisements renew them on {uplink} only")
        });
    let what = format!(
        "{uplink} holds dynamic addresses: {}. {renewer}; on {bridge} they would expire",
        dynamic.join(", ")
    );
    use crate::config::UplinkDhcp;
    if ctx.settings.uplink_dhcp == UplinkDhcp::Static {
        return Err(precondition(format!(
            "{what}. node.uplink_dhcp is false (ncp.ini [nsx_node_agent] \
             is_dhcp_configured_on_ovs_uplink_port = False) and says {uplink}'s addresses are \
             static: set it to True (a DHCP client renews them on {bridge}) or auto, or give \
             {uplink} static addresses"
        )));
    }
    if ctx.settings.uplink_dhcp == UplinkDhcp::Dhcp {
        warnings.push(format!(
            "{what} (node.uplink_dhcp is true: ncp.ini is_dhcp_configured_on_ovs_uplink_port): \
             run a DHCP client for {bridge} with {uplink}'s client identity"
        ));
        return Ok(());
    }
    if !ctx.settings.allow_expiring_lease {
        return Err(precondition(format!(
            "{what}. Give {uplink} static addresses (the lease's, reserved on the DHCP server), or \
             let systemd-networkd run its DHCP client (it is carried over to the bridge), or set \
             node.allow_expiring_lease = true (flag --allow-expiring-lease) and run a DHCP client \
             for {bridge} with {uplink}'s client identity yourself"
        )));
    }
    warnings.push(format!(
        "{what} (node.allow_expiring_lease): run a DHCP client for {bridge} with {uplink}'s \
         client identity; `persist` writes {uplink}'s config for the next boot, not the bridge's"
    ));
    Ok(())
}

/// NSX CNI gives pods `node.mtu` (ncp.ini `[nsx_node_agent] mtu`); their packets leave through
/// node-if, so one with a smaller MTU drops what pods send at full size. The node's own network
/// is not at stake, so this is a warning, not a refusal: refusing would keep OVS, and with it
/// every pod on the node, down over a setting that hurts only large packets.
pub fn mtu_warning(uplink: &str, uplink_mtu: u32, pod_mtu: u32) -> Option<String> {
    (uplink_mtu < pod_mtu).then(|| {
        format!(
            "{uplink} has MTU {uplink_mtu}, smaller than the {pod_mtu} NSX CNI gives pods \
             (node.mtu, ncp.ini [nsx_node_agent] mtu): pods' packets larger than {uplink_mtu} \
             bytes are dropped on the way out. Raise {uplink}'s MTU (the NSX segment must carry \
             it too) or set mtu = {uplink_mtu}"
        )
    })
}

/// The pid file of a DHCP client (dhclient, dhcpcd) that runs for the uplink, if any.
fn client_pidfile(ctx: &Ctx, uplink: &str) -> Option<String> {
    [
        format!("/run/dhclient-{uplink}.pid"),
        format!("/var/run/dhclient-{uplink}.pid"),
        format!("/run/dhclient.{uplink}.pid"),
        format!("/run/dhcpcd-{uplink}.pid"),
        format!("/run/dhcpcd/{uplink}.pid"),
    ]
    .into_iter()
    .find(|p| ctx.host.exists(p).unwrap_or(false))
}

fn resolve_targets(ctx: &Ctx, c: &Carried) -> Result<Vec<(String, Target)>> {
    let mut out = Vec::new();
    for t in &ctx.settings.probe_targets {
        match t {
            Target::Gateway => {
                for gw in nm::default_gateways(c) {
                    out.push((format!("gateway {gw}"), Target::Icmp(gw)));
                }
            }
            other => out.push((other.to_string(), other.clone())),
        }
    }
    Ok(out)
}

fn probe_all(targets: &[(String, Target)], each: Duration) -> Vec<String> {
    targets
        .iter()
        .filter(|(_, t)| probe::once(t, each))
        .map(|(n, _)| n.clone())
        .collect()
}

/// After a move: true when any target that answered before answers within the deadline.
fn probe_after(targets: &[(String, Target)], answered: &[String], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let wanted: Vec<&(String, Target)> = targets
        .iter()
        .filter(|(n, _)| answered.contains(n))
        .collect();
    while Instant::now() < deadline {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(500));
        if wanted.iter().any(|(_, t)| probe::once(t, left)) {
            return true;
        }
    }
    false
}

/// What both directions start from, with the preconditions every move shares checked.
struct Session {
    names: Names,
    nl: Netlink,
    uplink: crate::host::netlink::Link,
    ovs: Ovs,
    /// OVSDB's bridges and ports as the session opened (read once: it also proves OVS answers).
    view: crate::host::ovs::View,
}

fn open(ctx: &Ctx) -> Result<Session> {
    open_with(ctx, true)
}

/// `open`, reading OVSDB's view only when asked: applying right after planning needs no second
/// read (each `ovs-vsctl` run is a process and a database round trip).
fn open_with(ctx: &Ctx, read_view: bool) -> Result<Session> {
    let names = Names::from_ctx(ctx)?;
    let mut nl = Netlink::open()?;
    let uplink = nl.link(&names.uplink)?.ok_or_else(|| {
        precondition(format!(
            "the uplink `{}` does not exist on this host",
            names.uplink
        ))
    })?;
    check_uplink(&names, &uplink)?;
    if let Some(br) = nl.link(&names.bridge)? {
        check_bridge(&names, &br)?;
    }
    let ovs = Ovs::new(ovs_dir(ctx)?)?;
    let view = if read_view {
        ovs.view()?
    } else {
        crate::host::ovs::View::default()
    };
    Ok(Session {
        names,
        nl,
        uplink,
        ovs,
        view,
    })
}

/// The uplink must be a NIC that can be an OVS port and carry the node's addresses.
fn check_uplink(names: &Names, l: &crate::host::netlink::Link) -> Result<()> {
    let why = if l.loopback {
        Some("is the loopback device".to_string())
    } else {
        match l.kind.as_deref() {
            Some(k @ ("bridge" | "openvswitch")) => Some(format!("is a {k} device, not a NIC")),
            _ => None,
        }
    };
    match why {
        Some(why) => Err(input(format!(
            "node.uplink = `{}` {why}; the uplink is node-if, the NIC that carries the node's \
             address (ncp.ini [nsx_node_agent] ovs_uplink_port, or --uplink)",
            names.uplink
        ))),
        None => Ok(()),
    }
}

/// The kernel's limit on an interface name, and so on an address label (IFNAMSIZ less the NUL).
const IFNAME_MAX: usize = 15;

/// An alias label moves with its address, its uplink prefix replaced by the bridge's
/// (`eth1:web` becomes `br-int:web`); one that would then be longer than an interface name is
/// refused by the kernel (ERANGE) in the middle of the move, so it is refused here, before
/// anything changes.
fn check_labels(names: &Names, carried: &Carried) -> Result<()> {
    for a in &carried.addresses {
        let Some(label) = nm::address_label(a) else {
            continue;
        };
        let Some(rest) = label.strip_prefix(names.uplink.as_str()) else {
            continue;
        };
        let moved = format!("{}{rest}", names.bridge);
        if moved.len() > IFNAME_MAX {
            return Err(input(format!(
                "address {} on {} has the label {label:?}, which on {} would be {moved:?} ({} \
                 bytes; the kernel allows {IFNAME_MAX}): give it a label of at most {} bytes \
                 after the colon (`ip addr change` cannot rename a label: delete and add the \
                 address again), or drop it",
                nm::describe_address(a),
                names.uplink,
                names.bridge,
                moved.len(),
                IFNAME_MAX.saturating_sub(names.bridge.len() + 1),
            )));
        }
    }
    Ok(())
}

/// Routes that point at a nexthop object (`ip route … nhid N`, as FRR 8 and systemd-networkd's
/// `[NextHop]` install them) take their device from the object, not from the route: a copy of
/// the route on the bridge would still leave through node-if, and the kernel refuses one that
/// names both the object and a device (EINVAL). Moving the objects is not done; such routes are
/// refused by name before anything changes.
fn check_nexthop_objects(names: &Names, carried: &Carried) -> Result<()> {
    use netlink_packet_route::route::RouteAttribute;
    let via_objects: Vec<String> = carried
        .routes
        .iter()
        .filter_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::NhId(id) => {
                    Some(format!("{} (nexthop id {id})", nm::describe_route(r)))
                }
                _ => None,
            })
        })
        .collect();
    if via_objects.is_empty() {
        return Ok(());
    }
    Err(input(format!(
        "{} carries route(s) through nexthop objects, which ncp-bootstrap does not move to {}: \
         {}. Configure them as plain routes (`ip route add … via GATEWAY dev {}`; in \
         systemd-networkd a [Route] Gateway= instead of NextHop=; in FRR without nexthop \
         groups), then attach again",
        names.uplink,
        names.bridge,
        via_objects.join(", "),
        names.uplink
    )))
}

/// A bridge link that exists must be OVS's own: an `openvswitch` internal device (kernel
/// datapath) or the tap device the userspace datapath uses. Attaching onto a plain NIC or a
/// Linux bridge would hand it the node's addresses.
fn check_bridge(names: &Names, l: &crate::host::netlink::Link) -> Result<()> {
    if matches!(l.kind.as_deref(), Some("openvswitch" | "tun")) {
        return Ok(());
    }
    Err(input(format!(
        "node.bridge = `{}` names an existing {} that is not an OVS bridge; set node.bridge (or \
         --bridge) to the OVS integration bridge, br-int, or to a name that does not exist yet",
        names.bridge,
        match l.kind.as_deref() {
            Some(k) => format!("{k} device"),
            None => "network interface".to_string(),
        }
    )))
}

/// A bridge's state before we touched it.
struct BridgeBefore {
    created: bool,
    hwaddr: Option<String>,
    mtu_request: Option<String>,
}

fn pre_state(
    names: &Names,
    uplink: &crate::host::netlink::Link,
    ovs_db_dir: String,
    bridge: BridgeBefore,
    c: &Carried,
) -> UplinkPreState {
    UplinkPreState {
        step: NAME.into(),
        uplink: names.uplink.clone(),
        uplink_index: uplink.index,
        bridge: names.bridge.clone(),
        ovs_db_dir,
        bridge_created: bridge.created,
        bridge_hwaddr_before: bridge.hwaddr,
        bridge_mtu_request_before: bridge.mtu_request,
        uplink_was_up: uplink.up,
        uplink_promisc: Some(uplink.promisc),
        mac: mac_string(&uplink.mac),
        mtu: uplink.mtu,
        conf_db: None,
        addresses: c.addresses.iter().map(nm::record_address).collect(),
        routes: c.routes.iter().map(nm::record_route).collect(),
        rules: c.rules.iter().map(nm::record_rule).collect(),
        ipv6_before: Vec::new(),
    }
}

/// The IPv6 settings to change on the two ends (`sysctl::wanted`), from their live values (a
/// bridge not there yet counts as having none).
fn ipv6_changes(
    ctx: &Ctx,
    names: &Names,
    carried: &Carried,
) -> Result<Vec<(sysctl::End, &'static str, u8)>> {
    let carries_v6 = carried
        .addresses
        .iter()
        .any(|a| a.header.family == netlink_packet_route::AddressFamily::Inet6);
    Ok(sysctl::wanted(
        ctx.settings.enable_ipv6,
        carries_v6,
        &sysctl::Conf::of(&names.uplink)?,
        &sysctl::Conf::of(&names.bridge)?,
    ))
}

fn describe_ipv6(names: &Names, changes: &[(sysctl::End, &'static str, u8)]) -> Vec<String> {
    changes
        .iter()
        .map(|(end, key, value)| {
            let dev = match end {
                sysctl::End::Uplink => &names.uplink,
                sysctl::End::Bridge => &names.bridge,
            };
            format!("set net.ipv6.conf.{dev}.{key} = {value}")
        })
        .collect()
}

/// Writes the IPv6 settings the move needs, on links as they are now (a bridge OVS just made
/// has the namespace's defaults).
fn apply_ipv6(ctx: &Ctx, names: &Names, carried: &Carried) -> Result<()> {
    for (end, key, value) in ipv6_changes(ctx, names, carried)? {
        let dev = match end {
            sysctl::End::Uplink => &names.uplink,
            sysctl::End::Bridge => &names.bridge,
        };
        sysctl::write(dev, key, value)?;
    }
    Ok(())
}

/// Detach's half: the recorded IPv6 settings written back, after the addresses (an uplink that
/// had IPv6 off gets it off again, which takes its IPv6 addresses, as it had none).
fn restore_ipv6(pre: &UplinkPreState, bridge_stays: bool) -> Result<()> {
    for b in &pre.ipv6_before {
        if let Some(p) = b.problem() {
            return Err(crate::error::input(format!(
                "the ledger's {p} (the ledger was altered): fix or remove that entry"
            )));
        }
        let dev = match b.end {
            sysctl::End::Uplink => &pre.uplink,
            sysctl::End::Bridge if bridge_stays => &pre.bridge,
            sysctl::End::Bridge => continue,
        };
        if sysctl::read(dev, &b.key)?.is_some_and(|now| now != b.value) {
            sysctl::write(dev, &b.key, b.value)?;
        }
    }
    Ok(())
}

/// `uplink attach` as a step: one transaction in the manner of nmstate's checkpoint. The
/// pre-state is recorded, then bridge, port and the netlink burst, then the check (probes);
/// a failed check rolls everything back to the pre-state.
pub struct Attach;

/// The planned move onto the bridge.
pub struct AttachPlan {
    names: Names,
    pre: UplinkPreState,
    carried_on_uplink: Carried,
    lines: Vec<String>,
    /// The hand-off from NetworkManager, listed when it happens.
    nm_line: Option<String>,
    /// The hand-off from systemd-networkd, prepared before anything moves.
    networkd: Option<crate::host::networkd::HandOff>,
}

impl super::Action for AttachPlan {
    fn describe(&self) -> String {
        format!(
            "move {}'s addresses and routes onto {}",
            self.names.uplink, self.names.bridge
        )
    }

    fn why(&self) -> String {
        format!("move {} onto {}", self.names.uplink, self.names.bridge)
    }

    fn lines(&self) -> Vec<String> {
        self.lines.clone()
    }
}

pub fn attach(ctx: &Ctx) -> Result<StepReport> {
    super::execute(ctx, &Attach)
}

impl super::Step for Attach {
    type Action = AttachPlan;

    fn name(&self) -> &'static str {
        NAME
    }

    fn plan(&self, ctx: &Ctx) -> Result<super::Plan<AttachPlan>> {
        let mut plan = super::Plan::new();
        let Session {
            names,
            mut nl,
            uplink,
            view,
            ..
        } = open(ctx)?;
        if let Some(other) = view.port_bridge(&names.uplink) {
            if other != names.bridge {
                return Err(precondition(format!(
                    "{} is already a port of OVS bridge {other}, not {}; remove it there first",
                    names.uplink, names.bridge
                )));
            }
        }
        let ledger = Ledger::load(ctx.host)?;
        let bridge_view = view.bridge(&names.bridge);
        let bridge_exists = bridge_view.is_some();
        let bridge_link = nl.link(&names.bridge)?;
        let live = dump(&mut nl)?;
        let up_end = End {
            index: uplink.index,
            name: &names.uplink,
        };
        // Before creating the bridge its index is unknown; 0 stands in for the plan's description.
        let br_index = bridge_link.as_ref().map_or(0, |l| l.index);
        let br_end = End {
            index: br_index,
            name: &names.bridge,
        };
        let (hwaddr, mtu_request) = bridge_view
            .map(|b| (b.hwaddr.clone(), b.mtu_request.clone()))
            .unwrap_or_default();
        let before = BridgeBefore {
            created: !bridge_exists,
            hwaddr,
            mtu_request,
        };
        let (pre, carried_on_uplink) = match ledger.uplink(&names.uplink) {
            Some(p) => {
                let c = restore_carried(p, br_end)?;
                (p.clone(), c.moved(br_end, up_end))
            }
            None => {
                let c = nm::carried_by(
                    uplink.index,
                    &names.uplink,
                    &live.addrs,
                    &live.routes,
                    &live.rules,
                );
                let db = ovs_dir(ctx)?.display().to_string();
                let mut pre = pre_state(&names, &uplink, db, before, &c);
                // Recorded before they change; a bridge made by the attach goes with detach.
                pre.ipv6_before = sysctl::befores(
                    &ipv6_changes(ctx, &names, &c)?,
                    &sysctl::Conf::of(&names.uplink)?,
                    &sysctl::Conf::of(&names.bridge)?,
                );
                // As the host names it (the manifests mount the OVS directories at their host
                // paths), links unresolved: cleanup reads it under its own host root.
                pre.conf_db = crate::host::ovs::OvsDirs::from_settings(ctx.host, ctx.settings)
                    .ok()
                    .map(|d| d.db.join("conf.db").display().to_string());
                (pre, c)
            }
        };
        let networkd =
            crate::host::networkd::prepare(ctx.host, &names.uplink, uplink.index, &names.bridge)?;
        if ledger.uplink(&names.uplink).is_none() && networkd.is_none() {
            check_dynamic(ctx, &names, &carried_on_uplink, &mut plan.warnings)?;
        }
        check_labels(&names, &carried_on_uplink)?;
        check_nexthop_objects(&names, &carried_on_uplink)?;
        plan.warnings
            .extend(mtu_warning(&names.uplink, uplink.mtu, ctx.settings.pod_mtu));
        let port_present = bridge_view.is_some_and(|b| b.ports.contains(&names.uplink));
        let ops = nm::plan_move(
            &carried_on_uplink,
            up_end,
            br_end,
            &live.addrs,
            &live.routes,
            &live.rules,
        );
        let links_up = uplink.up && bridge_link.as_ref().is_some_and(|l| l.up);
        let mut lines = Vec::new();
        if !bridge_exists {
            lines.push(format!(
                "create OVS bridge {} (datapath {})",
                names.bridge,
                datapath(ctx)
            ));
        }
        if !port_present {
            lines.push(format!(
                "add {} to {} with ofport_request=1",
                names.uplink, names.bridge
            ));
        }
        if !links_up {
            lines.push(format!("set {} and {} up", names.uplink, names.bridge));
        }
        lines.extend(describe_ops(&ops, &[up_end, br_end]));
        lines.extend(describe_ipv6(
            &names,
            &ipv6_changes(ctx, &names, &carried_on_uplink)?,
        ));
        let nm_line = crate::host::nm::needs_hand_off(ctx.host, &names.uplink)?.then(|| {
            format!(
                "tell NetworkManager to leave {} unmanaged while attached",
                names.uplink
            )
        });
        if lines.is_empty() && nm_line.is_none() && networkd.is_none() {
            plan.notes
                .push(format!("{} is attached to {}", names.uplink, names.bridge));
            return Ok(plan);
        }
        if ctx.dry_run {
            lines.extend(nm_line.clone());
            lines.extend(networkd.as_ref().map(|h| h.describe()));
        }
        plan.actions.push(AttachPlan {
            names,
            pre,
            carried_on_uplink,
            lines,
            nm_line,
            networkd,
        });
        Ok(plan)
    }

    /// The hand-off from NetworkManager is best effort (NetworkManager may not know the
    /// device, or not answer; both are reported): converged means nothing is left to move.
    fn converged(&self, plan: &super::Plan<AttachPlan>) -> bool {
        plan.actions.iter().all(|a| a.lines.is_empty())
    }

    fn apply(
        &self,
        ctx: &Ctx,
        p: &AttachPlan,
        ledger: &mut Ledger,
        report: &mut StepReport,
    ) -> Result<()> {
        let Session { mut nl, ovs, .. } = open_with(ctx, false)?;
        let names = &p.names;
        let targets = resolve_targets(ctx, &p.carried_on_uplink)?;
        let timeout = ctx.settings.probe_timeout;
        let answered = probe_all(&targets, timeout.min(Duration::from_secs(1)));
        if answered.is_empty() {
            report.warnings.push(if targets.is_empty() {
                "no probe target (no default gateway on the uplink and probe.targets names none); the move is not checked".into()
            } else {
                format!(
                    "no probe target answered before the move ({}); continuing without a connectivity check",
                    targets.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                )
            });
        }
        ctx.progress.debug(&format!(
            "uplink: {} of {} probe targets answered before the move",
            answered.len(),
            targets.len()
        ));
        if ledger.uplink(&names.uplink).is_none() {
            ledger.record(ctx.host, Entry::UplinkAttached(Box::new(p.pre.clone())))?;
        }
        fault("after-record");
        let result = do_attach(ctx, &mut nl, &ovs, names, &p.pre, report);
        let result = result.and_then(|window| {
            report.metrics.insert("switch_window_ms".into(), window);
            if answered.is_empty() || probe_after(&targets, &answered, timeout) {
                Ok(())
            } else {
                Err(anyhow!(
                    "connectivity lost after the move: none of {} answered within {} ms",
                    answered.join(", "),
                    timeout.as_millis()
                ))
            }
        });
        if let Err(e) = result {
            let rollback = detach_recorded(ctx.host, &mut nl, &ovs, &p.pre).map(|_| ());
            let msg = match rollback {
                Ok(()) => {
                    let _ = ledger.forget(ctx.host, &Entry::UplinkAttached(Box::new(p.pre.clone())));
                    format!("uplink attach failed and was rolled back to the pre-state: {e:#}")
                }
                Err(r) => format!(
                    "uplink attach failed ({e:#}) and the rollback failed too ({r:#}); the pre-state is \
                     in {}: run `ncp-bootstrap uplink detach` to restore it",
                    crate::host::paths::LEDGER
                ),
            };
            return Err(Error::new(Kind::Apply, msg).into());
        }
        // Attached again: what the monitor did before is history.
        let released: Vec<Entry> = ledger
            .entries
            .iter()
            .filter(
                |e| matches!(e, Entry::MonitorReleased { uplink, .. } if *uplink == names.uplink),
            )
            .cloned()
            .collect();
        for e in &released {
            ledger.forget(ctx.host, e)?;
        }
        // After the move and its check: NetworkManager finds the uplink already without addresses.
        match crate::host::nm::hand_off(ctx.host, &names.uplink, &names.bridge) {
            Ok(Some(note)) => {
                report.changes.extend(p.nm_line.iter().map(|l| Change {
                    action: l.clone(),
                    why: format!("move {} onto {}", names.uplink, names.bridge),
                    done: true,
                }));
                report.notes.push(note);
            }
            Ok(None) => {}
            Err(e) => report.warnings.push(format!(
                "could not tell NetworkManager to leave {} alone ({e:#}); a restart of \
                 NetworkManager would put the node's addresses back on it",
                names.uplink
            )),
        }
        if let Some(h) = &p.networkd {
            match crate::host::networkd::hand_off(ctx.host, h) {
                Ok(note) => {
                    report.changes.push(Change {
                        action: h.describe(),
                        why: format!("move {} onto {}", names.uplink, names.bridge),
                        done: true,
                    });
                    report.notes.push(note);
                }
                Err(e) => report.warnings.push(format!(
                    "could not hand {} over from systemd-networkd ({e:#}); a reconfigure of \
                     {} would put the node's addresses back on it{}",
                    names.uplink,
                    names.uplink,
                    if h.lease.is_some() {
                        ", and nothing renews its DHCP lease on the bridge"
                    } else {
                        ""
                    }
                )),
            }
        }
        Ok(())
    }
}

fn datapath(ctx: &Ctx) -> String {
    ctx.settings.datapath.as_str().to_string()
}

/// Bridge, port, links, then the burst. Returns the switch window in ms (port added → last
/// address/route in place).
fn do_attach(
    ctx: &Ctx,
    nl: &mut Netlink,
    ovs: &Ovs,
    names: &Names,
    pre: &UplinkPreState,
    report: &mut StepReport,
) -> Result<f64> {
    ctx.progress
        .debug(&format!("uplink: creating bridge {}", names.bridge));
    ovs.add_bridge(&names.bridge, &datapath(ctx), &pre.mac, pre.mtu)?;
    fault("after-bridge");
    let uplink = nl.link(&names.uplink)?.context("the uplink vanished")?;
    let bridge = nl
        .link(&names.bridge)?
        .with_context(|| format!("OVS did not create the {} interface", names.bridge))?;
    if !bridge.up {
        nl.set_link(bridge.index, Some(true), None, None)?;
    }
    // Everything that can be prepared is prepared before the uplink enters the bridge: adding
    // the port does not change addresses or routes, so the plan made now stays valid.
    let br_end = End {
        index: bridge.index,
        name: &names.bridge,
    };
    let up_end = End {
        index: uplink.index,
        name: &names.uplink,
    };
    let carried = restore_carried(pre, br_end)?.moved(br_end, up_end);
    // Before any address moves: an IPv6 address cannot go onto a link with IPv6 off.
    apply_ipv6(ctx, names, &carried)?;
    let planned_on = |addrs: &[netlink_packet_route::address::AddressMessage]| -> Vec<_> {
        addrs
            .iter()
            .filter(|a| a.header.index == uplink.index)
            .map(nm::address_key)
            .collect()
    };
    let live = dump(nl)?;
    let addrs_at_plan = planned_on(&live.addrs);
    let mut ops = nm::plan_move(
        &carried,
        up_end,
        br_end,
        &live.addrs,
        &live.routes,
        &live.rules,
    );

    let p = ctx.progress;
    let kernel = ctx.settings.datapath == crate::config::Datapath::System;
    // The kernel registers the port's receive hook before it marks the device as an OVS port,
    // and between the two it switches the NIC to promiscuous mode (a round trip to the NIC or
    // its firmware); a packet arriving then is dropped. With the flag already on, that switch
    // is only a count (`host::ovs::datapath`).
    let hold_promisc = kernel && !uplink.promisc;
    if hold_promisc {
        nl.set_promisc(uplink.index, true)?;
    }
    p.debug(&format!("uplink: adding port {}", names.uplink));
    let added = ovs.add_port(&names.bridge, &names.uplink);
    if kernel && (hold_promisc || pre.uplink_promisc == Some(false)) {
        // OVS holds its own count now; ours goes (also when a killed run left it on).
        nl.set_promisc(uplink.index, false)?;
    }
    added?;
    // Adding the port waits for ovs-vswitchd (tens of ms, more on a busy node): an address
    // deleted from the uplink meanwhile must not be re-created on the bridge. One address dump
    // tells; the plan is made again only when they changed.
    crate::fault::hook("port-added");
    if planned_on(&nl.addresses()?) != addrs_at_plan {
        ops = plan_now(nl, &carried, up_end, br_end)?;
    }
    let (make, brk) = nm::make_then_break(&ops);
    p.debug(&format!(
        "uplink: port added; moving {} operations",
        ops.len()
    ));
    // The window opens when OVS has taken the port (ovs-vsctl returns after vswitchd applied
    // it) and closes when the last address and route are in place.
    let window = Instant::now();
    if !uplink.up {
        nl.set_link(uplink.index, Some(true), None, None)?;
    }
    fault("after-port");
    let first = nl.apply(make);
    fault("mid-move");
    crate::fault::hook("mid-move");
    // An op made stale by someone else (an address deleted inside the move) fails alone; the
    // move is then finished from the links as they are, rather than rolled back.
    if first.is_err() || nl.apply(brk).is_err() {
        converge(nl, &carried, up_end, br_end)?;
    }
    let window_ms = window.elapsed().as_secs_f64() * 1000.0;
    p.debug("uplink: addresses and routes moved");

    match ovs.ofport(&names.uplink)? {
        Some(1) => {}
        other => report.warnings.push(format!(
            "{} got ofport {} instead of 1; set `ovs_uplink_port = {}` in ncp.ini section [nsx_kube_proxy]",
            names.uplink,
            other.map_or("(none)".into(), |o| o.to_string()),
            names.uplink
        )),
    }
    // Verify: re-planning finds nothing left, which also means the uplink keeps no moved address.
    let left = plan_now(nl, &carried, up_end, br_end)?;
    if !left.is_empty() {
        return Err(anyhow!(
            "verification failed, still to do: {}",
            describe_ops(&left, &[up_end, br_end]).join("; ")
        ));
    }
    // Last, so that ovs-vswitchd has handled every packet that reached it before it knew the
    // port, and installed whatever drop flows it will for them.
    if kernel {
        match crate::host::ovs::datapath::clear_stale_drops(&names.uplink) {
            Ok(0) => {}
            Ok(n) => report.notes.push(format!(
                "removed {n} datapath flow(s) that dropped what {} received before \
                 ovs-vswitchd had mapped its port",
                names.uplink
            )),
            Err(e) => report.warnings.push(format!(
                "the datapath's drop flows for {} were not checked: {e:#}",
                names.uplink
            )),
        }
    }
    Ok(window_ms)
}

/// What a detach did besides the recorded move.
pub struct Detached {
    /// The switch window in ms: the netlink burst that puts addresses and routes back.
    pub window_ms: f64,
    /// What was added to the bridge after the attach and was carried to the uplink with the rest.
    pub carried_extra: Vec<String>,
}

/// Puts everything the pre-state recorded back on the uplink, with what was added to a bridge
/// of ours since, removes the port, and the bridge when this tool created it and nothing else
/// uses it.
pub fn detach_recorded(
    host: &HostRoot,
    nl: &mut Netlink,
    ovs: &Ovs,
    pre: &UplinkPreState,
) -> Result<Detached> {
    let uplink = nl
        .link(&pre.uplink)?
        .with_context(|| format!("the uplink `{}` does not exist", pre.uplink))?;
    if pre.uplink_was_up {
        nl.set_link(uplink.index, Some(true), None, None)?;
    }
    // Without its bridge link (a userspace bridge vanishes with ovs-vswitchd; after a reboot a
    // kernel one is not there until OVS runs) the addresses are nowhere: put them straight on
    // the uplink, with an index no link has standing in for the bridge.
    let br_index = nl.link(&pre.bridge)?.map_or(u32::MAX, |b| b.index);
    let br_end = End {
        index: br_index,
        name: &pre.bridge,
    };
    let up_end = End {
        index: uplink.index,
        name: &pre.uplink,
    };
    let recorded = restore_carried(pre, br_end)?;
    // What was added to a bridge of ours after the attach goes with the rest: the bridge is
    // removed below and would take it along. (On a bridge we did not make it stays there.)
    let added = match br_index {
        u32::MAX => Carried::default(),
        _ if !pre.bridge_created => Carried::default(),
        index => {
            let live = dump(nl)?;
            let now = nm::carried_by(index, &pre.bridge, &live.addrs, &live.routes, &live.rules);
            nm::added_since(&recorded, &now)
        }
    };
    let carried_extra: Vec<String> = added
        .describe()
        .iter()
        .map(|x| named(x, &[up_end, br_end]))
        .collect();
    let carried = recorded.with(added);
    // networkd makes before we break: it configures the uplink again while the bridge still
    // carries the addresses (and the move below then finds them in place).
    crate::host::networkd::release_uplink(host, &pre.uplink)?;
    let window = converge(nl, &carried, br_end, up_end)?;
    // The addresses are back on the uplink: NetworkManager may have it again.
    crate::host::nm::take_back(host, &pre.uplink, &pre.bridge)?;
    ovs.del_port(&pre.bridge, &pre.uplink)?;
    if pre.uplink_promisc == Some(false) && uplink.promisc {
        // Left on by an attach that was killed while it held the flag.
        nl.set_promisc(uplink.index, false)?;
    }
    crate::host::networkd::release_bridge(host, &pre.uplink)?;
    restore_ipv6(pre, !pre.bridge_created && nl.link(&pre.bridge)?.is_some())?;
    let done = Detached {
        window_ms: window,
        carried_extra,
    };
    if !ovs.bridge_exists(&pre.bridge)? {
        return Ok(done);
    }
    if pre.bridge_created {
        if ovs.ports(&pre.bridge)?.is_empty() {
            ovs.del_bridge(&pre.bridge)?;
        }
    } else if !pre.ovs_db_dir.is_empty() {
        ovs.restore_bridge_settings(
            &pre.bridge,
            pre.bridge_hwaddr_before.as_deref(),
            pre.bridge_mtu_request_before.as_deref(),
        )?;
    }
    Ok(done)
}

/// `uplink detach` as a step: everything back on node-if from the recorded pre-state (or, with
/// no record, what the bridge carries), the port removed, the bridge too when attach made it.
pub struct Detach;

/// The planned move back.
pub struct DetachPlan {
    names: Names,
    /// The recorded attach; `None` when something else attached the uplink.
    recorded: Option<UplinkPreState>,
    lines: Vec<String>,
    /// The step under which an attach made by something else is recorded as released
    /// (`install` taking the uplink from the host's OVS), so that cleanup gives it back.
    release_step: Option<String>,
}

impl super::Action for DetachPlan {
    fn describe(&self) -> String {
        format!(
            "move {}'s addresses and routes back from {}",
            self.names.uplink, self.names.bridge
        )
    }

    fn why(&self) -> String {
        format!("move {} back off {}", self.names.uplink, self.names.bridge)
    }

    fn lines(&self) -> Vec<String> {
        self.lines.clone()
    }
}

pub fn detach(ctx: &Ctx) -> Result<StepReport> {
    super::execute(ctx, &Detach)
}

/// The detach step run inside another step's apply (host-ovs, legacy cleanup), under the lock
/// that step holds; what it moved goes into that step's notes. `release_step`: record an attach
/// made by something else under that step, for cleanup to restore.
pub fn detach_within(
    ctx: &Ctx,
    ledger: &mut Ledger,
    report: &mut StepReport,
    release_step: Option<&str>,
) -> Result<()> {
    use super::{Action, Step};
    for mut a in Detach.plan(ctx)?.actions {
        a.release_step = release_step.map(String::from);
        Detach.apply(ctx, &a, ledger, report)?;
        report.notes.extend(a.lines());
    }
    Ok(())
}

impl super::Step for Detach {
    type Action = DetachPlan;

    fn name(&self) -> &'static str {
        NAME
    }

    fn plan(&self, ctx: &Ctx) -> Result<super::Plan<DetachPlan>> {
        let mut plan = super::Plan::new();
        let Session {
            names,
            mut nl,
            uplink,
            view,
            ..
        } = open(ctx)?;
        let ledger = Ledger::load(ctx.host)?;
        let recorded = ledger.uplink(&names.uplink).cloned();
        let bridge = nl.link(&names.bridge)?;
        let ports = view
            .bridge(&names.bridge)
            .map(|b| b.ports.clone())
            .unwrap_or_default();
        let mut lines = Vec::new();
        if let Some(br) = &bridge {
            let br_end = End {
                index: br.index,
                name: &names.bridge,
            };
            let up_end = End {
                index: uplink.index,
                name: &names.uplink,
            };
            let live = dump(&mut nl)?;
            let now = nm::carried_by(
                br.index,
                &names.bridge,
                &live.addrs,
                &live.routes,
                &live.rules,
            );
            let carried = match &recorded {
                Some(p) => {
                    let rec = restore_carried(p, br_end)?;
                    let added = nm::added_since(&rec, &now);
                    let each: Vec<String> = added
                        .describe()
                        .iter()
                        .map(|x| named(x, &[up_end, br_end]))
                        .collect();
                    if p.bridge_created {
                        lines.extend(each.iter().map(|x| {
                            format!("carry {x} too (added to {} after the attach)", names.bridge)
                        }));
                        rec.with(added)
                    } else {
                        plan.warnings.extend(each.iter().map(|x| {
                            format!(
                                "{x} was added to {} after the attach; it stays there (the \
                                 bridge is not ncp-bootstrap's and is kept)",
                                names.bridge
                            )
                        }));
                        rec
                    }
                }
                None => now,
            };
            lines.extend(describe_ops(
                &nm::plan_move(
                    &carried,
                    br_end,
                    up_end,
                    &live.addrs,
                    &live.routes,
                    &live.rules,
                ),
                &[up_end, br_end],
            ));
        }
        if ports.contains(&names.uplink) {
            lines.push(format!(
                "remove port {} from {}",
                names.uplink, names.bridge
            ));
        }
        let bridge_goes = recorded.as_ref().is_some_and(|p| p.bridge_created)
            && view.bridge(&names.bridge).is_some()
            && ports.iter().all(|p| *p == names.uplink);
        if bridge_goes {
            lines.push(format!(
                "remove OVS bridge {} (uplink attach created it)",
                names.bridge
            ));
        }
        if lines.is_empty() {
            match &recorded {
                None => {
                    plan.notes.push(format!(
                        "{} is not attached to {}",
                        names.uplink, names.bridge
                    ));
                    return Ok(plan);
                }
                Some(_) => lines.push(format!(
                    "forget the recorded attach of {} (nothing is left on {})",
                    names.uplink, names.bridge
                )),
            }
        }
        plan.actions.push(DetachPlan {
            names,
            recorded,
            lines,
            release_step: None,
        });
        Ok(plan)
    }

    fn apply(
        &self,
        ctx: &Ctx,
        p: &DetachPlan,
        ledger: &mut Ledger,
        report: &mut StepReport,
    ) -> Result<()> {
        let Session {
            names,
            mut nl,
            uplink,
            ovs,
            ..
        } = open_with(ctx, false)?;
        let pre = match &p.recorded {
            Some(pre) => pre.clone(),
            // No record (attached by something else): move what the bridge carries, keep the
            // bridge.
            None => {
                let br = nl
                    .link(&names.bridge)?
                    .with_context(|| format!("{} vanished", names.bridge))?;
                let live = dump(&mut nl)?;
                let c = nm::carried_by(
                    br.index,
                    &names.bridge,
                    &live.addrs,
                    &live.routes,
                    &live.rules,
                );
                let back = c.moved(
                    End {
                        index: br.index,
                        name: &names.bridge,
                    },
                    End {
                        index: uplink.index,
                        name: &names.uplink,
                    },
                );
                // No ovs_db_dir: the bridge is not ours, its settings are left alone.
                let kept = BridgeBefore {
                    created: false,
                    hwaddr: None,
                    mtu_request: None,
                };
                let pre = pre_state(&names, &uplink, String::new(), kept, &back);
                if let Some(step) = &p.release_step {
                    // Before the move: a kill in between leaves a record whose undo finds the
                    // addresses still on the bridge, which is what it would have restored.
                    let released = UplinkPreState {
                        step: step.clone(),
                        ovs_db_dir: ovs_dir(ctx)?.display().to_string(),
                        ..pre.clone()
                    };
                    ledger.record(ctx.host, Entry::UplinkReleased(Box::new(released)))?;
                }
                pre
            }
        };
        let done = detach_recorded(ctx.host, &mut nl, &ovs, &pre).map_err(|e| {
            Error::new(
                Kind::Apply,
                format!("uplink detach failed: {e:#}; re-run it to finish"),
            )
        })?;
        report
            .metrics
            .insert("switch_window_ms".into(), done.window_ms);
        report.notes.extend(done.carried_extra.iter().map(|x| {
            format!(
                "carried {x} to {} (added to {} after the attach)",
                names.uplink, names.bridge
            )
        }));
        let entry = Entry::UplinkAttached(Box::new(pre));
        if ledger.entries.contains(&entry) {
            ledger.forget(ctx.host, &entry)?;
        }
        Ok(())
    }
}

/// For `cleanup`: detach from a ledger entry alone. When no OVS runs any more (the nsx-ovs
/// container is gone, as on decommission), a private ovsdb-server is started on the recorded
/// database just long enough to remove the port and the bridge.
pub fn undo(host: &HostRoot, pre: &UplinkPreState) -> Result<()> {
    let mut nl = Netlink::open()?;
    let ovs = Ovs::new(PathBuf::from(&pre.ovs_db_dir))?;
    if ovs.reachable().is_ok() {
        return detach_recorded(host, &mut nl, &ovs, pre).map(|_| ());
    }
    let db = pre.conf_db.as_deref().ok_or_else(|| {
        anyhow!(
            "OVS is not running at {} and the ledger does not name its database; start OVS \
             (`ovs run`) and run cleanup again",
            pre.ovs_db_dir
        )
    })?;
    let db = crate::host::ovs::recorded_db(host, db)?;
    let offline = crate::host::ovs::Offline::start(host, &db)?;
    // On the kernel datapath node-if stays a port of a switch that no longer runs: out of it
    // first, or the addresses put back on it would not answer.
    crate::host::ovs::datapath::release_port(&pre.uplink)?;
    detach_recorded(host, &mut nl, &offline.ovs, pre)?;
    offline.ovs.clear_restore_wait()?;
    // The bridge's own device outlives a stopped ovs-vswitchd; with no switch to remove it,
    // remove it here when the bridge was ours (a kernel datapath's internal port goes with
    // its datapath port).
    if pre.bridge_created && !crate::host::ovs::datapath::release_port(&pre.bridge)? {
        if let Some(br) = nl.link(&pre.bridge)? {
            nl.del_link(br.index).with_context(|| {
                format!(
                    "{} was removed from OVS but its device stays until OVS runs again",
                    pre.bridge
                )
            })?;
        }
    }
    Ok(())
}

/// For `cleanup`: gives the host's OVS back the uplink that `install` took from it (NCP's
/// manual procedure had attached it): the port again, then the addresses and routes on the
/// bridge, make-before-break as in attach. Runs after the host's OVS was started again.
pub fn reattach(pre: &UplinkPreState) -> Result<()> {
    let ovs = Ovs::new(PathBuf::from(&pre.ovs_db_dir))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = ovs.reachable() {
        if Instant::now() > deadline {
            return Err(anyhow!(
                "the host's OVS at {} did not come back within 30 s ({e:#}); start it and run \
                 cleanup again to put {} back into {}",
                pre.ovs_db_dir,
                pre.uplink,
                pre.bridge
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if !ovs.bridge_exists(&pre.bridge)? {
        return Err(anyhow!(
            "the host's OVS has no bridge {} any more; {} stays on node-if",
            pre.bridge,
            pre.uplink
        ));
    }
    // The names come from the ledger: the uplink must be a link that exists before any
    // ovs-vsctl sees it.
    let mut nl = Netlink::open()?;
    let uplink = nl
        .link(&pre.uplink)?
        .with_context(|| format!("the uplink `{}` does not exist", pre.uplink))?;
    if !ovs.ports(&pre.bridge)?.contains(&pre.uplink) {
        ovs.add_port(&pre.bridge, &pre.uplink)?;
    }
    // A switch that just started creates the bridge's device when it has read the database.
    let bridge = loop {
        if let Some(b) = nl.link(&pre.bridge)? {
            break b;
        }
        if Instant::now() > deadline {
            return Err(anyhow!("OVS did not create the {} interface", pre.bridge));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !bridge.up {
        nl.set_link(bridge.index, Some(true), None, None)?;
    }
    let up_end = End {
        index: uplink.index,
        name: &pre.uplink,
    };
    let br_end = End {
        index: bridge.index,
        name: &pre.bridge,
    };
    let carried = restore_carried(pre, up_end)?;
    let ops = plan_now(&mut nl, &carried, up_end, br_end)?;
    nl.apply(&ops)
}

/// For health and status: what forwarding through the attached uplink needs and a restart of
/// `ovs run` can give back. Fails when the uplink or the bridge is down or without carrier
/// (the gateway is out of reach, whatever OVS says), or when the uplink holds an address the
/// attach recorded and moved (the re-attach of a restart moves it again). An address added to
/// the uplink after the attach is none of these: no restart moves it, so it must not fail a
/// liveness probe (which would restart nsx-ovs in a loop); it comes back as a note.
pub fn check_forwarding(host: &HostRoot, uplink: &str, bridge: &str) -> Result<Vec<String>> {
    let mut nl = Netlink::open()?;
    let link = nl
        .link(uplink)?
        .with_context(|| format!("{uplink} does not exist"))?;
    if !link.up {
        return Err(anyhow!(
            "{uplink} is down: nothing reaches the gateway through {bridge}; `ip link set \
             {uplink} up` (ovs run brings it up when it attaches)"
        ));
    }
    if !link.carrier {
        return Err(anyhow!(
            "{uplink} has no carrier: nothing reaches the gateway through {bridge}"
        ));
    }
    match nl.link(bridge)? {
        Some(b) if b.up => {}
        Some(_) => {
            return Err(anyhow!(
                "{bridge} is down: the node's addresses on it are unreachable"
            ))
        }
        None => return Err(anyhow!("{bridge} has no device: OVS has not created it")),
    }
    let ledger = Ledger::load(host)?;
    let recorded: Vec<_> = match ledger.uplink(uplink) {
        Some(pre) => pre
            .carried()?
            .addresses
            .iter()
            .map(nm::address_key)
            .collect(),
        None => Vec::new(),
    };
    let here = [End {
        index: link.index,
        name: uplink,
    }];
    let (moved, added): (Vec<_>, Vec<_>) = nl
        .addresses()?
        .into_iter()
        .filter(|a| a.header.index == link.index && nm::is_movable_address(a))
        .partition(|a| recorded.contains(&nm::address_key(a)));
    if !moved.is_empty() {
        let left: Vec<String> = moved
            .iter()
            .map(|a| named(&nm::describe_address(a), &here))
            .collect();
        return Err(anyhow!(
            "{uplink} still holds {} (the attach moves it to {bridge})",
            left.join(", ")
        ));
    }
    Ok(added
        .iter()
        .map(|a| {
            format!(
                "{} was added to {uplink} after the attach and stays there (no attach moves \
                 it): move it to {bridge} by hand, or detach and attach again",
                named(&nm::describe_address(a), &here)
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uplink_smaller_than_the_pods_mtu_is_named_with_both_figures() {
        assert_eq!(mtu_warning("ens192", 1500, 1500), None);
        assert_eq!(mtu_warning("ens192", 9000, 1500), None);
        let w = mtu_warning("ens192", 1400, 1500).unwrap();
        for want in [
            "ens192",
            "1400",
            "1500",
            "[nsx_node_agent] mtu",
            "mtu = 1400",
        ] {
            assert!(w.contains(want), "{want}: {w}");
        }
    }

    #[test]
    fn links_are_named_in_descriptions() {
        let ends = [
            End {
                index: 2,
                name: "eth1",
            },
            End {
                index: 9,
                name: "br-int",
            },
        ];
        assert_eq!(
            named("add address 10.0.0.5/24 dev#9 label br-int", &ends),
            "add address 10.0.0.5/24 dev br-int label br-int"
        );
        assert_eq!(
            named(
                "replace route default via 10.0.0.1 dev#2 metric 5; dev#21 dev#",
                &ends
            ),
            "replace route default via 10.0.0.1 dev eth1 metric 5; dev#21 dev#"
        );
    }
}
