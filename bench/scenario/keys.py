"""MediaWiki's cache key model: makeKey/makeGlobalKey, escaping, the length rule,
WANObjectCache sister keys and value segmentation, plus fast per-index key templates.

Why: a benchmark that claims to be MediaWiki-like must send the keys MediaWiki sends —
same escaping, same lengths (a 33-byte `#<md5>` component or a `BagOStuff-long-key`
changes slab classes and hashing), same sister keys on the same mcrouter node. Each
rule below cites the MediaWiki class and method it reproduces (mediawiki/core,
includes/libs/objectcache/).

Two versions of the length rule exist, picked with `rules=`:

- "1.44" (MediaWiki 1.27-1.44, MemcachedBagOStuff::makeKeyInternal): a component longer
  than the bytes left becomes `#` + md5(component); if the key is still too long, it
  becomes `<keyspace>:BagOStuff-long-key:##` + md5 of the joined components. Default.
- "1.45" (MediaWiki 1.45+, BagOStuff::makeFallbackKey): a too-long key becomes
  `<keyspace>:<keygroup>:#` + sha256(key), or `<keyspace>:BagOStuff-long-key:##` +
  sha256(key) if even that is too long.

Pure logic: imports only `bench.scenario.distributions`; targets do not import this module (the
memcached ring applies the same `|#|` hash-stop rule as `hash_stop_part` on its own).
"""

from __future__ import annotations

import hashlib
import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bench.scenario.distributions import SizeDistribution, WeightedChoice, hashed_uniform

__all__ = [
    "MEMCACHED_KEY_LIMIT", "KEY_BUDGET", "GLOBAL_KEYSPACE", "SEGMENTATION_SIZE",
    "COMPRESSION_THRESHOLD", "MAX_COMMIT_DELAY", "MAX_READ_LAG", "HOLDOFF_TTL", "LOCK_TTL",
    "COOLOFF_TTL", "INTERIM_KEY_TTL", "SISTER_TYPES", "Rules", "escape_component",
    "make_key", "make_global_key", "wan_sister_key", "hash_stop_part", "segment_keys",
    "Index", "Choice", "Padded", "KeyTemplate", "WIKIS_DEFAULT",
]

Rules = Literal["1.44", "1.45"]

MEMCACHED_KEY_LIMIT = 250
"""memcached's KEY_MAX_LENGTH in bytes."""
KEY_BUDGET = 205
"""MemcachedBagOStuff keeps makeKey() results within 205 bytes, leaving 45 of memcached's
250 for wrapper prefixes such as WANObjectCache's `WANCache:` ... `|#|v` and mcrouter
routing prefixes."""
GLOBAL_KEYSPACE = "global"
"""BagOStuff::GLOBAL_KEYSPACE: the keyspace of makeGlobalKey() keys."""
_HASHED_COMPONENT_LENGTH = 33
"""1.44 rule: `#` + 32 hex digits of md5; a component is hashed only when more bytes
than this are left."""

SEGMENTATION_SIZE = 917_504
"""MemcachedBagOStuff's `segmentationSize` (just under 1 MiB, memcached's default item
size limit): larger segmentable values are split (MediumSpecificBagOStuff)."""
COMPRESSION_THRESHOLD = 1500
"""MemcachedPeclBagOStuff/MemcachedPhpBagOStuff `compress_threshold`: the client
compresses serialized values of at least this many bytes."""

MAX_COMMIT_DELAY = 3
"""WANObjectCache::MAX_COMMIT_DELAY: seconds between delete() and the DB commit."""
MAX_READ_LAG = 7
"""WANObjectCache::MAX_READ_LAG: seconds of replication lag plus snapshot age."""
HOLDOFF_TTL = MAX_COMMIT_DELAY + MAX_READ_LAG + 1
"""WANObjectCache::HOLDOFF_TTL (11 s): how long delete() tombstones a key."""
LOCK_TTL = 10
"""WANObjectCache::LOCK_TTL: seconds a regeneration mutex (`m` sister key) lives."""
COOLOFF_TTL = 1
"""WANObjectCache::COOLOFF_TTL: seconds a cool-off (`c`) key blocks set() stampedes."""
INTERIM_KEY_TTL = 1
"""WANObjectCache::INTERIM_KEY_TTL: seconds an interim (`i`) value lives."""

SISTER_TYPES: Mapping[str, str] = {
    "v": "value (metadata-wrapped) or purge tombstone",
    "t": "check-key purge timestamp (touchCheckKey)",
    "m": "regeneration mutex",
    "i": "interim value while the key is tombstoned",
    "c": "cool-off marker that makes set() a no-op",
}
"""WANObjectCache's TYPE_* sister key characters and what each key holds."""

# MemcachedBagOStuff::makeKeyInternal leaves bytes 0x21-0x7e alone except
# '#' (0x23), '%' (0x25) and ':' (0x3a); everything else is rawurlencode()d.
_UNSAFE = re.compile(r"[^\x21-\x22\x24\x26-\x39\x3b-\x7e]+")
_KEYSPACE = re.compile(r"[\x21-\x39\x3b-\x7e]+")


def escape_component(component: str | int | None) -> str:
    """A key component as MemcachedBagOStuff::makeKeyInternal escapes it.

    Spaces become `_` (strtr); then runs of bytes outside 0x21-0x7e, and `#`, `%`,
    `:`, are rawurlencode()d, i.e. every UTF-8 byte becomes `%XX` in upper-case hex:
    `"a b:c#d%é"` -> `"a_b%3Ac%23d%25%C3%A9"`. None is the empty string, as in PHP.
    """
    text = "" if component is None else str(component).replace(" ", "_")
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


def _md5(text: str) -> str:
    """PHP md5(): lower-case hex."""
    return hashlib.md5(text.encode()).hexdigest()


def _shorten_1_44(keyspace: str, components: list[str]) -> str:
    """MemcachedBagOStuff::makeKeyInternal (MediaWiki 1.27-1.44) on escaped components.

    charsLeft starts at 205 - strlen(keyspace) - count(components); each component that
    is longer than charsLeft (while more than 33 are left) becomes '#' . md5(component);
    if charsLeft ends below 0 the key is '<keyspace>:BagOStuff-long-key:##' . md5 of the
    (escaped, possibly hashed) components joined by ':'.
    """
    chars_left = KEY_BUDGET - len(keyspace) - len(components)
    fitted = []
    for component in components:
        if chars_left > _HASHED_COMPONENT_LENGTH and len(component) > chars_left:
            component = "#" + _md5(component)
        chars_left -= len(component)
        fitted.append(component)
    if chars_left < 0:
        return f"{keyspace}:BagOStuff-long-key:##{_md5(':'.join(fitted))}"
    return ":".join([keyspace, *fitted])


def _shorten_1_45(key: str) -> str:
    """BagOStuff::makeFallbackKey (MediaWiki 1.45+), called by MemcachedBagOStuff with 205.

    The whole key hashes to sha256; keyspace and key group (with '%3A' and '%25'
    unescaped, as MediaWiki does) stay readable for statistics.
    """
    parts = [p.replace("%3A", ":").replace("%25", "%") for p in key.split(":")]
    digest = hashlib.sha256(key.encode()).hexdigest()
    shorter = f"{parts[0]}:{parts[1]}:#{digest}"
    return shorter if len(shorter) <= KEY_BUDGET else f"{parts[0]}:BagOStuff-long-key:##{digest}"


def _fit(key: str, rules: Rules) -> str:
    """Apply the length rule to an assembled key of escaped components.

    A key within KEY_BUDGET is unchanged under both rules (under 1.44 no component can
    then exceed charsLeft), so only long keys pay for hashing. Escaped components
    never contain ':', so splitting recovers the keyspace and the components.
    """
    if len(key) <= KEY_BUDGET:
        return key
    if rules == "1.44":
        keyspace, *components = key.split(":")
        return _shorten_1_44(keyspace, components)
    return _shorten_1_45(key)


def _check_rules(rules: str) -> None:
    """ValueError unless `rules` names a supported MediaWiki length rule."""
    if rules not in ("1.44", "1.45"):
        raise ValueError(f"rules: expected '1.44' or '1.45', got {rules!r}")


def _check_keyspace(keyspace: str) -> None:
    """ValueError unless `keyspace` is printable ASCII without ':' or spaces.

    MediaWiki does not escape the keyspace (a wiki ID such as `enwiki`), and memcached
    would refuse a key with spaces or control bytes, so a bad one is an input error.
    """
    if not _KEYSPACE.fullmatch(keyspace):
        raise ValueError(f"keyspace: expected a wiki ID of printable ASCII without ':' or "
                         f"spaces (e.g. 'enwiki'), got {keyspace!r}")


def make_key(keyspace: str, *components: str | int | None, rules: Rules = "1.44") -> str:
    """BagOStuff::makeKey for a memcached-backed cache: `<wiki>:<keygroup>:<c2>...`.

    `keyspace` is the wiki ID (MediaWiki's `keyspace`, e.g. `enwiki`); the first
    component is the key group. Components are escaped with `escape_component`, then
    the length rule of MediaWiki `rules` applies.
    """
    _check_keyspace(keyspace)
    _check_rules(rules)
    if not components:
        raise ValueError("components: expected at least a key group, got none")
    return _fit(":".join([keyspace, *map(escape_component, components)]), rules)


def make_global_key(*components: str | int | None, rules: Rules = "1.44") -> str:
    """BagOStuff::makeGlobalKey: makeKey in the shared `global` keyspace."""
    return make_key(GLOBAL_KEYSPACE, *components, rules=rules)


def wan_sister_key(base_key: str, sister_type: str,
                   scheme: Literal["hash_stop", "hash_tag"] = "hash_stop") -> str:
    """WANObjectCache::makeSisterKey: the key WANObjectCache really stores for `base_key`.

    With mcrouter (Wikimedia, scheme "hash_stop") it is `WANCache:<base>|#|<type>`;
    mcrouter hashes only the part before `|#|`, so all sisters of a key share a server.
    With twemproxy or Redis Cluster (scheme "hash_tag") it is `WANCache:{<base>}:<type>`.
    `sister_type` is one of SISTER_TYPES: v, t, m, i, c.
    """
    if sister_type not in SISTER_TYPES:
        raise ValueError(f"sister_type: expected one of {', '.join(SISTER_TYPES)}, got {sister_type!r}")
    if scheme == "hash_stop":
        return f"WANCache:{base_key}|#|{sister_type}"
    if scheme == "hash_tag":
        return f"WANCache:{{{base_key}}}:{sister_type}"
    raise ValueError(f"scheme: expected 'hash_stop' or 'hash_tag', got {scheme!r}")


def hash_stop_part(key: str) -> str:
    """The part of `key` that mcrouter hashes: everything before the first `|#|` (the
    whole key when there is none). The memcached target's ring applies the same rule
    itself, because targets must not import this module."""
    return key.split("|#|", 1)[0]


def _segment_list_size(count: int) -> int:
    """Bytes of the main entry of a segmented value: PHP serialize() of
    SerializedValueContainer::newSegmented() with `count` 40-hex-digit sha1 hashes."""
    items = "".join(f'i:{k};s:40:"{"0" * 40}";' for k in range(count))
    return len(f'O:8:"stdClass":2:{{s:14:"__svc_schema__";s:11:"CAYCDAgCDw4";'
               f's:10:"__hashes__";a:{count}:{{{items}}}}}')


def segment_keys(base_key: str, value_size: int, *, rules: Rules = "1.44") -> list[tuple[str, int]]:
    """The (key, bytes) writes for storing a segmentable value, as
    MediumSpecificBagOStuff::makeValueOrSegmentList does with WRITE_ALLOW_SEGMENTS.

    A value of at most SEGMENTATION_SIZE bytes is stored as is: `[(base_key, size)]`.
    A larger one is cut into ceil(size / 917504) chunks, each stored under
    makeGlobalKey('segment', base_key, sha1(chunk)), followed by the main key holding
    the list of chunk hashes; the order is the order MediaWiki writes them. The chunk
    bytes do not exist here, so sha1 of (base key, chunk number) stands in for sha1 of
    the chunk: the keys have the same shape and length. `value_size` is the serialized
    size; MediaWiki tests the unserialized string (>= 917504), which differs only for
    values within a dozen bytes above the threshold.
    """
    if isinstance(value_size, bool) or not isinstance(value_size, (int, np.integer)) or value_size < 0:
        raise ValueError(f"value_size: expected a whole number of bytes >= 0, got {value_size!r}")
    if value_size <= SEGMENTATION_SIZE:
        return [(base_key, int(value_size))]
    count = math.ceil(value_size / SEGMENTATION_SIZE)
    segments = []
    for i in range(count):
        digest = hashlib.sha1(f"{base_key}\0{i}".encode()).hexdigest()
        size = min(SEGMENTATION_SIZE, int(value_size) - i * SEGMENTATION_SIZE)
        segments.append((make_global_key("segment", base_key, digest, rules=rules), size))
    return [*segments, (base_key, _segment_list_size(count))]


# --------------------------------------------------------------------------- templates

@dataclass(frozen=True)
class Index:
    """A template variable that is the key index (plus `offset`) in decimal, e.g. a
    revision or page ID. Offsetting gives realistic widths (`offset=1_000_000_000`)."""

    offset: int = 0

    def render(self, indices: np.ndarray, salt: int, positions: np.ndarray | None) -> list[str]:
        """Decimal strings; never need escaping."""
        return list(map(str, (indices + self.offset).tolist()))


@dataclass(frozen=True)
class Choice:
    """A template variable drawn from `values` with probability proportional to `weights`
    (all equal when omitted): a wiki list, a fixed list of key groups.

    By default each key index gets a fixed value (hashed from the index, so the same
    index always gives the same key); the caller may instead draw per operation with
    `sample` and pass the positions to `KeyTemplate.keys`.
    """

    values: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    _positions: WeightedChoice = field(init=False, repr=False, compare=False)
    _escaped: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.values or not all(isinstance(v, str) for v in self.values):
            raise ValueError(f"values: expected at least one string, got {self.values!r}")
        object.__setattr__(self, "values", tuple(self.values))
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(self.weights))
        weights = self.weights if self.weights is not None else (1.0,) * len(self.values)
        # Positions 0..k-1 drawn by weight: WeightedChoice's sampler, reused.
        object.__setattr__(self, "_positions", WeightedChoice(range(len(self.values)), weights))
        object.__setattr__(self, "_escaped", np.array([escape_component(v) for v in self.values],
                                                      dtype=object))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` positions into `values`, drawn by weight (for per-operation choices)."""
        return self._positions.sample(rng, n)

    def render(self, indices: np.ndarray, salt: int, positions: np.ndarray | None) -> list[str]:
        """Escaped values at `positions`, or at positions fixed per index by a hash."""
        if positions is None:
            positions = self._positions.quantile(hashed_uniform(indices, salt))
        return self._escaped[np.asarray(positions, dtype=np.int64)].tolist()


@dataclass(frozen=True)
class Padded:
    """A template variable whose length varies by key: the key index in decimal padded
    with `x` to a length drawn from `length` (never shorter than the digits), fixed per
    index. For key groups whose keys embed titles or hashes of varying length."""

    length: SizeDistribution

    def render(self, indices: np.ndarray, salt: int, positions: np.ndarray | None) -> list[str]:
        """Digits then padding, so distinct indices stay distinct strings."""
        lengths = self.length.quantile(hashed_uniform(indices, salt)).tolist()
        return [d + "x" * (n - len(d)) for d, n in zip(map(str, indices.tolist()), lengths)]


Variable = Index | Choice | Padded
"""A template variable: each kind renders an array of key indices (plus, for `Choice`,
optional per-operation positions) into escaped strings."""

WIKIS_DEFAULT = Choice(
    values=("enwiki", "commonswiki", "wikidatawiki", "dewiki", "jawiki", "frwiki", "eswiki",
            "ruwiki", "itwiki", "zhwiki", "ptwiki", "plwiki", "metawiki", "nlwiki", "fawiki",
            "arwiki", "svwiki", "ukwiki", "idwiki", "trwiki"),
    weights=(38, 10, 10, 6, 5, 4, 4, 4, 3, 3, 2, 2, 1.5, 1.5, 1, 1, 1, 1, 1, 1),
)
"""Illustrative wiki mix: English Wikipedia takes the largest share, Commons and Wikidata
(used by every wiki) come next, then the large Wikipedias, in the order of Wikimedia's
public pageview statistics (stats.wikimedia.org). The weights are rounded guesses with
that shape, not measurements."""


def _parse_part(part: str, template: str) -> list[tuple[str, str | None]]:
    """(literal text, variable name or None) pieces of one ':'-separated template part."""
    try:
        parsed = list(string.Formatter().parse(part))
    except ValueError:
        raise ValueError(f"template: expected balanced {{name}} variables, got {template!r}") from None
    for _, name, spec, conversion in parsed:
        if name is not None and (not name.isidentifier() or spec or conversion):
            raise ValueError(f"template: expected plain {{name}} variables (letters, digits, _), "
                             f"got {{{name}{'!' + conversion if conversion else ''}}} in {template!r}")
    return [(literal, name) for literal, name, _, _ in parsed]


def _salt(name: str) -> int:
    """A stable 64-bit salt per variable name, so per-key draws of different variables
    are independent and survive adding variables to a template."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


class KeyTemplate:
    """Compiles `"{wiki}:pagecontent:{rev}"` or `"global:userblock:{id}"` into a fast
    builder of MediaWiki keys from arrays of key indices.

    The part before the first ':' is the keyspace (a wiki ID, `global`, or `{wiki}`);
    the other parts are makeKey components, each a mix of literal text and `{name}`
    variables. `variables` maps names to `Index`, `Choice` or `Padded`; a name not in it
    is `Index()`, except `wiki`, which defaults to WIKIS_DEFAULT. Escaping and the length
    rule are MediaWiki's (`make_key`): literals and choice values are escaped once here,
    and only keys over KEY_BUDGET pay for hashing.

    The key is a pure function of the index (and of any per-operation choice positions
    passed in), so a Zipf over indices is a Zipf over keys.
    """

    def __init__(self, template: str, variables: Mapping[str, Variable] | None = None, *,
                 rules: Rules = "1.44") -> None:
        _check_rules(rules)
        self.template, self.rules = template, rules
        parts = template.split(":")
        if len(parts) < 2 or not all(parts):
            raise ValueError(f"template: expected '<keyspace>:<keygroup>[:<component>...]' with "
                             f"no empty part, e.g. '{{wiki}}:pagecontent:{{rev}}', got {template!r}")
        given = dict(variables or {})
        self.variables: dict[str, Variable] = {}
        fmt = []
        for position, part in enumerate(parts):
            pieces = []
            for literal, name in _parse_part(part, template):
                text = literal if position == 0 else escape_component(literal)
                pieces.append(text.replace("{", "{{").replace("}", "}}"))
                if name is None:
                    continue
                if name not in self.variables:
                    self.variables[name] = given.pop(name, WIKIS_DEFAULT if name == "wiki" else Index())
                pieces.append("{%d}" % list(self.variables).index(name))
            fmt.append("".join(pieces))
        if given:
            raise ValueError(f"variables: {', '.join(sorted(given))} not used in template {template!r}")
        self._check_keyspace_part(parts[0], template)
        self._format = ":".join(fmt)
        self._salts = {name: _salt(name) for name in self.variables}

    def _check_keyspace_part(self, part: str, template: str) -> None:
        """ValueError unless every keyspace the template can produce is valid."""
        pieces = _parse_part(part, template)
        literal = "".join(text for text, _ in pieces)
        if literal:
            _check_keyspace(literal)
        for _, name in pieces:
            variable = self.variables.get(name) if name else None
            for value in variable.values if isinstance(variable, Choice) else ():
                _check_keyspace(value)

    def keys(self, indices: np.ndarray | Sequence[int],
             choices: Mapping[str, np.ndarray] | None = None) -> list[str]:
        """The key for each index. `choices` optionally gives, for `Choice` variables,
        per-operation positions into their values (from `Choice.sample`) instead of the
        value fixed per index."""
        indices = np.asarray(indices, dtype=np.int64)
        choices = choices or {}
        unknown = set(choices) - {n for n, v in self.variables.items() if isinstance(v, Choice)}
        if unknown:
            raise ValueError(f"choices: {', '.join(sorted(unknown))} is not a Choice variable of {self.template!r}")
        columns = [var.render(indices, self._salts[name], choices.get(name))
                   for name, var in self.variables.items()]
        fmt = self._format.format
        rows = zip(*columns) if columns else [()] * len(indices)
        built = [fmt(*values) for values in rows]
        return [key if len(key) <= KEY_BUDGET else _fit(key, self.rules) for key in built]

    def describe(self) -> str:
        """One line for previews and run.json."""
        bound = ", ".join(f"{name}={type(var).__name__.lower()}" for name, var in self.variables.items())
        return f"{self.template} ({bound}; MediaWiki {self.rules} length rule)"
