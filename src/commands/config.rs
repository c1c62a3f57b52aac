//! `config show` and `config set`.

use super::{Env, Outcome};
use crate::cli::Output;
use crate::config::{config_file_path, set_in_text, Inputs, KEYS};
use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;

pub fn show(env: &Env) -> Result<Outcome> {
    let mut text = String::new();
    for k in KEYS {
        let r = &env.config.values[k.name];
        let v = r
            .value
            .as_ref()
            .map_or("(unset)".to_string(), |v| v.to_string());
        text.push_str(&format!("{} = {v}    # {}\n", k.name, r.source));
    }
    let details = match env.cli.output {
        Output::Json => Some(serde_json::to_value(&env.config.values)?),
        Output::Text => None,
    };
    Ok(Outcome {
        code: 0,
        text,
        details,
    })
}

/// Edits the config file in place (atomically), keeping comments and layout. The config file is
/// the operator's, not a host change of ours, so it is not recorded in the ledger.
pub fn set(env: &Env, key: &str, value: &str) -> Result<Outcome> {
    let inputs = Inputs {
        config_file: env.cli.config.clone(),
        ..Default::default()
    };
    let path = config_file_path(&env.host, &inputs)?;
    let (old, mode) = match std::fs::read_to_string(&path) {
        Ok(t) => {
            let mode = std::fs::metadata(&path)?.permissions().mode() & 0o7777;
            (t, mode)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), 0o644),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let new = set_in_text(&old, &path.display().to_string(), key, value)?;
    let mut text = String::new();
    if new == old {
        text.push_str(&format!("{key} is already {value} in {}\n", path.display()));
    } else if env.cli.dry_run() {
        text.push_str(&format!(
            "would set {key} = {value} in {}\n",
            path.display()
        ));
    } else {
        let dir = path.parent().context("config file has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // The file lives on whatever filesystem --config names, so write it through a host root
        // at its own directory: same atomic write, same fsyncs.
        let at = crate::host::HostRoot::new(dir)?;
        let name = path.file_name().context("config file has no name")?;
        at.write_atomic(
            &format!("/{}", name.to_string_lossy()),
            new.as_bytes(),
            mode,
        )?;
        text.push_str(&format!("set {key} = {value} in {}\n", path.display()));
    }
    Ok(Outcome {
        code: 0,
        text,
        details: None,
    })
}
