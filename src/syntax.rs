//! Byte rules of HTTP syntax shared by the config, the gate and the readers
//! of headers and pages.
//!
//! They live here, apart from both, so that validating a cookie name in the
//! config and reading a cookie on a request agree without either module
//! depending on the other.

/// True for bytes of an HTTP token (RFC 9110 `tchar`): header names, media
/// types and their parameters.
pub fn is_token(b: u8) -> bool {
    // A table: every HTTP/2 request's header names are read through it.
    TOKEN_BYTES[usize::from(b)]
}

static TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// True for bytes allowed in a cookie name (an RFC 9110 token).
pub fn is_cookie_name_byte(b: u8) -> bool {
    is_token(b)
}

/// True for bytes allowed in a cookie value (RFC 6265 cookie-octet).
pub fn is_cookie_value_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// True for bytes allowed in a query parameter name the gateway writes.
pub fn is_query_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.".contains(&b)
}

/// True for bytes the gateway lets a path segment it puts in a token carry
/// (a video id): letters, digits, `-`, `_` and `.`. `~`, `!`, `=` and `/`
/// are token syntax.
pub fn is_path_segment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_octets_exclude_separators_and_controls() {
        for b in [b' ', b'"', b',', b';', b'\\', 0x7f, 0x00, 0xff] {
            assert!(!is_cookie_value_byte(b), "{b:#x}");
        }
        assert!(b"abcXYZ019-_.~!#$%&'()*+/:<=>?@[]^`{|}"
            .iter()
            .all(|&b| is_cookie_value_byte(b)));
        assert!(!is_cookie_name_byte(b'='));
        assert!(is_cookie_name_byte(b'_'));
    }

    #[test]
    fn token_bytes_are_rfc_9110_tchar() {
        // RFC 9110 §5.6.2, written out.
        let tchar =
            b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        for b in 0..=255u8 {
            assert_eq!(is_token(b), tchar.contains(&b), "{b:#x}");
        }
    }
}
