"""Quantities the way people write and read them: `30s`, `5m`, `4KiB`, `1.5k/s`, `99.9%`.

Parsing: every parser accepts a plain number too (seconds, bytes, ops/s, fraction) and
raises `ValueError` with what was expected, so that validation layers can attach file
and field names.

Formatting: every number a person reads (terminal tables, the HTML report, compare's
Markdown and JUnit, messages) is formatted here, each format once, as plain strings
(rich styling is output.console's). Missing values (None, NaN) print as `-`.
`format_percent` and `format_duration` write what the parsers read back.
"""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0,
                   "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4,
               "tb": 1000**4, "tib": 1024**4}
_RATE_UNITS = {"": 1.0, "k": 1e3, "m": 1e6}
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def parse_duration(value: str | int | float) -> float:
    """Seconds from `250ms`, `30s`, `5m`, `1h30m`, or a bare number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"expected a duration >= 0, got {value}")
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    parts = re.findall(_NUMBER + r"(us|µs|ms|min|s|m|h|d)?", text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"expected a duration like 30s, 5m, 1h30m or 250ms, got {value!r}")
    return sum(float(n) * _DURATION_UNITS[u or "s"] for n, u in parts)


def parse_size(value: str | int | float) -> int:
    """Bytes from `100B`, `4KiB`, `1MiB`, `1.5KB`, or a bare number of bytes."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"expected a size >= 0, got {value}")
        return int(value)
    match = re.fullmatch(_NUMBER + r"\s*([a-zA-Z]*)", str(value).strip())
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f"expected a size like 100B, 4KiB or 1MiB, got {value!r}")
    return int(round(float(match.group(1)) * _SIZE_UNITS[unit]))


def parse_rate(value: str | int | float) -> float:
    """Operations per second from `5000`, `5k`, `5k/s`, `1.2M/s`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"expected a rate > 0, got {value}")
        return float(value)
    match = re.fullmatch(_NUMBER + r"\s*([kKmM]?)\s*(?:/s|ops/s|rps)?", str(value).strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"expected a rate like 5000, 5k or 5k/s, got {value!r}")
    return float(match.group(1)) * _RATE_UNITS[match.group(2).lower()]


_BANDWIDTH_PREFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2.0**10,
                       "mi": 2.0**20, "gi": 2.0**30}


def parse_bandwidth(value: str | int | float) -> float:
    """Bytes per second from a link speed in bits (`10Gbit`, `10Gb/s`, `25Gbps`, `1G`)
    or in bytes (`1.25GB/s`, `100MiB/s`); a number (not a string) is bytes per second."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"expected a bandwidth > 0, got {value}")
        return float(value)
    match = re.fullmatch(_NUMBER + r"\s*([kKmMgGtT]i?)?(bit|bps|b|B)?(?:/s|ps)?",
                         str(value).strip())
    if not match or float(match.group(1)) <= 0 or not (match.group(2) or match.group(3)):
        raise ValueError(f"expected a bandwidth like 10Gbit, 25Gb/s or 1.25GB/s, got {value!r}")
    scale = _BANDWIDTH_PREFIXES[(match.group(2) or "").lower()]
    in_bytes = match.group(3) == "B"
    return float(match.group(1)) * scale / (1.0 if in_bytes else 8.0)


def parse_fraction(value: str | int | float) -> float:
    """A fraction in [0, 1] from `99.9%` or `0.999`."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            result = float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise ValueError(f"expected a percentage like 99.9%, got {value!r}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    else:
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a fraction like 0.999 or 99.9%, got {value!r}") from None
    if not 0.0 <= result <= 1.0:
        raise ValueError(f"expected a fraction between 0 and 1 (or 0% to 100%), got {value!r}")
    return result


# ------------------------------------------------------------------------------ formatting

_MISSING = "-"


def _missing(value: float | None) -> bool:
    """No number to show: None, or NaN (a histogram without values)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_percent(fraction: float | None, digits: int | None = None,
                   signed: bool = False) -> str:
    """A fraction as a percentage: 0.999 -> `99.9%`, as short as it is exact (float noise
    such as 0.9990000000000001 rounded away), or with `digits` decimals: (0.9312, 2) ->
    `93.12%`; `signed` adds the sign: `+4.0%`."""
    if _missing(fraction):
        return _MISSING
    sign = "+" if signed else ""
    if digits is None:
        return f"{round(fraction * 100, 9):{sign}g}%"
    return f"{fraction * 100:{sign}.{digits}f}%"


def format_ms(us: float | None, digits: int | None = None, signed: bool = False) -> str:
    """Microseconds as milliseconds (no unit): 3 significant digits, `1234` -> `1.23`
    (whole and grouped from 1 s: `1,500`), or with `digits` decimals; `signed` adds the
    sign."""
    if _missing(us):
        return _MISSING
    if digits is not None:
        return f"{us / 1000:{'+' if signed else ''}.{digits}f}"
    return f"{us / 1000:.3g}" if us < 1_000_000 else f"{us / 1000:,.0f}"


def format_us(us: float) -> str:
    """Microseconds with the unit that reads best: 2000 -> `2 ms`, 500 -> `500 us`,
    1_500_000 -> `1.5 s`."""
    if us >= 1_000_000:
        return f"{us / 1e6:g} s"
    if us >= 1000:
        return f"{us / 1e3:g} ms"
    return f"{us:g} us"


def format_duration(seconds: float) -> str:
    """Seconds the way scenarios write them: 3600 -> `1h`, 90 -> `1.5m`, 0.25 -> `250ms`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms"


def format_whole(value: float | None) -> str:
    """A whole number, grouped: ops/s, byte counts: 12345.6 -> `12,346`."""
    return _MISSING if _missing(value) else f"{value:,.0f}"


def format_size(size: float) -> str:
    """Bytes in binary units: 1536 -> `1.5 KiB`, 100 -> `100 B`."""
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:,.0f} B" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GiB"


def format_bandwidth(bytes_per_s: float) -> str:
    """Bytes per second as a link speed in bits: 1.25e9 -> `10.0 Gbit/s`."""
    bits = bytes_per_s * 8
    for unit, size in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= size:
            return f"{bits / size:,.1f} {unit}"
    return f"{bits:,.0f} bit/s"


def format_times(ratio: float | None, digits: int = 2) -> str:
    """A ratio as a multiple: 1.5 -> `1.50x` (burn rates, overheads)."""
    return _MISSING if _missing(ratio) else f"{ratio:.{digits}f}x"
