//! Host config files as text without losing a byte: what is not UTF-8 (a Latin-1 comment in
//! `/etc/network/interfaces`, say) is carried through the renderers as characters of a private
//! range and written back as the bytes it was. Every line a renderer does not write stays byte
//! for byte.

/// Byte `b` (not valid UTF-8 where it stood) is carried as `ESCAPE_BASE + b`: Supplementary
/// Private Use Area-B, U+10FF00..=U+10FFFF, which no config file uses.
const ESCAPE_BASE: u32 = 0x10_FF00;

/// A file's bytes as text; `None` when the text itself uses the escape range (it could then not
/// be told from an escaped byte).
pub fn decode(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        if chunk
            .valid()
            .chars()
            .any(|c| (ESCAPE_BASE..=ESCAPE_BASE + 0xFF).contains(&u32::from(c)))
        {
            return None;
        }
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.extend(char::from_u32(ESCAPE_BASE + u32::from(*b)));
        }
    }
    Some(out)
}

/// The bytes `decode` read, with whatever the renderer changed.
pub fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let v = u32::from(c);
        if (ESCAPE_BASE..=ESCAPE_BASE + 0xFF).contains(&v) {
            out.push((v - ESCAPE_BASE) as u8);
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn latin1_survives_a_round_trip() {
        let bytes = b"# r\xe9seau du n\x9cud\niface eth1 inet static\n";
        let text = decode(bytes).unwrap();
        assert!(text.contains("iface eth1 inet static"));
        assert_eq!(encode(&text), bytes.to_vec());
        assert_eq!(decode("\u{10FF41}".as_bytes()), None);
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(text) = decode(&bytes) {
                prop_assert_eq!(encode(&text), bytes);
            }
        }
    }
}
