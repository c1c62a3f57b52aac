//! Netlink objects as the ledger keeps them: exact bytes, hex-encoded, and a line for people.

use super::*;
use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::rule::RuleMessage;
use serde::{Deserialize, Serialize};

/// A netlink object as the ledger keeps it: its exact bytes (so that a restore preserves every
/// attribute, known to this build or not) and a line for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub summary: String,
    pub raw: String,
}

pub(super) fn to_hex<T: Emitable>(m: &T) -> String {
    let mut buf = vec![0u8; m.buffer_len()];
    m.emit(&mut buf);
    hex::encode(buf)
}

pub(super) fn from_hex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

pub fn record_address(a: &AddressMessage) -> Recorded {
    Recorded {
        summary: describe_address(a),
        raw: to_hex(a),
    }
}

pub fn record_route(r: &RouteMessage) -> Recorded {
    Recorded {
        summary: describe_route(r),
        raw: to_hex(r),
    }
}

pub fn record_rule(r: &RuleMessage) -> Recorded {
    Recorded {
        summary: describe_rule(r),
        raw: to_hex(r),
    }
}

pub fn restore_address(r: &Recorded) -> Option<AddressMessage> {
    AddressMessage::parse(&from_hex(&r.raw)?[..]).ok()
}

pub fn restore_route(r: &Recorded) -> Option<RouteMessage> {
    RouteMessage::parse(&from_hex(&r.raw)?[..]).ok()
}

pub fn restore_rule(r: &Recorded) -> Option<RuleMessage> {
    RuleMessage::parse(&from_hex(&r.raw)?[..]).ok()
}
