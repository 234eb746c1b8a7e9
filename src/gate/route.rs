//! The route table: longest prefix wins, a path no route matches is gated,
//! and a path gets the strictest access level any reasonable reading of it has.

use std::sync::Arc;

use thiserror::Error;

use super::path::{lenient_reading, normalize, PathError};

/// Routes ordered so that the longest matching prefix wins.
#[derive(Debug, Clone)]
pub struct RouteTable {
    // Sorted by descending prefix length.
    routes: Vec<Route>,
}

/// What a route asks of a visitor, ordered from the most open to the strictest.
///
/// A session is stricter than a token: a path some reading puts under a
/// session route and another under a token route asks for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// Passed through untouched.
    Public,
    /// Only requests carrying a valid EdgeAuth token for the path (media next to the CMS).
    Token,
    /// Only sessions the session source allows; HTML gets tokens minted into its embeds.
    Session,
}

impl Access {
    /// The level's name in gateway.toml and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Token => "token",
            Access::Session => "session",
        }
    }

    /// True when the visitor's session must be checked before the CMS is asked.
    pub fn is_gated(self) -> bool {
        self == Access::Session
    }
}

/// One route as configured: a path prefix and its access level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Path prefix, in normal form.
    pub prefix: String,
    /// What the prefix asks of visitors.
    pub access: Access,
    /// How tokens are checked, for `access = "token"`.
    pub token: Option<crate::token::verify::EdgeSettings>,
}

#[derive(Debug, Clone)]
struct Route {
    // Its place in config order.
    spec: usize,
    prefix: Arc<str>,
    // For the lenient reading of a path (see `lookup`).
    prefix_lower: Box<[u8]>,
    access: Access,
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
    /// The route's place in [`RouteTable::prefixes`], for metrics.
    pub index: Option<usize>,
    /// What the route asks of the visitor.
    pub access: Access,
    /// The route's place in config order (`route[N]`), or `None` when no route matched.
    pub spec: Option<usize>,
    /// The path as routes read it (decoded, dot segments resolved), for token ACLs.
    pub normal: Option<Arc<[u8]>>,
}

/// The access level of a path no route matches: fail closed.
const UNROUTED: Access = Access::Session;

impl RouteTable {
    /// Compiles routes given in config order.
    pub fn new(routes: &[RouteSpec]) -> Result<RouteTable, RouteError> {
        let mut compiled: Vec<Route> = Vec::with_capacity(routes.len());
        for (index, RouteSpec { prefix, access, .. }) in routes.iter().enumerate() {
            let fail = |message: String| RouteError { index, message };
            if !prefix.starts_with('/') {
                return Err(fail(format!("{prefix:?} must start with '/'")));
            }
            let normal =
                matches!(normalize(prefix), Ok(norm) if norm.as_ref() == prefix.as_bytes());
            if !normal {
                let why = "is not in normal form (no %-escapes, ';', '//', '.' or '..' segments)";
                return Err(fail(format!("{prefix:?} {why}")));
            }
            if compiled.iter().any(|r| *r.prefix == **prefix) {
                return Err(fail(format!("{prefix:?} is listed twice")));
            }
            compiled.push(Route {
                spec: index,
                prefix_lower: prefix.to_ascii_lowercase().into_bytes().into(),
                prefix: prefix.as_str().into(),
                access: *access,
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
    /// read it (ignoring case and trailing dots). The path gets the strictest
    /// access level of the two readings; on a tie, the strict reading's route.
    pub fn lookup(&self, path: &str) -> Result<RouteMatch, PathError> {
        let strict = normalize(path)?;
        let mut found = self.find(&strict, |r| r.prefix.as_bytes());
        if let Some(lenient) = lenient_reading(&strict) {
            let loose = self.find(&lenient, |r| &r.prefix_lower[..]);
            if loose.access > found.access {
                found = loose;
            }
        }
        // Only a token route checks the path again (against the token's ACL).
        if found.access == Access::Token {
            found.normal = Some(strict.as_ref().into());
        }
        Ok(found)
    }

    fn find(&self, path: &[u8], prefix: impl Fn(&Route) -> &[u8]) -> RouteMatch {
        match self
            .routes
            .iter()
            .position(|r| Route::owns(path, prefix(r)))
        {
            Some(index) => RouteMatch {
                prefix: Some(self.routes[index].prefix.clone()),
                index: Some(index),
                access: self.routes[index].access,
                spec: Some(self.routes[index].spec),
                normal: None,
            },
            None => RouteMatch {
                prefix: None,
                index: None,
                access: UNROUTED,
                spec: None,
                normal: None,
            },
        }
    }

    /// The route prefixes, in the order [`RouteMatch::index`] counts them.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| &*r.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(prefix: &str, access: Access) -> RouteSpec {
        RouteSpec {
            prefix: prefix.into(),
            access,
            token: None,
        }
    }

    fn routes(specs: &[(&str, Access)]) -> Result<RouteTable, RouteError> {
        let specs: Vec<RouteSpec> = specs.iter().map(|(p, a)| spec(p, *a)).collect();
        RouteTable::new(&specs)
    }

    fn gated(t: &RouteTable, path: &str) -> bool {
        t.lookup(path).unwrap().access.is_gated()
    }

    fn table() -> RouteTable {
        routes(&[
            ("/videos/", Access::Session),
            ("/", Access::Public),
            ("/videos/free/", Access::Public),
        ])
        .unwrap()
    }

    #[test]
    fn longest_prefix_wins_whatever_the_config_order() {
        let t = table();
        assert!(gated(&t, "/videos/a"));
        assert!(!gated(&t, "/videos/free/a"));
        assert!(!gated(&t, "/about"));
        assert_eq!(
            t.lookup("/videos/free/x").unwrap().prefix.as_deref(),
            Some("/videos/free/")
        );
    }

    #[test]
    fn a_path_no_route_matches_is_gated() {
        let t = routes(&[("/public/", Access::Public)]).unwrap();
        let m = t.lookup("/other").unwrap();
        assert_eq!(m.access, Access::Session);
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
            assert!(gated(&t, path), "{path} must be gated");
        }
        assert!(!gated(&t, "/videos/free/x"));
        assert!(!gated(&t, "/Videos/Free/x"), "both readings say public");
        assert!(!gated(&t, "/about."));
    }

    #[test]
    fn a_lenient_reading_never_opens_a_strictly_gated_path() {
        // "/Public/" gated, "/public/" open: the strict reading of /Public/x is gated.
        let t = routes(&[("/public/", Access::Public), ("/Public/", Access::Session)]).unwrap();
        assert!(gated(&t, "/Public/x"));
        assert!(gated(&t, "/PUBLIC/x"));
        assert!(!gated(&t, "/public/x"));
    }

    #[test]
    fn a_path_gets_the_strictest_level_of_either_reading() {
        assert!(Access::Public < Access::Session);
        let t = table();
        // Strict reading: "/videos./a" under "/", public. Lenient reading
        // (trailing dots dropped): "/videos/a", session.
        let m = t.lookup("/videos./a").unwrap();
        assert_eq!(m.access, Access::Session);
        assert_eq!(m.prefix.as_deref(), Some("/videos/"));
        // Both readings public: the strict reading's route is reported.
        let open = routes(&[("/a/", Access::Public), ("/A/", Access::Public)]).unwrap();
        assert_eq!(open.lookup("/A/x").unwrap().prefix.as_deref(), Some("/A/"));
    }

    #[test]
    fn route_prefixes_must_be_normal_and_unique() {
        assert!(routes(&[("videos/", Access::Session)]).is_err());
        assert!(routes(&[("/a/../b", Access::Session)]).is_err());
        let err = routes(&[("/a", Access::Session), ("/a", Access::Public)]).unwrap_err();
        assert_eq!(err.index, 1);
    }
}
