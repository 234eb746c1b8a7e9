//! The route table: longest prefix wins, a path no route matches is gated,
//! and a request gets the strictest access level any reasonable reading of
//! its path, and any of its query parameters, has.

use std::borrow::Cow;
use std::sync::Arc;

use thiserror::Error;

use super::params::{canonical_param, param_names, param_readings};
use super::path::{
    folded_reading, folds_to_semicolon, host_reading, is_plain, kept_reading, normalize,
    trimmed_reading, Params, PathError,
};

/// Routes ordered so that the longest matching prefix wins, and query routes.
#[derive(Debug, Clone)]
pub struct RouteTable {
    // Prefix routes, sorted by descending prefix length.
    routes: Vec<Route>,
    // `routes` indices by descending folded prefix length, the strictest
    // first among equal folded prefixes ("/Public/" and "/public/").
    folded_order: Box<[usize]>,
    // True when every prefix is its own folded reading: then a path that is
    // its own folded reading needs no second look.
    all_folded: bool,
    // Query routes, in config order; their index follows the prefix routes'.
    queries: Vec<QueryRoute>,
    // The strictest access of a query route: the query of a request whose
    // path already has it is not read.
    query_max: Option<Access>,
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

/// One route as configured: a path prefix, or query parameter names, and
/// its access level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Path prefix, in normal form; `None` for a query route.
    pub prefix: Option<String>,
    /// Query parameter names: a request carrying one of them takes this
    /// route's access, whatever its path. Empty for a prefix route.
    pub query: Vec<String>,
    /// What the route asks of visitors.
    pub access: Access,
    /// How tokens are checked, for `access = "token"`.
    pub token: Option<crate::token::verify::EdgeSettings>,
}

#[derive(Debug, Clone)]
struct Route {
    // Its place in config order.
    spec: usize,
    prefix: Arc<str>,
    // For the folded reading of a path (see `lookup`).
    folded: Box<[u8]>,
    access: Access,
}

impl Route {
    // A "/videos/" route also owns "/videos", which servers redirect or serve
    // alike.
    #[inline]
    fn owns(path: &[u8], prefix: &[u8]) -> bool {
        path.starts_with(prefix) || prefix.strip_suffix(b"/").is_some_and(|dir| path == dir)
    }

    // "/videos.json" or "/videos.html", which servers that take a format from
    // the extension (Rails, Spring) serve as "/videos", also with a trailing
    // slash (Rails drops it before routing). Another reading of a path, so
    // it may only raise its access: to a static server "/videos/free.json"
    // is a file under "/videos/", not the "/videos/free/" page.
    #[inline]
    fn owns_format(path: &[u8], prefix: &[u8]) -> bool {
        let Some(dir) = prefix.strip_suffix(b"/").filter(|dir| !dir.is_empty()) else {
            return false;
        };
        // The dot first: it rules out nearly every route at one byte.
        if path.get(dir.len()) != Some(&b'.') || !path.starts_with(dir) {
            return false;
        }
        let rest = &path[dir.len()..];
        !rest.strip_suffix(b"/").unwrap_or(rest).contains(&b'/')
    }
}

#[derive(Debug, Clone)]
struct QueryRoute {
    spec: usize,
    // "?p&page_id": its name in logs and metrics.
    label: Arc<str>,
    // Canonical names (see `canonical_param`), matched by every reading of
    // a name sent (`param_readings`).
    names: Box<[Box<[u8]>]>,
    access: Access,
}

/// A route that cannot be used.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct RouteError {
    /// Index of the offending `[[route]]`.
    pub index: usize,
    /// The key at fault: "prefix", "query" or "access".
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The route a request fell under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// The matching prefix (for a query route, `?` and its parameter names
    /// joined by `&`), or `None` when no route matched (then the path is gated).
    pub prefix: Option<Arc<str>>,
    /// The route's place in [`RouteTable::prefixes`], for metrics.
    pub index: Option<usize>,
    /// What the route asks of the visitor.
    pub access: Access,
    /// The route's place in config order (`route[N]`), or `None` when no route matched.
    pub spec: Option<usize>,
    /// The path in its strict reading (decoded, `;` parameters dropped), for token ACLs.
    pub normal: Option<Arc<[u8]>>,
}

/// The access level of a path no route matches: fail closed.
const UNROUTED: Access = Access::Session;

impl RouteTable {
    /// Compiles routes given in config order.
    pub fn new(routes: &[RouteSpec]) -> Result<RouteTable, RouteError> {
        let mut compiled: Vec<Route> = Vec::with_capacity(routes.len());
        let mut queries = Vec::new();
        for (index, spec) in routes.iter().enumerate() {
            let fail = |field, message: String| RouteError {
                index,
                field,
                message,
            };
            let prefix = match (&spec.prefix, spec.query.is_empty()) {
                (Some(prefix), true) => prefix,
                (None, false) => {
                    queries.push(QueryRoute::new(index, spec).map_err(|(f, m)| fail(f, m))?);
                    continue;
                }
                (Some(_), false) => {
                    let why =
                        "set prefix or query, not both: a query route applies whatever the path";
                    return Err(fail("query", why.into()));
                }
                (None, true) => {
                    let why = "needs prefix (a path prefix) or query (parameter names)";
                    return Err(fail("prefix", why.into()));
                }
            };
            if !prefix.starts_with('/') {
                return Err(fail("prefix", format!("{prefix:?} must start with '/'")));
            }
            let normal =
                matches!(normalize(prefix), Ok(norm) if norm.as_ref() == prefix.as_bytes());
            if !normal {
                let why = "is not in normal form (no %-escapes, ';', '//', '.' or '..' segments)";
                return Err(fail("prefix", format!("{prefix:?} {why}")));
            }
            if compiled.iter().any(|r| *r.prefix == **prefix) {
                return Err(fail("prefix", format!("{prefix:?} is listed twice")));
            }
            let folded = match folded_reading(prefix.as_bytes(), Params::Dropped) {
                Ok(folded) => folded.unwrap_or_else(|| prefix.as_bytes().to_vec()),
                Err(err) => {
                    let why = "can never match: read as a lenient server reads it (case, \
                               accents, compatibility forms and trailing dots folded), the";
                    return Err(fail("prefix", format!("{prefix:?} {why} {err}")));
                }
            };
            compiled.push(Route {
                spec: index,
                folded: folded.into(),
                prefix: prefix.as_str().into(),
                access: spec.access,
            });
        }
        compiled.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let mut folded_order: Vec<usize> = (0..compiled.len()).collect();
        folded_order.sort_by_key(|&i| {
            let route = &compiled[i];
            (
                std::cmp::Reverse(route.folded.len()),
                std::cmp::Reverse(route.access),
            )
        });
        Ok(RouteTable {
            all_folded: compiled.iter().all(|r| *r.folded == *r.prefix.as_bytes()),
            folded_order: folded_order.into(),
            query_max: queries.iter().map(|q| q.access).max(),
            routes: compiled,
            queries,
        })
    }

    /// Number of routes, prefix and query routes alike.
    pub fn len(&self) -> usize {
        self.routes.len() + self.queries.len()
    }

    /// True when there are no routes (then every request is gated).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finds the route for a request path and query; a path no route matches is gated.
    ///
    /// The path is read the strict way (decoded, `;` parameters dropped),
    /// folded (case, trailing dots and, for a non-ASCII path, compatibility
    /// forms, accents and invisible characters), trimmed (leading spaces and
    /// NTFS stream suffixes dropped too), each of these again with `;`
    /// parameters kept in their segment, as a format page, where it holds
    /// an escaped `?` or `#`, every way again cut there, with what follows
    /// the `%3F` read as a query, and, where it starts with `//`, every way
    /// again after the first segment, which a URL parser takes for a host
    /// (see [`super::path`]); a dot
    /// segment in any reading is an error. The request gets the strictest
    /// access level of the readings' routes and of every query route one of
    /// its parameters names; on a tie, the strict reading's route.
    pub fn lookup(&self, path: &str, query: Option<&str>) -> Result<RouteMatch, PathError> {
        let plain = is_plain(path.as_bytes());
        let strict = if plain {
            Cow::Borrowed(path.as_bytes())
        } else {
            normalize(path)?
        };
        let mut found = self.find(&strict);
        if plain {
            // Its own folded reading, and nothing to trim or cut.
            self.raise_folded(&mut found, None, &strict);
        } else {
            self.raise_lenient(&mut found, &strict, Params::Dropped)?;
            self.raise_kept(&mut found, path, &strict)?;
            self.raise_cut(&mut found, path)?;
            self.raise_host(&mut found, path)?;
        }
        if let Some(query) = query {
            if self.query_max.is_some_and(|max| max > found.access) {
                self.raise_by_query(&mut found, query);
            }
        }
        // Only a token route checks the path again (against the token's ACL).
        if found.access == Access::Token {
            found.normal = Some(strict.as_ref().into());
        }
        Ok(found)
    }

    // Raises `found` by the folded and the trimmed readings of `strict`,
    // with `;` parameters as `params` says.
    fn raise_lenient(
        &self,
        found: &mut RouteMatch,
        strict: &[u8],
        params: Params,
    ) -> Result<(), PathError> {
        let folded = folded_reading(strict, params)?;
        self.raise_folded(found, folded.as_deref(), strict);
        if let Some(trimmed) = trimmed_reading(folded.as_deref().unwrap_or(strict), params)? {
            self.raise(found, self.find_folded(&trimmed));
        }
        Ok(())
    }

    // nginx, Apache, PHP, Node and Django keep a segment's `;` parameters
    // ("/videos/free;/x" is under "/videos/", not "/videos/free/"): the
    // readings of `path` (whose strict reading is `strict`) that keep them
    // raise `found`.
    fn raise_kept(
        &self,
        found: &mut RouteMatch,
        path: &str,
        strict: &[u8],
    ) -> Result<(), PathError> {
        match kept_reading(path)? {
            Some(kept) => {
                self.raise(found, self.find(&kept));
                self.raise_lenient(found, &kept, Params::Kept)
            }
            // Its strict reading keeps a "；" the folded one reads as ";".
            None if folds_to_semicolon(strict) => self.raise_lenient(found, strict, Params::Kept),
            None => Ok(()),
        }
    }

    // A server that decodes a path before it splits off the query reads the
    // path as sent cut at the first escape of a `?` or `#` (`%3F`, `%23`),
    // and what follows the first `%3F` as a query: both raise `found`.
    fn raise_cut(&self, found: &mut RouteMatch, path: &str) -> Result<(), PathError> {
        let Some(cut) = escape_of(path, b"?#") else {
            return Ok(());
        };
        let head = match &path[..cut] {
            "" => "/",
            head => head,
        };
        let strict = normalize(head)?;
        self.raise(found, self.find(&strict));
        self.raise_lenient(found, &strict, Params::Dropped)?;
        self.raise_kept(found, head, &strict)?;
        if self.query_max.is_some_and(|max| max > found.access) {
            if let Some(question) = escape_of(path, b"?") {
                self.raise_by_query(found, &path[question + 3..]);
            }
        }
        Ok(())
    }

    // A path that starts with "//" is a host and a path to a URL parser
    // (PHP's parse_url, Node's URL): that path, in every reading above,
    // raises `found`. The request is forwarded as sent all the same.
    fn raise_host(&self, found: &mut RouteMatch, path: &str) -> Result<(), PathError> {
        let Some(after_host) = host_reading(path) else {
            return Ok(());
        };
        let strict = normalize(after_host)?;
        self.raise(found, self.find(&strict));
        self.raise_lenient(found, &strict, Params::Dropped)?;
        self.raise_kept(found, after_host, &strict)?;
        self.raise_cut(found, after_host)
    }

    fn raise(&self, found: &mut RouteMatch, other: RouteMatch) {
        if other.access > found.access {
            *found = other;
        }
    }

    // Raises `found` by the route of the folded reading of `strict` (`None`:
    // `strict` is its own).
    #[inline]
    fn raise_folded(&self, found: &mut RouteMatch, folded: Option<&[u8]>, strict: &[u8]) {
        match folded {
            Some(folded) => self.raise(found, self.find_folded(folded)),
            // A folded prefix may still match a path already in folded form.
            None if !self.all_folded => self.raise(found, self.find_folded(strict)),
            None => {}
        }
    }

    /// Whether a query route could make `found` stricter, so that what else
    /// a request names (its form body) is worth reading.
    pub fn query_may_raise(&self, found: &RouteMatch) -> bool {
        self.query_max.is_some_and(|max| max > found.access)
    }

    /// Raises `found` by the names a form body carries (`form`, read as a
    /// query string is), or, for a body that could not be read whole or
    /// whose names are not read here (`None`), to the strictest query route,
    /// as if it named them all.
    pub fn raise_by_form(&self, found: &mut RouteMatch, form: Option<&str>) {
        if !self.query_may_raise(found) {
            return;
        }
        match form {
            Some(form) => self.raise_by_query(found, form),
            None => {
                let strictest = self
                    .queries
                    .iter()
                    .enumerate()
                    .max_by_key(|(at, route)| (route.access, std::cmp::Reverse(*at)));
                if let Some((at, route)) = strictest {
                    *found = self.query_match(at, route);
                }
            }
        }
    }

    fn raise_by_query(&self, found: &mut RouteMatch, query: &str) {
        param_names(query, |name| {
            for reading in param_readings(name) {
                for (at, route) in self.queries.iter().enumerate() {
                    let named = || {
                        route
                            .names
                            .iter()
                            .any(|known| reading.clone().eq(known.iter().copied()))
                    };
                    if route.access > found.access && named() {
                        *found = self.query_match(at, route);
                    }
                }
            }
        });
    }

    fn query_match(&self, at: usize, route: &QueryRoute) -> RouteMatch {
        RouteMatch {
            prefix: Some(route.label.clone()),
            index: Some(self.routes.len() + at),
            access: route.access,
            spec: Some(route.spec),
            normal: None,
        }
    }

    fn find(&self, path: &[u8]) -> RouteMatch {
        let index = self
            .routes
            .iter()
            .position(|r| Route::owns(path, r.prefix.as_bytes()));
        self.raised_by_format(self.matched(index), path, |route| route.prefix.as_bytes())
    }

    fn find_folded(&self, path: &[u8]) -> RouteMatch {
        let index = self
            .folded_order
            .iter()
            .copied()
            .find(|&i| Route::owns(path, &self.routes[i].folded));
        self.raised_by_format(self.matched(index), path, |route| &route.folded)
    }

    // `found`, or the strictest route whose format page `path` is (its
    // prefix as `prefix` gives it), if that is stricter.
    fn raised_by_format(
        &self,
        found: RouteMatch,
        path: &[u8],
        prefix: impl Fn(&Route) -> &[u8],
    ) -> RouteMatch {
        let format = (0..self.routes.len())
            .filter(|&i| self.routes[i].access > found.access)
            .filter(|&i| Route::owns_format(path, prefix(&self.routes[i])))
            .max_by_key(|&i| self.routes[i].access);
        match format {
            Some(_) => self.matched(format),
            None => found,
        }
    }

    fn matched(&self, index: Option<usize>) -> RouteMatch {
        match index {
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

    /// The route prefixes (for query routes, their labels), in the order
    /// [`RouteMatch::index`] counts them.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        let queries = self.queries.iter().map(|q| &*q.label);
        self.routes.iter().map(|r| &*r.prefix).chain(queries)
    }
}

impl QueryRoute {
    fn new(spec: usize, route: &RouteSpec) -> Result<QueryRoute, (&'static str, String)> {
        if route.access != Access::Session {
            let why = "a query route can only gate: it takes access = \"session\" (a public one \
                       would open nothing, and tokens are checked against paths)";
            return Err(("access", why.into()));
        }
        let mut names = Vec::with_capacity(route.query.len());
        for name in &route.query {
            if name
                .bytes()
                .any(|b| b.is_ascii_control() || b"&;=#?%+".contains(&b))
            {
                let why =
                    "is not a parameter name as it is written decoded (no &, ;, =, #, ?, %, + \
                           or control characters)";
                return Err(("query", format!("{name:?} {why}")));
            }
            let canonical: Box<[u8]> = canonical_param(name.as_bytes()).collect();
            if canonical.is_empty() {
                return Err(("query", format!("{name:?} names no parameter")));
            }
            names.push(canonical);
        }
        Ok(QueryRoute {
            spec,
            label: format!("?{}", route.query.join("&")).into(),
            names: names.into(),
            access: route.access,
        })
    }
}

/// Where in `path` the first %-escape of one of `bytes` starts.
fn escape_of(path: &str, bytes: &[u8]) -> Option<usize> {
    let digit = |b: u8| (b as char).to_digit(16);
    path.as_bytes().windows(3).position(|w| {
        w[0] == b'%'
            && matches!((digit(w[1]), digit(w[2])), (Some(high), Some(low))
                if bytes.contains(&((high * 16 + low) as u8)))
    })
}

#[cfg(test)]
mod tests;
