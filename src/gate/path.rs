//! Reading a request path the way servers behind us might.
//!
//! Routes match on a normalised path (percent-decoded, `;` parameters
//! dropped, `//` collapsed, dot segments resolved) so that
//! `/public/../videos/x` or `/vid%65os/x` is judged as the CMS will see it,
//! while the request is forwarded as sent.

use std::borrow::Cow;

use thiserror::Error;

/// A request path the gateway refuses to judge (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("path is not absolute")]
    NotAbsolute,
    /// `..` would climb above the root.
    #[error("path climbs above the root")]
    AboveRoot,
    /// A backslash, NUL or encoded slash: servers disagree on what they mean.
    #[error("path holds a backslash, NUL or encoded slash")]
    Ambiguous,
    /// A `%` not followed by two hex digits.
    #[error("path has a bad percent-escape")]
    BadEscape,
}

/// Normalises a request path for matching; borrows when nothing needs changing.
///
/// Percent-escapes are decoded, `;` parameters dropped from each segment,
/// `//` collapsed and `.`/`..` resolved. Encoded slashes, backslashes and NUL
/// are refused: servers disagree on them, so no single reading is safe.
pub fn normalize(path: &str) -> Result<Cow<'_, [u8]>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let needs_work = bytes.windows(2).any(|w| w == b"//" || w == b"/.")
        || bytes.iter().any(|&b| matches!(b, b'%' | b'\\' | b';' | 0));
    if !needs_work {
        return Ok(Cow::Borrowed(bytes));
    }
    let decoded = percent_decode(bytes)?;
    if decoded.iter().any(|&b| b == b'\\' || b == 0) {
        return Err(PathError::Ambiguous);
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing = false;
    for segment in decoded.split(|&b| b == b'/').skip(1) {
        let bare = segment.split(|&b| b == b';').next().unwrap_or_default();
        trailing = matches!(bare, b"" | b"." | b"..");
        match bare {
            b"" | b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            _ => segments.push(bare),
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for segment in &segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if trailing || segments.is_empty() {
        out.push(b'/');
    }
    Ok(Cow::Owned(out))
}

/// The path as a server that ignores case and trailing dots would read it, if that differs.
pub(super) fn lenient_reading(strict: &[u8]) -> Option<Vec<u8>> {
    let loose = strict.iter().any(u8::is_ascii_uppercase)
        || strict
            .split(|&b| b == b'/')
            .any(|segment| segment.ends_with(b".") || segment.ends_with(b" "));
    if !loose {
        return None;
    }
    let mut out = Vec::with_capacity(strict.len());
    for (i, segment) in strict.split(|&b| b == b'/').enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        let kept = segment.len()
            - segment
                .iter()
                .rev()
                .take_while(|&&b| b == b'.' || b == b' ')
                .count();
        // A segment of only dots is a dot segment, already resolved; keep it as it is.
        let kept = if kept == 0 { segment.len() } else { kept };
        out.extend(segment[..kept].iter().map(u8::to_ascii_lowercase));
    }
    Some(out)
}

fn percent_decode(bytes: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    let byte = (hi * 16 + lo) as u8;
                    if byte == b'/' {
                        return Err(PathError::Ambiguous);
                    }
                    out.push(byte);
                }
                _ => return Err(PathError::BadEscape),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, PathError> {
        normalize(path).map(|p| String::from_utf8_lossy(&p).into_owned())
    }

    #[test]
    fn normalisation_resolves_dots_and_keeps_trailing_slash() {
        assert_eq!(norm("/a/./b/../c/").unwrap(), "/a/c/");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/a;p=1/b;q/").unwrap(), "/a/b/");
        assert_eq!(norm("/..").unwrap_err(), PathError::AboveRoot);
        assert_eq!(norm("/a%5cb").unwrap_err(), PathError::Ambiguous);
        assert_eq!(norm("/a%2Fb").unwrap_err(), PathError::Ambiguous);
        assert_eq!(norm("/a%zz").unwrap_err(), PathError::BadEscape);
        assert_eq!(norm("*").unwrap_err(), PathError::NotAbsolute);
        assert!(matches!(
            normalize("/plain/path").unwrap(),
            Cow::Borrowed(_)
        ));
    }
}
