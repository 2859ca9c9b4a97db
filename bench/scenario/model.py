"""Scenario files: YAML -> validated pydantic models, every error as `file:line: field: expected`.

A scenario says *what* load to send: key spaces (how many keys, what they look like,
how popular each is, how big their values are, their TTLs), the op mix of each key
space, the MediaWiki access patterns to emulate (cache-aside, WANObjectCache, segmented
and compressed values), the load shape and an optional SLO. It says nothing about
protocols: bench.workload turns it into op streams and the target adapters carry them.
The YAML reading with line numbers is bench.scenario.yamldoc's, the trace CSV reader
bench.scenario.trace's, the op names bench.vocabulary's.

Quantities are written the way people write them (`30s`, `4KiB`, `20k/s`, `99.9%`,
see units.py); the resolved scenario (`Scenario.to_json`) stores plain numbers and is
itself a valid scenario, so `Scenario.from_json(s.to_json())` gives `s` back (the driver
ships scenarios to Locust workers that way).

The language, in brief (`bench scenarios schema` has every field; scenarios/ has worked
examples, each saying what it models and where its numbers come from)::

    name: mediawiki                # default: the file's stem
    description: one line for `bench scenarios list`
    target: local:memcached        # optional default for `bench run --target`
    seed: 1
    key_prefix: "cb:"              # every key starts with it (never flush others' keys)
    load: {mode: open, rate: 20k/s, arrival: poisson, users: 32, think: 0s,
           duration: 60s, warmup: 10s, prefill: true}       # closed: users + think
    slo: {objectives: [...], errors: {max: 0.1%}}           # bench.scenario.slo's format
    validity: {min_rate: 95%, max_send_lag_p99: 1ms, max_cpu: 90%}  # bench.scenario.validity
    faults:                        # only against servers `bench cluster up` started
      - {kind: stall, node: 2, at: 10s, duration: 5s}       # kill, restart (no duration)
    keyspaces:
      - name: objects
        weight: 97%                # share of all ops (relative to the other spaces)
        keys: 200000
        template: "{wiki}:{group}:{id}:{title}"  # MediaWiki makeKey: escaping, length rule
        vars: {group: {revision-row-1.29: 30, sidebar: 10},  # choice, fixed per key
               id: {offset: 50000000},                        # index + offset
               title: {length: {dist: lognormal, median: 20B, p99: 120B}}}  # padded
                                   # {wiki} defaults to keys.WIKIS_DEFAULT
        key_rules: "1.44"          # or "1.45": MediaWiki's long-key rule
        popularity: {dist: zipf, alpha: 0.99}   # uniform, zipf, scrambled_zipf,
                                   # hotspot (hot_fraction, hot_share), sequential, latest
        value_size: {dist: lognormal, median: 350B, p99: 40KiB, min: 8B, max: 900KiB}
                                   # fixed (or just `4KiB`), uniform min/max, weighted
                                   # choices, normal mean/sd, lognormal mu/sigma or
                                   # median/p99, gev and gpareto loc/scale/shape,
                                   # empirical points or file; min/max clamp any of them
                                   # per: key (default) or request, see below
        key_size: {dist: gev, ...} # pad keys to this length when the template doesn't fix it
        ttl: {1h: 25%, 1d: 75%}    # or `1h`, or {min: 1h, max: 1d}; 0 = no expiry
        values: blob               # or counter (incr/decr keys hold numbers)
        compressibility: 0.5       # share of each payload that compresses away
        compression: {threshold: 1500B, ratio: 40%}   # MediaWiki's client compression
        segmentation: true         # values above 917,504 bytes are stored in segments
        wan: {check_keys: ["{wiki}:page-touched:{id}"], mutex: true,
              mutex_release: delete, scheme: hash_stop}
        hash_fields: 16            # hget/hset field count
        prefill: true              # write every key before the run
        mix:                       # entry name = op, or give `op:`
          get: {weight: 85%, on_miss: set, regen: {min: 2ms, max: 50ms}}
          get_multi: {weight: 5%, batch: {dist: uniform, min: 2, max: 20}, on_miss: set}
          set: 5%                  # set, add, replace, delete, touch, hget, hset
          # incr/decr {delta, on_miss: add} (incrWithInit) and ratelimit need a key
          # space with `values: counter`
          wan_get: ...             # WANObjectCache getWithSetCallback (regen)
          wan_delete: ...          # tombstone for HOLDOFF_TTL
          redlock: {instances: 3, hold: 50ms}   # SET NX PX on N keys/instances
          ratelimit: ...           # INCRBY + EXPIRE (memcached: incr, add)
      - name: replay               # or: a trace replayed (the only key space then)
        trace: {file: cluster52.csv, speed: 2, loop: true}

What a size distribution weights (`per`): a key keeps one value size (and key length)
wherever it is requested, so a distribution describes either the stored items, one
draw per key (`per: key`, the default: what `stats sizes` of a server shows and what
the memory model stores), or the requests (`per: request`: the sizes requests carry,
popularity-weighted, as traces and most published workload studies measure them). For
`per: request` the keys' sizes are spread over the distribution in proportion to their
popularity (`distributions.RequestWeighting`), so the stored sizes then differ from it.
`bench scenarios preview` shows both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
from pydantic import (BaseModel, BeforeValidator, Field, PrivateAttr, ValidationError,
                      ValidationInfo, WithJsonSchema, field_validator, model_validator)

from bench.errors import InputError
from bench.scenario import distributions as dist
from bench.scenario import keys as mwkeys
from bench.scenario.slo import SloSpec, parse_slo
from bench.scenario.trace import read_trace
from bench.scenario.validity import ValiditySpec, parse_validity
from bench.scenario.yamldoc import StrictModel, YamlDoc, error_at, input_error, read_document
from bench.units import parse_duration, parse_fraction, parse_rate, parse_size
from bench.vocabulary import ALL_OPS, COUNTER_OPS, entry_op

#: Where scenario names are looked up, in order (`load_scenario("smoke")`).
SCENARIO_DIRS: list[Path] = [Path(__file__).resolve().parents[2] / "scenarios"]

#: Every key the harness writes starts with this (DESIGN.md: only keys under our prefix).
DEFAULT_KEY_PREFIX = "cb:"

# ----------------------------------------------------------------------------- quantities


def _quantity(py_type: type, parse: Callable[[Any], Any], example: str) -> Any:
    """An annotated type accepting a number or a string with units (`example` shows how).

    The JSON Schema says both forms are accepted so that editors don't flag `30s`.
    """
    def validate(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"expected a number or a string like {example}, got {value!r}")
        try:
            result = parse(value)
        except OverflowError:
            result = math.inf
        if not math.isfinite(result):
            raise ValueError(f"expected a finite quantity like {example}, got {value!r}")
        return result

    schema = {"anyOf": [{"type": "number"}, {"type": "string"}],
              "description": f"a number or a string like {example}"}
    return Annotated[py_type, BeforeValidator(validate), WithJsonSchema(schema)]


def _weight(value: Any) -> float:
    """A relative weight: a number >= 0 or a percentage (`40%` -> 0.4)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        return parse_fraction(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 \
            and math.isfinite(value):
        return float(value)
    raise ValueError(f"expected a weight: a number >= 0 or a percentage like 40%, got {value!r}")


def _finite(value: Any) -> float:
    """A plain finite number (distribution parameters); refuses strings, bools, inf, nan."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError(f"expected a number, got {value!r}")


Duration = _quantity(float, parse_duration, "30s, 5m or 250ms")
Size = _quantity(int, parse_size, "100B, 4KiB or 1MiB")
Rate = _quantity(float, parse_rate, "20000, 20k or 20k/s")
Fraction = _quantity(float, parse_fraction, "0.999 or 99.9%")
Weight = Annotated[float, BeforeValidator(_weight),
                   WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0},
                                             {"type": "string", "pattern": "%$"}]})]
Number = Annotated[float, BeforeValidator(_finite)]


# ------------------------------------------------------------------------ distributions
#
# Each spec model validates what a person writes and `build()`s the sampler of
# bench.scenario.distributions. Building happens during validation (KeySpace), so a parameter
# the sampler refuses is reported with its line like any other mistake.


def _with_some_weight(weights: dict[Any, float], expected: str) -> dict[Any, float]:
    """A weight table must give some choice a chance; `expected` says what, for its field."""
    if sum(weights.values()) <= 0:
        raise ValueError(f"expected {expected}")
    return weights


class _Clamped(StrictModel):
    """Sizes may be clamped: values below `min` become `min`, above `max` become `max`.

    `per` says whether the distribution describes keys or requests (module docstring);
    it applies to value_size and key_size, the sizes a key keeps.
    """

    min: Size | None = None
    max: Size | None = None
    per: Literal["key", "request"] = "key"

    @model_validator(mode="after")
    def _ordered(self) -> _Clamped:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not be above max ({self.max})")
        return self

    def _clamps(self) -> dict[str, int]:
        return {k: v for k, v in (("min", self.min), ("max", self.max)) if v is not None}


class FixedSize(_Clamped):
    """Every value has the same size."""

    dist: Literal["fixed"] = "fixed"
    size: Size

    def build(self) -> Any:
        return dist.Fixed(self.size, **self._clamps())


class UniformSizeSpec(_Clamped):
    """Sizes uniform in [min, max] (both required here: they are the range, not clamps)."""

    dist: Literal["uniform"]
    min: Size
    max: Size

    def build(self) -> Any:
        return dist.UniformSize(self.min, self.max)


class WeightedSizes(_Clamped):
    """A few sizes with weights: `choices: {100B: 50%, 4KiB: 50%}`."""

    dist: Literal["weighted"]
    choices: dict[Size, Weight] = Field(min_length=1)

    _some_weight = field_validator("choices")(
        lambda cls, value: _with_some_weight(value, "at least one weight > 0"))

    def build(self) -> Any:
        return dist.WeightedChoice(list(self.choices), list(self.choices.values()),
                                   **self._clamps())


class NormalSize(_Clamped):
    """Normal around `mean` with standard deviation `sd` (negative draws clamp to min or 0)."""

    dist: Literal["normal"]
    mean: Size
    sd: Size = Field(gt=0)

    def build(self) -> Any:
        return dist.Normal(self.mean, self.sd, **self._clamps())


class LogNormalSize(_Clamped):
    """Lognormal, given either `mu`/`sigma` of log(bytes) (numpy's convention) or the
    `median` and `p99` sizes people usually know."""

    dist: Literal["lognormal"]
    mu: Number | None = None
    sigma: Number | None = Field(default=None, gt=0)
    median: Size | None = None
    p99: Size | None = None

    @model_validator(mode="after")
    def _one_form(self) -> LogNormalSize:
        by_log = self.mu is not None and self.sigma is not None
        by_sizes = self.median is not None and self.p99 is not None
        if by_log == by_sizes or (by_log and (self.median or self.p99)) \
                or (by_sizes and (self.mu is not None or self.sigma is not None)):
            raise ValueError("expected either mu and sigma, or median and p99 (e.g. "
                             "median: 500B, p99: 20KiB)")
        return self

    def build(self) -> Any:
        if self.median is not None:
            return dist.LogNormal.from_median_p99(self.median, self.p99, **self._clamps())
        return dist.LogNormal(self.mu, self.sigma, **self._clamps())


class GevSize(_Clamped):
    """Generalized extreme value: loc, scale, shape (Atikoglu et al. 2012 for key sizes)."""

    dist: Literal["gev"]
    loc: Number
    scale: Number = Field(gt=0)
    shape: Number

    def build(self) -> Any:
        return dist.GEV(self.loc, self.scale, self.shape, **self._clamps())


class GParetoSize(_Clamped):
    """Generalized Pareto: loc, scale, shape (Atikoglu et al. 2012 for value sizes)."""

    dist: Literal["gpareto"]
    loc: Number = 0.0
    scale: Number = Field(gt=0)
    shape: Number

    def build(self) -> Any:
        return dist.GeneralizedPareto(self.loc, self.scale, self.shape, **self._clamps())


class EmpiricalSize(_Clamped):
    """A measured CDF, inline (`points: [[100B, 0.2], [4KiB, 1.0]]`, size and cumulative
    fraction) or from a file (`file: sizes.csv`, relative to the scenario file: rows of
    size,cdf or size,count, or memcached `stats sizes` output)."""

    dist: Literal["empirical"]
    points: list[tuple[Size, Fraction]] | None = Field(default=None, min_length=1)
    file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EmpiricalSize:
        if (self.points is None) == (self.file is None):
            raise ValueError("expected exactly one of points (inline CDF) or file (a CSV)")
        return self

    def build(self) -> Any:
        if self.file is not None:
            return dist.Empirical.from_csv(self.file, **self._clamps())
        return dist.Empirical(self.points, **self._clamps())


SizeSpec = Annotated[FixedSize | UniformSizeSpec | WeightedSizes | NormalSize | LogNormalSize
                     | GevSize | GParetoSize | EmpiricalSize, Field(discriminator="dist")]


def _size_shorthand(value: Any) -> Any:
    """`value_size: 4KiB` means `{dist: fixed, size: 4KiB}`."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return {"dist": "fixed", "size": value}
    if isinstance(value, dict) and "dist" not in value and "size" in value:
        return {"dist": "fixed", **value}
    return value


SizeField = Annotated[SizeSpec, BeforeValidator(
    _size_shorthand, json_schema_input_type=int | float | str | SizeSpec)]


class UniformPop(StrictModel):
    """Every key equally likely."""

    dist: Literal["uniform"] = "uniform"

    def build(self, n: int) -> Any:
        return dist.Uniform(n)


class ZipfPop(StrictModel):
    """Key of rank k drawn with probability proportional to 1/k^alpha; rank 0 = key 0."""

    dist: Literal["zipf"]
    alpha: Number = Field(gt=0)

    def build(self, n: int) -> Any:
        return dist.Zipf(n, self.alpha)


class ScrambledZipfPop(StrictModel):
    """Zipf popularity, with the popular keys scattered over the key space (YCSB)."""

    dist: Literal["scrambled_zipf"]
    alpha: Number = Field(gt=0)

    def build(self, n: int) -> Any:
        return dist.ScrambledZipf(n, self.alpha)


class HotspotPop(StrictModel):
    """`hot_share` of the requests go to the first `hot_fraction` of the keys (YCSB)."""

    dist: Literal["hotspot"]
    hot_fraction: Fraction = 0.2
    hot_share: Fraction = 0.8

    def build(self, n: int) -> Any:
        return dist.Hotspot(n, self.hot_fraction, self.hot_share)


class SequentialPop(StrictModel):
    """Keys in order 0, 1, 2, ... (a scan); position from the op's place in the stream."""

    dist: Literal["sequential"]

    def build(self, n: int) -> Any:
        return dist.Sequential(n)


class LatestPop(StrictModel):
    """Recently written keys are the popular ones (YCSB `latest`), zipf over recency."""

    dist: Literal["latest"]
    alpha: Number = Field(default=0.99, gt=0)

    def build(self, n: int) -> Any:
        return dist.Latest(n, self.alpha)


PopularitySpec = Annotated[UniformPop | ZipfPop | ScrambledZipfPop | HotspotPop | SequentialPop
                           | LatestPop, Field(discriminator="dist")]


def _popularity_shorthand(value: Any) -> Any:
    """`popularity: uniform` means `{dist: uniform}`."""
    return {"dist": value} if isinstance(value, str) else value


PopularityField = Annotated[PopularitySpec, BeforeValidator(
    _popularity_shorthand, json_schema_input_type=str | PopularitySpec)]


class TimeDist(StrictModel):
    """Durations (TTLs, regeneration times): fixed, weighted choices, or uniform in a range.

    Written as `1h`, as `{1h: 70%, 1d: 30%}`, or as `{min: 10ms, max: 200ms}`.
    """

    choices: dict[Duration, Weight] | None = None
    min: Duration | None = None
    max: Duration | None = None

    @model_validator(mode="after")
    def _one_form(self) -> TimeDist:
        if self.choices is not None:
            if self.min is not None or self.max is not None:
                raise ValueError("expected either choices or min/max, not both")
            if not self.choices or sum(self.choices.values()) <= 0:
                raise ValueError("expected at least one duration with a weight > 0")
        elif self.min is None or self.max is None or self.min > self.max:
            raise ValueError("expected a duration like 1h, a mapping like {1h: 70%, 1d: 30%}, "
                             "or a range {min: 10ms, max: 200ms} with min <= max")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` durations in seconds (float64)."""
        if self.choices is None:
            return rng.uniform(self.min, self.max, n)
        values = np.fromiter(self.choices, dtype=np.float64)
        if len(values) == 1:
            return np.full(n, values[0])
        weights = np.fromiter(self.choices.values(), dtype=np.float64)
        return values[rng.choice(len(values), n, p=weights / weights.sum())]


def _time_shorthand(value: Any) -> Any:
    """`1h` is one choice; a mapping without choices/min/max is the choices."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return {"choices": {value: 1}}
    if isinstance(value, dict) and value and not set(value) & {"choices", "min", "max"}:
        return {"choices": value}
    return value


TimeField = Annotated[TimeDist, BeforeValidator(
    _time_shorthand, json_schema_input_type=int | float | str | dict[str, float | str] | TimeDist)]
NO_EXPIRY = TimeDist(choices={0.0: 1.0})

# ------------------------------------------------------------------------------- op mix

#: Settings of a mix entry and the ops they apply to (anything else is a mistake).
OP_SETTINGS: dict[str, tuple[str, ...]] = {
    "on_miss": ("get", "get_multi", "incr", "decr"),
    "regen": ("get", "get_multi", "wan_get"),
    "batch": ("get_multi",),
    "delta": ("incr", "decr", "ratelimit"),
    "instances": ("redlock",),
    "hold": ("redlock",),
}
#: What `on_miss` may say, per op: cache-aside set for reads, init-by-add for counters.
ON_MISS: dict[str, tuple[str, ...]] = {"get": ("set",), "get_multi": ("set",),
                                       "incr": ("add",), "decr": ("add",)}


class MixEntry(StrictModel):
    """One entry of a key space's op mix; `op` defaults to the entry's name."""

    op: Literal[ALL_OPS] | None = None  # type: ignore[valid-type]
    weight: Weight = 1.0
    on_miss: Literal["set", "add"] | None = None
    regen: TimeField | None = None
    batch: SizeField | None = None
    delta: int = Field(default=1, ge=1)
    instances: int = Field(default=3, ge=1, le=16)
    hold: TimeField | None = None


def _weight_shorthand(value: Any) -> Any:
    """`get: 80%` means `get: {weight: 80%}`."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return {"weight": value}
    return value


MixField = Annotated[MixEntry, BeforeValidator(
    _weight_shorthand, json_schema_input_type=float | str | MixEntry)]

# ----------------------------------------------------------------------- key space parts


class Compression(StrictModel):
    """MediaWiki compresses serialized values of at least `threshold` bytes (gzip); the
    stored size is the size times `ratio`."""

    threshold: Size = mwkeys.COMPRESSION_THRESHOLD
    ratio: Fraction = Field(default=0.35, gt=0)


class WanSettings(StrictModel):
    """WANObjectCache emulation: check keys read with every value, mutex on regeneration.

    `scheme` is how sister keys keep a key's family on one server: mcrouter's hash stop
    (`WANCache:<key>|#|v`, Wikimedia) or a hash tag (`WANCache:{<key>}:v`, for twemproxy
    and Redis Cluster, where a get_multi must not span slots).
    """

    check_keys: list[str] = Field(default_factory=list, max_length=8)
    mutex: bool = True
    mutex_release: Literal["delete", "expire"] = "delete"
    scheme: Literal["hash_stop", "hash_tag"] = "hash_stop"


class TraceSpec(StrictModel):
    """Replay a Twitter cache-trace CSV (`timestamp,key,key_size,value_size,client_id,
    operation,ttl`): `speed` 2 plays it twice as fast; `loop` starts over at the end."""

    file: str
    speed: Number = Field(default=1.0, gt=0)
    loop: bool = True


#: Template of a key space that gives none: its name and the key's index.
DEFAULT_TEMPLATE = "{space}:key:{{id}}"


def _used(variables: dict[str, Any], template: str) -> dict[str, Any]:
    """The variables a (check key) template uses: KeyTemplate refuses unused ones."""
    return {k: v for k, v in variables.items() if "{" + k + "}" in template}


class Built(NamedTuple):
    """The objects a key space's settings turn into (see KeySpace.build)."""

    popularity: dist.Popularity
    value_size: dist.SizeDistribution
    key_size: dist.SizeDistribution | None
    template: mwkeys.KeyTemplate
    check_templates: list[mwkeys.KeyTemplate]


class IndexVar(StrictModel):
    """The key index plus `offset`, in decimal (a page or revision ID of realistic width)."""

    kind: Literal["index"] = "index"
    offset: int = Field(default=0, ge=0, lt=2**53)

    def build(self) -> Any:
        return mwkeys.Index(self.offset)


class ChoiceVar(StrictModel):
    """One of `values` (weighted), fixed per key: `{enwiki: 38, dewiki: 6}` or a list."""

    kind: Literal["choice"] = "choice"
    values: dict[str, Weight] = Field(min_length=1)

    _some_weight = field_validator("values")(
        lambda cls, value: _with_some_weight(value, "at least one value with a weight > 0"))

    def build(self) -> Any:
        return mwkeys.Choice(tuple(self.values), tuple(self.values.values()))


class PaddedVar(StrictModel):
    """The key index padded to a length drawn per key (titles, hashes of varying length)."""

    kind: Literal["padded"] = "padded"
    length: SizeField

    def build(self) -> Any:
        return mwkeys.Padded(self.length.build())


def _var_shorthand(value: Any) -> Any:
    """`[a, b]` and `{a: 3, b: 1}` are choices; `{offset: N}` an index; `{length: ...}` padding."""
    if isinstance(value, list):
        return {"kind": "choice", "values": {str(v): 1 for v in value}}
    if isinstance(value, dict) and "kind" not in value:
        for key, kind in (("offset", "index"), ("length", "padded"), ("values", "choice")):
            if key in value:
                return {"kind": kind, **value}
        return {"kind": "choice", "values": {str(k): v for k, v in value.items()}}
    return value


VarSpec = Annotated[IndexVar | ChoiceVar | PaddedVar, Field(discriminator="kind"),
                    BeforeValidator(_var_shorthand, json_schema_input_type=list[str] | dict[
                        str, Any] | IndexVar | ChoiceVar | PaddedVar)]


class KeySpace(StrictModel):
    """A family of keys with one shape, popularity, size, TTL and op mix.

    `weight` is the key space's share of all ops (relative to the other key spaces).
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    weight: Weight = 1.0
    keys: int | None = Field(default=None, ge=1, le=2**40)
    template: str | None = None
    vars: dict[str, VarSpec] = Field(default_factory=dict)
    popularity: PopularityField = UniformPop()
    value_size: SizeField = FixedSize(size=100)
    key_size: SizeField | None = None
    key_rules: Literal["1.44", "1.45"] = "1.44"
    ttl: TimeField = NO_EXPIRY
    values: Literal["blob", "counter"] = "blob"
    compressibility: Fraction = 0.5
    compression: Compression | None = None
    segmentation: bool = False
    wan: WanSettings = WanSettings()
    hash_fields: int = Field(default=16, ge=1)
    prefill: bool = True
    trace: TraceSpec | None = None
    mix: dict[str, MixField] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> KeySpace:
        if self.trace is not None:
            self._check_trace_form(info)
            return self
        if self.keys is None:
            raise error_at(("keys",), "required: the number of keys in this key space")
        if not self.mix:
            raise error_at(("mix",), "required: at least one op with a weight, e.g. "
                                     "{get: 90%, set: 10%}")
        for name, entry in self.mix.items():
            _check_entry(name, entry)
            op = entry_op(name, entry)
            if op in COUNTER_OPS and self.values != "counter":
                raise error_at(("mix", name), f"{op} needs `values: counter` in its key space "
                                              "(its keys must hold numbers)")
        if sum(e.weight for e in self.mix.values()) <= 0:
            raise error_at(("mix",), "expected at least one op with a weight > 0")
        _check_per_key_only(self)
        if isinstance(self.value_size, EmpiricalSize) and self.value_size.file:
            _resolve(self.value_size, _base_dir(info))
        for path, build in (("popularity", self._popularity), ("value_size", self._value_size),
                            ("key_size", self._key_size), ("template", self._template),
                            (("wan", "check_keys"), self._check_templates)):
            _attempt(path if isinstance(path, tuple) else (path,), build)
        return self

    def _check_trace_form(self, info: ValidationInfo) -> None:
        """A trace brings its own keys, sizes, TTLs and ops; settings for those are mistakes."""
        own = ("keys", "template", "vars", "popularity", "value_size", "key_size", "ttl", "mix")
        for name in own:
            if _is_set(self, name):
                raise error_at((name,), "a trace key space takes keys, sizes, TTLs and ops "
                                        "from the trace; remove this setting")
        _resolve(self.trace, _base_dir(info))
        _attempt(("trace", "file"), lambda: read_trace(self.trace.file))

    def _popularity(self) -> Any:
        return self.popularity.build(self.keys)

    def _value_size(self) -> Any:
        return self.value_size.build()

    def _key_size(self) -> Any:
        return self.key_size.build() if self.key_size else None

    def _variables(self) -> dict[str, Any]:
        return {name: spec.build() for name, spec in self.vars.items()}

    def _template(self) -> Any:
        template = self.template or DEFAULT_TEMPLATE.format(space=self.name)
        return mwkeys.KeyTemplate(template, self._variables(), rules=self.key_rules)

    def _check_templates(self) -> list[Any]:
        variables = self._variables()
        return [mwkeys.KeyTemplate(t, _used(variables, t), rules=self.key_rules)
                for t in self.wan.check_keys]

    def build(self) -> Built:
        """Fresh samplers and key templates for this key space.

        Called by each Workload, which owns its samplers (Sequential and Latest keep
        state); validation builds each part once too, so that a parameter a sampler
        refuses is reported with the field's line like any other mistake.
        """
        return Built(popularity=self._popularity(), value_size=self._value_size(),
                     key_size=self._key_size(), template=self._template(),
                     check_templates=self._check_templates())

    @property
    def uses_wan(self) -> bool:
        """Whether keys of this space live under WANCache:<key>|#|v."""
        return any(entry_op(n, e) in ("wan_get", "wan_delete") for n, e in self.mix.items())


def _check_entry(name: str, entry: MixEntry) -> None:
    """The entry names a known op (its own name or `op:`) and only settings for that op."""
    op = entry_op(name, entry)
    if op not in ALL_OPS:
        raise error_at(("mix", name), f"unknown op {name!r}; name the entry after one of "
                                      f"{', '.join(ALL_OPS)}, or give op:")
    for setting, ops in OP_SETTINGS.items():
        if _is_set(entry, setting) and op not in ops:
            raise error_at(("mix", name, setting),
                           f"{setting!r} applies to {', '.join(ops)}, not to {op}")
    if entry.on_miss is not None and entry.on_miss not in ON_MISS.get(op, ()):
        expected = " or ".join(ON_MISS[op]) if op in ON_MISS else "not set (no on_miss for it)"
        raise error_at(("mix", name, "on_miss"), f"on_miss for {op} must be {expected}")


def _check_per_key_only(space: KeySpace) -> None:
    """Batch sizes and padded variable lengths are drawn per op or per key by nature:
    `per: request` there would be a mistake."""
    places = [(("mix", name, "batch", "per"), entry.batch) for name, entry in space.mix.items()]
    places += [(("vars", name, "length", "per"), var.length) for name, var in space.vars.items()
               if isinstance(var, PaddedVar)]
    for path, spec in places:
        if spec is not None and spec.per != "key":
            raise error_at(path, "per applies to value_size and key_size only")


def _is_set(model: BaseModel, name: str) -> bool:
    """Whether a setting differs from its default (a resolved scenario spells out the
    defaults, so "given in the file" is not the test)."""
    info = type(model).model_fields[name]
    return getattr(model, name) != info.get_default(call_default_factory=True)


def _attempt(path: tuple[Any, ...], build: Callable[[], Any]) -> None:
    """Build a part of a key space; its ValueError (or a file's OSError) names `path`."""
    try:
        build()
    except OSError as err:
        raise error_at(path, f"cannot read {err.filename}: {err.strerror}") from None
    except (ValueError, InputError) as err:
        raise error_at(path, str(err)) from None


def _base_dir(info: ValidationInfo) -> Path | None:
    """Directory of the scenario file (relative paths in it are relative to it)."""
    return (info.context or {}).get("base_dir")


def _resolve(spec: EmpiricalSize | TraceSpec, base_dir: Path | None) -> None:
    """Make a relative file path relative to the scenario file.

    Done once, during validation (the models are frozen, hence object.__setattr__), so
    that the resolved scenario in run.json names the file that was really used.
    """
    path = Path(spec.file)
    if not path.is_absolute() and base_dir is not None:
        object.__setattr__(spec, "file", str(base_dir / path))


# ------------------------------------------------------------------------------- load


class Load(StrictModel):
    """How hard and how long: open loop at `rate` ops/s, or closed loop with `users`."""

    mode: Literal["open", "closed"] = "open"
    rate: Rate | None = None
    arrival: Literal["poisson", "uniform"] = "poisson"
    users: int = Field(default=16, ge=1, le=100_000)
    think: Duration = 0.0
    duration: Duration = 60.0
    warmup: Duration = 5.0
    prefill: bool = True

    @model_validator(mode="after")
    def _rate_for_open(self) -> Load:
        if self.mode == "open" and self.rate is None:
            raise ValueError("open loop needs rate (total ops/s, e.g. 20k/s); "
                             "or set mode: closed")
        if self.duration <= 0:
            raise ValueError("duration must be > 0, e.g. 60s")
        return self


class Fault(StrictModel):
    """A fault injected into one server of the local cluster (`bench cluster up`) during
    the run; `at` counts from the start of the measured window (bench.faults runs it).

    stall: SIGSTOP, SIGCONT after `duration`; kill: SIGKILL (down for the rest of the
    run, unless a later restart); restart: kill if running, start again on the same
    port with an empty cache; delay: `delay` added to every request for `duration`,
    through a loopback proxy in front of the node.
    """

    kind: Literal["stall", "kill", "restart", "delay"]
    node: int = Field(ge=1, description="the node's position in the target, 1 = first")
    at: Duration = 0.0
    duration: Duration | None = None
    delay: Duration | None = None

    @model_validator(mode="after")
    def _durations(self) -> Fault:
        if self.kind in ("stall", "delay") and not self.duration:
            raise ValueError(f"a {self.kind} needs a duration > 0, e.g. 5s")
        if self.kind not in ("stall", "delay") and self.duration is not None:
            raise ValueError(f"a {self.kind} takes no duration (it is instantaneous)")
        if (self.kind == "delay") != (self.delay is not None):
            raise ValueError("delay (the added latency, e.g. 50ms) is for kind: delay only")
        return self


class Scenario(StrictModel):
    """A validated scenario; `keyspaces` are weighted against each other."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    target: str | None = None
    seed: int = Field(default=1, ge=0, lt=2**63)
    key_prefix: str = Field(default=DEFAULT_KEY_PREFIX, min_length=1, max_length=64,
                            pattern=r"^[\x21-\x7e]+$")
    load: Load = Load(rate=1000)
    slo: Annotated[SloSpec | None, BeforeValidator(
        lambda value, info: _parse_block(parse_slo, "slo", value, (info.context or {}).get("file")),
        json_schema_input_type=SloSpec | None)] = None
    validity: Annotated[ValiditySpec | None, BeforeValidator(
        lambda value, info: _parse_block(parse_validity, "validity", value,
                                         (info.context or {}).get("file")),
        json_schema_input_type=ValiditySpec | None)] = None
    keyspaces: list[KeySpace] = Field(min_length=1)
    faults: list[Fault] = []

    _file: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _unique_and_trace(self) -> Scenario:
        names = [ks.name for ks in self.keyspaces]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise error_at(("keyspaces", i, "name"),
                               f"duplicate key space name {name!r}; names must be unique")
        if any(ks.trace for ks in self.keyspaces) and len(self.keyspaces) > 1:
            raise error_at(("keyspaces",), "a trace key space replays the whole op stream: "
                                           "it must be the only key space")
        return self

    @property
    def source(self) -> str | None:
        """The file this scenario was loaded from (None when built from data)."""
        return self._file

    def to_json(self) -> dict[str, Any]:
        """The scenario as validated, plain JSON (run.json `scenario.resolved`).

        Valid input again: `Scenario.from_json(s.to_json())` equals `s`.
        """
        data = self.model_dump(mode="json", exclude={"slo", "validity"}, exclude_none=True)
        data["slo"] = self.slo.to_data() if self.slo else None
        if self.validity:
            data["validity"] = self.validity.to_data()
        return _stringify_keys(data)

    @classmethod
    def from_json(cls, data: dict[str, Any], file: str | None = None) -> Scenario:
        """Validate a scenario from already-parsed data (no line numbers available)."""
        return validate_data(data, file=file)


def _parse_block(parse: Callable[[Any, str | None], BaseModel], name: str, value: Any,
                 file: str | None) -> BaseModel | None:
    """Block `name`, validated by its own module (`slo:` by bench.scenario.slo, `validity:`
    by bench.scenario.validity); its error becomes ours, with the line."""
    if value is None or isinstance(value, BaseModel):
        return value
    try:
        return parse(value, file)
    except InputError as err:
        parts = [p for p in re.split(r"[.\[\]]+", err.field or "") if p]
        path = tuple(int(p) if p.isdigit() else p for p in parts[parts[:1] == [name]:])
        raise error_at(path, str(err).removeprefix(f"{file}: " if file else "")
                       .removeprefix(f"{err.field}: ")) from None


def _stringify_keys(data: Any) -> Any:
    """JSON keys are strings; sizes and durations as mapping keys become "4096" and "3600.0"."""
    if isinstance(data, dict):
        return {str(k): _stringify_keys(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_stringify_keys(v) for v in data]
    return data


# ------------------------------------------------------------------------------ loading


def validate_data(data: Any, *, file: str | None = None, doc: YamlDoc | None = None,
                  default_name: str | None = None) -> Scenario:
    """Validate parsed data as a scenario; raise InputError (file, line, field, expected)."""
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping with name, load and keyspaces at the top, got "
                         f"{type(data).__name__}", file=file, line=1)
    if default_name and "name" not in data:
        data = {"name": default_name, **data}
    base_dir = Path(file).resolve().parent if file else None
    try:
        scenario = Scenario.model_validate(data, context={"file": file, "base_dir": base_dir})
    except ValidationError as err:
        raise input_error(err, doc, data, file) from None
    except RecursionError:
        raise InputError("nested too deeply", file=file) from None
    scenario._file = file
    return scenario


def parse_scenario(text: str, file: str | None = None) -> Scenario:
    """Parse and validate YAML text (the name defaults to the file's stem)."""
    doc = YamlDoc(text, file)
    stem = Path(file).stem if file else None
    return validate_data(doc.data, file=file, doc=doc, default_name=stem)


def resolve_scenario(name_or_path: str | Path) -> Path:
    """A file path as given, or a name looked up as <dir>/<name>.yaml in SCENARIO_DIRS."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or "/" in text or path.is_file() or path.is_dir():
        if path.is_dir():
            raise InputError("is a directory; expected a scenario YAML file", file=text)
        if not path.is_file():
            raise InputError("no such scenario file", file=text)
        return path
    for directory in SCENARIO_DIRS:
        candidate = directory / f"{text}.yaml"
        if candidate.is_file():
            return candidate
    known = ", ".join(scenario_names()) or "none"
    raise InputError(f"unknown scenario {text!r}; expected a file path or one of: {known}")


def scenario_names() -> list[str]:
    """Names of the scenarios in SCENARIO_DIRS (first directory wins on a clash)."""
    names: dict[str, None] = {}
    for directory in SCENARIO_DIRS:
        for path in sorted(directory.glob("*.yaml")):
            names.setdefault(path.stem, None)
    return list(names)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario by name (scenarios/<name>.yaml) or path; InputError when bad."""
    path = resolve_scenario(name_or_path)
    text = read_document(str(path), "scenario")
    return parse_scenario(text, str(path))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files, for editors' YAML language servers."""
    schema = Scenario.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "cachebench scenario"
    return schema
