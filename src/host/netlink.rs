//! A blocking rtnetlink wrapper: typed operations over one NETLINK_ROUTE socket, each error
//! tagged with what it was doing. Built directly on netlink-packet-route and netlink-sys rather
//! than the async `rtnetlink` crate: every caller here is synchronous, and sending a whole batch
//! of requests in one buffer (then collecting the acks) is what keeps an uplink move inside a
//! few milliseconds.

use crate::netmodel::Op;
use anyhow::{anyhow, Context, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Requests per send: well under the socket buffer, so the kernel never drops acks.
const BATCH: usize = 256;

pub struct Netlink {
    sock: Socket,
    seq: u32,
}

/// What we need to know of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub up: bool,
    /// The link is operationally up (`IFF_RUNNING`: carrier, and its lower device up).
    pub carrier: bool,
    /// Promiscuous mode as set by a user (`ip link set … promisc on`), not the count that
    /// OVS and packet sockets hold.
    pub promisc: bool,
    /// Index of the link this one is enslaved to (a Linux bridge or bond), if any.
    pub controller: Option<u32>,
    pub loopback: bool,
    /// The driver kind (`bridge`, `openvswitch`, `veth`…); `None` for a plain NIC.
    pub kind: Option<String>,
}

/// The request that carries an op, with its flags.
fn into_request(op: Op) -> (RouteNetlinkMessage, u16) {
    match op {
        Op::AddAddress(m) => (
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        ),
        Op::DelAddress(m) => (RouteNetlinkMessage::DelAddress(m), 0),
        Op::ReplaceRoute(m) => (
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        ),
        Op::DelRoute(m) => (RouteNetlinkMessage::DelRoute(m), 0),
        Op::AddRule(m) => (RouteNetlinkMessage::NewRule(m), NLM_F_CREATE | NLM_F_EXCL),
        Op::DelRule(m) => (RouteNetlinkMessage::DelRule(m), 0),
    }
}

impl Netlink {
    pub fn open() -> Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE).context("opening a NETLINK_ROUTE socket")?;
        sock.bind_auto().context("binding the netlink socket")?;
        sock.connect(&SocketAddr::new(0, 0))
            .context("connecting the netlink socket")?;
        // Large dumps (10 000 routes) arrive faster than we parse them.
        let _ = sock.set_rx_buf_sz(8 << 20);
        Ok(Netlink { sock, seq: 1 })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn encode(&mut self, msg: RouteNetlinkMessage, flags: u16, buf: &mut Vec<u8>) -> u32 {
        let seq = self.next_seq();
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let start = buf.len();
        buf.resize(start + nl.buffer_len(), 0);
        nl.serialize(&mut buf[start..]);
        seq
    }

    fn recv_messages(&mut self) -> Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
        let (data, _) = self
            .sock
            .recv_from_full()
            .context("receiving from netlink")?;
        let mut out = Vec::new();
        let mut off = 0;
        while off < data.len() {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                .map_err(|e| anyhow!("decoding a netlink message: {e}"))?;
            let len = msg.header.length as usize;
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
            out.push(msg);
        }
        Ok(out)
    }

    fn dump(&mut self, msg: RouteNetlinkMessage, what: &str) -> Result<Vec<RouteNetlinkMessage>> {
        let mut buf = Vec::new();
        let seq = self.encode(msg, NLM_F_DUMP, &mut buf);
        self.sock
            .send(&buf, 0)
            .with_context(|| format!("requesting {what}"))?;
        let mut out = Vec::new();
        loop {
            for m in self.recv_messages()? {
                if m.header.sequence_number != seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(e.to_io()).with_context(|| format!("dumping {what}"))
                    }
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    _ => {}
                }
            }
        }
    }

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self.dump(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            "links",
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_from(&l)),
                _ => None,
            })
            .collect())
    }

    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    pub fn addresses(&mut self) -> Result<Vec<AddressMessage>> {
        let msgs = self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            "addresses",
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })
            .collect())
    }

    /// Routes of IPv4 and IPv6, every table.
    pub fn routes(&mut self) -> Result<Vec<RouteMessage>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut req = RouteMessage::default();
            req.header.address_family = family;
            for m in self.dump(RouteNetlinkMessage::GetRoute(req), "routes")? {
                if let RouteNetlinkMessage::NewRoute(r) = m {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    pub fn rules(&mut self) -> Result<Vec<RuleMessage>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut req = RuleMessage::default();
            req.header.family = family;
            for m in self.dump(RouteNetlinkMessage::GetRule(req), "rules")? {
                if let RouteNetlinkMessage::NewRule(r) = m {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Sets a link up or down, and optionally its MAC and MTU.
    pub fn set_link(
        &mut self,
        index: u32,
        up: Option<bool>,
        mac: Option<&[u8]>,
        mtu: Option<u32>,
    ) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if let Some(up) = up {
            m.header.change_mask = LinkFlags::Up;
            if up {
                m.header.flags = LinkFlags::Up;
            }
        }
        if let Some(mac) = mac {
            m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        self.ask(RouteNetlinkMessage::SetLink(m))
            .with_context(|| format!("setting link {index}"))
    }

    /// Sets or clears a link's user promiscuous flag.
    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.change_mask = LinkFlags::Promisc;
        if on {
            m.header.flags = LinkFlags::Promisc;
        }
        self.ask(RouteNetlinkMessage::SetLink(m))
            .with_context(|| format!("setting promiscuous mode of link {index}"))
    }

    /// Deletes a link (a bridge device OVS left behind when it stopped).
    pub fn del_link(&mut self, index: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.ask(RouteNetlinkMessage::DelLink(m))
            .with_context(|| format!("deleting link {index}"))
    }

    /// One request, acknowledged.
    fn ask(&mut self, msg: RouteNetlinkMessage) -> Result<()> {
        let mut buf = Vec::new();
        let seq = self.encode(msg, NLM_F_ACK, &mut buf);
        self.sock.send(&buf, 0).context("sending a link change")?;
        self.collect_acks(&[seq]).remove(0)
    }

    /// Sends every op, in order, in as few buffers as possible, and waits for every ack. The
    /// kernel handles the messages of one buffer in order. Returns the first failure, naming the
    /// op; the ops before it took effect.
    pub fn apply(&mut self, ops: &[Op]) -> Result<()> {
        for chunk in ops.chunks(BATCH) {
            let mut buf = Vec::new();
            let mut seqs = Vec::with_capacity(chunk.len());
            for op in chunk {
                let (msg, flags) = into_request(op.clone());
                seqs.push(self.encode(msg, flags | NLM_F_ACK, &mut buf));
            }
            self.sock
                .send(&buf, 0)
                .context("sending netlink requests")?;
            for (op, res) in chunk.iter().zip(self.collect_acks(&seqs)) {
                res.with_context(|| op.describe())?;
            }
        }
        Ok(())
    }

    fn collect_acks(&mut self, seqs: &[u32]) -> Vec<Result<()>> {
        let first = seqs.first().copied().unwrap_or(0);
        let mut results: Vec<Option<Result<()>>> = (0..seqs.len()).map(|_| None).collect();
        let mut left = seqs.len();
        while left > 0 {
            let msgs = match self.recv_messages() {
                Ok(m) => m,
                Err(e) => {
                    let msg = format!("{e:#}");
                    for r in results.iter_mut().filter(|r| r.is_none()) {
                        *r = Some(Err(anyhow!("{msg}")));
                    }
                    break;
                }
            };
            for m in msgs {
                let i = m.header.sequence_number.wrapping_sub(first) as usize;
                if i >= results.len() || results[i].is_some() {
                    continue;
                }
                if let NetlinkPayload::Error(e) = m.payload {
                    results[i] = Some(match e.code {
                        None => Ok(()),
                        Some(_) => Err(anyhow::Error::new(e.to_io())),
                    });
                    left -= 1;
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(anyhow!("no answer from the kernel"))))
            .collect()
    }
}

fn link_from(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        mac: Vec::new(),
        mtu: 0,
        up: l.header.flags.contains(LinkFlags::Up),
        carrier: l.header.flags.contains(LinkFlags::Running),
        promisc: l.header.flags.contains(LinkFlags::Promisc),
        controller: None,
        loopback: l.header.flags.contains(LinkFlags::Loopback),
        kind: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(m) => link.mac = m.clone(),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Controller(c) => link.controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                link.kind = infos.iter().find_map(|i| match i {
                    netlink_packet_route::link::LinkInfo::Kind(k) => Some(k.to_string()),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    link
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netmodel::tests::{addr, route};
    use crate::netmodel::{address_ip, route_dst, route_gateway};

    /// Runs `f` in a network namespace of its own: `unshare` applies to this test's thread
    /// only, and the `ip` it runs inherits it, so nothing reaches the machine's own network.
    fn in_namespace(f: impl FnOnce() + Send + 'static) -> bool {
        if !nix::unistd::geteuid().is_root() {
            if std::env::var_os("CI").is_some() {
                panic!("required in CI: root, for a network namespace");
            }
            eprintln!("SKIP: needs root for a network namespace");
            return false;
        }
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap();
        true
    }

    fn ip(args: &str) {
        let st = std::process::Command::new("ip")
            .args(args.split_whitespace())
            .status()
            .unwrap();
        assert!(st.success(), "ip {args}");
    }

    #[test]
    fn a_batch_adds_replaces_and_deletes_in_one_burst() {
        in_namespace(|| {
            ip("link add name ncpa type veth peer name ncpb");
            ip("link set ncpa up");
            ip("link set ncpb up");
            let mut nl = Netlink::open().unwrap();
            let a = nl.link("ncpa").unwrap().unwrap();
            assert_eq!(a.kind.as_deref(), Some("veth"));
            assert!(nl.link("lo").unwrap().unwrap().loopback);
            assert!(!a.loopback);

            // The planner's fixtures, completed as the kernel dumps them (a label of the link's
            // own name, a unicast route).
            let without_label = |mut m: AddressMessage| {
                m.attributes.retain(|x| {
                    !matches!(x, netlink_packet_route::address::AddressAttribute::Label(_))
                });
                m
            };
            let address = without_label(addr(a.index, "10.9.0.1", 24, false));
            let mut via = route(a.index, Some(("10.10.0.0", 24)), Some("10.9.0.2"), 254, 0);
            via.header.kind = netlink_packet_route::route::RouteType::Unicast;
            nl.apply(&[
                Op::AddAddress(address.clone()),
                Op::ReplaceRoute(via.clone()),
            ])
            .unwrap();
            let has_addr = |nl: &mut Netlink| {
                nl.addresses().unwrap().iter().any(|m| {
                    m.header.index == a.index && address_ip(m) == Some("10.9.0.1".parse().unwrap())
                })
            };
            let has_route = |nl: &mut Netlink| {
                nl.routes().unwrap().iter().any(|r| {
                    route_dst(r) == Some("10.10.0.0".parse().unwrap())
                        && route_gateway(r).as_deref() == Some("10.9.0.2")
                })
            };
            assert!(has_addr(&mut nl) && has_route(&mut nl));
            // NLM_F_REPLACE: sending the route again is not an error.
            nl.apply(&[Op::ReplaceRoute(via.clone())]).unwrap();
            // A failing op is named in the error.
            let absent = without_label(addr(a.index, "10.9.9.9", 24, false));
            let e = nl.apply(&[Op::DelAddress(absent)]).unwrap_err();
            assert!(
                format!("{e:#}").contains("delete address 10.9.9.9/24"),
                "{e:#}"
            );
            nl.apply(&[Op::DelRoute(via), Op::DelAddress(address)])
                .unwrap();
            assert!(!has_addr(&mut nl) && !has_route(&mut nl));
        });
    }
}
