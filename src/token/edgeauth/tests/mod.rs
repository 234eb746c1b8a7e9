//! EdgeAuth against the reference vectors: minted byte-identical, verified
//! inside their window only, tampering refused; keys, escaping and Debug.
//! Properties of mint and verify over any input are in `properties`.

use super::*;
use crate::token::acl::acl_allows;

mod properties;

#[derive(serde::Deserialize)]
struct Vector {
    name: String,
    key_hex: String,
    algorithm: String,
    #[serde(default)]
    start: Option<u64>,
    end: u64,
    #[serde(default)]
    acl: Option<String>,
    #[serde(default)]
    acl_list: Option<Vec<String>>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    salt: Option<String>,
    #[serde(default)]
    field_delimiter: Option<char>,
    #[serde(default)]
    acl_delimiter: Option<char>,
    #[serde(default)]
    escape_early: bool,
    token: String,
}

impl Vector {
    fn format(&self, salt: Option<&str>) -> TokenFormat {
        let default = TokenFormat::default();
        TokenFormat {
            field_delimiter: self.field_delimiter.unwrap_or(default.field_delimiter),
            acl_delimiter: self.acl_delimiter.unwrap_or(default.acl_delimiter),
            escape_early: self.escape_early,
            salt: salt.map(SecretString::from),
        }
    }

    fn minter(&self) -> EdgeAuth {
        self.minter_salted(self.salt.as_deref())
    }

    fn minter_salted(&self, salt: Option<&str>) -> EdgeAuth {
        EdgeAuth::new(
            self.algorithm.parse().unwrap(),
            &KeyMaterial::from_hex(&self.key_hex).unwrap(),
        )
        .with_format(self.format(salt))
    }

    fn scope(&self) -> Scope<'_> {
        match (&self.url, &self.acl) {
            (Some(url), None) => Scope::Url(url),
            (None, Some(acl)) => Scope::Acl(acl),
            _ => panic!("vector {} needs exactly one of acl and url", self.name),
        }
    }

    fn claims(&self) -> Claims<'_> {
        Claims {
            ip: self.ip.as_deref(),
            start: self.start,
            end: self.end,
            scope: self.scope(),
            id: self.id.as_deref(),
            data: self.data.as_deref(),
        }
    }

    /// A moment inside the window.
    fn inside(&self) -> u64 {
        self.start.filter(|&st| st > 0).unwrap_or(self.end - 1)
    }

    /// How a value appears in the token.
    fn written(&self, value: &Option<String>) -> Option<String> {
        let value = value.as_deref().filter(|v| !v.is_empty())?;
        let mut out = String::new();
        if self.escape_early {
            escape_early(value, &mut out);
        } else {
            out.push_str(value);
        }
        Some(out)
    }
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str(include_str!("../../../../tests/data/edgeauth_vectors.json")).unwrap()
}

#[test]
fn mints_byte_identical_tokens_to_the_reference_implementation() {
    let vectors = vectors();
    assert!(vectors.len() >= 60);
    for v in &vectors {
        if let (Some(list), Some(acl)) = (&v.acl_list, &v.acl) {
            let delimiter = v.format(None).acl_delimiter.to_string();
            assert_eq!(&list.join(&delimiter), acl, "vector {}", v.name);
        }
        let mut token = String::new();
        v.minter().mint_claims_into(&v.claims(), &mut token);
        assert_eq!(token, v.token, "vector {}", v.name);
    }
}

#[test]
fn the_old_mint_matches_the_acl_only_vectors() {
    let vectors = vectors();
    let plain = vectors.iter().filter(|v| {
        v.url.is_none()
            && v.ip.is_none()
            && v.id.is_none()
            && v.data.is_none()
            && v.salt.is_none()
            && v.field_delimiter.is_none()
    });
    let mut seen = 0;
    for v in plain {
        let acl = v.acl.as_deref().unwrap();
        let minted = v.minter().mint(v.start.unwrap_or(0), v.end, acl);
        assert_eq!(minted, v.token, "vector {}", v.name);
        seen += 1;
    }
    assert!(seen >= 17);
}

#[test]
fn mint_into_appends_after_existing_text() {
    let v = &vectors()[0];
    let mut out = String::from("https://x/y.html?token=");
    v.minter()
        .mint_into(v.start.unwrap(), v.end, v.acl.as_deref().unwrap(), &mut out);
    assert_eq!(
        out.strip_prefix("https://x/y.html?token="),
        Some(v.token.as_str())
    );
    let mut out = String::from("prefix~");
    v.minter().mint_claims_into(&v.claims(), &mut out);
    assert_eq!(out.strip_prefix("prefix~"), Some(v.token.as_str()));
}

#[test]
fn verifies_reference_tokens_inside_their_window_only() {
    for v in &vectors() {
        let m = v.minter();
        let path = v.url.as_deref().unwrap_or("");
        let ok = m
            .verify_with(&v.token, v.inside(), 0, path)
            .unwrap_or_else(|err| panic!("vector {}: {err}", v.name));
        let (ip, id, data) = (v.written(&v.ip), v.written(&v.id), v.written(&v.data));
        let expected = VerifiedToken {
            ip: ip.as_deref(),
            start: v.start.filter(|&st| st > 0),
            end: v.end,
            acl: v.acl.as_deref(),
            id: id.as_deref(),
            data: data.as_deref(),
        };
        assert_eq!(ok, expected, "vector {}", v.name);
        assert_eq!(
            m.verify_with(&v.token, v.end, 0, path),
            Err(VerifyError::Expired),
            "vector {}",
            v.name
        );
        if let Some(start) = expected.start {
            assert_eq!(
                m.verify_with(&v.token, start - 1, 0, path),
                Err(VerifyError::NotYetValid),
                "vector {}",
                v.name
            );
        }
        if v.url.is_none() {
            assert_eq!(m.verify(&v.token, v.inside()), Ok(expected.clone()));
        }
    }
}

#[test]
fn url_tokens_verify_only_for_their_path() {
    let vectors = vectors();
    let urls: Vec<_> = vectors.iter().filter(|v| v.url.is_some()).collect();
    assert!(urls.len() >= 10);
    for v in urls {
        let m = v.minter();
        let url = v.url.as_deref().unwrap();
        let last = url.char_indices().last().map_or(0, |(at, _)| at);
        for other in ["", "/", &format!("{url}x"), &url[..last]] {
            assert_eq!(
                m.verify_with(&v.token, v.inside(), 0, other),
                Err(VerifyError::BadSignature),
                "vector {} with {other:?}",
                v.name
            );
        }
        if v.escape_early {
            // The path is escaped before signing, so its escaped form is a different path.
            let mut escaped = String::new();
            escape_early(url, &mut escaped);
            if escaped != url {
                assert_eq!(
                    m.verify_with(&v.token, v.inside(), 0, &escaped),
                    Err(VerifyError::BadSignature),
                    "vector {}",
                    v.name
                );
            }
        }
    }
}

#[test]
fn salted_tokens_need_the_salt() {
    let vectors = vectors();
    let salted: Vec<_> = vectors.iter().filter(|v| v.salt.is_some()).collect();
    assert!(salted.len() >= 6);
    for v in salted {
        let path = v.url.as_deref().unwrap_or("");
        for salt in [None, Some("other"), Some("")] {
            assert_eq!(
                v.minter_salted(salt)
                    .verify_with(&v.token, v.inside(), 0, path),
                Err(VerifyError::BadSignature),
                "vector {} with salt {salt:?}",
                v.name
            );
        }
    }
    // And an unsalted token does not verify with a salt.
    let v = &vectors[0];
    assert_eq!(
        v.minter_salted(Some("pepper")).verify(&v.token, v.inside()),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn verified_acls_open_their_paths() {
    for v in vectors().iter().filter(|v| v.acl_list.is_some()) {
        let m = v.minter();
        let acl = m.verify(&v.token, v.inside()).unwrap().acl.unwrap();
        for entry in v.acl_list.as_ref().unwrap() {
            let path = entry.replace('*', "x/y").replace('?', "z");
            assert!(
                acl_allows(acl, m.format().acl_delimiter, path.as_bytes()),
                "vector {}: {path}",
                v.name
            );
        }
        assert!(!acl_allows(acl, m.format().acl_delimiter, b"/elsewhere"));
    }
}

#[test]
fn rejects_tampered_and_malformed_tokens() {
    let v = &vectors()[0];
    let m = v.minter();
    let start = v.start.unwrap();
    let widened = v
        .token
        .replacen(&format!("exp={}", v.end), &format!("exp={}", v.end + 1), 1);
    assert_eq!(m.verify(&widened, start), Err(VerifyError::BadSignature));
    let other_acl = v.token.replacen("acl=/", "acl=/x", 1);
    assert_eq!(m.verify(&other_acl, start), Err(VerifyError::BadSignature));
    let hmac = v.token.rsplit_once("~hmac=").unwrap().1;
    let h = |fields: &str| format!("{fields}~hmac={hmac}");
    for bad in [
        String::new(),
        "st=1~exp=2".into(),
        "exp=2~st=1~acl=/~hmac=00".into(),
        "st=x~exp=2~acl=/*~hmac=00".into(),
        // Unknown, repeated, out of order, missing exp.
        h("st=1~exp=2~acl=/*~foo=1"),
        h("st=1~exp=2~acl=/*~url=/a"),
        h("st=1~exp=2~acl=/*~salt=x"),
        h("st=1~st=1~exp=2~acl=/*"),
        h("st=1~exp=2~acl=/*~acl=/*"),
        h("st=1~exp=2~acl=/*~id=a~id=a"),
        h("exp=2~st=1~acl=/*"),
        h("st=1~exp=2~id=a~acl=/*"),
        h("st=1~exp=2~data=a~id=b"),
        h("ip=1~st=1~ip=1~exp=2"),
        h("st=1~acl=/*"),
        h("ip=1.2.3.4"),
        h("st=1~exp=2~acl=/*~hmac=00"),
        h("st=1~exp=2~~acl=/*"),
        h("~st=1~exp=2"),
        h("st=1~exp=2~acl"),
        h("st=1~exp=2~ACL=/*"),
        // Times that are not plain digits.
        h("st=+1~exp=2~acl=/*"),
        h("st=-1~exp=2~acl=/*"),
        h("st=1~exp=~acl=/*"),
        h("st=1~exp= 2~acl=/*"),
        h("st=1~exp=2 ~acl=/*"),
        h("st=1~exp=0x2~acl=/*"),
        h("st=1~exp=18446744073709551616~acl=/*"),
        h("st=1~exp=２~acl=/*"),
        // The hmac: missing, not last, wrong length, not hex.
        v.token.replacen("~hmac=", "~mac=", 1),
        format!("{}~id=a", v.token),
        format!("{}0", v.token),
        v.token[..v.token.len() - 1].to_string(),
        format!("{}g", &v.token[..v.token.len() - 1]),
        format!("{} ", &v.token[..v.token.len() - 1]),
        v.token.replacen("~hmac=", "~hmac= ", 1),
        v.token.replacen("~hmac=", "|hmac=", 1),
    ] {
        assert_eq!(m.verify(&bad, 1), Err(VerifyError::Malformed), "{bad}");
    }
    // The hmac length is the algorithm's.
    let sha1 = EdgeAuth::new(Algorithm::Sha1, &KeyMaterial::from_hex(&v.key_hex).unwrap());
    assert_eq!(sha1.verify(&v.token, start), Err(VerifyError::Malformed));
}

#[test]
fn accepts_upper_case_hex() {
    for v in &vectors() {
        let (fields, hmac) = v
            .token
            .rsplit_once(&format!("{}hmac=", v.format(None).field_delimiter))
            .unwrap();
        let upper = format!(
            "{fields}{}hmac={}",
            v.format(None).field_delimiter,
            hmac.to_ascii_uppercase()
        );
        let path = v.url.as_deref().unwrap_or("");
        assert!(v.minter().verify_with(&upper, v.inside(), 0, path).is_ok());
    }
}

#[test]
fn leeway_widens_the_window_on_both_ends() {
    let v = &vectors()[0];
    let m = v.minter();
    let (start, end) = (v.start.unwrap(), v.end);
    assert!(m.verify_with(&v.token, start - 5, 5, "").is_ok());
    assert_eq!(
        m.verify_with(&v.token, start - 6, 5, ""),
        Err(VerifyError::NotYetValid)
    );
    assert!(m.verify_with(&v.token, end + 4, 5, "").is_ok());
    assert_eq!(
        m.verify_with(&v.token, end + 5, 5, ""),
        Err(VerifyError::Expired)
    );
    assert!(m.verify_with(&v.token, 0, u64::MAX, "").is_ok());
    assert!(m.verify_with(&v.token, u64::MAX - 1, u64::MAX, "").is_ok());
}

#[test]
fn signature_is_checked_before_the_window() {
    let v = &vectors()[0];
    let forged = v
        .token
        .replacen(&format!("exp={}", v.end), &format!("exp={}", v.end + 1), 1);
    for now in [0, v.start.unwrap(), v.end + 10] {
        assert_eq!(
            v.minter().verify(&forged, now),
            Err(VerifyError::BadSignature)
        );
    }
}

#[test]
fn start_zero_is_left_out_like_the_reference() {
    let m = vectors()[0].minter();
    assert!(m.mint(0, 10, "/*").starts_with("exp=10~acl=/*~hmac="));
    let mut out = String::new();
    let claims = Claims {
        ip: Some(""),
        start: None,
        end: 10,
        scope: Scope::Url("/a"),
        id: Some(""),
        data: Some(""),
    };
    m.mint_claims_into(&claims, &mut out);
    assert!(out.starts_with("exp=10~hmac="), "{out}");
    let ok = m.verify_with(&out, 9, 0, "/a").unwrap();
    assert_eq!((ok.start, ok.acl, ok.ip), (None, None, None));
}

#[test]
fn escapes_as_python_quote_plus_with_lower_case_hex() {
    // Reference: re.sub('(%..)', lower, quote_plus(text)).
    for (text, escaped) in [
        ("", ""),
        ("plain-Text_1.2~3", "plain-Text_1.2~3"),
        (
            "a~b c/é+:%_.-*!'()",
            "a~b+c%2f%c3%a9%2b%3a%25_.-%2a%21%27%28%29",
        ),
        ("2001:db8::1", "2001%3adb8%3a%3a1"),
        ("  ", "++"),
        ("\u{1F3AC}", "%f0%9f%8e%ac"),
        ("\0\n\x7f", "%00%0a%7f"),
        ("é", "%c3%a9"),
        ("aé", "a%c3%a9"),
        ("éa", "%c3%a9a"),
    ] {
        let mut out = String::from(">");
        escape_early(text, &mut out);
        assert_eq!(out, format!(">{escaped}"), "{text:?}");
    }
}

#[test]
fn debug_never_shows_key_or_salt() {
    let m = vectors()[0].minter().with_format(TokenFormat {
        salt: Some(SecretString::from("pepper-secret")),
        ..TokenFormat::default()
    });
    let shown = format!("{m:?}");
    assert!(!shown.contains("pepper-secret"), "{shown}");
    assert!(!shown.contains("0011"), "{shown}");
}

#[test]
fn keys_decode_in_either_case_and_reject_non_hex() {
    assert_eq!(KeyMaterial::from_hex("aB").unwrap().as_bytes(), &[0xab]);
    assert!(KeyMaterial::from_hex("abc").is_err());
    assert!(KeyMaterial::from_hex("zz").is_err());
    assert!(KeyMaterial::from_hex("  ").is_err());
}

#[test]
fn a_configured_key_needs_sixteen_bytes() {
    use crate::secret::SecretSource;
    use crate::token::{load_key, KeyError};
    let inline = |hex: &str| SecretSource::Inline(hex.into());
    let short = load_key(&inline(&"ab".repeat(15))).err();
    assert!(
        matches!(short, Some(KeyError::TooShort { bytes: 15 })),
        "{short:?}"
    );
    assert_eq!(
        load_key(&inline(&"ab".repeat(16)))
            .unwrap()
            .as_bytes()
            .len(),
        16
    );
}
