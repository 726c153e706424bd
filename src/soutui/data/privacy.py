"""Privacy: keyed pseudonymisation of user ids and PII masking in free text.

User ids are replaced by HMAC-SHA256(key, id): stable across imports (so a re-import
and live events line up) but not reversible without the key, and the key is never
written to the store. Free text (queries, reviews, descriptions) is scanned for
e-mail addresses, phone numbers (Chinese mobiles with or without +86, international
numbers written with a leading +, North-American (xxx) xxx-xxxx), Chinese national ID
numbers (18 characters, and the older 15-digit ones) and payment-card numbers (13-19
digits with a card-network prefix that pass the Luhn check). For PII, masking too much
is safer than too little: an 18-character ID with a wrong checksum (a typo, or a made-up
number that is still someone's) is masked too. Patterns are anchored on non-alphanumeric
boundaries, so "12 pack" or "SLT-A35K" stay as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from soutui.config import UserError

KEY_ENV = "SOUTUI_PSEUDONYM_KEY"
MIN_KEY_BYTES = 16
PSEUDONYM_PREFIX = "u_"


class PrivacyError(UserError, ValueError):
    """Privacy settings are incomplete (e.g. no key); the message says how to fix it."""


def load_key(key_file: str | Path | None = None) -> bytes:
    """The pseudonymisation key from `key_file`, else $SOUTUI_PSEUDONYM_KEY; refuse without one."""
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise PrivacyError(f"pseudonym key file {path} not found")
        key = path.read_bytes().strip()
    else:
        key = os.environ.get(KEY_ENV, "").encode()
    if not key:
        raise PrivacyError(
            f"pseudonymising user ids needs a secret key: set ${KEY_ENV} or pass --pseudonym-key-file FILE "
            "(keep the same key for later imports), or pass --no-pseudonymize to keep ids as they are"
        )
    if len(key) < MIN_KEY_BYTES:
        raise PrivacyError(
            f"the pseudonym key is too short ({len(key)} bytes); use at least {MIN_KEY_BYTES} random bytes"
        )
    return key


def pseudonym(user_id: str, key: bytes) -> str:
    """HMAC-SHA256 of the id, 128 bits in hex: collisions are negligible at any catalogue size."""
    return PSEUDONYM_PREFIX + hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def pseudonymize(ids: pd.Series, key: bytes) -> pd.Series:
    """Pseudonymise a column of user ids (nulls stay null); each distinct id is hashed once."""
    s = ids.astype("string")
    uniq = s.dropna().unique()
    table = {u: pseudonym(str(u), key) for u in uniq}
    return s.map(table).astype("string")


# --- PII in free text -------------------------------------------------------------

_B = r"(?<![0-9A-Za-z])"  # left boundary: not inside a word/number (Chinese text may touch)
_E = r"(?![0-9A-Za-z])"  # right boundary
EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}" + _E
)
CN_ID = re.compile(
    _B + r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]" + _E
)
CN_ID15 = re.compile(_B + r"[1-9]\d{5}\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}" + _E)
# Visa 4, Mastercard 51-55 / 22-27, Amex 34/37, UnionPay 62, JCB 35, Diners 30/36/38, Discover 6011/65;
# digits may be grouped by spaces or dashes.
CARD = re.compile(_B + r"(?:4|5[1-5]|2[2-7]|3[0478]|3[5-6]|6[025])\d?(?:[ -]?\d){11,17}" + _E)
CN_MOBILE = re.compile(_B + r"(?:(?:\+|00)86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}" + _E)
INTL_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}" + _E)
NA_PHONE = re.compile(_B + r"(?:\(\d{3}\)\s?|\d{3}[-.])\d{3}[-.]\d{4}" + _E)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

MASKS = {"email": "[EMAIL]", "cn_id": "[ID]", "card": "[CARD]", "phone": "[PHONE]"}


def valid_cn_id(text: str) -> bool:
    """GB 11643 checksum of an 18-character Chinese resident ID number."""
    if len(text) != 18 or not text[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(text[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == text[17].upper()


def luhn_ok(text: str) -> bool:
    """The Luhn check every payment-card number passes (spaces and dashes ignored), 13-19 digits."""
    digits = [int(ch) for ch in text if ch.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _digits(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def mask_text(text: str) -> tuple[str, Counter[str]]:
    """Mask PII in one text; returns (masked text, counts by kind)."""
    counts: Counter[str] = Counter()
    if not text or not any(ch.isdigit() or ch == "@" for ch in text):
        return text, counts

    def sub(pattern: re.Pattern[str], kind: str, s: str, ok=lambda m: True) -> str:  # type: ignore[no-untyped-def]
        def repl(m: re.Match[str]) -> str:
            if not ok(m.group(0)):
                return m.group(0)
            counts[kind] += 1
            return MASKS[kind]

        return pattern.sub(repl, s)

    out = sub(EMAIL, "email", text)
    out = sub(CN_ID, "cn_id", out)  # checksum not required: masking too much is safer
    out = sub(CARD, "card", out, luhn_ok)
    out = sub(CN_ID15, "cn_id", out)
    out = sub(CN_MOBILE, "phone", out)
    out = sub(INTL_PHONE, "phone", out, lambda m: 8 <= _digits(m) <= 15)
    out = sub(NA_PHONE, "phone", out)
    return out, counts


def mask_series(texts: pd.Series) -> tuple[pd.Series, Counter[str]]:
    """Mask PII in a text column; nulls stay null. Returns (masked, counts by kind)."""
    total: Counter[str] = Counter()
    out: list[str | None] = []
    for t in texts.astype("string").tolist():
        if t is None or t is pd.NA:
            out.append(None)
            continue
        masked, c = mask_text(str(t))
        total.update(c)
        out.append(masked)
    return pd.Series(out, index=texts.index, dtype="string"), total


def scan(text: str) -> dict[str, int]:
    """PII found in `text`, by kind (for reports and `soutui data` checks)."""
    return dict(mask_text(text)[1])
