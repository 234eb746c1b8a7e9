//! A form body read before the gate decides, on a site with query routes.
//!
//! PHP, and so WordPress, takes a page's query names from a POSTed form as
//! well as from the query string (`p=42` in the body serves post 42). So a
//! form body is read as a query string would be; one too large to read here,
//! a multipart one (whose names are not read here), or one in a content
//! coding (which servers such as Apache's `SetInputFilter DEFLATE` or
//! Express's `urlencoded()` inflate first) counts as naming every query
//! route's names. Only form bodies are read: PHP reads no other.

use std::borrow::Cow;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::syntax::is_token;

/// Most of a form body read to look into it; a larger one counts as naming every query name.
pub const READ_LIMIT: usize = 64 * 1024;

/// How a form body is encoded, as PHP tells it from the Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKind {
    /// `application/x-www-form-urlencoded`: a query string.
    UrlEncoded,
    /// `multipart/form-data`.
    Multipart,
}

/// The form a request's Content-Type declares, if any. Read as leniently
/// as any server might: every header line and every comma-separated value
/// counts (the strictest wins), and a media type ends at the first byte
/// that cannot be in one, as PHP ends it at `;`, `,` or a space.
pub fn kind(headers: &HeaderMap) -> Option<FormKind> {
    let mut found = None;
    for value in headers.get_all(header::CONTENT_TYPE) {
        for element in value.as_bytes().split(|&b| b == b',') {
            let element = element.trim_ascii_start();
            let end = element
                .iter()
                .position(|&b| !(is_token(b) || b == b'/'))
                .unwrap_or(element.len());
            let media = &element[..end];
            if media.eq_ignore_ascii_case(b"multipart/form-data") {
                return Some(FormKind::Multipart);
            }
            if media.eq_ignore_ascii_case(b"application/x-www-form-urlencoded") {
                found = Some(FormKind::UrlEncoded);
            }
        }
    }
    found
}

/// Whether a request body comes in a content coding: a `Content-Encoding`
/// that names one other than `identity`, known or not (read as a CMS
/// response's is, [`crate::compression::content_coding`]). Its names cannot
/// be read here, but a server that inflates it reads them.
pub fn coded(headers: &HeaderMap) -> bool {
    !matches!(crate::compression::content_coding(headers), Ok(None))
}

/// What was read of a form body.
pub struct FormRead {
    /// The bytes read, to be sent to the CMS ahead of the rest.
    pub bytes: Bytes,
    /// Whether that is the whole body.
    pub whole: bool,
    /// How long the reading took, out of the body's deadline.
    pub spent: Duration,
}

impl FormRead {
    /// The body as a query string whose names can be read, or `None` when
    /// they cannot be (multipart, in a content coding (see [`coded`]), or
    /// not read whole).
    pub fn names(&self, kind: FormKind, coded: bool) -> Option<Cow<'_, str>> {
        (self.whole && kind == FormKind::UrlEncoded && !coded)
            .then(|| String::from_utf8_lossy(&self.bytes))
    }
}

/// Why a form body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    /// The visitor sent nothing for the idle limit, or not enough by the deadline.
    #[error("visitor's form body not sent within {0:?}")]
    Slow(Duration),
    /// The body was malformed or cut off.
    #[error("visitor's form body unreadable: {0}")]
    Bad(hyper::Error),
    /// The HTTP/2 stream was reset before the body's end (hyper reads a
    /// reset with NO_ERROR as an end).
    #[error("visitor's HTTP/2 stream reset before its form body ended")]
    Reset,
}

/// Reads `body` up to its end or just past `limit` bytes, waiting at most
/// `idle` for each piece and `deadline` in all. Over HTTP/2 (`http2`), only
/// END_STREAM ends it.
pub async fn read(
    body: &mut Incoming,
    http2: bool,
    idle: Duration,
    deadline: Duration,
    limit: usize,
) -> Result<FormRead, FormError> {
    let started = tokio::time::Instant::now();
    let reading = async {
        let mut bytes = BytesMut::new();
        loop {
            let frame = match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => return Err(FormError::Slow(idle)),
                // hyper drops the request's handler at such a reset, mostly
                // before this runs again: a check kept for when it does not.
                Ok(None) if crate::proxy::reset_before_end(body, http2) => {
                    return Err(FormError::Reset)
                }
                Ok(None) => break,
                Ok(Some(Err(err))) => return Err(FormError::Bad(err)),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Some(data) = frame.data_ref() {
                bytes.extend_from_slice(data);
                if bytes.len() > limit {
                    return Ok(FormRead {
                        bytes: bytes.freeze(),
                        whole: false,
                        spent: started.elapsed(),
                    });
                }
            }
        }
        Ok(FormRead {
            bytes: bytes.freeze(),
            whole: true,
            spent: started.elapsed(),
        })
    };
    tokio::time::timeout(deadline, reading)
        .await
        .unwrap_or(Err(FormError::Slow(deadline)))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn types(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::CONTENT_TYPE, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn a_form_is_told_by_its_media_type_as_php_tells_it() {
        for (sent, expected) in [
            (
                &["application/x-www-form-urlencoded"][..],
                Some(FormKind::UrlEncoded),
            ),
            (
                &["Application/X-WWW-Form-URLEncoded; charset=UTF-8"],
                Some(FormKind::UrlEncoded),
            ),
            (
                &[" multipart/form-data ; boundary=x"],
                Some(FormKind::Multipart),
            ),
            (&["application/json"], None),
            (
                &["text/plain", "multipart/form-data; boundary=x"],
                Some(FormKind::Multipart),
            ),
            (
                &[
                    "application/x-www-form-urlencoded",
                    "multipart/form-data; boundary=x",
                ],
                Some(FormKind::Multipart),
            ),
            (&["application/x-www-form-urlencodedx"], None),
            // Where PHP ends the type: at a comma or a space too.
            (
                &["application/x-www-form-urlencoded, x"],
                Some(FormKind::UrlEncoded),
            ),
            (
                &["application/x-www-form-urlencoded x"],
                Some(FormKind::UrlEncoded),
            ),
            (
                &["application/x-www-form-urlencoded\tx"],
                Some(FormKind::UrlEncoded),
            ),
            (
                &["multipart/form-data, boundary=b"],
                Some(FormKind::Multipart),
            ),
            (
                &["text/plain, application/x-www-form-urlencoded"],
                Some(FormKind::UrlEncoded),
            ),
            (
                &["text/plain; x=\"a,multipart/form-data\""],
                Some(FormKind::Multipart),
            ),
            (&[], None),
        ] {
            assert_eq!(kind(&types(sent)), expected, "{sent:?}");
        }
    }

    #[test]
    fn only_a_whole_urlencoded_body_has_names_read() {
        let whole = FormRead {
            bytes: Bytes::from_static(b"p=42&x=1"),
            whole: true,
            spent: Duration::ZERO,
        };
        assert_eq!(
            whole.names(FormKind::UrlEncoded, false).as_deref(),
            Some("p=42&x=1")
        );
        assert_eq!(whole.names(FormKind::Multipart, false), None);
        assert_eq!(whole.names(FormKind::UrlEncoded, true), None, "coded");
        let cut = FormRead {
            bytes: Bytes::from_static(b"x=1&p"),
            whole: false,
            spent: Duration::ZERO,
        };
        assert_eq!(cut.names(FormKind::UrlEncoded, false), None);
    }

    #[test]
    fn a_body_in_any_content_coding_but_identity_is_coded() {
        let encodings = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::CONTENT_ENCODING, HeaderValue::from_static(value));
            }
            coded(&headers)
        };
        for sent in [
            &["gzip"][..],
            &["deflate"],
            &["br"],
            &["x-gzip"],
            &["GZIP"],
            &["identity, gzip"],
            &["identity", "gzip"],
            &["gzip;q=1"],
            &["whatever"],
        ] {
            assert!(encodings(sent), "{sent:?}");
        }
        for sent in [
            &[][..],
            &["identity"],
            &["Identity"],
            &[""],
            &[" , identity "],
        ] {
            assert!(!encodings(sent), "{sent:?}");
        }
    }
}
