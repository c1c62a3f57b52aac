//! Fault injection for crash-safety tests.

/// Aborts the process at a named point when `NCP_FAULT` names it. Compiled only into builds
/// with the `fault-injection` feature (the test build); release binaries ignore `NCP_FAULT`.
pub fn fault(point: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var("NCP_FAULT").as_deref() == Ok(point) {
        eprintln!("fault injection: aborting at {point}");
        std::process::abort();
    }
    let _ = point;
}

/// Runs, at a named point, what another process does at that moment (a network manager
/// configuring a link between our plan and our apply): `NCP_FAULT_HOOK=point=shell command`,
/// run with `sh -c` and waited for; its failure is ignored (the test checks the outcome).
/// Compiled only into builds with the `fault-injection` feature.
pub fn hook(point: &str) {
    #[cfg(feature = "fault-injection")]
    if let Ok(spec) = std::env::var("NCP_FAULT_HOOK") {
        if let Some((p, cmd)) = spec.split_once('=') {
            if p == point {
                let _ = std::process::Command::new("sh").args(["-c", cmd]).status();
            }
        }
    }
    let _ = point;
}
