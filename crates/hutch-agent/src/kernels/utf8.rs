//! Incremental UTF-8 decoding: output arrives in chunks cut anywhere, possibly inside a
//! multi-byte character, and must not turn into replacement characters at the cut.

/// Decodes a byte stream chunk by chunk.
#[derive(Debug, Default)]
pub(super) struct Utf8Decoder {
    carry: Vec<u8>,
}

impl Utf8Decoder {
    /// Decodes `bytes` after whatever was left from the previous chunk; an incomplete character
    /// at the end is kept for the next call, invalid bytes become U+FFFD.
    pub(super) fn push(&mut self, bytes: &[u8]) -> String {
        let owned;
        let mut input: &[u8] = if self.carry.is_empty() {
            bytes
        } else {
            self.carry.extend_from_slice(bytes);
            owned = std::mem::take(&mut self.carry);
            &owned
        };
        let mut out = String::with_capacity(input.len());
        loop {
            match std::str::from_utf8(input) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (valid, rest) = input.split_at(e.valid_up_to());
                    // `valid` is valid UTF-8 by `valid_up_to`, so this never substitutes anything.
                    out.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            input = &rest[n..];
                        }
                        None => {
                            self.carry = rest.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// Whatever is left at the end of the stream, lossily.
    pub(super) fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.carry);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn floor_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    let mut i = max;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_survive() {
        let text = "héllo wörld ✓ 🎉";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let mut d = Utf8Decoder::default();
            let mut s = d.push(&bytes[..cut]);
            s.push_str(&d.push(&bytes[cut..]));
            s.push_str(&d.finish());
            assert_eq!(s, text, "cut at {cut}");
        }
    }

    #[test]
    fn invalid_bytes_are_replaced() {
        let mut d = Utf8Decoder::default();
        assert_eq!(d.push(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(d.push(b"\xe2\x9c"), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }

    #[test]
    fn boundary() {
        assert_eq!(floor_boundary("aé", 2), 1);
        assert_eq!(floor_boundary("aé", 3), 3);
        assert_eq!(floor_boundary("abc", 10), 3);
    }
}
