//! The inverse of the uplink's ledger entries: an attach is detached (or, with the uplink gone,
//! forgotten when asked), an uplink taken from the host's own OVS is given back to it.

use crate::host::netlink::Netlink;
use crate::host::HostRoot;
use crate::ledger::{Entry, UplinkPreState};
use anyhow::Result;

#[derive(Debug, Clone, PartialEq)]
pub enum Undo {
    Detach(Box<UplinkPreState>),
    Reattach(Box<UplinkPreState>),
    /// `--forget-missing-uplink`: the uplink is gone; the record goes, nothing is moved.
    ForgetMissing {
        uplink: String,
        bridge: String,
        addresses: Vec<String>,
    },
}

impl Undo {
    /// Plans the undo of an `uplink_attached` or `uplink_released` entry (read only); `None`
    /// for any other entry. An attach whose uplink no longer exists is an error that says the
    /// way forward, unless `forget_missing` says to drop the record.
    pub fn plan(entry: &Entry, forget_missing: bool) -> Result<Option<Undo>> {
        Ok(Some(match entry {
            Entry::UplinkAttached(p) => {
                if Netlink::open()?.link(&p.uplink)?.is_some() {
                    Undo::Detach(p.clone())
                } else if forget_missing {
                    Undo::ForgetMissing {
                        uplink: p.uplink.clone(),
                        bridge: p.bridge.clone(),
                        addresses: p.addresses.iter().map(|a| a.summary.clone()).collect(),
                    }
                } else {
                    return Err(missing_uplink(p));
                }
            }
            Entry::UplinkReleased(p) => Undo::Reattach(p.clone()),
            _ => return Ok(None),
        }))
    }

    pub fn describe(&self) -> String {
        match self {
            Undo::Reattach(p) => format!(
                "put {} back into the host's OVS bridge {} with its addresses and routes, as \
                 before install",
                p.uplink, p.bridge
            ),
            Undo::Detach(p) => format!(
                "move {}'s addresses and routes back from {} and remove the port{}",
                p.uplink,
                p.bridge,
                if p.bridge_created {
                    " and the bridge"
                } else {
                    ""
                }
            ),
            Undo::ForgetMissing {
                uplink,
                bridge,
                addresses,
            } => format!(
                "forget the attach of {uplink}: it no longer exists, so {} cannot be put back on \
                 it; {bridge} stays in OVS (`ovs-vsctl del-br {bridge}` removes it)",
                if addresses.is_empty() {
                    "nothing".to_string()
                } else {
                    addresses.join(", ")
                }
            ),
        }
    }

    pub fn is_warning(&self) -> bool {
        matches!(self, Undo::ForgetMissing { .. })
    }

    pub fn apply(&self, host: &HostRoot) -> Result<()> {
        match self {
            Undo::Detach(p) => super::undo(host, p),
            Undo::Reattach(p) => super::reattach(p),
            Undo::ForgetMissing { .. } => Ok(()),
        }
    }
}

fn missing_uplink(p: &UplinkPreState) -> anyhow::Error {
    crate::error::precondition(format!(
        "the recorded uplink {} does not exist any more (the NIC was renamed or removed), so its \
         addresses and routes cannot be put back on it. Bring it back under that name and run \
         cleanup again; or run `ncp-bootstrap cleanup --forget-missing-uplink` to drop the \
         record (the addresses it held, {}, stay wherever they are now, and {} stays in OVS)",
        p.uplink,
        p.addresses
            .iter()
            .map(|a| a.summary.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        p.bridge
    ))
}
