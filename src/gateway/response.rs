//! What comes back from the CMS on a gated route: whether a page came in
//! part, and how a whole page is to be read, rewritten and sent.

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, StatusCode};

use super::page_type::{declared_type, MediaType};
use super::refusal::{Refusal, NOSNIFF, X_CONTENT_TYPE_OPTIONS};
use crate::compression::{self, Coding};
use crate::proxy::headers;
use crate::rewrite::PageEncoding;
use crate::runtime::Runtime;

/// Whether a CMS answer is part of a page the gateway rewrites: a 206, or
/// any other success that says which range it holds. The rewriter must see
/// a page whole, and no range of the CMS's bytes fits the rewritten page.
/// What a browser does not take for HTML (media, images; with nosniff, no
/// type at all) passes in part as it came.
pub(super) fn partial_page(status: StatusCode, headers: &HeaderMap) -> bool {
    let partial = status == StatusCode::PARTIAL_CONTENT
        || (status.is_success() && headers.contains_key(header::CONTENT_RANGE));
    partial && declared_type(headers).is_markup()
}

/// The CMS request head `parts`, asking for the whole answer.
pub(super) fn without_range(parts: &http::request::Parts) -> http::request::Parts {
    let (mut whole, ()) = Request::new(()).into_parts();
    whole.method = parts.method.clone();
    whole.uri = parts.uri.clone();
    whole.version = parts.version;
    whole.headers = parts.headers.clone();
    whole.headers.remove(header::RANGE);
    whole.headers.remove(header::IF_RANGE);
    whole
}

/// Headers that vouch for the CMS's bytes (RFC 1864's Content-MD5, RFC
/// 3230's Digest, RFC 9530's Content-Digest and Repr-Digest): none fits a
/// rewritten page.
static INTEGRITY_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("content-md5"),
    HeaderName::from_static("digest"),
    HeaderName::from_static("content-digest"),
    HeaderName::from_static("repr-digest"),
];

/// Puts `session.cache_control`, if set, on a response the gate let
/// through that is not rewritten, so that a shared cache in front never
/// hands it to the next visitor.
pub(super) fn keep_from_shared_caches(runtime: &Runtime, headers: &mut http::HeaderMap) {
    if let Some(value) = &runtime.settings().session.cache_control {
        headers::set_cache_control(headers, value.clone());
    }
}

/// Response filter for an allowed visitor on a gated route: decides whether
/// the body is rewritten (and how it is sent: a HEAD gets the head its GET
/// would), and keeps shared caches from storing what the gate protects.
pub(super) fn filter_gated_response(
    runtime: &Runtime,
    parts: &mut http::response::Parts,
    head_only: bool,
    accepts: Option<Coding>,
) -> Result<Option<PagePlan>, Refusal> {
    // Read as what it says it is, never sniffed into HTML the gateway did not rewrite.
    parts.headers.insert(X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    let declared = declared_type(&parts.headers);
    if !declared.is_markup() {
        keep_from_shared_caches(runtime, &mut parts.headers);
        return Ok(None);
    }
    if let Some(value) = declared.normalized {
        // Several values: one, as the browser reads them, for whoever reads only the first.
        parts.headers.insert(header::CONTENT_TYPE, value);
    }
    let declared_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // The rewritten page is a body of its own: neither the CMS's length nor
    // any range of its bytes fits it, and it is never served in ranges.
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::ACCEPT_RANGES,
        header::ETAG,
        header::LAST_MODIFIED,
    ] {
        parts.headers.remove(name);
    }
    // Nor does any digest of the CMS's bytes: a visitor (or a proxy) that
    // checks one would take the rewritten page for a corrupt one.
    // Repr-Digest too, though it is taken before content coding: the
    // rewrite changes the representation itself.
    for name in &INTEGRITY_HEADERS {
        parts.headers.remove(name);
    }
    headers::set_cache_control(
        &mut parts.headers,
        HeaderValue::from_static("private, no-store"),
    );
    if parts.status == StatusCode::NO_CONTENT || parts.status == StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    // A HEAD is decided as its GET would be, from the same head the CMS
    // gives both, so the two name the same Content-Encoding and Vary; it
    // only has no body to plan.
    // The CMS was asked for identity; some compress anyway.
    let decode = compression::content_coding(&parts.headers).map_err(|_| {
        Refusal::Unrewritable("the CMS compressed it in a coding the gateway cannot read")
    })?;
    parts.headers.remove(header::CONTENT_ENCODING);
    let settings = &runtime.settings().compression;
    // A compressed upstream's length says nothing of the page's size.
    let small =
        decode.is_none() && declared_length.is_some_and(|length| length < settings.min_size);
    let encode = accepts.filter(|_| settings.enabled && !small);
    if settings.enabled {
        compression::vary_on_accept_encoding(&mut parts.headers);
    }
    if let Some(coding) = encode {
        parts
            .headers
            .insert(header::CONTENT_ENCODING, compression::header_value(coding));
    }
    if head_only {
        return Ok(None);
    }
    Ok(Some(PagePlan {
        encoding: declared.encoding,
        xml: declared.media == MediaType::Xhtml,
        decode,
        encode,
    }))
}

/// How a gated page's body is to be read, rewritten and sent.
pub(super) struct PagePlan {
    /// By its Content-Type; `None` if the rewriter cannot read that (a
    /// byte-order mark may still say UTF-8).
    pub(super) encoding: Option<PageEncoding>,
    /// XHTML, which browsers read with their XML parser.
    pub(super) xml: bool,
    pub(super) decode: Option<Coding>,
    pub(super) encode: Option<Coding>,
}
