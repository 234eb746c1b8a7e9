#!/usr/bin/env python3
"""Generate Akamai EdgeAuth v2 token test vectors from the reference implementation.

Rerun with:

    pip install akamai-edgeauth==0.3.2 && python3 scripts/gen_edgeauth_vectors.py

Writes tests/data/edgeauth_vectors.json (relative to the repo root, resolved
from this script's location). No arguments, no randomness, no wall clock: every
key, time and input below is fixed, so the output is byte-for-byte reproducible.

Each vector's "token" is what the reference returns for

    EdgeAuth(key=key_hex, algorithm=algorithm, start_time=start, end_time=end,
             ip=ip, session_id=id, payload=data, salt=salt,
             field_delimiter=field_delimiter, acl_delimiter=acl_delimiter,
             escape_early=escape_early)

followed by .generate_acl_token(acl_list or acl) or .generate_url_token(url).
Keys that a vector leaves out are not passed (the reference defaults apply:
no ip/id/data/salt, "~", "!", escape_early off); a vector without "start"
passes start_time=None, so its token has no "st=" field. ACL vectors carry
"acl" (the joined string that appears in the token) and, when the reference
was given a list, "acl_list" too; URL vectors carry "url" instead of "acl".

Layout, as the reference builds it: the token is
    [ip=<e(ip)>] [st=<start>] exp=<end> [acl=<acl>] [id=<e(id)>] [data=<e(data)>] hmac=<hex>
joined by field_delimiter, where e() is escape_early (quote_plus with
safe='', then every %XX lower-cased) when enabled and the identity otherwise.
The HMAC (keyed with the hex-decoded key) covers the same fields minus hmac,
plus "url=<e(url)>" for URL tokens and then "salt=<salt>" when salted; url and
salt never appear in the token. The ACL and the salt are never escaped.

The original 17 ACL-only vectors come first, unchanged; the rest cover every
other option singly and in combination. window_seconds and start_time="now"
are deliberately not used: the first never changes a token with an explicit
end_time, the second reads the clock.
"""

import binascii
import hashlib
import hmac
import json
from pathlib import Path

from akamai.edgeauth import EdgeAuth

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_PATH = REPO_ROOT / "tests" / "data" / "edgeauth_vectors.json"

# --- Fixed inputs -----------------------------------------------------------

# Seed example from the project: a 5-minute window.
SEED_START = 1637143497
SEED_END = 1637143797
SEED_ACL = "/hls/1jhvl2uq4dnra/1jhvl2uq4dnmd/*"

# Far-future timestamp (2100-01-01T00:00:00Z), beyond 32-bit signed time_t.
BIG_START = 4102444800

# Keys (hex strings, as the reference expects). The reference decodes them with
# binascii.a2b_hex, which accepts either case, so upper/lower pairs of the same
# key must yield identical tokens.
KEY_1_LOWER = "ab"                                      # 1 byte
KEY_1_UPPER = "AB"                                      # same 1 byte, upper-case hex
KEY_32 = "00112233445566778899aabbccddeeff" * 2         # 32 bytes, lower-case
KEY_64_LOWER = bytes(range(0x80, 0xC0)).hex()           # 64 bytes, lower-case
KEY_64_UPPER = KEY_64_LOWER.upper()                     # same 64 bytes, upper-case
KEY_MIXED = "DeadBeef0123456789AbCdEf"                  # 12 bytes, mixed case

ACL_ALL = "/*"
ACL_CHARS = "/hls/abc-DEF_123.x/*"

# The original ACL-only vectors: (name, key_hex, algorithm, start, end, acl).
# Their names, inputs and tokens must never change.
ACL_ONLY_CASES = [
    # Seed example under each algorithm.
    ("seed_sha256_key32", KEY_32, "sha256", SEED_START, SEED_END, SEED_ACL),
    ("seed_sha1_key32", KEY_32, "sha1", SEED_START, SEED_END, SEED_ACL),
    ("seed_md5_key32", KEY_32, "md5", SEED_START, SEED_END, SEED_ACL),
    # 1-byte key, lower vs upper hex (tokens must match pairwise).
    ("key1_lower_sha256_all", KEY_1_LOWER, "sha256", SEED_START, SEED_END, ACL_ALL),
    ("key1_upper_sha256_all", KEY_1_UPPER, "sha256", SEED_START, SEED_END, ACL_ALL),
    ("key1_lower_sha1_chars", KEY_1_LOWER, "sha1", SEED_START, SEED_END, ACL_CHARS),
    ("key1_upper_md5_seed_acl", KEY_1_UPPER, "md5", SEED_START, SEED_END, SEED_ACL),
    # 64-byte key (= SHA-256/SHA-1/MD5 block size), lower vs upper hex.
    ("key64_lower_sha256_chars", KEY_64_LOWER, "sha256", SEED_START, SEED_END, ACL_CHARS),
    ("key64_upper_sha256_chars", KEY_64_UPPER, "sha256", SEED_START, SEED_END, ACL_CHARS),
    ("key64_lower_sha1_all", KEY_64_LOWER, "sha1", SEED_START, SEED_END, ACL_ALL),
    ("key64_upper_md5_seed_acl", KEY_64_UPPER, "md5", SEED_START, SEED_END, SEED_ACL),
    # Mixed-case hex key.
    ("keymixed_sha256_seed_acl", KEY_MIXED, "sha256", SEED_START, SEED_END, SEED_ACL),
    # Large timestamps.
    ("big_ts_sha256_seed_acl", KEY_32, "sha256", BIG_START, BIG_START + 300, SEED_ACL),
    ("big_ts_sha1_all", KEY_64_LOWER, "sha1", BIG_START, BIG_START + 86400, ACL_ALL),
    ("big_ts_md5_chars", KEY_1_LOWER, "md5", BIG_START, BIG_START + 1, ACL_CHARS),
    # Other window shapes on the seed start.
    ("window_1s_sha256_all", KEY_32, "sha256", SEED_START, SEED_START + 1, ACL_ALL),
    ("window_24h_sha256_chars", KEY_32, "sha256", SEED_START, SEED_START + 86400, ACL_CHARS),
]

# Inputs for the option vectors. Values must not contain the field delimiter
# of their vector in the form that lands in the token, or the token could not
# be parsed back: note that escaping keeps "~" (an unreserved character).
IP_V4 = "203.0.113.7"
IP_V6 = "2001:db8::1"                    # ":" becomes "%3a" when escaped early
IP_V6_ZONE = "fe80::1%eth0"              # "%" itself becomes "%25"
ID_PLAIN = "session-42.a_b"              # unchanged by escaping
ID_TEXT = "séance 42/a&b"                # space, "/", "&" and a non-ASCII letter
DATA_PLAIN = "user alice/plan gold"      # escape off: sent as is, spaces and all
DATA_TEXT = "user=alice&plan=gold é/x+y" # "+" becomes "%2b", space "+"
URL_PLAIN = "/hls/abc/master.m3u8"
URL_TEXT = "/vidéos/my clip+1.m3u8?q=a&b=~c*"
URL_EMOJI = "/\U0001F3AC/Ünïcode path/%41.ts"
ACL_LIST_2 = ["/hls/abc/*", "/dash/abc/*"]
ACL_LIST_3 = ["/hls/abc/*", "/dash/abc/*", "/thumbs/abc.jpg"]
ACL_WITH_BANG = ["/a!b/*", "/c?d/*"]     # "!" is literal once another delimiter is used
ACL_UNESCAPED = "/hls/a b/é/*"           # never escaped, even with escape_early
SALT = "pepper"
SALT_TEXT = "s p~é/"                     # never escaped, and only ever hashed
FIELD_DELIM = "|"                        # not in ACL paths; escaped when escape_early is on
ACL_DELIM = ","

# Each option case: name plus the keyword inputs (see module docstring).
# "start" left out means start_time=None.
OPTION_CASES = [
    # ACL lists and ACL delimiters.
    dict(name="acl_list2_sha256", key_hex=KEY_32, algorithm="sha256",
         start=SEED_START, end=SEED_END, acl_list=ACL_LIST_2),
    dict(name="acl_list3_comma_sha1", key_hex=KEY_32, algorithm="sha1",
         start=SEED_START, end=SEED_END, acl_list=ACL_LIST_3, acl_delimiter=ACL_DELIM),
    dict(name="acl_list2_semicolon_md5", key_hex=KEY_1_LOWER, algorithm="md5",
         start=SEED_START, end=SEED_END, acl_list=ACL_WITH_BANG, acl_delimiter=";"),
    dict(name="acl_not_escaped_escape_sha256", key_hex=KEY_32, algorithm="sha256",
         start=SEED_START, end=SEED_END, acl=ACL_UNESCAPED, escape_early=True),
    # URL tokens.
    dict(name="url_plain_sha256", key_hex=KEY_32, algorithm="sha256",
         start=SEED_START, end=SEED_END, url=URL_PLAIN),
    dict(name="url_text_sha1", key_hex=KEY_64_LOWER, algorithm="sha1",
         start=SEED_START, end=SEED_END, url=URL_TEXT),
    dict(name="url_text_escape_sha256", key_hex=KEY_32, algorithm="sha256",
         start=SEED_START, end=SEED_END, url=URL_TEXT, escape_early=True),
    dict(name="url_emoji_escape_md5", key_hex=KEY_MIXED, algorithm="md5",
         start=SEED_START, end=SEED_END, url=URL_EMOJI, escape_early=True),
    dict(name="url_plain_escape_sha1", key_hex=KEY_32, algorithm="sha1",
         start=BIG_START, end=BIG_START + 60, url=URL_PLAIN, escape_early=True),
    # ip.
    dict(name="ip_v4_sha256", key_hex=KEY_32, algorithm="sha256",
         start=SEED_START, end=SEED_END, acl=SEED_ACL, ip=IP_V4),
    dict(name="ip_v4_escape_sha256", key_hex=KEY_32, algorithm="sha256",
         start=SEED_START, end=SEED_END, acl=SEED_ACL, ip=IP_V4, escape_early=True),
    dict(name="ip_v6_sha1", key_hex=KEY_32, algorithm="sha1",
         start=SEED_START, end=SEED_END, acl=SEED_ACL, ip=IP_V6),
    dict(name="ip_v6_escape_sha256", key_hex=KEY_32, algorithm="sha256",
         start=SEED_START, end=SEED_END, acl=SEED_ACL, ip=IP_V6, escape_early=True),
    dict(name="ip_v6_zone_escape_md5", key_hex=KEY_1_UPPER, algorithm="md5",
         start=SEED_START, end=SEED_END, acl=ACL_ALL, ip=IP_V6_ZONE, escape_early=True),
    # id.
    dict(name="id_plain_sha256", key_hex=KEY_32, algorithm="sha256",
         start=SEED_START, end=SEED_END, acl=SEED_ACL, id=ID_PLAIN),
    dict(name="id_text_sha1", key_hex=KEY_32, algorithm="sha1",
         start=SEED_START, end=SEED_END, acl=SEED_ACL, id=ID_TEXT),
    dict(name="id_text_escape_sha256", key_hex=KEY_32, algorithm="sha256",
         start=SEED_START, end=SEED_END, acl=SEED_ACL, id=ID_TEXT, escape_early=True),
    # data.
    dict(name="data_plain_md5", key_hex=KEY_64_UPPER, algorithm="md5",
         start=SEED_START, end=SEED_END, acl=SEED_ACL, data=DATA_PLAIN),
    dict(name="data_text_escape_sha256", key_hex=KEY_32, algorithm="sha256",
         start=SEED_START, end=SEED_END, acl=SEED_ACL, data=DATA_TEXT, escape_early=True),
    dict(name="data_text_escape_sha1", key_hex=KEY_32, algorithm="sha1",
         start=SEED_START, end=SEED_END, acl=SEED_ACL, data=DATA_TEXT, escape_early=True),
    # salt.
    dict(name="salt_acl_sha256", key_hex=KEY_32, algorithm="sha256",
         start=SEED_START, end=SEED_END, acl=SEED_ACL, salt=SALT),
    dict(name="salt_url_sha1", key_hex=KEY_32, algorithm="sha1",
         start=SEED_START, end=SEED_END, url=URL_PLAIN, salt=SALT),
    dict(name="salt_text_escape_md5", key_hex=KEY_32, algorithm="md5",
         start=SEED_START, end=SEED_END, url=URL_TEXT, salt=SALT_TEXT, escape_early=True),
    # Field delimiter.
    dict(name="fdelim_pipe_acl_sha256", key_hex=KEY_32, algorithm="sha256",
         start=SEED_START, end=SEED_END, acl=SEED_ACL, field_delimiter=FIELD_DELIM),
    dict(name="fdelim_pipe_url_sha1", key_hex=KEY_32, algorithm="sha1",
         start=SEED_START, end=SEED_END, url=URL_PLAIN, field_delimiter=FIELD_DELIM),
    dict(name="fdelim_pipe_ip_v6_escape_md5", key_hex=KEY_32, algorithm="md5",
         start=SEED_START, end=SEED_END, url=URL_TEXT, ip=IP_V6,
         field_delimiter=FIELD_DELIM, escape_early=True),
    # Start left out (None), and start 0, which the reference also leaves out.
    dict(name="nostart_acl_sha256", key_hex=KEY_32, algorithm="sha256",
         end=SEED_END, acl=SEED_ACL),
    dict(name="nostart_url_md5", key_hex=KEY_32, algorithm="md5",
         end=SEED_END, url=URL_PLAIN),
    dict(name="nostart_ip_id_escape_sha1", key_hex=KEY_32, algorithm="sha1",
         end=BIG_START, acl=ACL_ALL, ip=IP_V6, id=ID_TEXT, escape_early=True),
    dict(name="start_zero_omitted_sha256", key_hex=KEY_32, algorithm="sha256",
         start=0, end=SEED_END, acl=SEED_ACL),
]

# Everything at once, for each algorithm, with escaping on and off, as ACL and
# URL tokens. Without escaping the values must be free of both delimiters.
for algorithm, key in (("sha256", KEY_32), ("sha1", KEY_64_LOWER), ("md5", KEY_MIXED)):
    for escape in (False, True):
        suffix = "escape" if escape else "plain"
        common = dict(key_hex=key, algorithm=algorithm, start=SEED_START, end=SEED_END,
                      ip=IP_V6 if escape else IP_V4,
                      id=ID_TEXT if escape else ID_PLAIN,
                      data=DATA_TEXT if escape else DATA_PLAIN,
                      salt=SALT_TEXT if escape else SALT,
                      escape_early=escape)
        OPTION_CASES.append(dict(common, name="all_acl_%s_%s" % (algorithm, suffix),
                                 acl_list=ACL_LIST_3, acl_delimiter=ACL_DELIM,
                                 field_delimiter=FIELD_DELIM))
        OPTION_CASES.append(dict(common, name="all_url_%s_%s" % (algorithm, suffix),
                                 url=URL_TEXT if escape else URL_PLAIN))
        OPTION_CASES.append(dict(common, name="all_url_nostart_%s_%s" % (algorithm, suffix),
                                 start=None, url=URL_EMOJI if escape else URL_PLAIN,
                                 field_delimiter=FIELD_DELIM))


# --- Independent construction -------------------------------------------------

UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def independent_escape(text):
    """quote_plus(text, safe='') with lower-case hex, written out byte by byte."""
    out = []
    for byte in text.encode("utf-8"):
        if byte in UNRESERVED:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append("%%%02x" % byte)
    return "".join(out)


def independent_token(case):
    """Our understanding of the construction, used only as a sanity check."""
    escape = independent_escape if case.get("escape_early") else (lambda text: text)
    fields = []
    if case.get("ip"):
        fields.append("ip=" + escape(case["ip"]))
    if case.get("start"):
        fields.append("st=%d" % case["start"])
    fields.append("exp=%d" % case["end"])
    if "url" not in case:
        fields.append("acl=" + acl_of(case))
    if case.get("id"):
        fields.append("id=" + escape(case["id"]))
    if case.get("data"):
        fields.append("data=" + escape(case["data"]))
    signed = list(fields)
    if "url" in case:
        signed.append("url=" + escape(case["url"]))
    if case.get("salt"):
        signed.append("salt=" + case["salt"])
    delimiter = case.get("field_delimiter", "~")
    mac = hmac.new(binascii.a2b_hex(case["key_hex"]), delimiter.join(signed).encode("utf-8"),
                   getattr(hashlib, case["algorithm"]))
    return delimiter.join(fields + ["hmac=" + mac.hexdigest()])


def acl_of(case):
    if "acl_list" in case:
        return case.get("acl_delimiter", "!").join(case["acl_list"])
    return case["acl"]


# --- Reference ----------------------------------------------------------------

REFERENCE_KWARGS = {
    "ip": "ip", "id": "session_id", "data": "payload", "salt": "salt",
    "field_delimiter": "field_delimiter", "acl_delimiter": "acl_delimiter",
    "escape_early": "escape_early",
}

# Key order in the JSON output; keys a case does not set are left out.
JSON_KEYS = ["name", "key_hex", "algorithm", "start", "end", "acl", "acl_list", "url",
             "ip", "id", "data", "salt", "field_delimiter", "acl_delimiter", "escape_early"]


def reference_token(case):
    kwargs = {REFERENCE_KWARGS[k]: v for k, v in case.items() if k in REFERENCE_KWARGS}
    auth = EdgeAuth(key=case["key_hex"], algorithm=case["algorithm"],
                    start_time=case.get("start"), end_time=case["end"], **kwargs)
    if "url" in case:
        return auth.generate_url_token(case["url"])
    return auth.generate_acl_token(case["acl_list"] if "acl_list" in case else case["acl"])


def vector(case):
    case = {k: v for k, v in case.items() if v is not None}
    token = reference_token(case)
    # Fail loudly if the reference ever diverges from the documented layout.
    assert token == independent_token(case), case["name"]
    out = {}
    for key in JSON_KEYS:
        if key == "acl" and "url" not in case:
            out["acl"] = acl_of(case)
        elif key in case:
            out[key] = case[key]
    out["token"] = token
    return out


def main():
    cases = [dict(name=name, key_hex=key_hex, algorithm=algorithm, start=start, end=end, acl=acl)
             for name, key_hex, algorithm, start, end, acl in ACL_ONLY_CASES]
    vectors = [vector(case) for case in cases + OPTION_CASES]

    names = [v["name"] for v in vectors]
    assert len(names) == len(set(names)), "duplicate vector names"
    by_name = {v["name"]: v for v in vectors}
    # Upper- and lower-case spellings of one key make one token, escaping
    # leaves an IPv4 address alone, and start 0 is no start; nothing else may
    # collide.
    same = [("key1_lower_sha256_all", "key1_upper_sha256_all"),
            ("key64_lower_sha256_chars", "key64_upper_sha256_chars"),
            ("ip_v4_sha256", "ip_v4_escape_sha256"),
            ("nostart_acl_sha256", "start_zero_omitted_sha256")]
    for a, b in same:
        assert by_name[a]["token"] == by_name[b]["token"], (a, b)
    tokens = [v["token"] for v in vectors]
    assert len(set(tokens)) == len(tokens) - len(same), "unexpected duplicate tokens"
    # Spot checks of the surprising corners, stated directly.
    assert by_name["start_zero_omitted_sha256"]["token"].startswith("exp=")
    assert by_name["ip_v6_escape_sha256"]["token"].startswith("ip=2001%3adb8%3a%3a1~")
    assert "acl=/hls/a b/é/*~" in by_name["acl_not_escaped_escape_sha256"]["token"]
    assert "url=" not in by_name["url_text_escape_sha256"]["token"]

    OUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT_PATH, "w", encoding="utf-8", newline="\n") as f:
        json.dump(vectors, f, indent=2)
        f.write("\n")
    print("wrote %d vectors to %s" % (len(vectors), OUT_PATH.relative_to(REPO_ROOT)))


if __name__ == "__main__":
    main()
