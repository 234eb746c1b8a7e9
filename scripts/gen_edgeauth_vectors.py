#!/usr/bin/env python3
"""Generate Akamai EdgeAuth v2 ACL-token test vectors from the reference implementation.

Rerun with:

    pip install akamai-edgeauth==0.3.2 && python3 scripts/gen_edgeauth_vectors.py

Writes tests/data/edgeauth_vectors.json (relative to the repo root, resolved
from this script's location). No arguments, no randomness, no wall clock: every
key, time and ACL below is fixed, so the output is byte-for-byte reproducible.

Each vector's "token" is exactly
    EdgeAuth(key=key_hex, algorithm=algorithm,
             start_time=start, end_time=end).generate_acl_token(acl)
i.e. "st=<start>~exp=<end>~acl=<acl>~hmac=<lowercase hex>", where the HMAC
(keyed with the hex-decoded key) covers "st=<start>~exp=<end>~acl=<acl>".
window_seconds is deliberately not passed: with an explicit end_time the
reference ignores it, so it could never change a token.
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

# (name, key_hex, algorithm, start, end, acl)
CASES = [
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


def independent_token(key_hex, algorithm, start, end, acl):
    """Our understanding of the construction, used only as a sanity check."""
    body = "~".join(["st=%d" % start, "exp=%d" % end, "acl=%s" % acl])
    mac = hmac.new(binascii.a2b_hex(key_hex), body.encode(), getattr(hashlib, algorithm))
    return body + "~hmac=" + mac.hexdigest()


def main():
    vectors = []
    for name, key_hex, algorithm, start, end, acl in CASES:
        token = EdgeAuth(
            key=key_hex, algorithm=algorithm, start_time=start, end_time=end
        ).generate_acl_token(acl)
        # Fail loudly if the reference ever diverges from the documented layout.
        assert token == independent_token(key_hex, algorithm, start, end, acl), name
        vectors.append(
            {
                "name": name,
                "key_hex": key_hex,
                "algorithm": algorithm,
                "start": start,
                "end": end,
                "acl": acl,
                "token": token,
            }
        )

    names = [v["name"] for v in vectors]
    assert len(names) == len(set(names)), "duplicate vector names"

    OUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT_PATH, "w", encoding="utf-8", newline="\n") as f:
        json.dump(vectors, f, indent=2)
        f.write("\n")
    print("wrote %d vectors to %s" % (len(vectors), OUT_PATH.relative_to(REPO_ROOT)))


if __name__ == "__main__":
    main()
