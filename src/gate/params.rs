//! Query and form parameter names, read as PHP and other servers read them
//! ([`param_names`], [`param_readings`]): what query routes are matched against.

use std::borrow::Cow;

/// Calls `each` with the name of every parameter of `query`, in each reading
/// a server might make: split at `&` (and `;`, as some CGI libraries do),
/// then form-decoded (`%XX`, `+` for a space); and, if the query holds a `%`,
/// again from the whole query decoded before splitting, so that `%26` and
/// `%3D` cannot hide a parameter from a server that decodes first. Compare
/// what it gives through [`param_readings`].
pub(super) fn param_names(query: &str, mut each: impl FnMut(&[u8])) {
    let bytes = query.as_bytes();
    for piece in bytes.split(|&b| b == b'&' || b == b';') {
        let name = piece.split(|&b| b == b'=').next().unwrap_or_default();
        each(&form_decode(name));
    }
    if bytes.contains(&b'%') {
        let whole = form_decode(bytes);
        for piece in whole.split(|&b| b == b'&' || b == b';') {
            each(piece.split(|&b| b == b'=').next().unwrap_or_default());
        }
    }
}

/// A parameter name as PHP files it, and case-insensitively (as ASP.NET
/// and others read names): cut at a NUL (C strings) and at the first `[`
/// (`p[]` and `p[x]` are `p`), leading spaces dropped, `.` and space read
/// as `_` (PHP's `page.id` and `page id` are `page_id`), ASCII lower case.
/// The name a query route is written as; a name sent may have another
/// reading too (see [`param_readings`]).
pub(super) fn canonical_param(name: &[u8]) -> impl Iterator<Item = u8> + Clone + '_ {
    read_param(name, Reading::Cut)
}

/// How a name is read past its first `[` (see [`read_param`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Cut at the first `[`: PHP's array, and any name without one.
    Cut,
    /// Whole, every `[` read as `_`: PHP's name whose first `[` is never closed.
    Whole,
    /// After the brackets it starts with, cut at the next one: Rack 2's
    /// `[p]` and `]p[x]`, which are `p` to it (PHP drops such a name).
    AfterBrackets,
}

/// Every name a server may file the parameter sent as `name` under: its
/// [`canonical_param`]; when its first `[` is never closed, the name PHP
/// files it under (`page[id` is `page_id`: such a `[` is "not an index",
/// so PHP reads it, and every ` `, `.` and `[` after it, as `_`); and when
/// it starts with a bracket, the name Rack 2 finds after the brackets. A
/// `[` closed later makes an array of the name before it, which the
/// canonical reading already is.
pub(super) fn param_readings(
    name: &[u8],
) -> impl Iterator<Item = impl Iterator<Item = u8> + Clone + '_> + '_ {
    let bare = bare_param(name);
    let unclosed = bare
        .iter()
        .position(|&b| b == b'[')
        .is_some_and(|open| open > 0 && !bare[open..].contains(&b']'));
    let bracketed = matches!(bare.first(), Some(b'[' | b']'));
    [Reading::Cut, Reading::Whole, Reading::AfterBrackets]
        .into_iter()
        .filter(move |&reading| match reading {
            Reading::Cut => true,
            Reading::Whole => unclosed,
            Reading::AfterBrackets => bracketed,
        })
        .map(move |reading| read_param(name, reading))
}

/// `name` cut at a NUL, without its leading spaces.
fn bare_param(name: &[u8]) -> &[u8] {
    let name = name.split(|&b| b == 0).next().unwrap_or_default();
    let start = name.iter().position(|&b| b != b' ').unwrap_or(name.len());
    &name[start..]
}

/// The bytes of `reading` of `name`, with ` `, `.` and `[` read as `_`, in
/// ASCII lower case.
fn read_param(name: &[u8], reading: Reading) -> impl Iterator<Item = u8> + Clone + '_ {
    let bare = bare_param(name);
    let bare = match reading {
        Reading::AfterBrackets => {
            let start = bare
                .iter()
                .position(|&b| b != b'[' && b != b']')
                .unwrap_or(bare.len());
            &bare[start..]
        }
        Reading::Cut | Reading::Whole => bare,
    };
    bare.iter()
        .take_while(move |&&b| match reading {
            Reading::Cut => b != b'[',
            Reading::Whole => true,
            Reading::AfterBrackets => b != b'[' && b != b']',
        })
        .map(|&b| match b {
            b'.' | b' ' | b'[' => b'_',
            _ => b.to_ascii_lowercase(),
        })
}

/// Form decoding: `%XX` and `+` for a space, and `%uXXXX` for a UTF-16
/// unit as classic ASP.NET decodes it (`%u0070` is `p`; PHP keeps it as it
/// is, a name with a `%` no query route has); a bad escape is kept as it is
/// (as PHP does). Borrows when there is nothing to decode.
fn form_decode(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !bytes.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
            (b'%', _, _) if matches!(bytes.get(i + 1), Some(b'u' | b'U')) => {
                let unit = (i + 2..i + 6).try_fold(0, |unit, at| Some(unit * 16 + hex(at)?));
                if let Some(c) = unit.and_then(char::from_u32) {
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    i += 6;
                    continue;
                }
                out.push(b'%');
            }
            (b'+', _, _) => out.push(b' '),
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(query: &str) -> Vec<String> {
        let mut out = Vec::new();
        param_names(query, |name| {
            for reading in param_readings(name) {
                out.push(String::from_utf8(reading.collect()).unwrap());
            }
        });
        out
    }

    #[test]
    fn parameter_names_are_read_in_every_spelling() {
        assert_eq!(names("p=42&x=1"), ["p", "x"]);
        assert_eq!(names("P=1;q"), ["p", "q"]);
        // An unclosed `[` is PHP's `_` too: "p[" is both "p" and "p_".
        assert_eq!(names("p[]=1&p[x]=2&p["), ["p", "p", "p", "p_"]);
        // Three pieces, then the whole query decoded first: three again.
        assert_eq!(names("page.id=1&page+id=2&%20page%5Fid=3"), ["page_id"; 6]);
        // Decoded per piece, then the whole query decoded first.
        assert_eq!(names("%70=1"), ["p", "p"]);
        assert_eq!(names("p%3D=1"), ["p=", "p"]);
        assert_eq!(names("x=1%26p%3D2"), ["x", "x", "p"]);
        assert_eq!(names("p%00x=1"), ["p", "p"]);
        // Classic ASP.NET's %uXXXX; a short or surrogate one is kept.
        assert_eq!(names("%u0070=1"), ["p", "p"]);
        assert_eq!(names("%U0050age_id=1"), ["page_id", "page_id"]);
        assert_eq!(names("%u007=1"), ["%u007", "%u007"]);
        assert_eq!(names("%uD800=1"), ["%ud800", "%ud800"]);
        assert_eq!(names("%u00e9=1"), ["\u{e9}", "\u{e9}"]);
        assert_eq!(names("x=%zz"), ["x", "x"]);
    }

    #[test]
    fn a_name_whose_bracket_is_never_closed_is_also_read_as_php_files_it() {
        assert_eq!(names("page[id=42"), ["page", "page_id"]);
        assert_eq!(names("Page[ID=42"), ["page", "page_id"]);
        assert_eq!(names(" page[id"), ["page", "page_id"]);
        // Per piece decoded, then the whole query decoded first.
        assert_eq!(
            names("page%5Bid=42"),
            ["page", "page_id", "page", "page_id"]
        );
        // After the `[`, ` `, `.` and `[` are `_` as well.
        assert_eq!(names("p[a.b c[d=1"), ["p", "p_a_b_c_d"]);
        assert_eq!(names("p[a+b=1"), ["p", "p_a_b"]);
        // A `[` closed later is an array: only the name before it.
        assert_eq!(names("p[a]b[=1&p[a[b]=2"), ["p", "p"]);
        // PHP drops a name that starts with `[`; Rack 2 reads what follows
        // the brackets; a NUL ends the name first.
        assert_eq!(names("[id=1"), ["", "id"]);
        assert_eq!(names("p%00[id=1"), ["p", "p"]);
    }

    #[test]
    fn a_name_that_starts_with_a_bracket_is_read_as_rack_finds_it() {
        assert_eq!(names("[p]=42"), ["", "p"]);
        assert_eq!(names("]][P][x]=42"), ["]]", "p"]);
        assert_eq!(names("%5Bp%5D=42"), ["", "p", "", "p"]);
        assert_eq!(names("[]=1"), ["", ""]);
        assert_eq!(names("p[x]=1"), ["p"]);
    }
}
