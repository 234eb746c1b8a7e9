//! Edge verification: a route with `access = "token"` lets a request through
//! only with an EdgeAuth token whose signature, window, ACL and address all
//! hold for it, as an Akamai edge or nginx's secure_link would check it.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use http::header::{self, HeaderName};
use http::{HeaderMap, Uri};

use super::acl::acl_allows;
use super::{EdgeAuth, KeyError, SignerSettings, VerifyError};

/// Where a request carries its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCarrier {
    /// A query parameter (`param = "token"`).
    Query(String),
    /// A cookie (`cookie = "__token__"`).
    Cookie(String),
    /// A request header (`header = "X-Token"`).
    Header(HeaderName),
}

/// `[route.token]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeSettings {
    /// The key and the token's layout.
    pub signer: SignerSettings,
    /// Where the token is read from.
    pub carrier: TokenCarrier,
    /// Clock skew forgiven on both ends of the window.
    pub leeway: Duration,
}

/// Checks the tokens of one route.
#[derive(Debug)]
pub struct EdgeVerifier {
    signer: EdgeAuth,
    carrier: TokenCarrier,
    leeway_secs: u64,
}

/// How one check came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It holds.
    Pass,
    /// It does not; why.
    Fail(String),
    /// Not checked (the token has no such field, or an earlier check failed).
    Skipped,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pass => f.write_str("ok"),
            Outcome::Fail(why) => write!(f, "FAILED: {why}"),
            Outcome::Skipped => f.write_str("not checked"),
        }
    }
}

/// Every check of one token against one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    /// The HMAC (and, for a URL token, the path it was made for).
    pub signature: Outcome,
    /// `st` and `exp`, with the leeway.
    pub window: Outcome,
    /// The ACL against the request path (skipped for URL tokens).
    pub acl: Outcome,
    /// `ip` against the client address (skipped when the token has none).
    pub ip: Outcome,
}

/// Why a request was refused: logged, never sent to the visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The request carries no token where the route reads it.
    Missing,
    /// A check failed.
    Failed(&'static str, String),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Missing => f.write_str("no token"),
            Rejection::Failed(check, why) => write!(f, "token {check}: {why}"),
        }
    }
}

impl Checks {
    /// The first failed check, if any.
    pub fn verdict(&self) -> Result<(), Rejection> {
        for (name, outcome) in [
            ("signature", &self.signature),
            ("window", &self.window),
            ("acl", &self.acl),
            ("ip", &self.ip),
        ] {
            if let Outcome::Fail(why) = outcome {
                return Err(Rejection::Failed(name, why.clone()));
            }
        }
        Ok(())
    }
}

impl EdgeVerifier {
    /// Loads the key and salt of `settings`.
    pub fn build(settings: &EdgeSettings) -> Result<EdgeVerifier, KeyError> {
        Ok(EdgeVerifier {
            signer: settings.signer.build()?,
            carrier: settings.carrier.clone(),
            leeway_secs: settings.leeway.as_secs(),
        })
    }

    /// The token the request carries where this route reads it.
    pub fn token_in<'r>(&self, uri: &'r Uri, headers: &'r HeaderMap) -> Option<Cow<'r, str>> {
        match &self.carrier {
            TokenCarrier::Query(name) => {
                let query = uri.query()?;
                // As sent: see `check` for how an escaped token is read.
                query
                    .split('&')
                    .find_map(|part| part.strip_prefix(name.as_str())?.strip_prefix('='))
                    .map(Cow::Borrowed)
            }
            TokenCarrier::Cookie(name) => headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|line| line.to_str().ok())
                .flat_map(|line| line.split(';'))
                .find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    (key == name).then(|| Cow::Borrowed(value.trim_matches('"')))
                }),
            TokenCarrier::Header(name) => headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| Cow::Borrowed(v.trim())),
        }
    }

    /// Every check of `token` for a request to `path` (as the route table
    /// reads it: decoded, dot segments resolved) from `client` at `now`.
    ///
    /// A token is signed as it is sent (with `escape_early`, its `%xx`
    /// included), but a player may have percent-encoded it once more on its
    /// way into a URL; when the token as sent does not check out and holds a
    /// `%`, its decoded reading is tried too. Either must carry a valid HMAC.
    pub fn check(&self, token: &str, path: &str, client: Option<IpAddr>, now: u64) -> Checks {
        let checks = self.check_as_sent(token, path, client, now);
        if matches!(checks.signature, Outcome::Fail(_)) && token.contains('%') {
            if let Ok(decoded) = percent_encoding::percent_decode_str(token).decode_utf8() {
                let again = self.check_as_sent(&decoded, path, client, now);
                if again.signature == Outcome::Pass {
                    return again;
                }
            }
        }
        checks
    }

    fn check_as_sent(&self, token: &str, path: &str, client: Option<IpAddr>, now: u64) -> Checks {
        let mut checks = Checks {
            signature: Outcome::Skipped,
            window: Outcome::Skipped,
            acl: Outcome::Skipped,
            ip: Outcome::Skipped,
        };
        let verified = match self.signer.verify_with(token, now, self.leeway_secs, path) {
            Ok(verified) => {
                checks.signature = Outcome::Pass;
                checks.window = Outcome::Pass;
                verified
            }
            Err(err @ (VerifyError::NotYetValid | VerifyError::Expired)) => {
                checks.signature = Outcome::Pass;
                checks.window = Outcome::Fail(err.to_string());
                return checks;
            }
            Err(err) => {
                checks.signature = Outcome::Fail(err.to_string());
                return checks;
            }
        };
        if let Some(acl) = verified.acl {
            let delimiter = self.signer.format().acl_delimiter;
            checks.acl = if acl_allows(acl, delimiter, path.as_bytes()) {
                Outcome::Pass
            } else {
                Outcome::Fail(format!("{path:?} is outside {acl:?}"))
            };
        }
        if let Some(bound) = verified.ip {
            checks.ip = match client {
                Some(addr) if ip_matches(bound, addr, self.signer.format().escape_early) => {
                    Outcome::Pass
                }
                Some(addr) => Outcome::Fail(format!("token is for {bound}, client is {addr}")),
                None => Outcome::Fail(format!("token is for {bound}, client unknown")),
            };
        }
        checks
    }
}

// The token holds the address as minted (escaped early, where `:` is %3a);
// any spelling of the same address matches.
fn ip_matches(bound: &str, client: IpAddr, escaped: bool) -> bool {
    let text = if escaped {
        percent_encoding::percent_decode_str(bound).decode_utf8_lossy()
    } else {
        Cow::Borrowed(bound)
    };
    text.parse::<IpAddr>()
        .is_ok_and(|addr| addr.to_canonical() == client.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretSource;

    fn verifier(carrier: TokenCarrier) -> EdgeVerifier {
        EdgeVerifier::build(&EdgeSettings {
            signer: SignerSettings {
                key: SecretSource::Inline("00112233445566778899aabbccddeeff".into()),
                algorithm: super::super::Algorithm::Sha256,
                salt: None,
                field_delimiter: '~',
                acl_delimiter: '!',
                escape_early: false,
            },
            carrier,
            leeway: Duration::from_secs(5),
        })
        .unwrap()
    }

    #[test]
    fn reads_the_token_where_the_route_says_and_nowhere_else() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            map
        };
        let uri: Uri = "/hls/a/x.ts?tokens=no&token=st%3D1~exp=2&x=1"
            .parse()
            .unwrap();
        let query = verifier(TokenCarrier::Query("token".into()));
        assert_eq!(
            query.token_in(&uri, &HeaderMap::new()).as_deref(),
            Some("st%3D1~exp=2")
        );
        let plain: Uri = "/hls/a/x.ts".parse().unwrap();
        assert_eq!(query.token_in(&plain, &HeaderMap::new()), None);
        let cookie = verifier(TokenCarrier::Cookie("__token__".into()));
        let sent = headers(&[
            ("cookie", "a=1"),
            ("cookie", "x__token__=no; __token__=exp=9"),
        ]);
        assert_eq!(cookie.token_in(&uri, &sent).as_deref(), Some("exp=9"));
        assert_eq!(cookie.token_in(&uri, &HeaderMap::new()), None);
        let header = verifier(TokenCarrier::Header(HeaderName::from_static("x-token")));
        assert_eq!(
            header
                .token_in(&uri, &headers(&[("x-token", " exp=3 ")]))
                .as_deref(),
            Some("exp=3")
        );
    }

    #[test]
    fn any_spelling_of_the_bound_address_matches_and_no_other_address() {
        let client: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(ip_matches("2001:db8:0:0:0:0:0:1", client, false));
        assert!(ip_matches("2001%3adb8%3a%3a1", client, true));
        assert!(!ip_matches("2001:db8::2", client, false));
        assert!(!ip_matches("garbage", client, false));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(ip_matches("192.0.2.1", mapped, false));
    }

    #[test]
    fn every_check_is_reported_and_the_first_failure_decides() {
        let v = verifier(TokenCarrier::Query("token".into()));
        let mut token = String::new();
        v.signer.mint_claims_into(
            &super::super::Claims {
                ip: Some("192.0.2.1"),
                start: Some(100),
                end: 200,
                scope: super::super::Scope::Acl("/hls/a/*!/hls/b/*"),
                id: None,
                data: None,
            },
            &mut token,
        );
        let ok: IpAddr = "192.0.2.1".parse().unwrap();
        let checks = v.check(&token, "/hls/b/seg.ts", Some(ok), 150);
        assert_eq!(checks.verdict(), Ok(()));
        assert_eq!(checks.ip, Outcome::Pass);
        let late = v.check(&token, "/hls/a/seg.ts", Some(ok), 205);
        assert!(matches!(late.window, Outcome::Fail(_)));
        assert_eq!(late.acl, Outcome::Skipped);
        assert_eq!(
            v.check(&token, "/hls/a/seg.ts", Some(ok), 204).verdict(),
            Ok(()),
            "leeway"
        );
        let outside = v.check(&token, "/hls/c/seg.ts", Some(ok), 150);
        assert!(matches!(
            outside.verdict(),
            Err(Rejection::Failed("acl", _))
        ));
        let elsewhere = v.check(&token, "/hls/a/seg.ts", "192.0.2.2".parse().ok(), 150);
        assert!(matches!(
            elsewhere.verdict(),
            Err(Rejection::Failed("ip", _))
        ));
        // Encoded once more on its way into a URL, it still checks out.
        let encoded = token.replace('=', "%3D").replace('/', "%2F");
        assert_eq!(
            v.check(&encoded, "/hls/a/seg.ts", Some(ok), 150).verdict(),
            Ok(())
        );
        let tampered = token.replacen("exp=200", "exp=900", 1);
        let bad = v.check(&tampered, "/hls/a/seg.ts", Some(ok), 150);
        assert!(matches!(
            bad.verdict(),
            Err(Rejection::Failed("signature", _))
        ));
    }
}
