"""memcached's memory accounting: item sizes, slab classes, chunks and pages.

Why model it: memcached does not store bytes, it stores items in chunks of fixed
sizes, and a chunk of the class just above an item's size is what the item costs.
The classes grow by the factor `-f` from a first chunk of 48 B of item header plus
`-n` bytes, aligned to 8 bytes, up to half a page (slab_chunk_max); memory is handed
to classes a 1 MiB page at a time. So 1 GiB of `-m` holds far fewer values than
1 GiB / mean value size, and how many fewer depends on the size mix. The numbers
are memcached 1.6's (slabs.c `slabs_init`, items.c `item_make_header`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: sizeof(item) on a 64-bit build.
ITEM_HEADER = 48
#: The CAS value stored with every item (unless memcached runs with -C).
CAS_BYTES = 8
#: What follows the key and the value: the key's NUL and the value's "\r\n".
KEY_TERMINATOR, VALUE_TERMINATOR = 1, 2
CHUNK_ALIGN = 8
PAGE_SIZE = 1 << 20
#: -I: the largest item memcached stores (larger sets fail with "object too large").
ITEM_SIZE_MAX = 1 << 20
#: Classes grown by the factor before the last (chunk_max) one: MAX_NUMBER_OF_SLAB_CLASSES
#: is 64, class 0 is the page pool and the last is chunk_max.
MAX_GROWN_CLASSES = 62


def item_size(key_bytes: np.ndarray | int, value_bytes: np.ndarray | int) -> np.ndarray:
    """Bytes of an item (ITEM_ntotal): 48 B header + 8 B CAS + key + 1 + value + 2.

    Flags take 4 more bytes only when non-zero; the harness stores bytes with flags 0.
    """
    return (ITEM_HEADER + CAS_BYTES + np.asarray(key_bytes, dtype=np.int64) + KEY_TERMINATOR
            + np.asarray(value_bytes, dtype=np.int64) + VALUE_TERMINATOR)


@dataclass(frozen=True)
class SlabClasses:
    """The chunk sizes of memcached started with `-f growth_factor -n min_chunk`.

    Class i (0-based here, memcached numbers them from 1) holds items up to
    `sizes[i]` bytes, `per_page[i]` of them in a page. Items above `chunk_max` are
    "chunked": stored across chunks of the largest class (`chunks` says how many).
    """

    growth_factor: float = 1.25
    min_chunk: int = 48
    page_size: int = PAGE_SIZE
    item_size_max: int = ITEM_SIZE_MAX
    sizes: np.ndarray = field(init=False, repr=False, compare=False)
    per_page: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.growth_factor > 1.0:
            raise ValueError(f"-f: expected a growth factor above 1, got {self.growth_factor:g}")
        if self.min_chunk < 1:
            raise ValueError(f"-n: expected at least 1 byte, got {self.min_chunk}")
        sizes, size = [], ITEM_HEADER + self.min_chunk
        while size < self.chunk_max / self.growth_factor and len(sizes) < MAX_GROWN_CLASSES:
            size += -size % CHUNK_ALIGN
            sizes.append(size)
            size = int(size * self.growth_factor)
        sizes.append(self.chunk_max)
        object.__setattr__(self, "sizes", np.array(sizes, dtype=np.int64))
        object.__setattr__(self, "per_page", self.page_size // self.sizes)

    @property
    def chunk_max(self) -> int:
        """slab_chunk_max: half a page by default; larger items span several chunks."""
        return self.page_size // 2

    def class_of(self, ntotal: np.ndarray) -> np.ndarray:
        """The class index of items of `ntotal` bytes (chunked items: the largest class);
        -1 for items above item_size_max, which memcached refuses."""
        ntotal = np.asarray(ntotal, dtype=np.int64)
        found = np.minimum(np.searchsorted(self.sizes, ntotal, side="left"), len(self.sizes) - 1)
        return np.where(ntotal > self.item_size_max, -1, found)

    def chunks(self, ntotal: np.ndarray) -> np.ndarray:
        """Chunks an item takes in its class: 1, or for a chunked item enough chunks of
        the largest class to hold it (memcached puts the remainder in a smaller chunk;
        counting a whole one overstates such an item by less than one chunk)."""
        ntotal = np.asarray(ntotal, dtype=np.int64)
        return np.maximum(1, -(-ntotal // self.chunk_max))

    def pages_for(self, memory_bytes: float) -> int:
        """Pages of slab memory in `-m` bytes."""
        return max(0, math.floor(memory_bytes / self.page_size))

    def describe(self) -> str:
        """`-f 1.25 -n 48: 42 classes, 96 B .. 512 KiB chunks`."""
        return (f"-f {self.growth_factor:g} -n {self.min_chunk}: {len(self.sizes)} classes, "
                f"{self.sizes[0]} B .. {self.sizes[-1] // 1024} KiB chunks")
