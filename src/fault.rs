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
