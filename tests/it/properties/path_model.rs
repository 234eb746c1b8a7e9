//! The route tables the path properties run against, and the model of what
//! they must give: the longest prefix of each documented reading.

use super::*;

pub(super) const S: Access = Access::Session;
const P: Access = Access::Public;
pub(super) const T: Access = Access::Token;

/// Tables whose prefixes are in folded form (ASCII lower case), the usual
/// config: one with "/" public, one where an unrouted path is gated.
pub(super) const FOLDED_TABLES: [&[(&str, Access)]; 2] = [
    &[
        ("/videos/", S),
        ("/videos/free/", P),
        ("/public/", P),
        ("/hls/", T),
        ("/members", S),
        ("/kids/cafe/", S),
        ("/", P),
    ],
    &[
        ("/public/", P),
        ("/videos/free/", P),
        ("/hls/", T),
        ("/x/", P),
        ("/cafe", P),
    ],
];

/// Prefixes that are not their own folded reading, and a query route.
pub(super) const MIXED_TABLE: &[(&str, Access)] = &[
    ("/Videos/", S),
    ("/vid\u{e9}os/free/", P),
    ("/public/", P),
    ("/Public/", S),
    ("/hls/", T),
    ("/", P),
];

fn table(routes: &[(&str, Access)], query: &[&str]) -> RouteTable {
    let mut specs: Vec<RouteSpec> = routes
        .iter()
        .map(|&(prefix, access)| RouteSpec {
            prefix: Some(prefix.into()),
            query: Vec::new(),
            access,
            token: None,
        })
        .collect();
    if !query.is_empty() {
        specs.push(RouteSpec {
            prefix: None,
            query: query.iter().map(|q| q.to_string()).collect(),
            access: S,
            token: None,
        });
    }
    RouteTable::new(&specs).expect("test table compiles")
}

pub(super) fn tables() -> &'static [RouteTable; 3] {
    static TABLES: OnceLock<[RouteTable; 3]> = OnceLock::new();
    TABLES.get_or_init(|| {
        [
            table(FOLDED_TABLES[0], &[]),
            table(FOLDED_TABLES[1], &[]),
            table(MIXED_TABLE, &["p", "page_id"]),
        ]
    })
}

/// The route of `path` by longest prefix alone, as the docs define it (a
/// "/dir/" prefix owns "/dir" too); a path no route matches is gated. A
/// route whose "/dir.json" (or "/dir.json/") the path is raises it if
/// stricter: a reading, never the match itself.
pub(super) fn longest_prefix(routes: &[(&str, Access)], path: &[u8]) -> Access {
    fn dir_of(prefix: &str) -> Option<&[u8]> {
        prefix
            .as_bytes()
            .strip_suffix(b"/")
            .filter(|dir| !dir.is_empty())
    }
    let base = routes
        .iter()
        .filter(|(prefix, _)| {
            path.starts_with(prefix.as_bytes()) || dir_of(prefix).is_some_and(|dir| path == dir)
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or(S, |&(_, access)| access);
    let format = routes
        .iter()
        .filter(|(prefix, _)| {
            dir_of(prefix)
                .and_then(|dir| path.strip_prefix(dir))
                .is_some_and(|rest| {
                    let format = rest.strip_suffix(b"/").unwrap_or(rest);
                    rest.first() == Some(&b'.') && !format.contains(&b'/')
                })
        })
        .map(|&(_, access)| access)
        .max();
    format.map_or(base, |format| base.max(format))
}

/// The folded reading of an ASCII strict path, as the module doc describes
/// it: per segment, `;` parameters (unless `keep_params`, as nginx, Apache
/// and PHP keep them) and, with `trim`, everything from a `:` dropped,
/// leading spaces (with `trim`) and trailing dots and spaces dropped, lower
/// case; a segment of only dots and spaces (with a dot) is a dot segment;
/// empty segments collapse.
pub(super) fn ascii_folded(
    strict: &[u8],
    trim: bool,
    keep_params: bool,
) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::new();
    let mut trailing = false;
    for segment in strict.split(|&b| b == b'/').skip(1) {
        let mut bare = if keep_params {
            segment
        } else {
            segment.split(|&b| b == b';').next().unwrap_or_default()
        };
        if trim {
            bare = bare.split(|&b| b == b':').next().unwrap_or_default();
        }
        let mut kept = bare;
        while let Some((first, rest)) = kept.split_first() {
            if !trim || *first != b' ' {
                break;
            }
            kept = rest;
        }
        while let Some((last, rest)) = kept.split_last() {
            if *last != b'.' && *last != b' ' {
                break;
            }
            kept = rest;
        }
        if kept.is_empty() {
            if bare.contains(&b'.') {
                return Err(PathError::DotSegment);
            }
            trailing = true;
            continue;
        }
        out.push(b'/');
        out.extend(kept.iter().map(u8::to_ascii_lowercase));
        trailing = false;
    }
    if trailing || out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// The path a URL parser reads after the host in `path` when it starts
/// with "//": from the first "/" after the slashes and the host, or "/".
pub(super) fn after_host(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("//")?;
    let host_at = rest.find(|c| c != '/').unwrap_or(rest.len());
    let host = &rest[host_at..];
    Some(match host.find('/') {
        Some(end) => &host[end..],
        None => "/",
    })
}

pub(super) fn access_name(result: &Result<embedgate::gate::RouteMatch, PathError>) -> String {
    match result {
        Ok(m) => format!("{:?} via {:?}", m.access, m.prefix),
        Err(err) => format!("error {err:?}"),
    }
}
