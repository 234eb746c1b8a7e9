//! Properties of mint and verify: any token minted with any key, format and
//! claims verifies as what was minted, and any change to it is refused.

use super::*;
use proptest::prelude::*;

/// One minted token and everything needed to check it.
#[derive(Debug)]
struct Case {
    minter: EdgeAuth,
    ip: String,
    id: String,
    data: String,
    start: Option<u64>,
    end: u64,
    acl: Option<String>,
    url: String,
    salted: bool,
}

impl Case {
    fn claims(&self) -> Claims<'_> {
        Claims {
            ip: Some(&self.ip),
            start: self.start,
            end: self.end,
            scope: match &self.acl {
                Some(acl) => Scope::Acl(acl),
                None => Scope::Url(&self.url),
            },
            id: Some(&self.id),
            data: Some(&self.data),
        }
    }

    fn token(&self) -> String {
        let mut token = String::new();
        self.minter.mint_claims_into(&self.claims(), &mut token);
        token
    }

    fn inside(&self) -> u64 {
        self.start.filter(|&st| st > 0).unwrap_or(self.end - 1)
    }
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<char>(), 0..12),
        // Mostly the characters escaping cares about.
        proptest::collection::vec(
            proptest::sample::select(vec![' ', '/', '&', '%', '+', ':', 'é', '~', 'a', '.']),
            0..12
        ),
    ]
    .prop_map(|chars| chars.into_iter().collect())
}

fn any_case() -> impl Strategy<Value = Case> {
    let algorithm =
        proptest::sample::select(vec![Algorithm::Sha256, Algorithm::Sha1, Algorithm::Md5]);
    let delimiters = (
        proptest::sample::select(vec!['~', '|', ';', '^', 'é']),
        proptest::sample::select(vec!['!', ',', ' ']),
    );
    let key = proptest::collection::vec(any::<u8>(), 1..80);
    let window = (
        prop_oneof![
            Just(None),
            Just(Some(0)),
            (1u64..u64::MAX / 4).prop_map(Some)
        ],
        1u64..u64::MAX / 4,
    );
    let texts = (any_text(), any_text(), any_text(), any_text());
    let acls = prop_oneof![
        Just(None),
        proptest::collection::vec(any_text(), 1..4).prop_map(Some)
    ];
    (
        algorithm,
        delimiters,
        key,
        any::<bool>(),
        proptest::option::of(any_text()),
        window,
        texts,
        acls,
    )
        .prop_map(
            |(algorithm, (field, acl_delim), key, escape, salt, (start, len), texts, acls)| {
                let (ip, id, data, url) = texts;
                // Escaping keeps `~`, and nothing is escaped without it:
                // either way a delimiter that would reach the token is removed.
                let clean = |text: String| -> String {
                    let kept_by_escaping = field.is_ascii() && is_unreserved(field as u8);
                    if escape && !kept_by_escaping {
                        text
                    } else {
                        text.replace(field, "")
                    }
                };
                // ACLs are never escaped, so neither delimiter may appear in one.
                let acl = acls.map(|entries| {
                    entries
                        .iter()
                        .map(|e| e.replace([field, acl_delim], ""))
                        .collect::<Vec<_>>()
                        .join(&acl_delim.to_string())
                });
                let salted = salt.as_ref().is_some_and(|s| !s.is_empty());
                let key = KeyMaterial(key.into());
                let minter = EdgeAuth::new(algorithm, &key).with_format(TokenFormat {
                    field_delimiter: field,
                    acl_delimiter: acl_delim,
                    escape_early: escape,
                    salt: salt.map(SecretString::from),
                });
                let start_at = start.unwrap_or(0);
                Case {
                    minter,
                    ip: clean(ip),
                    id: clean(id),
                    data: clean(data),
                    start,
                    end: start_at + len,
                    acl,
                    url,
                    salted,
                }
            },
        )
}

fn written(case: &Case, value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    let mut out = String::new();
    case.minter.push_value(value, &mut out);
    Some(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn mint_then_verify_round_trips(case in any_case(), leeway in 0u64..1000) {
        let token = case.token();
        let path = case.url.as_str();
        let verified = case.minter.verify_with(&token, case.inside(), 0, path);
        let (ip, id, data) = (
            written(&case, &case.ip),
            written(&case, &case.id),
            written(&case, &case.data),
        );
        let expected = VerifiedToken {
            ip: ip.as_deref(),
            start: case.start.filter(|&st| st > 0),
            end: case.end,
            acl: case.acl.as_deref(),
            id: id.as_deref(),
            data: data.as_deref(),
        };
        prop_assert_eq!(verified, Ok(expected));
        prop_assert_eq!(
            case.minter.verify_with(&token, case.end + leeway, leeway, path),
            Err(VerifyError::Expired)
        );
        prop_assert!(case.minter.verify_with(&token, case.end + leeway - 1, leeway, path).is_ok());
        if let Some(start) = case.start.filter(|&st| st > leeway) {
            prop_assert_eq!(
                case.minter.verify_with(&token, start - leeway - 1, leeway, path),
                Err(VerifyError::NotYetValid)
            );
            prop_assert!(case.minter.verify_with(&token, start - leeway, leeway, path).is_ok());
        }
        if case.acl.is_none() {
            let other = format!("{path}/");
            prop_assert_eq!(
                case.minter.verify_with(&token, case.inside(), 0, &other),
                Err(VerifyError::BadSignature)
            );
        }
        if case.salted {
            let unsalted = case.minter.clone().with_format(TokenFormat {
                salt: None,
                ..case.minter.format().clone()
            });
            prop_assert_eq!(
                unsalted.verify_with(&token, case.inside(), 0, path),
                Err(VerifyError::BadSignature)
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_single_byte_change_or_truncation_is_rejected(case in any_case(), seed in any::<u64>()) {
        let token = case.token();
        let path = case.url.as_str();
        let now = case.inside();
        prop_assert!(case.minter.verify_with(&token, now, 0, path).is_ok());
        let hmac_from = token.len() - case.minter.mac.hex_len();
        let mut state = seed | 1;
        for at in 0..token.len() {
            // xorshift: a different replacement at each position, never the byte itself.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for delta in [1, (state % 255 + 1) as u8, 0x20] {
                let mut bytes = token.clone().into_bytes();
                bytes[at] = bytes[at].wrapping_add(delta);
                let changed = bytes[at];
                let Ok(tampered) = String::from_utf8(bytes) else {
                    continue; // not even text, so no &str to verify
                };
                let result = case.minter.verify_with(&tampered, now, 0, path);
                let original = token.as_bytes()[at];
                if at >= hmac_from && changed.eq_ignore_ascii_case(&original) {
                    // The hmac is compared ignoring case.
                    prop_assert!(result.is_ok(), "{tampered}");
                } else {
                    prop_assert!(result.is_err(), "{tampered}");
                }
            }
        }
        for len in 0..token.len() {
            if let Some(truncated) = token.get(..len) {
                prop_assert!(
                    case.minter.verify_with(truncated, now, 0, path).is_err(),
                    "{truncated}"
                );
            }
        }
    }
}
