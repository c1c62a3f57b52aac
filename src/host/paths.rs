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
