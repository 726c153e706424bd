"""Privacy on the live paths: the import's pseudonymisation and PII masking for live events,
the same mapping of a shop's raw user id for every read, and no filesystem path in answers.

A live event is treated like an imported row *before* it reaches the event log, the store or
the in-memory histories: user and session ids become HMAC pseudonyms under the dataset's key
(when the dataset was imported with pseudonyms, or, for a dataset not in the store, when a
key is configured), and PII in the query and the event id is masked. A read that names a user
maps the raw id with the same key, so a shop never needs the key to find its own users.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from soutui.data.privacy import KEY_ENV, PSEUDONYM_PREFIX, PrivacyError, load_key, mask_text, pseudonym

_PSEUDONYM = re.compile(PSEUDONYM_PREFIX + r"[0-9a-f]{32}")
_ABS_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"()\[\],]+/)*[^\s/:'\"()\[\],]*")


class LivePrivacy:
    """Pseudonymise and mask live events; map raw user ids for reads (identity without a key)."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key

    @classmethod
    def for_dataset(cls, meta: dict[str, str] | None, key_file: str = "") -> LivePrivacy:
        """`meta`: the dataset's store metadata (None: the dataset is not in the store).

        A dataset imported with pseudonyms must get them live too, so a missing key is an
        error at start, not raw ids quietly mixed with pseudonyms."""
        if meta is not None and meta.get("pseudonymised") != "true":
            return cls(None)
        try:
            return cls(load_key(key_file or None))
        except PrivacyError as exc:
            if meta is None:  # not imported here: pseudonymise only when a key is configured
                return cls(None)
            raise PrivacyError(
                f"this dataset was imported with pseudonymised user ids, so live events need the same key: {exc} "
                f"(set ${KEY_ENV} or pseudonym_key_file in the serve config)"
            ) from exc

    @property
    def enabled(self) -> bool:
        return self.key is not None

    def user(self, raw: str) -> str:
        """The stored id of a shop's raw user id."""
        raw = raw.strip()
        return pseudonym(raw, self.key) if self.key is not None and raw else raw

    def read_user(self, raw: str, known: Any) -> str:
        """The stored id to read for `raw`: its pseudonym, or `raw` itself when it already is a
        pseudonym the server holds (the ids /v1/demo-users lists, behind the read key)."""
        stored = self.user(raw)
        if stored != raw and stored not in known and _PSEUDONYM.fullmatch(raw) and raw in known:
            return raw
        return stored

    def event(self, rec: dict[str, Any]) -> dict[str, Any]:
        """One live event as the store may hold it (a new dict; the input is left alone)."""
        out = dict(rec)
        out["user_id"] = self.user(str(rec["user_id"]))
        if rec.get("session_id"):
            out["session_id"] = self.user(str(rec["session_id"]))
        for field in ("query", "event_id"):
            if isinstance(rec.get(field), str):
                out[field] = mask_text(rec[field])[0]
        return out


def redact_paths(text: str) -> str:
    """`text` with every absolute filesystem path cut to its last part (no path leaves the server)."""
    return _ABS_PATH.sub(lambda m: PurePosixPath(m.group(0)).name or "/", text)
