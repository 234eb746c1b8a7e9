// The peer for bench/compare.sh: nginx + njs doing embedgate's job on a gated
// page (a token minted per page view into every Infomaniak embed), written as
// fast as njs allows: one exec() loop over a quote-aware iframe-tag regex,
// unchanged spans and rewritten tags sent with separate sendBuffer() calls, and
// a possibly incomplete iframe tag carried over to the next chunk.
// compare.sh replaces @KEY@ and @TTL@. njs runs each request in its own VM,
// so module-level variables are per request.

import crypto from 'crypto';

const KEY = Buffer.from('@KEY@', 'hex');
const TTL = @TTL@;
const TAG = /<iframe\b(?:[^>"']|"[^"]*"|'[^']*')*>/gi;
const START = /<iframe\b/gi;
const SRC = /(\ssrc\s*=\s*")(https:\/\/api\.vod2\.infomaniak\.com\/res\/embed\/([0-9A-Za-z]+)\.html)([^"]*)"/;
const PREFIX = '<iframe';

let carry = '';

function token(share, now) {
    const signed = 'st=' + now + '~exp=' + (now + TTL) + '~acl=/hls/' + share + '/*';
    const hmac = crypto.createHmac('sha256', KEY).update(signed).digest('hex');
    return signed + '~hmac=' + hmac;
}

function rewriteTag(tag, now) {
    const m = SRC.exec(tag);
    if (m === null) {
        return null;
    }
    const query = m[4];
    const joiner = query.length > 0 ? '&amp;token=' : '?token=';
    const src = m[1] + m[2] + query + joiner + token(m[3], now) + '"';
    return tag.slice(0, m.index) + src + tag.slice(m.index + m[0].length);
}

// Where a tag that may turn out to be an iframe begins in the unmatched tail,
// or -1: an `<iframe` the tag regex could not finish, or a prefix of `<iframe`
// at the very end.
function carryFrom(data, from) {
    START.lastIndex = from;
    let open = -1;
    let m;
    while ((m = START.exec(data)) !== null) {
        open = m.index;
    }
    if (open >= 0) {
        return open;
    }
    const lt = data.lastIndexOf('<');
    if (lt < from || data.length - lt >= PREFIX.length) {
        return -1;
    }
    const tail = data.slice(lt).toLowerCase();
    return PREFIX.startsWith(tail) ? lt : -1;
}

function filter(r, data, flags) {
    if (carry.length > 0) {
        data = carry + data;
        carry = '';
    }
    const now = Math.floor(Date.now() / 1000);
    let sent = 0;
    let m;
    TAG.lastIndex = 0;
    while ((m = TAG.exec(data)) !== null) {
        const rewritten = rewriteTag(m[0], now);
        if (rewritten !== null) {
            if (m.index > sent) {
                r.sendBuffer(data.slice(sent, m.index));
            }
            r.sendBuffer(rewritten);
            sent = TAG.lastIndex;
        }
    }
    let end = data.length;
    if (!flags.last) {
        const from = carryFrom(data, sent);
        if (from >= 0) {
            carry = data.slice(from);
            end = from;
        }
    }
    r.sendBuffer(end > sent ? data.slice(sent, end) : '', flags);
}

function headers(r) {
    delete r.headersOut['Content-Length'];
}

export default { filter, headers };
