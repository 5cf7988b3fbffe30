//! The one piece of DER the project reads by hand: splitting a TLV (tag, length, value),
//! for Apple's certificate extensions and a certificate's subject CN.

/// Splits one DER TLV off `input`: `(tag, content, rest)`; `None` when it is truncated or
/// its length takes more than 4 bytes.
pub fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths_and_truncation() {
        assert_eq!(
            tlv(&[0x0c, 2, b'h', b'i', 9]),
            Some((0x0c, &b"hi"[..], &[9u8][..]))
        );
        let mut long = vec![0x04, 0x81, 200];
        long.extend(std::iter::repeat_n(7u8, 200));
        let (tag, content, rest) = tlv(&long).unwrap();
        assert_eq!((tag, content.len(), rest.len()), (0x04, 200, 0));
        assert_eq!(tlv(&[0x04, 3, 1]), None, "truncated content");
        assert_eq!(tlv(&[0x04, 0x85, 0, 0, 0, 0, 1]), None, "5-byte length");
        assert_eq!(tlv(&[]), None);
    }
}
