//! The one way external tools run: the command line and its stderr end up in the error.

use anyhow::{anyhow, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Finds a tool on PATH; the error names the tool and what needs it.
pub fn find_tool(name: &str, needed_for: &str) -> Result<PathBuf> {
    which::which(name).map_err(|_| {
        crate::error::precondition(format!(
            "`{name}` not found on PATH; it is needed to {needed_for}. Install it (Debian/Ubuntu: apt-get install {})",
            debian_package(name)
        ))
    })
}

fn debian_package(tool: &str) -> &str {
    match tool {
        "apparmor_parser" => "apparmor",
        "ovs-vsctl" | "ovs-ofctl" | "ovsdb-tool" | "ovsdb-server" | "ovs-vswitchd" => {
            "openvswitch-switch"
        }
        "dpkg" => "dpkg",
        "rpm" => "rpm",
        other => other,
    }
}

/// Runs one of the host's own tools: the one on PATH (on a host), else the host's in PID 1's
/// mount namespace (from the container, which ships none; hostPID gives PID 1).
pub fn host_tool(name: &str, args: &[&str]) -> Result<Output> {
    match which::which(name) {
        Ok(tool) => run(&tool, args.iter().copied()),
        Err(_) => {
            let nsenter = find_tool("nsenter", &format!("reach the host's {name}"))?;
            let mut a = vec!["-t", "1", "-m", "--", name];
            a.extend_from_slice(args);
            run(&nsenter, a)
        }
    }
}

/// Output of a successful run.
/// What a tool that succeeded printed (its stderr goes into the error when it fails).
pub struct Output {
    pub stdout: String,
}

/// Runs `program args…`, capturing both streams. A non-zero exit is an error that quotes the
/// command and its stderr.
pub fn run<I, S>(program: &std::path::Path, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    run_with_input(program, args, None)
}

/// `run`, with `input` on the tool's stdin (none: stdin is inherited).
pub fn run_with_input<I, S>(
    program: &std::path::Path,
    args: I,
    input: Option<&[u8]>,
) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let shown = show(program, &args);
    let mut expr = duct::cmd(program, &args);
    if let Some(bytes) = input {
        expr = expr.stdin_bytes(bytes.to_vec());
    }
    let out = expr
        // A tool still running when we are killed goes with us.
        .before_spawn(|cmd| {
            die_with_parent(cmd);
            Ok(())
        })
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .map_err(|e| anyhow!("could not start `{shown}`: {e}"))?;
    if !out.status.success() {
        return Err(anyhow!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Output {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

fn show(program: &std::path::Path, args: &[OsString]) -> String {
    let mut s = program.display().to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Makes a child started with `cmd` die with this process: the kernel sends it SIGKILL when we
/// exit by any path, kill -9 included, so no daemon we start outlives us holding a database
/// or a socket. Only for children that run in the foreground (a `--detach`ed daemon forks
/// away from the setting).
pub fn die_with_parent(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: between fork and exec only async-signal-safe calls are made (prctl, getppid,
    // _exit), and nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            // The parent died before the setting took: nobody would ever send the signal.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                nix::libc::_exit(1);
            }
            Ok(())
        })
    }
}

/// Starts one of the host's own daemons again as it ran before (cleanup giving back a host OVS
/// that ran outside systemd): with `--detach` it forks away and this waits for it to say it
/// started; otherwise it is started in the foreground and left running. It is the host's, not
/// ours, so unlike the daemons `ovs run` supervises it is meant to outlive this process.
pub fn start_host_daemon(program: &Path, args: &[String], env: &[(String, String)]) -> Result<()> {
    let mut c = std::process::Command::new(program);
    c.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if args.iter().any(|a| a == "--detach") {
        let st = c.status()?;
        if !st.success() {
            anyhow::bail!("{} exited with {st}", program.display());
        }
    } else {
        c.spawn()?;
    }
    Ok(())
}
