//! Connectivity probes around an uplink move: ICMP echo (raw socket, so no `ping` binary is
//! needed in the container) or a TCP connect.

use crate::error::input;
use anyhow::Result;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The default gateway of the uplink, found in its routes.
    Gateway,
    Icmp(IpAddr),
    Tcp(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Gateway => write!(f, "gateway"),
            Target::Icmp(ip) => write!(f, "{ip} (icmp)"),
            Target::Tcp(hp) => write!(f, "{hp} (tcp)"),
        }
    }
}

pub fn parse_target(s: &str) -> Result<Target> {
    if s == "gateway" {
        return Ok(Target::Gateway);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Target::Icmp(ip));
    }
    if s.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
    {
        return Ok(Target::Tcp(s.to_string()));
    }
    Err(input(format!(
        "probe.targets: `{s}` is not an IP address, host:port, or the word gateway"
    )))
}

/// One probe: true when the target answered within `timeout`.
pub fn once(target: &Target, timeout: Duration) -> bool {
    match target {
        Target::Gateway => false,
        Target::Icmp(ip) => icmp_echo(*ip, timeout).unwrap_or(false),
        Target::Tcp(hp) => tcp(hp, timeout),
    }
}

fn tcp(hp: &str, timeout: Duration) -> bool {
    let Ok(addrs) = hp.to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a: SocketAddr| TcpStream::connect_timeout(&a, timeout).is_ok())
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request: ICMPv4 with its checksum (the kernel fills ICMPv6's itself).
pub fn echo_request(v6: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut pkt = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(payload);
    if !v6 {
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    pkt
}

/// The id and sequence of an echo reply as a raw socket delivers it, with its sender for IPv4
/// (raw IPv4 sockets deliver the IP header too; ICMPv6 sockets the message only).
pub fn echo_reply(v6: bool, data: &[u8]) -> Option<(u16, u16, Option<[u8; 4]>)> {
    let (icmp, from) = if v6 {
        (data, None)
    } else {
        let ihl = usize::from(data.first().copied().unwrap_or(0) & 0x0f) * 4;
        let from = data.get(12..16).and_then(|s| <[u8; 4]>::try_from(s).ok());
        (data.get(ihl..).unwrap_or(&[]), from)
    };
    let reply_type = if v6 { 129 } else { 0 };
    (icmp.len() >= 8 && icmp[0] == reply_type).then(|| {
        (
            u16::from_be_bytes([icmp[4], icmp[5]]),
            u16::from_be_bytes([icmp[6], icmp[7]]),
            from,
        )
    })
}

fn icmp_echo(ip: IpAddr, timeout: Duration) -> std::io::Result<bool> {
    let (domain, proto) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let sock = Socket::new(domain, Type::RAW, Some(proto))?;
    let id = (std::process::id() & 0xffff) as u16;
    let seq: u16 = 1;
    let pkt = echo_request(ip.is_ipv6(), id, seq, b"ncp-bootstrap probe");
    sock.send_to(&pkt, &SockAddr::from(SocketAddr::new(ip, 0)))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        sock.set_read_timeout(Some(left))?;
        let n = match (&sock).read(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        let Some((rid, rseq, from)) = echo_reply(ip.is_ipv6(), &buf[..n]) else {
            continue;
        };
        let from_ok = match ip {
            IpAddr::V4(v4) => from == Some(v4.octets()),
            IpAddr::V6(_) => true,
        };
        if rid == id && rseq == seq && from_ok {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(parse_target("gateway").unwrap(), Target::Gateway);
        assert_eq!(
            parse_target("10.0.0.1").unwrap(),
            Target::Icmp("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_target("fd00::1").unwrap(),
            Target::Icmp("fd00::1".parse().unwrap())
        );
        assert_eq!(
            parse_target("api:6443").unwrap(),
            Target::Tcp("api:6443".into())
        );
        assert_eq!(
            parse_target("[fd00::1]:6443").unwrap(),
            Target::Tcp("[fd00::1]:6443".into())
        );
        assert!(parse_target("nowhere").is_err());
    }

    #[test]
    fn icmp_checksum_of_a_known_packet() {
        // Echo request, id 1, seq 1, no payload: checksum 0xf7fd.
        assert_eq!(checksum(&[8, 0, 0, 0, 0, 1, 0, 1]), 0xf7fd);
    }
}
