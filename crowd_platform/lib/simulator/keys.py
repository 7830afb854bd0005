"""Synthetic MSISDNs and the operators' pseudonymization (HMAC-SHA256 under a daily key).

The same :func:`pseudonymize` is used by the operator-side tool (``crowd-platform
pseudonymize``) and by the simulator, so a drop made by either is indistinguishable. Keys
and MSISDNs live only in memory here: nothing in this module writes to disk or logs.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date

import numpy as np
import polars as pl

# Real mobile prefixes per operator (national format without the leading 0), so synthetic
# numbers look like the operator's own. Operators not listed get a prefix from 08x9x.
MOBILE_PREFIXES: dict[str, tuple[str, ...]] = {
    "telkomsel": ("811", "812", "813", "821", "822", "852", "853"),
    "indosat": ("814", "815", "816", "855", "856", "857", "858"),
    "xl": ("817", "818", "819", "859", "877", "878"),
    "tri": ("895", "896", "897", "898", "899"),
    "smartfren": ("881", "882", "883", "884", "885", "886", "887", "888", "889"),
}
_SUBSCRIBER_DIGITS = 8
_NUMBER_SPACE = 10**_SUBSCRIBER_DIGITS
_SEPARATORS = re.compile(r"[\s\-().]")
_MSISDN = re.compile(r"^628[0-9]{7,12}$")


def key_id(operator: str, day: date) -> str:
    """Manifest ``pseudonymization.key_id``: which daily key was used (never the key)."""
    return f"{operator[:4]}-{day:%Y%m%d}"


def daily_key(seed: int, operator: str, day: date) -> bytes:
    """The operator's HMAC key for one UTC day, derived from the run seed (rotates daily)."""
    root = hashlib.sha256(f"crowd-platform-simulator/{seed}".encode()).digest()
    return hmac.new(root, f"{operator}/{day.isoformat()}".encode(), hashlib.sha256).digest()


def normalize_msisdn(value: str) -> str:
    """+62 812-3456-7890, 0812..., 62812... -> 628123456789 (international digits only)."""
    digits = _SEPARATORS.sub("", str(value))
    if digits.startswith("+"):
        digits = digits[1:]
    if digits.startswith("0"):
        digits = "62" + digits[1:]
    if not _MSISDN.match(digits):
        raise ValueError("value is not an Indonesian mobile number")
    return digits


def pseudonymize(msisdn: str, key: bytes) -> str:
    """HMAC-SHA256 of the normalised MSISDN: 64 lowercase hex."""
    return hmac.new(key, normalize_msisdn(msisdn).encode(), hashlib.sha256).hexdigest()


def _prefixes(operator: str) -> tuple[str, ...]:
    if operator in MOBILE_PREFIXES:
        return MOBILE_PREFIXES[operator]
    spread = int(hashlib.sha256(operator.encode()).hexdigest(), 16)
    return (f"8{spread % 10}9",)


def msisdns(operator: str, local_index: np.ndarray, seed: int) -> list[str]:
    """Synthetic MSISDNs (62 8xx xxxxxxxx) for an operator's subscribers, unique per index.

    An affine map with a multiplier coprime to 10^8 scatters consecutive indices over the
    number space without collisions (for fewer than 10^8 subscribers per prefix).
    """
    prefixes = _prefixes(operator)
    mixer = np.random.default_rng([seed, 7, sum(operator.encode())])
    multiplier = int(mixer.integers(1, _NUMBER_SPACE // 10)) * 10 + 3  # ends in 3: coprime to 2 and 5
    offset = int(mixer.integers(0, _NUMBER_SPACE))
    index = np.asarray(local_index, dtype=np.int64)
    prefix_index = index % len(prefixes)
    numbers = ((index // len(prefixes)) * multiplier + offset) % _NUMBER_SPACE
    return [f"62{prefixes[p]}{n:08d}" for p, n in zip(prefix_index.tolist(), numbers.tolist())]


def subscriber_keys(operator: str, local_index: np.ndarray, seed: int, day: date) -> pl.Series:
    """Pseudonymized keys of an operator's subscribers for one day (row i <-> local_index[i])."""
    key = daily_key(seed, operator, day)
    digest = hmac.new
    sha256 = hashlib.sha256
    # Numbers are generated already normalised, so skip normalize_msisdn in this hot loop.
    values = [digest(key, number.encode(), sha256).hexdigest() for number in msisdns(operator, local_index, seed)]
    return pl.Series("subscriber_key", values, dtype=pl.Utf8)
