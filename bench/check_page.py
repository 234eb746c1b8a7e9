#!/usr/bin/env python3
"""Checks a gated page as a gateway served it, against the page the CMS sent.

    check_page.py SOURCE BODY KEY_HEX EMBEDS

Every Infomaniak embed must carry exactly one token whose HMAC-SHA256 (over
everything before `~hmac=`, keyed with KEY_HEX) is recomputed here, whose ACL
is its own video's and whose window holds now; with the tokens taken out,
the page must be the CMS's byte for byte. Exit 0 and one line when it holds.
"""
import hashlib
import hmac
import re
import sys
import time

EMBED = re.compile(
    rb'src="https://api\.vod2\.infomaniak\.com/res/embed/([0-9A-Za-z]+)\.html([^"]*)"'
)
TOKEN = re.compile(rb'(\?|&amp;)token=([^"&]*)')


def fail(message):
    sys.exit("check_page: " + message)


def check_token(share, token, key, now):
    fields = dict(field.split("=", 1) for field in token.split("~"))
    signed, _, mac = token.rpartition("~hmac=")
    expected = hmac.new(key, signed.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, expected):
        fail("token for %s: HMAC does not verify" % share)
    if fields.get("acl") != "/hls/%s/*" % share:
        fail("token for %s: acl %r" % (share, fields.get("acl")))
    if not int(fields.get("st", "0")) <= now + 2 or not int(fields["exp"]) > now:
        fail("token for %s: window %s..%s does not hold %d" % (share, fields.get("st"), fields["exp"], now))


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    source = open(sys.argv[1], "rb").read()
    body = open(sys.argv[2], "rb").read()
    key = bytes.fromhex(sys.argv[3])
    embeds = int(sys.argv[4])
    now = int(time.time())
    found = 0
    for match in EMBED.finditer(body):
        share = match.group(1).decode()
        tokens = TOKEN.findall(match.group(2))
        if len(tokens) != 1:
            fail("embed %s carries %d tokens" % (share, len(tokens)))
        check_token(share, tokens[0][1].decode(), key, now)
        found += 1
    if found != embeds:
        fail("%d embeds with a token, expected %d" % (found, embeds))
    if TOKEN.sub(b"", body) != source:
        fail("with the tokens taken out, the page differs from the CMS's")
    print("ok: %d tokens verified, every other byte the CMS's" % found)


main()
