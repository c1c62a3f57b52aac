//! What a run tells the operator: progress while it runs (a spinner on a TTY, timestamped lines
//! otherwise, never silence) and one report at the end (text or JSON).

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing to do.
    Converged,
    /// Changes were made.
    Changed,
    /// `--dry-run`: changes were planned, none made.
    Planned,
    /// The step does not apply here (disabled, or not this kind of host).
    Skipped,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub action: String,
    pub why: String,
    pub done: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub status: Status,
    pub changes: Vec<Change>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    #[serde(serialize_with = "to_microseconds")]
    pub duration_ms: f64,
    /// Figures the step measured about itself (e.g. `switch_window_ms`).
    #[serde(
        skip_serializing_if = "std::collections::BTreeMap::is_empty",
        serialize_with = "metrics_to_microseconds"
    )]
    pub metrics: std::collections::BTreeMap<String, f64>,
}

impl StepReport {
    pub fn new(name: &str) -> Self {
        StepReport {
            name: name.to_string(),
            status: Status::Converged,
            changes: Vec::new(),
            warnings: Vec::new(),
            notes: Vec::new(),
            duration_ms: 0.0,
            metrics: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: String,
    pub dry_run: bool,
    pub host_root: String,
    pub steps: Vec<StepReport>,
    pub warnings: Vec<String>,
    pub exit_code: i32,
    pub error: Option<String>,
    /// Command-specific data (`status`, `config show`); `null` for the others.
    pub details: Option<serde_json::Value>,
}

/// Milliseconds rounded to whole microseconds: finer digits are noise, not information.
fn to_microseconds<S: serde::Serializer>(ms: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((ms * 1000.0).round() / 1000.0)
}

/// Metrics are milliseconds too: printed to the microsecond, not as `0.08400400000000001`.
fn metrics_to_microseconds<S: serde::Serializer>(
    m: &std::collections::BTreeMap<String, f64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(m.len()))?;
    for (k, v) in m {
        map.serialize_entry(k, &((v * 1000.0).round() / 1000.0))?;
    }
    map.end()
}

impl Report {
    /// An empty report for a run of `command`.
    pub fn new(command: &str, dry_run: bool, host_root: &str) -> Report {
        Report {
            command: command.to_string(),
            dry_run,
            host_root: host_root.to_string(),
            steps: Vec::new(),
            warnings: Vec::new(),
            exit_code: 0,
            error: None,
            details: None,
        }
    }

    pub fn render_text(&self) -> String {
        let mut s = String::new();
        for step in &self.steps {
            s.push_str(&format!(
                "{}: {} ({:.1} ms)\n",
                step.name,
                status_word(step.status),
                step.duration_ms
            ));
            for c in &step.changes {
                let mark = if c.done { "done" } else { "plan" };
                s.push_str(&format!("  [{mark}] {}  ({})\n", c.action, c.why));
            }
            for (k, v) in &step.metrics {
                s.push_str(&format!("  {k}: {v:.3}\n"));
            }
            for n in &step.notes {
                s.push_str(&format!("  {n}\n"));
            }
            for w in &step.warnings {
                s.push_str(&format!("  warning: {w}\n"));
            }
        }
        for w in &self.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        s
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Converged => "converged, nothing to do",
        Status::Changed => "changed",
        Status::Planned => "changes planned (dry run, nothing changed)",
        Status::Skipped => "skipped",
        Status::Failed => "FAILED",
    }
}

/// Progress on stderr.
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    verbose: bool,
}

impl Progress {
    pub fn new(quiet: bool, verbose: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Progress {
            bar,
            quiet,
            verbose,
        }
    }

    /// A progress line: the spinner's message on a TTY, a timestamped line otherwise.
    pub fn info(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None => eprintln!("{} {msg}", timestamp()),
        }
    }

    /// The change being made now. The spinner shows it on a TTY; in a log, where the final
    /// report lists every change, it is a line of its own only with `-v` (so that each change
    /// is printed once, unless more detail was asked for).
    pub fn doing(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None if self.verbose => eprintln!("{} {msg}", timestamp()),
            None => {}
        }
    }

    /// Detail for `-v`: plans, notes, what was found.
    pub fn debug(&self, msg: &str) {
        if self.verbose {
            self.line(msg);
        }
    }

    pub fn warn(&self, msg: &str) {
        self.line(&format!("warning: {msg}"));
    }

    fn line(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{} {msg}", timestamp()),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
