//! ncp.ini read the way NCP reads it (oslo.config's INI dialect), for the keys the bootstrap
//! owns.
//!
//! What oslo.config accepts and this reader does too: `[section]` headers; `key = value` and
//! `key: value`; whole-line `#` and `;` comments; a value continued on indented lines; matching
//! quotes around a value stripped; values in `[DEFAULT]` apply to every section; CRLF line ends
//! and trailing whitespace. A key set twice in one section takes the last value, as oslo does.

use std::collections::BTreeMap;

/// A parsed file: section → key → value (section names as written, `DEFAULT` included).
#[derive(Debug, Default, PartialEq)]
pub struct Ini {
    sections: BTreeMap<String, BTreeMap<String, String>>,
}

/// Where a value was found: the section it was written in (`DEFAULT` when it came from there).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub section: String,
    pub value: String,
}

/// A line that is not INI: its number (from 1) and what is wrong.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct ParseError {
    pub line: usize,
    pub what: String,
}

/// `"x"` or `'x'` → `x`; anything else as it is.
fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

impl Ini {
    pub fn parse(text: &str) -> Result<Ini, ParseError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut ini = Ini::default();
        let mut section: Option<String> = None;
        // The key the previous line set, for continuation lines.
        let mut last: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            let at = |what: String| ParseError { line: n + 1, what };
            if line.trim_start().is_empty() {
                last = None;
                continue;
            }
            let body = line.trim_start();
            if body.starts_with('#') || body.starts_with(';') {
                continue;
            }
            let indented = line.len() != body.len();
            if indented {
                if let (Some(s), Some(k)) = (&section, &last) {
                    if let Some(v) = ini.sections.get_mut(s).and_then(|m| m.get_mut(k)) {
                        if !v.is_empty() {
                            v.push('\n');
                        }
                        v.push_str(body);
                        continue;
                    }
                }
            }
            if let Some(rest) = body.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| at(format!("bad section header `{body}`")))?;
                ini.sections.entry(name.to_string()).or_default();
                section = Some(name.to_string());
                last = None;
                continue;
            }
            let Some(sep) = body.find(['=', ':']) else {
                return Err(at(format!("expected `key = value`, found `{body}`")));
            };
            let (k, v) = (body[..sep].trim(), body[sep + 1..].trim());
            if k.is_empty() {
                return Err(at(format!("a value without a key: `{body}`")));
            }
            let Some(s) = &section else {
                return Err(at(format!("`{k}` comes before any [section]")));
            };
            ini.sections
                .entry(s.clone())
                .or_default()
                .insert(k.to_string(), unquote(v).to_string());
            last = Some(k.to_string());
        }
        Ok(ini)
    }

    /// `key` as `section` sees it: its own value, else `[DEFAULT]`'s. An empty value counts as
    /// unset (oslo gives the option's default for `key =` of a string with no default).
    pub fn get(&self, section: &str, key: &str) -> Option<Found> {
        [section, "DEFAULT"].into_iter().find_map(|s| {
            let v = self.sections.get(s)?.get(key)?;
            (!v.is_empty()).then(|| Found {
                section: s.to_string(),
                value: v.clone(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oslo_syntax_is_read() {
        let text = "\u{feff}# NCP's ConfigMap\r\n[DEFAULT]\r\nlog_dir = /var/log/nsx-ujo \r\n\
            \r\n[nsx_node_agent]\r\n; a comment\r\novs_uplink_port: \"ens192\"\r\n\
            ovs_bridge=br-int\r\nlong = a\r\n  b\r\n";
        let ini = Ini::parse(text).unwrap();
        let f = ini.get("nsx_node_agent", "ovs_uplink_port").unwrap();
        assert_eq!(
            (f.section.as_str(), f.value.as_str()),
            ("nsx_node_agent", "ens192")
        );
        assert_eq!(
            ini.get("nsx_node_agent", "ovs_bridge").unwrap().value,
            "br-int"
        );
        assert_eq!(ini.get("nsx_node_agent", "long").unwrap().value, "a\nb");
        // [DEFAULT] applies to every section, and names itself as the source.
        let d = ini.get("nsx_kube_proxy", "log_dir").unwrap();
        assert_eq!(
            (d.section.as_str(), d.value.as_str()),
            ("DEFAULT", "/var/log/nsx-ujo")
        );
        assert_eq!(ini.get("nsx_kube_proxy", "ovs_uplink_port"), None);
    }

    #[test]
    fn an_empty_value_is_unset_and_the_last_of_two_wins() {
        let ini = Ini::parse("[a]\nk =\nj = 1\nj = 2\n").unwrap();
        assert_eq!(ini.get("a", "k"), None);
        assert_eq!(ini.get("a", "j").unwrap().value, "2");
    }

    #[test]
    fn what_is_not_ini_names_its_line() {
        assert_eq!(Ini::parse("[a]\nnonsense\n").unwrap_err().line, 2);
        assert_eq!(Ini::parse("[a\n").unwrap_err().line, 1);
        assert_eq!(Ini::parse("k = v\n").unwrap_err().line, 1);
        assert_eq!(Ini::parse("[a]\n= v\n").unwrap_err().line, 2);
    }
}
