//! Route match and session check: is this request passed through, let in, or turned away?
//!
//! [`route`] decides whether a path is gated, reading it as the CMS might
//! ([`path`]); [`cookie`] finds the session cookie; [`admit`] asks the allowlist.

pub mod cookie;
pub mod path;
pub mod route;

use std::fmt;

use http::HeaderMap;

pub use cookie::{is_cookie_name_byte, is_cookie_value_byte, session_cookies, CookieError};
pub use path::{normalize, PathError};
pub use route::{RouteError, RouteMatch, RouteTable};

use crate::allowlist::{AllowlistError, SessionKey, SessionTag};
use crate::config::Config;

/// The gate's answer for a request on a gated route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The session is on the allowlist.
    Allowed(SessionTag),
    /// The visitor is turned away with 403.
    Denied(DenyReason),
}

/// Why a visitor was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No session cookie.
    NoCookie,
    /// The cookie header could not be read.
    BadCookie(CookieError),
    /// The session id is not on the allowlist.
    UnknownSession(SessionTag),
}

impl DenyReason {
    /// Text for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            DenyReason::NoCookie => "no session cookie",
            DenyReason::BadCookie(CookieError::Malformed) => "malformed session cookie",
            DenyReason::BadCookie(CookieError::TooMany) => {
                "session cookie sent with too many values"
            }
            DenyReason::UnknownSession(_) => "session not on the allowlist",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks the session of a request on a gated route: allowed if any value
/// of the session cookie is on the allowlist.
pub async fn admit(config: &Config, headers: &HeaderMap) -> Result<Admission, AllowlistError> {
    let values = match session_cookies(headers, &config.session.cookie) {
        Ok(values) => values,
        Err(err) => return Ok(Admission::Denied(DenyReason::BadCookie(err))),
    };
    let mut first_unknown = None;
    for id in values.as_slice() {
        let key = SessionKey::new(id);
        if config.allowlist.contains(&key).await? {
            return Ok(Admission::Allowed(key.tag()));
        }
        first_unknown.get_or_insert(key.tag());
    }
    Ok(Admission::Denied(match first_unknown {
        Some(tag) => DenyReason::UnknownSession(tag),
        None => DenyReason::NoCookie,
    }))
}
