//! Minting here, with the shared secret: one embed's claims for one page view.

use std::net::IpAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{load_key, EdgeAuth, KeyError, Scope, SignerSettings};
use crate::allowlist::Principal;
use crate::ip_text::IpText;

/// What a token is scoped to, as templates filled from the embed's captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeTemplate {
    /// ACL tokens: one or more path patterns, joined with the ACL delimiter.
    Acl(Vec<String>),
    /// A URL token for exactly this path.
    Url(String),
}

/// `[embed.token]` with `kind = "edgeauth"`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSettings {
    /// The key and the token's layout.
    pub signer: SignerSettings,
    /// How long a token stays valid from the moment it is minted (whole seconds, at least 1).
    pub ttl: Duration,
    /// How far `st` is back-dated; `None` leaves `st` out.
    pub start_offset: Option<Duration>,
    /// ACL(s) or URL, as templates.
    pub scope: ScopeTemplate,
    /// Bind the token to the visitor's address (`ip=`).
    pub ip: bool,
    /// Add a keyed hash of the visitor's session (`id=`).
    pub id: bool,
    /// A `data=` template, if any.
    pub data: Option<String>,
}

/// Who a token is minted for, and when.
#[derive(Debug, Clone, Copy)]
pub struct Visitor<'a> {
    /// The visitor's principal.
    pub principal: &'a Principal,
    /// The visitor's address, read through the trusted proxies.
    pub addr: Option<IpAddr>,
    /// The moment of minting (unix seconds).
    pub now: u64,
}

/// Mints one embed's tokens with the shared secret.
#[derive(Debug)]
pub struct LocalMinter {
    signer: EdgeAuth,
    ttl_secs: u64,
    start_offset: Option<u64>,
    ip: bool,
    // Keyed with the token key, so the id names a session only to whoever holds the key.
    session_mac: Option<SessionMac>,
}

struct SessionMac(Hmac<Sha256>);

impl std::fmt::Debug for SessionMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionMac(<redacted>)")
    }
}

/// Domain separation: the session hash must never equal a token HMAC.
const SESSION_ID_CONTEXT: &[u8] = b"embedgate session id\0";

impl LocalMinter {
    /// Loads the key and salt of `settings`.
    pub fn build(settings: &LocalSettings) -> Result<LocalMinter, KeyError> {
        let key = load_key(&settings.signer.key)?;
        let signer = settings.signer.build_with(&key)?;
        let session_mac = settings
            .id
            .then(|| Hmac::new_from_slice(key.as_bytes()).map(SessionMac))
            .transpose()
            .map_err(|_| KeyError::Empty)?;
        Ok(LocalMinter {
            signer,
            ttl_secs: settings.ttl.as_secs(),
            start_offset: settings.start_offset.map(|d| d.as_secs()),
            ip: settings.ip,
            session_mac,
        })
    }

    /// The signer, to verify tokens with.
    pub fn signer(&self) -> &EdgeAuth {
        &self.signer
    }

    /// Whether tokens carry the visitor's address.
    pub fn binds_ip(&self) -> bool {
        self.ip
    }

    /// Appends the token for `scope` (and `data`) for `visitor` to `out`.
    pub fn mint(
        &self,
        scope: Scope<'_>,
        data: Option<&str>,
        visitor: &Visitor<'_>,
        out: &mut String,
    ) {
        let mut ip_text = IpText::default();
        let ip = match (self.ip, visitor.addr) {
            (true, Some(addr)) => Some(ip_text.format(addr)),
            _ => None,
        };
        let mut id_hex = [0u8; 32];
        let id = self.session_mac.as_ref().map(|mac| {
            let mut mac = mac.0.clone();
            mac.update(SESSION_ID_CONTEXT);
            mac.update(visitor.principal.session_digest());
            let digest = mac.finalize().into_bytes();
            hex::encode_to_slice(&digest[..16], &mut id_hex).expect("32 hex digits for 16 bytes");
            std::str::from_utf8(&id_hex).expect("hex is ascii")
        });
        let start = match self.start_offset {
            // The reference leaves out a start of 0, so we never write one.
            Some(offset) => Some(visitor.now.saturating_sub(offset)).filter(|&st| st > 0),
            None => None,
        };
        let claims = super::Claims {
            ip,
            start,
            end: visitor.now.saturating_add(self.ttl_secs),
            scope,
            id,
            data: data.filter(|d| !d.is_empty()),
        };
        self.signer.mint_claims_into(&claims, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowlist::SessionKey;
    use crate::secret::SecretSource;

    const KEY: &str = "00112233445566778899aabbccddeeff";

    fn settings(ip: bool, id: bool, start_offset: Option<Duration>) -> LocalSettings {
        LocalSettings {
            signer: SignerSettings {
                key: SecretSource::Inline(KEY.into()),
                algorithm: super::super::Algorithm::Sha256,
                salt: None,
                field_delimiter: '~',
                acl_delimiter: '!',
                escape_early: false,
            },
            ttl: Duration::from_secs(60),
            start_offset,
            scope: ScopeTemplate::Acl(vec!["/hls/x/*".into()]),
            ip,
            id,
            data: None,
        }
    }

    fn mint(settings: &LocalSettings, session: &str, addr: Option<IpAddr>) -> String {
        let minter = LocalMinter::build(settings).unwrap();
        let principal = Principal::of(&SessionKey::new(session));
        let mut out = String::new();
        let visitor = Visitor {
            principal: &principal,
            addr,
            now: 1_000,
        };
        minter.mint(Scope::Acl("/hls/x/*"), Some("d"), &visitor, &mut out);
        let verified = minter.signer().verify_with(&out, 1_000, 0, "").unwrap();
        assert_eq!(verified.end, 1_060);
        out
    }

    #[test]
    fn start_offset_back_dates_st_or_leaves_it_out() {
        let token = mint(
            &settings(false, false, Some(Duration::from_secs(30))),
            "s",
            None,
        );
        assert!(
            token.starts_with("st=970~exp=1060~acl=/hls/x/*~data=d~hmac="),
            "{token}"
        );
        let token = mint(&settings(false, false, None), "s", None);
        assert!(token.starts_with("exp=1060~acl="), "{token}");
    }

    #[test]
    fn ip_binds_the_visitors_address_and_only_when_known() {
        let on = settings(true, false, Some(Duration::ZERO));
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert!(mint(&on, "s", Some(v6)).starts_with("ip=2001:db8::7~st=1000~"));
        assert!(mint(&on, "s", None).starts_with("st=1000~"));
        let off = settings(false, false, Some(Duration::ZERO));
        assert!(mint(&off, "s", Some(v6)).starts_with("st=1000~"));
    }

    #[test]
    fn id_is_a_keyed_hash_of_the_session_never_the_id() {
        let on = settings(false, true, Some(Duration::ZERO));
        let id_of = |token: &str| {
            token
                .split('~')
                .find_map(|f| f.strip_prefix("id="))
                .unwrap()
                .to_string()
        };
        let first = id_of(&mint(&on, "session-one", None));
        assert_eq!(first.len(), 32);
        assert!(!first.contains("session"));
        assert_eq!(
            first,
            id_of(&mint(&on, "session-one", None)),
            "stable per session"
        );
        assert_ne!(first, id_of(&mint(&on, "session-two", None)));
        // Not the plain SHA-256 of the id: without the key it names no one.
        let plain = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"session-one"));
        assert!(!plain.starts_with(&first));
    }
}
