//! The route table: longest prefix wins, a path no route matches is gated,
//! and a path is gated if any reasonable reading of it is.

use std::sync::Arc;

use thiserror::Error;

use super::path::{lenient_reading, normalize, PathError};

/// Routes ordered so that the longest matching prefix wins.
#[derive(Debug, Clone)]
pub struct RouteTable {
    // Sorted by descending prefix length.
    routes: Vec<Route>,
}

#[derive(Debug, Clone)]
struct Route {
    prefix: Arc<str>,
    // For the lenient reading of a path (see `lookup`).
    prefix_lower: Box<[u8]>,
    gated: bool,
}

impl Route {
    // A "/videos/" route also owns "/videos", which servers redirect or serve alike.
    fn owns(path: &[u8], prefix: &[u8]) -> bool {
        path.starts_with(prefix)
            || prefix
                .strip_suffix(b"/")
                .is_some_and(|dir| !dir.is_empty() && path == dir)
    }
}

/// A route prefix that cannot be used.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct RouteError {
    /// Index of the offending `[[route]]`.
    pub index: usize,
    /// What is wrong.
    pub message: String,
}

/// The route a path fell under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// The matching prefix, or `None` when no route matched (then the path is gated).
    pub prefix: Option<Arc<str>>,
    /// Whether the session must be checked.
    pub gated: bool,
}

impl RouteTable {
    /// Compiles `(prefix, gated)` pairs in config order.
    pub fn new(routes: Vec<(String, bool)>) -> Result<RouteTable, RouteError> {
        let mut compiled: Vec<Route> = Vec::with_capacity(routes.len());
        for (index, (prefix, gated)) in routes.into_iter().enumerate() {
            let fail = |message: String| RouteError { index, message };
            if !prefix.starts_with('/') {
                return Err(fail(format!("{prefix:?} must start with '/'")));
            }
            let normal =
                matches!(normalize(&prefix), Ok(norm) if norm.as_ref() == prefix.as_bytes());
            if !normal {
                let why = "is not in normal form (no %-escapes, ';', '//', '.' or '..' segments)";
                return Err(fail(format!("{prefix:?} {why}")));
            }
            if compiled.iter().any(|r| *r.prefix == *prefix) {
                return Err(fail(format!("{prefix:?} is listed twice")));
            }
            compiled.push(Route {
                prefix_lower: prefix.to_ascii_lowercase().into_bytes().into(),
                prefix: prefix.into(),
                gated,
            });
        }
        compiled.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(RouteTable { routes: compiled })
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when there are no routes (then every path is gated).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Finds the route for a request path; a path no route matches is gated.
    ///
    /// The path is read the strict way (decoded, `;` parameters and dot
    /// segments resolved) and, where it differs, the lenient way some servers
    /// read it (ignoring case and trailing dots). If either reading is gated,
    /// the path is gated.
    pub fn lookup(&self, path: &str) -> Result<RouteMatch, PathError> {
        let strict = normalize(path)?;
        let found = self.find(&strict, |r| r.prefix.as_bytes());
        if found.gated {
            return Ok(found);
        }
        if let Some(lenient) = lenient_reading(&strict) {
            let loose = self.find(&lenient, |r| &r.prefix_lower[..]);
            if loose.gated {
                return Ok(loose);
            }
        }
        Ok(found)
    }

    fn find(&self, path: &[u8], prefix: impl Fn(&Route) -> &[u8]) -> RouteMatch {
        match self.routes.iter().find(|r| Route::owns(path, prefix(r))) {
            Some(route) => RouteMatch {
                prefix: Some(route.prefix.clone()),
                gated: route.gated,
            },
            None => RouteMatch {
                prefix: None,
                gated: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::new(vec![
            ("/videos/".into(), true),
            ("/".into(), false),
            ("/videos/free/".into(), false),
        ])
        .unwrap()
    }

    #[test]
    fn longest_prefix_wins_whatever_the_config_order() {
        let t = table();
        assert!(t.lookup("/videos/a").unwrap().gated);
        assert!(!t.lookup("/videos/free/a").unwrap().gated);
        assert!(!t.lookup("/about").unwrap().gated);
        assert_eq!(
            t.lookup("/videos/free/x").unwrap().prefix.as_deref(),
            Some("/videos/free/")
        );
    }

    #[test]
    fn a_path_no_route_matches_is_gated() {
        let t = RouteTable::new(vec![("/public/".into(), false)]).unwrap();
        let m = t.lookup("/other").unwrap();
        assert!(m.gated);
        assert_eq!(m.prefix, None);
    }

    #[test]
    fn tricks_that_reach_a_gated_path_are_still_gated() {
        let t = table();
        for path in [
            "//videos/a",
            "/public/../videos/a",
            "/vid%65os/a",
            "/./videos/a",
            "/x/..;/videos/a",
            "/videos;/a",
            "/videos;jsessionid=1/a",
            "/videos/a;x=1",
            "/Videos/a",
            "/VIDEOS/FREE/../a",
            "/videos./a",
            "/videos",
            "/videos;x",
        ] {
            assert!(t.lookup(path).unwrap().gated, "{path} must be gated");
        }
        assert!(!t.lookup("/videos/free/x").unwrap().gated);
        assert!(
            !t.lookup("/Videos/Free/x").unwrap().gated,
            "both readings say ungated"
        );
        assert!(!t.lookup("/about.").unwrap().gated);
    }

    #[test]
    fn a_lenient_reading_never_opens_a_strictly_gated_path() {
        // "/Public/" gated, "/public/" open: the strict reading of /Public/x is gated.
        let t =
            RouteTable::new(vec![("/public/".into(), false), ("/Public/".into(), true)]).unwrap();
        assert!(t.lookup("/Public/x").unwrap().gated);
        assert!(t.lookup("/PUBLIC/x").unwrap().gated);
        assert!(!t.lookup("/public/x").unwrap().gated);
    }

    #[test]
    fn route_prefixes_must_be_normal_and_unique() {
        assert!(RouteTable::new(vec![("videos/".into(), true)]).is_err());
        assert!(RouteTable::new(vec![("/a/../b".into(), true)]).is_err());
        let err = RouteTable::new(vec![("/a".into(), true), ("/a".into(), false)]).unwrap_err();
        assert_eq!(err.index, 1);
    }
}
