//! Typed errors: the kind decides the exit code; the message names the file, field or value.

use std::fmt;

/// What went wrong, in the terms the exit code contract uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad user or host input (config, bundle, version strings). Nothing was changed.
    Input,
    /// A precondition on the host is not met. Nothing was changed.
    Precondition,
    /// A change failed half way; the ledger says what was done.
    Apply,
}

impl Kind {
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Input | Kind::Precondition => 2,
            Kind::Apply => 3,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Input => "invalid input",
            Kind::Precondition => "precondition not met",
            Kind::Apply => "apply failed",
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct Error {
    pub kind: Kind,
    pub msg: String,
}

impl Error {
    pub fn new(kind: Kind, msg: impl Into<String>) -> Self {
        Error {
            kind,
            msg: msg.into(),
        }
    }
}

pub fn input(msg: impl Into<String>) -> anyhow::Error {
    Error::new(Kind::Input, msg).into()
}

pub fn precondition(msg: impl Into<String>) -> anyhow::Error {
    Error::new(Kind::Precondition, msg).into()
}

/// The kind carried anywhere in an error chain, if any.
pub fn kind_of(err: &anyhow::Error) -> Option<Kind> {
    err.chain()
        .find_map(|e| e.downcast_ref::<Error>())
        .map(|e| e.kind)
}

/// Gives an unclassified error a kind; a typed error keeps its own. The chain is kept (the
/// kind is added as a layer without words), so that context such as a failed step's partial
/// report survives to the output.
pub fn classify(err: anyhow::Error, default: Kind) -> anyhow::Error {
    if kind_of(&err).is_some() {
        err
    } else {
        err.context(Error::new(default, String::new()))
    }
}

/// Forces a kind, with a sentence saying why: a precondition that fails after earlier steps
/// changed the host no longer means "nothing was changed". The chain is kept.
pub fn reclassify(err: anyhow::Error, kind: Kind, why: &str) -> anyhow::Error {
    if kind_of(&err) == Some(kind) {
        return err;
    }
    err.context(Error::new(kind, why))
}

/// An error chain for people: its messages joined with ": ", the wordless kind layers left out.
pub fn render(err: &anyhow::Error) -> String {
    let text = err
        .chain()
        .map(|e| e.to_string())
        .filter(|m| !m.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    visible(&text)
}

/// Text with the characters a terminal would not show (a NUL, a BOM, other controls) written
/// as escapes, so that a value read from a host file is seen as it is. Newlines and tabs stay.
pub fn visible(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => c.to_string(),
            c if c.is_control() || c == '\u{feff}' || c == '\u{200b}' => {
                c.escape_unicode().to_string()
            }
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_shown_as_escapes() {
        assert_eq!(visible("a\u{0}b\u{feff}c\nd"), "a\\u{0}b\\u{feff}c\nd");
        let e = anyhow::anyhow!("node.uplink = \"eth1\u{0}\" is not a NIC");
        assert_eq!(render(&e), "node.uplink = \"eth1\\u{0}\" is not a NIC");
    }
}
