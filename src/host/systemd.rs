//! The host's service manager, reached from anywhere the tool runs: `systemctl` in PID 1's
//! namespaces through `nsenter` (a container with hostPID sees the host's PID 1; on the host
//! itself nsenter enters the namespaces it is already in).

use super::{run, HostRoot};
use anyhow::Result;

/// Whether the host runs systemd and nsenter can reach it. A temporary host root has no
/// `/run/systemd/system`, so tests never reach this machine's own service manager.
pub fn available(host: &HostRoot) -> bool {
    host.exists("/run/systemd/system").unwrap_or(false) && which::which("nsenter").is_ok()
}

/// nsenter's arguments for running `systemctl` in PID 1's namespaces.
const IN_PID1: [&str; 9] = ["-t", "1", "-m", "-u", "-i", "-n", "-p", "--", "systemctl"];

/// `systemctl ARGS` in the host's namespaces; its standard output.
pub fn systemctl(args: &[&str]) -> Result<String> {
    let nsenter = run::find_tool("nsenter", "reach the host's service manager")?;
    let mut a = IN_PID1.to_vec();
    a.extend_from_slice(args);
    Ok(run::run(&nsenter, a)?.stdout)
}

/// `systemctl is-enabled UNIT`'s answer (enabled, static, disabled, masked…), which it prints
/// whatever its exit status; none when the unit does not exist or systemctl cannot be reached.
pub fn unit_file_state(unit: &str) -> Option<String> {
    let nsenter = which::which("nsenter").ok()?;
    let mut args = IN_PID1.to_vec();
    args.extend_from_slice(&["is-enabled", unit]);
    let out = duct::cmd(nsenter, args)
        .before_spawn(|cmd| {
            run::die_with_parent(cmd);
            Ok(())
        })
        .stdout_capture()
        .stderr_null()
        .unchecked()
        .run()
        .ok()?;
    let word = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!word.is_empty() && word != "not-found").then_some(word)
}
