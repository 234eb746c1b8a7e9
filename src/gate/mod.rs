//! Route match and session check: is this request passed through, let in, or turned away?
//!
//! [`route`] decides a path's [`Access`] level, reading it as the CMS might
//! ([`path`]) and its parameter names as PHP does ([`params`]); [`cookie`]
//! finds the session cookie; [`SessionGate::admit`] asks the session source.

pub mod cookie;
pub mod params;
pub mod path;
pub mod rate;
pub mod route;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{HeaderValue, COOKIE};
use http::HeaderMap;

pub use cookie::{
    clears_session, every_session_value, session_cookies, CookieError, CookieName, SessionCookie,
};

/// At most this many session values are forgotten at one logout.
const MAX_FORGOTTEN: usize = 16;
pub use path::{normalize, PathError};
pub use route::{Access, RouteError, RouteMatch, RouteSpec, RouteTable};

use crate::allowlist::{Principal, SessionKey, SessionTag, Sessions, SourceError, Verdict, Visit};

/// The gate's answer for a request on a session-gated route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The session source allowed the session.
    Allowed(Principal),
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
    /// The source does not know the session (the tag of the first value sent).
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

/// The session check of gated routes: which cookie, and who answers for it.
#[derive(Debug)]
pub struct SessionGate {
    cookie: CookieName,
    sessions: Arc<Sessions>,
}

impl SessionGate {
    /// A gate reading the session cookie `cookie` (a trailing `*` for a
    /// prefix) and asking `sessions`.
    pub fn new(cookie: &str, sessions: Arc<Sessions>) -> SessionGate {
        SessionGate {
            cookie: CookieName::new(cookie),
            sessions,
        }
    }

    /// The session source and its cache.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// Checks the session of a request on a gated route: allowed if the
    /// source allows any value of the session cookie.
    pub async fn admit(&self, visit: &Visit<'_>) -> Result<Admission, SourceError> {
        let values = match session_cookies(visit.headers, &self.cookie) {
            Ok(values) => values,
            Err(err) => return Ok(Admission::Denied(DenyReason::BadCookie(err))),
        };
        let mut first_unknown = None;
        // A value the source cannot answer for (a stale cookie its check
        // chokes on, say) must not hide a later one it allows: the failure
        // counts only when no value gets in.
        let mut first_failure = None;
        for cookie in values.as_slice() {
            let key = SessionKey::sent_as(cookie.name, cookie.value);
            match self.sessions.check(&key, visit).await {
                Ok(Verdict::Allowed(principal)) => return Ok(Admission::Allowed(principal)),
                Ok(Verdict::Denied) => {
                    first_unknown.get_or_insert(key.tag());
                }
                Err(err) => {
                    first_failure.get_or_insert(err);
                }
            }
        }
        if let Some(err) = first_failure {
            return Err(err);
        }
        Ok(Admission::Denied(match first_unknown {
            Some(tag) => DenyReason::UnknownSession(tag),
            None => DenyReason::NoCookie,
        }))
    }

    /// After a CMS response that clears the session cookie (a logout), drops
    /// the cached verdicts of the sessions the request carried, so the
    /// visitor is not let in for the rest of the cache's time.
    pub async fn forget_if_logged_out(
        &self,
        request_cookies: &[HeaderValue],
        response: &HeaderMap,
    ) {
        if !clears_session(response, &self.cookie, SystemTime::now()) {
            return;
        }
        forget_carried(&self.cookie, &self.sessions, request_cookies).await;
    }

    /// For a request whose CMS answer was never read (the visitor went away,
    /// the CMS failed, the gateway refused the answer): it may have been a
    /// logout, so the cached verdicts of the sessions it carried are dropped
    /// all the same, in a task of their own. The next request asks the source.
    pub fn forget_carried_later(&self, request_cookies: Vec<HeaderValue>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (cookie, sessions) = (self.cookie.clone(), self.sessions.clone());
        runtime.spawn(async move { forget_carried(&cookie, &sessions, &request_cookies).await });
    }
}

/// Drops the cached verdicts of the values of `cookie` in `request_cookies`.
async fn forget_carried(cookie: &CookieName, sessions: &Sessions, request_cookies: &[HeaderValue]) {
    let mut carried = HeaderMap::new();
    for value in request_cookies {
        carried.append(COOKIE, value.clone());
    }
    // Even a cookie header the gate would refuse names sessions to forget.
    for id in every_session_value(&carried, cookie, MAX_FORGOTTEN) {
        let key = SessionKey::new(id);
        sessions.forget(key.digest()).await;
        tracing::debug!(session = %key.tag(), "logged out: cached verdict dropped");
    }
}
