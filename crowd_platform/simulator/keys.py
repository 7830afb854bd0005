"""Synthetic MSISDNs and the operators' daily HMAC keys.

Keys and MSISDNs live in memory only: nothing here writes them anywhere. The daily key of an
operator is derived from the seed, so a re-run with the same seed gives the same digests.
The operator-side tool (``crowd-platform pseudonymize``) uses the same normalisation and HMAC,
so a drop made by either is indistinguishable.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date

import numpy as np

# Real Indonesian mobile prefixes (after the 62 country code) per operator, so a raw-MSISDN
# fault looks like the real thing. Operators not listed get the Axis range.
MSISDN_PREFIXES: dict[str, tuple[str, ...]] = {
    "telkomsel": ("811", "812", "813", "821", "822", "823", "851", "852", "853"),
    "indosat": ("814", "815", "816", "855", "856", "857", "858"),
    "xl": ("817", "818", "819", "859", "877", "878"),
    "tri": ("895", "896", "897", "898", "899"),
    "smartfren": ("881", "882", "883", "884", "885", "886", "887", "888", "889"),
}
_FALLBACK_PREFIXES = ("831", "832", "833", "838")
# Short operator names used in key ids ("tsel-20200327", as in docs/design.md section 6).
KEY_ID_PREFIX = {"telkomsel": "tsel", "indosat": "isat", "xl": "xl", "tri": "tri", "smartfren": "fren"}

# Odd and not a multiple of 5, so i -> i * _BODY_MULTIPLIER mod 10^8 is a bijection: distinct
# subscribers on one prefix never share a number.
_BODY_MULTIPLIER = 73_939_133
_BODY_MODULUS = 10**8
_SEPARATORS = re.compile(r"[\s\-().]")
_NORMALISED = re.compile(r"628[0-9]{7,12}")


def key_id(operator: str, day: date) -> str:
    return f"{KEY_ID_PREFIX.get(operator, operator[:4])}-{day:%Y%m%d}"


def daily_key(seed: int, operator: str, day: date) -> bytes:
    """The operator's HMAC key for one UTC day, derived from the seed (never stored)."""
    master = hashlib.sha256(f"crowd-platform-simulator/{seed}".encode()).digest()
    return hmac.digest(master, f"{operator}/{day.isoformat()}".encode(), "sha256")


def msisdns(indices: np.ndarray, operators: list[str], operator_of: np.ndarray, seed: int) -> np.ndarray:
    """Normalised MSISDNs ("628..." without '+') for subscriber indices; unique per subscriber."""
    offset = int.from_bytes(hashlib.sha256(f"msisdn/{seed}".encode()).digest()[:4], "big")
    bodies = (indices.astype(np.int64) * _BODY_MULTIPLIER + offset) % _BODY_MODULUS
    result = np.empty(len(indices), dtype=object)
    for code, operator in enumerate(operators):
        mask = operator_of[indices] == code
        prefixes = MSISDN_PREFIXES.get(operator, _FALLBACK_PREFIXES)
        chosen = np.asarray(prefixes)[indices[mask] % len(prefixes)]
        result[mask] = [f"62{prefix}{body:08d}" for prefix, body in zip(chosen, bodies[mask])]
    return result


def normalise_msisdn(raw: str) -> str:
    """'+62 812-3456-7890', '0812...' and '62812...' all become '62812...'; else ValueError.

    The error message never repeats the input: it may be a phone number.
    """
    digits = _SEPARATORS.sub("", str(raw).strip())
    if digits.startswith("+"):
        digits = digits[1:]
    if digits.startswith("0"):
        digits = "62" + digits[1:]
    if not _NORMALISED.fullmatch(digits):
        raise ValueError("not an Indonesian mobile number")
    return digits


def pseudonymize(key: bytes, normalised_msisdn: str) -> str:
    """64 lowercase hex: HMAC-SHA256 of a normalised MSISDN under the key."""
    return hmac.new(key, normalised_msisdn.encode("ascii"), hashlib.sha256).hexdigest()


def digests_for(key: bytes, numbers: np.ndarray) -> np.ndarray:
    """Digests of many normalised MSISDNs as a (n, 32) uint8 array.

    Not numpy's "S32": it strips trailing zero bytes, which would shorten one key in 256.
    """
    joined = b"".join(hmac.digest(key, number.encode("ascii"), "sha256") for number in numbers)
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(numbers), 32)
