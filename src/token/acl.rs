//! Matching a token's ACL against a request path, as an Akamai edge does.
//!
//! An ACL is one or more patterns joined by the ACL delimiter (`!` by
//! default). In a pattern `*` matches any run of bytes, `/` included, and `?`
//! exactly one byte; every other byte stands for itself. A path is allowed
//! when any one pattern matches all of it.

/// Whether any of the `acl_delimiter`-separated patterns in `acl` matches all of `path`.
pub fn acl_allows(acl: &str, acl_delimiter: char, path: &[u8]) -> bool {
    acl.split(acl_delimiter)
        // An empty entry is what `a!!b` or a trailing delimiter leaves behind, not a grant.
        .filter(|pattern| !pattern.is_empty())
        .any(|pattern| glob_matches(pattern.as_bytes(), path))
}

/// Whether `pattern` matches all of `path`.
///
/// Only the most recent `*` is ever resumed: when a later `*` matches, the
/// earlier ones can no longer change the outcome (the later star can absorb
/// whatever extra an earlier one would have taken), so at most
/// `pattern.len() * path.len()` steps are taken, never an exponential search.
fn glob_matches(pattern: &[u8], path: &[u8]) -> bool {
    let (mut p, mut s) = (0, 0);
    // Where to resume after a mismatch: just past the last `*`, and the path
    // position that star's next attempt will start absorbing from.
    let mut resume: Option<(usize, usize)> = None;
    while s < path.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                resume = Some((p, s));
            }
            Some(&b) if b == b'?' || b == path[s] => {
                p += 1;
                s += 1;
            }
            _ => match resume {
                Some((after_star, absorbed_to)) => {
                    p = after_star;
                    s = absorbed_to + 1;
                    resume = Some((after_star, s));
                }
                None => return false,
            },
        }
    }
    // The path is used up; only stars, which may match nothing, may remain.
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(acl: &str, path: &str) -> bool {
        acl_allows(acl, '!', path.as_bytes())
    }

    #[test]
    fn literals_match_only_the_whole_path() {
        assert!(allows("/hls/a/v.m3u8", "/hls/a/v.m3u8"));
        assert!(!allows("/hls/a/v.m3u8", "/hls/a/v.m3u8x"));
        assert!(!allows("/hls/a/v.m3u8", "/hls/a/v.m3u"));
        assert!(!allows("/hls/a/v.m3u8", "/HLS/a/v.m3u8"));
        assert!(!allows("/a", ""));
    }

    #[test]
    fn star_spans_slashes_and_may_be_empty() {
        assert!(allows("/hls/abc/*", "/hls/abc/"));
        assert!(allows("/hls/abc/*", "/hls/abc/1080/seg-1.ts"));
        assert!(!allows("/hls/abc/*", "/hls/abd/seg-1.ts"));
        assert!(!allows("/hls/abc/*", "/hls/abc"));
        assert!(allows("/*", "/"));
        assert!(allows("*", ""));
        assert!(allows("/*/*.ts", "/a/b/c.ts"));
        assert!(allows("/hls/*/master.m3u8", "/hls/x/y/master.m3u8"));
        assert!(!allows("/hls/*/master.m3u8", "/hls/x/y/master.m3u8.bak"));
        assert!(allows("**", "anything"));
        assert!(allows("/a*b*c", "/aXbYbZc"));
        assert!(!allows("/a*b*c", "/aXbYbZ"));
    }

    #[test]
    fn question_mark_is_exactly_one_byte() {
        assert!(allows("/v?.ts", "/v1.ts"));
        assert!(!allows("/v?.ts", "/v.ts"));
        assert!(!allows("/v?.ts", "/v12.ts"));
        // One byte, not one character: é is two bytes in UTF-8.
        assert!(!allows("/?", "/é"));
        assert!(allows("/??", "/é"));
        assert!(allows("/?*", "/é"));
    }

    #[test]
    fn any_entry_of_a_list_may_match() {
        let acl = "/hls/a/*!/dash/a/*!/thumb.jpg";
        assert!(allows(acl, "/hls/a/x.ts"));
        assert!(allows(acl, "/dash/a/x.m4s"));
        assert!(allows(acl, "/thumb.jpg"));
        assert!(!allows(acl, "/hls/b/x.ts"));
        assert!(acl_allows("/hls/a/*,/dash/a/*", ',', b"/dash/a/x"));
        // With another delimiter, `!` is an ordinary byte.
        assert!(acl_allows("/a!b", ',', b"/a!b"));
        assert!(!acl_allows("/a!b", ',', b"/a"));
    }

    #[test]
    fn empty_entries_never_match() {
        assert!(!allows("", ""));
        assert!(!allows("!", ""));
        assert!(!allows("/a!!/b", ""));
        assert!(allows("/a!!/b", "/b"));
        assert!(!allows("!/a!", "/b"));
    }

    #[test]
    fn paths_are_bytes_not_text() {
        assert!(acl_allows("/a/*", '!', b"/a/\xff\x00"));
        assert!(acl_allows("/a/?", '!', b"/a/\xff"));
        assert!(!acl_allows("/a/?", '!', b"/a/\xff\xfe"));
    }

    #[test]
    fn hostile_patterns_stay_fast() {
        let long = "a".repeat(20_000);
        let path = format!("/{long}");
        // A backtracking matcher would take exponential time on these.
        assert!(!allows("/*a*a*a*a*a*a*a*a*a*a*b", &path));
        assert!(allows("/*a*a*a*a*a*a*a*a*a*a*", &path));
        assert!(!allows(&format!("/{}b", "*a".repeat(500)), &path));
        assert!(!allows(&format!("/{}", "?".repeat(20_001)), &path));
        assert!(allows(&format!("/{}", "?".repeat(20_000)), &path));
        let many = ["/*a*a*a*a*b"; 64].join("!");
        assert!(!allows(&many, &path));
    }

    #[test]
    fn agrees_with_a_naive_matcher() {
        // Exhaustive over short patterns and paths on a small alphabet.
        fn naive(p: &[u8], s: &[u8]) -> bool {
            match p.split_first() {
                None => s.is_empty(),
                Some((b'*', rest)) => (0..=s.len()).any(|i| naive(rest, &s[i..])),
                Some((&c, rest)) => {
                    !s.is_empty() && (c == b'?' || c == s[0]) && naive(rest, &s[1..])
                }
            }
        }
        fn all_strings(alphabet: &[u8], max: usize) -> Vec<Vec<u8>> {
            let mut out = vec![Vec::new()];
            let mut layer = vec![Vec::new()];
            for _ in 0..max {
                let next: Vec<Vec<u8>> = layer
                    .iter()
                    .flat_map(|prefix: &Vec<u8>| {
                        alphabet.iter().map(move |&c| {
                            let mut v = prefix.clone();
                            v.push(c);
                            v
                        })
                    })
                    .collect();
                out.extend(next.iter().cloned());
                layer = next;
            }
            out
        }
        let patterns = all_strings(b"ab*?", 5);
        let paths = all_strings(b"ab", 6);
        for pattern in &patterns {
            for path in &paths {
                assert_eq!(
                    glob_matches(pattern, path),
                    naive(pattern, path),
                    "{:?} vs {:?}",
                    String::from_utf8_lossy(pattern),
                    String::from_utf8_lossy(path)
                );
            }
        }
    }
}
