//! Every well-known host path, as seen from the host's `/`. Resolve them through `HostRoot`.

pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
pub const CNI_NET_DIR: &str = "/etc/cni/net.d";
pub const NSX_PLUGIN: &str = "/opt/cni/bin/nsx";
pub const LOOPBACK_PLUGIN: &str = "/opt/cni/bin/loopback";
/// Installed from the bundle only with `cni.portmap` (ncp.ini `use_ncp_portmap`).
pub const PORTMAP_PLUGIN: &str = "/opt/cni/bin/portmap";
pub const NSX_CONFLIST: &str = "/etc/cni/net.d/10-nsx.conflist";
pub const LOOPBACK_CONF: &str = "/etc/cni/net.d/99-loopback.conf";
/// In a bundle (not on the host): present when the bundle was built without the NCP release's
/// plugin and conflist, so its `nsx` does nothing (units/container/build-image.sh writes it).
pub const DEMO_BUNDLE_MARKER: &str = "DEMO-BUNDLE";
pub const APPARMOR_DIR: &str = "/etc/apparmor.d";
pub const APPARMOR_PROFILE_FILE: &str = "/etc/apparmor.d/ncp-apparmor";

pub const STATE_DIR: &str = "/var/lib/ncp-bootstrap";
pub const LEDGER: &str = "/var/lib/ncp-bootstrap/ledger.json";
pub const BACKUP_DIR: &str = "/var/lib/ncp-bootstrap/backup";

pub const CONFIG_FILE: &str = "/etc/ncp-bootstrap/config.toml";
/// Read from the process's own filesystem (the ConfigMap mount in NCP pods), not the host root.
pub const NCP_INI: &str = "/etc/nsx-ujo/ncp.ini";

pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";
pub const DPKG_INFO_DIR: &str = "/var/lib/dpkg/info";
pub const RPM_DB_DIRS: &[&str] = &["/var/lib/rpm", "/usr/lib/sysimage/rpm"];
pub const OS_RELEASE: &str = "/etc/os-release";

/// The marks of the network-manager hand-offs (tmpfs: gone at reboot, as the hand-offs are).
pub const RUN_MARK_DIR: &str = "/run/ncp-bootstrap";
/// systemd-networkd's runtime .network files, and its state (links, leases).
pub const NETWORKD_RUNTIME_DIR: &str = "/run/systemd/network";
pub const NETWORKD_STATE_DIR: &str = "/run/systemd/netif";
/// The private ovsdb-server cleanup starts when no OVS runs any more.
pub const OFFLINE_OVSDB_DIR: &str = "/var/lib/ncp-bootstrap/ovsdb";

pub const APPARMOR_ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
pub const APPARMOR_SECURITYFS: &str = "/sys/kernel/security/apparmor";
pub const APPARMOR_PROFILES: &str = "/sys/kernel/security/apparmor/profiles";

/// The persistent network configurations `persist` writes or edits.
pub const IFUPDOWN_INTERFACES: &str = "/etc/network/interfaces";
pub const IFUPDOWN_INTERFACES_D: &str = "/etc/network/interfaces.d";
pub const IFCFG_DIR: &str = "/etc/sysconfig/network-scripts";
pub const CLOUD_INIT_NETWORK_OFF: &str = "/etc/cloud/cloud.cfg.d/99-disable-network-config.cfg";
// The files the renderers write are named beside their format: `render::netplan::FILE`,
// `render::nm_keyfile::{CONN_DIR, UNMANAGED}`.
