"""The bytes a run writes: payload buffers, fresh values, and the layout of stored values.

Why one buffer per compressibility: values are slices of a few MiB built once per
process, never generated per op, so producing a value costs a slice and its compression
ratio is what the scenario asked for. The layout of a stored value (MediaWiki's segments
of a large value, its tombstone prefix) is shared by the two writers, prefill
(`ops.Workload.prefill_batches`) and the run (`executor.Executor`), and by the reader that
reassembles segments, so each is defined here once.
"""

from __future__ import annotations

import numpy as np

from bench.scenario import keys as mwkeys

#: Payload buffer per compressibility; values are slices of it, never generated per op.
PAYLOAD_BYTES = 4 * 1024 * 1024
_PAYLOAD_CHUNK = 4096
#: MediaWiki's tombstone prefix (WANObjectCache::PURGE_VAL_PREFIX).
PURGE_PREFIX = b"PURGED:"
#: First bytes of a segmented value's main key (our SerializedValueContainer).
SEGMENTS_PREFIX = b"SEGMENTS:"


_BUFFERS: dict[float, bytes] = {}


def payload_buffer(compressibility: float) -> bytes:
    """PAYLOAD_BYTES of which about `compressibility` compresses away (zero runs).

    Each 4 KiB chunk is random bytes followed by zeros, so any slice of a few KiB
    compresses to about (1 - compressibility) of its size. Built once per process.
    """
    key = round(compressibility, 3)
    if key not in _BUFFERS:
        rng = np.random.default_rng(0)
        chunks = rng.integers(0, 256, (PAYLOAD_BYTES // _PAYLOAD_CHUNK, _PAYLOAD_CHUNK),
                              dtype=np.uint8)
        chunks[:, _PAYLOAD_CHUNK - int(round(key * _PAYLOAD_CHUNK)):] = 0
        _BUFFERS[key] = chunks.tobytes()
    return _BUFFERS[key]


class Payload:
    """Fresh values: successive slices of the shared buffer (a prime stride apart)."""

    _STRIDE = 7919

    def __init__(self, compressibility: float) -> None:
        self.buffer = payload_buffer(compressibility)
        self.offset = 0

    def fresh(self, size: int) -> bytes:
        """`size` bytes, different from the previous call's."""
        buf = self.buffer
        if size > len(buf):
            return (buf * (size // len(buf) + 1))[:size]
        self.offset = (self.offset + self._STRIDE) % (len(buf) - size + 1)
        return buf[self.offset:self.offset + size]


def segment_layout(prefix: str, key: str, value: bytes) -> dict[str, bytes]:
    """What storing `value` under `key` writes, in write order: the value itself, or
    (above SEGMENTATION_SIZE) its segments under MediaWiki's segment keys and then the
    main key listing them, padded to the size MediaWiki's list would have."""
    segments = mwkeys.segment_keys(key[len(prefix):], len(value))
    if len(segments) == 1:
        return {key: value}
    step = mwkeys.SEGMENTATION_SIZE
    items = {prefix + k: value[i * step:(i + 1) * step] for i, (k, _) in enumerate(segments[:-1])}
    listing = SEGMENTS_PREFIX + "\n".join(items).encode()
    items[key] = listing.ljust(segments[-1][1])
    return items


def listed_segments(value: bytes) -> list[str]:
    """The segment keys a segmented value's main key lists."""
    return value[len(SEGMENTS_PREFIX):].rstrip().decode().split("\n")
