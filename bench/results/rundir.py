"""The run directory: written as the run goes, read back by the analyzer.

Why incremental: a run that is interrupted (Ctrl-C, lost target, killed worker) still
leaves a run.json saying so and every interval closed so far in latency.hlog and
timeline.csv, so it can be analysed like any other. Files (docs/internals.md):

    run.json           written at start (status "running"), rewritten atomically at the end;
                       its content is `RunInfo`, owned by `RunWriter`
    latency.hlog       HdrHistogram log 1.3: per interval and op, Tag=<op> and Tag=<op>.service;
                       per interval and source, Tag=_lag:<source> (send lag, below)
    timeline.csv       one row per interval per op (columns: TIMELINE_COLUMNS)
    loadgen.csv        one row per interval per source (columns: LOADGEN_COLUMNS, below)
    server-stats.json  {"kind", "before", "after"}; snapshots {"taken_at", "nodes"}

timeline.csv and loadgen.csv are plain comma-separated text without quoting: op names
are hlog tags, which cannot hold commas or spaces, and so are source names.

loadgen.csv and the `_lag:<source>` histograms are what the load generator itself did,
per load process (a *source*: `local` for a single-process run, else the Locust worker's
node id), over the measured window only: the figures of the validity verdict
(bench.analysis.validity). Columns of loadgen.csv:

    start         interval start, epoch seconds (the intervals of timeline.csv)
    source        the load process
    cpu_user_s    CPU seconds the process spent in user mode in the interval
    cpu_system_s  ... and in the kernel (os.times(); a whole core for 1 s = 1.0 in total)
    stall_max_us  event-loop blocking: the latest wake-up of a watchdog that sleeps 10 ms
                  (about 1 ms when nothing blocks: gevent's timer granularity)
    parked        most ops parked at once (waiting client-side: regeneration, lock hold)
    in_flight     most users inside a protocol call at once (mostly waiting for a reply)
    intended      ops whose intended start is in the interval (open loop; closed: = sent)
    sent          ops whose first call went out in the interval

`parked` and `in_flight` are sampled at each watchdog tick. The `_lag:<source>` tag
holds the send lag of the first call of every op sent in the interval (open loop only),
in us: how much later than it could have the op went out, counted from its intended
start, or from when its user was free to send it if that is later (a user waiting for a
slow reply is not the harness falling behind). Rows or hlog lines with the same start
and source (an op sent after its interval was written) add up. A tag name starting with
`_` never collides with an op: op names are protocol commands. A run directory written
before loadgen.csv existed has neither: it is not judged.

run.json and summary.json carry `"format": 1`. A reader refuses a format it does not
know (a newer cachebench wrote the file) in one line, and reads a file without `format`
(written before formats existed) as format 1. Keys a reader does not know are ignored:
adding a key is a compatible change, changing or removing one needs a new format.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self, TextIO, TypeVar

from bench.errors import InputError, OutputError, TargetError
from bench.results.hlog import HlogWriter
from bench.results.loadstats import LoadInterval
from bench.results.recorder import INTERVAL_S, Interval, OpInterval
from bench.vocabulary import ERROR_KINDS

RUN_JSON = "run.json"
LATENCY_HLOG = "latency.hlog"
TIMELINE_CSV = "timeline.csv"
LOADGEN_CSV = "loadgen.csv"
SERVER_STATS_JSON = "server-stats.json"
SUMMARY_JSON = "summary.json"

TIMELINE_COLUMNS = ("start", "length", "op", "count", "hits", "misses", "keys", "errors",
                    *(f"errors_{kind}" for kind in ERROR_KINDS), "bytes", "clamped")
LOADGEN_COLUMNS = ("start", "source", "cpu_user_s", "cpu_system_s", "stall_max_us", "parked",
                   "in_flight", "intended", "sent")
FINAL_STATUSES = ("completed", "interrupted", "aborted")
SERVICE_SUFFIX = ".service"
#: hlog tags of send-lag histograms: LAG_PREFIX + source.
LAG_PREFIX = "_lag:"
HLOG_COMMENT = (f"Tag=<op> latency from intended start, Tag=<op>{SERVICE_SUFFIX} service time, "
                f"Tag={LAG_PREFIX}<source> send lag of a load process")
#: The run.json formats this harness reads; it writes the last.
RUN_FORMATS = (1,)
#: A file without `format` was written before formats existed: it is format 1.
UNVERSIONED_FORMAT = 1


def iso_utc(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds and a Z, the form every timestamp in run files uses."""
    moment = datetime.fromtimestamp(epoch, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stats_snapshot(nodes: dict[str, dict[str, Any]], taken_at: float) -> dict[str, Any]:
    """One side (before/after) of server-stats.json from `targets.server_stats` output."""
    return {"taken_at": iso_utc(taken_at), "nodes": nodes}


def new_run_dir(results_root: str | Path, scenario_name: str, when: datetime | None = None,
                out: str | Path | None = None) -> Path:
    """Create the directory for a new run and return it.

    With `out` (the --out flag): that directory, created if needed, refused if it already
    holds a run. Otherwise `<results_root>/<YYYYmmddTHHMMSSZ>-<scenario>`, with `-2`,
    `-3`... when taken; `when` defaults to now, a naive one is taken as UTC. The scenario
    name is reduced to [A-Za-z0-9._-] so it can never escape `results_root`.
    """
    if out is not None:
        return _prepare_out_dir(Path(out))
    when = datetime.now(timezone.utc) if when is None else when
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "-", scenario_name).strip("-.") or "run"
    stem = f"{when:%Y%m%dT%H%M%SZ}-{safe_name}"
    root = Path(results_root)
    _make_dirs(root)
    for attempt in range(1, 1000):
        path = root / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise OutputError(f"cannot write {root}: {_reason(err)}") from None
    raise InputError("too many runs with the same timestamp", file=str(root / stem))


def _prepare_out_dir(out: Path) -> Path:
    """Create an explicit --out directory; refuse one that already holds anything.

    A run writes run.json, latency.hlog, report.html... into it: in a directory that
    holds a run those would mix two runs, in any other non-empty one they would
    overwrite the user's own files.
    """
    if out.exists() and not out.is_dir():
        raise InputError("expected a directory, found a file", file=str(out), field="--out")
    if (out / RUN_JSON).exists():
        raise InputError(f"already holds a run ({RUN_JSON}); choose another directory",
                         file=str(out), field="--out")
    if out.is_dir() and any(out.iterdir()):
        raise InputError("not empty and not a run directory; choose a new or empty "
                         "directory", file=str(out), field="--out")
    _make_dirs(out)
    return out


def _make_dirs(path: Path) -> None:
    """mkdir -p; OutputError (exit 3) in one line when the file system refuses."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {_reason(err)}") from None


class TimelineRow(NamedTuple):
    """One timeline.csv row: one op in one interval (`start` in epoch seconds)."""

    start: float
    length: float
    op: str
    count: int
    hits: int
    misses: int
    keys: int
    errors: int
    errors_timeout: int
    errors_connection: int
    errors_server: int
    errors_client: int
    bytes: int
    clamped: int

    @classmethod
    def of(cls, interval: Interval, op: str, numbers: OpInterval) -> TimelineRow:
        """The row of one op of an interval; kinds outside ERROR_KINDS count in `errors` only."""
        return cls(interval.start, interval.length, op, numbers.count, numbers.hits,
                   numbers.misses, numbers.keys, numbers.error_count,
                   *(numbers.errors.get(kind, 0) for kind in ERROR_KINDS),
                   numbers.bytes, numbers.clamped)

    def to_csv(self) -> str:
        """The CSV line, times to the millisecond as in latency.hlog."""
        return ",".join((f"{self.start:.3f}", f"{self.length:.3f}",
                         *(str(value) for value in self[2:])))

    @classmethod
    def parse(cls, fields: list[str]) -> TimelineRow:
        """A row from its CSV fields; ValueError naming the column if one is malformed."""
        return cls(*_parse_fields(fields, TIMELINE_COLUMNS))


class LoadgenRow(NamedTuple):
    """One loadgen.csv row: one source (load process) in one interval."""

    start: float
    source: str
    cpu_user_s: float
    cpu_system_s: float
    stall_max_us: int
    parked: int
    in_flight: int
    intended: int
    sent: int

    @classmethod
    def of(cls, interval: Interval, source: str, load: LoadInterval) -> LoadgenRow:
        return cls(interval.start, source, load.cpu_user_s, load.cpu_system_s,
                   load.stall_max_us, load.parked, load.in_flight, load.intended, load.sent)

    def to_csv(self) -> str:
        """The CSV line: times to the millisecond, CPU to the microsecond."""
        return ",".join((f"{self.start:.3f}", self.source, f"{self.cpu_user_s:.6f}",
                         f"{self.cpu_system_s:.6f}", *(str(value) for value in self[4:])))

    @classmethod
    def parse(cls, fields: list[str]) -> LoadgenRow:
        """A row from its CSV fields; ValueError naming the column if one is malformed."""
        return cls(*_parse_fields(fields, LOADGEN_COLUMNS))


_COLUMN_TYPES: dict[str, type] = {"start": float, "length": float, "op": str, "source": str,
                                  "cpu_user_s": float, "cpu_system_s": float}


def _parse_fields(fields: list[str], columns: tuple[str, ...]) -> list[Any]:
    """CSV fields converted by column (ints unless _COLUMN_TYPES says otherwise);
    ValueError naming the column if one is malformed."""
    if len(fields) != len(columns):
        raise ValueError(f"expected {len(columns)} columns, got {len(fields)}")
    values: list[Any] = []
    for column, text in zip(columns, fields):
        convert = _COLUMN_TYPES.get(column, int)
        try:
            values.append(convert(text))
        except ValueError:
            raise ValueError(f"column {column}: expected {convert.__name__}, "
                             f"got {text!r}") from None
    return values


class JsonRecord:
    """Base of the dataclasses of run files (run.json, summary.json): the field names are
    the JSON keys, so `to_json` and `from_json` are the one serializer of each; a record
    with nested records or a different JSON shape overrides them (a nested record is
    written by its parent's `to_json`)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls.from_fields(data)

    @classmethod
    def check_json(cls, data: dict[str, Any], file: str) -> None:
        """Refuse, naming the file and the field, a JSON object whose values do not have
        the types the record's readers expect (a copied or hand-edited file); called by
        `read_versioned` before `from_json`. By default there is nothing to check."""

    @classmethod
    def from_fields(cls, data: dict[str, Any], **parsed: Any) -> Self:
        """From the keys of a JSON object that are fields; `parsed` gives the nested ones
        already turned into records. Other keys are ignored (see above)."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{**{k: v for k, v in data.items() if k in names}, **parsed})


Record = TypeVar("Record", bound=JsonRecord)


def optional(convert: Callable[[Any], Any], value: Any) -> Any:
    """`convert(value)`, None for None: for the parts of a record that may be absent."""
    return None if value is None else convert(value)


def _present(data: dict[str, Any]) -> dict[str, Any]:
    """The entries that are not None: run.json leaves out what a run did not describe."""
    return {key: value for key, value in data.items() if value is not None}


class _Description(JsonRecord):
    """A part of run.json that describes the run: what it does not say (None) is left out."""

    def to_json(self) -> dict[str, Any]:
        return _present(super().to_json())


@dataclass(frozen=True)
class RunScenario(_Description):
    """run.json `scenario`: which scenario ran, from which file, with which seed."""

    name: str | None = None
    file: str | None = None
    seed: int | None = None
    resolved: dict[str, Any] | None = None  # Scenario.to_json: every default filled in


@dataclass(frozen=True)
class RunTarget(_Description):
    """run.json `target`: where the load went (the URL with its secrets redacted)."""

    url: str | None = None
    kind: str | None = None
    nodes: list[str] | None = None
    tls: bool | None = None  # memcached+tls://, rediss://, rediss+cluster://
    options: dict[str, Any] | None = None  # the URL's options, parsed (a preset's filled in)


#: The fields of `MachineFingerprint` that make two machines one for comparing latencies
#: (`arch` is recorded too, but the CPU model already implies it).
FINGERPRINT_FIELDS = ("cpu_model", "cpus", "kernel", "virtualisation")


@dataclass(frozen=True)
class MachineFingerprint(_Description):
    """run.json `machine`: the machine class the run was measured on (`bench.machine`
    takes it). Not the host name: two CI runners of one class are one machine here, and
    the same laptop after a kernel update is another."""

    cpu_model: str | None = None
    cpus: int | None = None  # usable by the process (a container's cpuset)
    kernel: str | None = None
    virtualisation: str | None = None  # `none`, or e.g. `docker, kvm`
    arch: str | None = None

    def differences(self, other: MachineFingerprint) -> list[str]:
        """`field: this value vs other value` for each of FINGERPRINT_FIELDS that differs."""
        return [f"{name} {getattr(self, name)!r} vs {getattr(other, name)!r}"
                for name in FINGERPRINT_FIELDS if getattr(self, name) != getattr(other, name)]


@dataclass(frozen=True)
class Calibration(_Description):
    """run.json `calibration`: round trips of a plain client loop against the run's target
    just before the run (`bench.machine.calibrate`), p50 and p99 in us; `error` instead
    when the target failed it."""

    round_trips: int | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    error: str | None = None

    @property
    def measured(self) -> bool:
        """Both percentiles are there (and not zero), so a ratio of two can be taken."""
        return bool(self.p50_us) and bool(self.p99_us)


@dataclass(frozen=True)
class MeasuredWindow(JsonRecord):
    """The measured window in epoch seconds: after the warm-up, on interval boundaries."""

    start: float
    end: float

    def to_json(self) -> dict[str, float]:
        return {"from": self.start, "to": self.end}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(float(data["from"]), float(data["to"]))


@dataclass(frozen=True)
class FaultWindow(JsonRecord):
    """run.json `faults`: one fault of the scenario as it happened (bench.faults), in
    epoch seconds; `end` is when it was over (a kill: when the node came back, or the
    run's end), `error` why the fault could not be injected."""

    kind: str  # stall | kill | restart | delay
    node: int  # position in the target, 1 = first
    address: str
    at_s: float  # as the scenario asked: seconds after measure_from
    start: float
    end: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "node": self.node, "address": self.address,
                "at_s": self.at_s, "from": self.start, "to": self.end,
                **({"error": self.error} if self.error else {})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(kind=data["kind"], node=int(data["node"]), address=data["address"],
                   at_s=float(data["at_s"]), start=float(data["from"]),
                   end=optional(float, data.get("to")), error=data.get("error"))


@dataclass(frozen=True)
class RunInfo(JsonRecord):
    """run.json: what ran, as `bench run` describes it, and how it went, as RunWriter
    stamps it (interval_s and everything after it).

    A description part is None when the run did not say (a synthetic run); run.json
    leaves it out then, as it leaves out `measured` and `reason` until they are known.
    """

    harness: dict[str, Any] | None = None  # {"name", "version"}
    scenario: RunScenario | None = None
    target: RunTarget | None = None
    load: dict[str, Any] | None = None  # the load plan, after flags, and processes
    slo: dict[str, Any] | None = None  # in its file's form (SloSpec.to_data)
    versions: dict[str, Any] | None = None  # python, packages, servers
    host: dict[str, Any] | None = None
    argv: list[str] | None = None
    machine: MachineFingerprint | None = None
    calibration: Calibration | None = None
    #: One run's id (a random hex string): `bench analyze` refuses the same run, or a
    #: copy of it, given twice.
    run_id: str | None = None
    interval_s: float = INTERVAL_S
    started: str | None = None
    ended: str | None = None
    status: str = "running"
    completed: bool = False
    measured: MeasuredWindow | None = None
    reason: str | None = None  # why a run did not complete
    #: Epoch seconds at which the measured window is due to start, known from the
    #: start (`measured` only at the end): `bench run` times a scenario's faults by it.
    measure_from: float | None = None
    faults: list[FaultWindow] | None = None  # a scenario with faults: as they happened

    def to_json(self) -> dict[str, Any]:
        """The run.json object, `format` first."""
        described = {"harness": self.harness, "scenario": optional(RunScenario.to_json,
                                                                   self.scenario),
                     "target": optional(RunTarget.to_json, self.target), "load": self.load,
                     "slo": self.slo, "versions": self.versions, "host": self.host,
                     "machine": optional(MachineFingerprint.to_json, self.machine),
                     "argv": self.argv,
                     "calibration": optional(Calibration.to_json, self.calibration),
                     "run_id": self.run_id}
        faults = None if self.faults is None else [w.to_json() for w in self.faults]
        return {"format": RUN_FORMATS[-1], **_present(described),
                "interval_s": self.interval_s, "started": self.started, "ended": self.ended,
                "status": self.status, "completed": self.completed,
                **_present({"measured": optional(MeasuredWindow.to_json, self.measured),
                            "reason": self.reason, "measure_from": self.measure_from,
                            "faults": faults})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """From a run.json object whose format was checked (`read_run_info`)."""
        faults = data.get("faults")
        return cls.from_fields(data,
                               scenario=optional(RunScenario.from_json, data.get("scenario")),
                               target=optional(RunTarget.from_json, data.get("target")),
                               machine=optional(MachineFingerprint.from_json,
                                                data.get("machine")),
                               calibration=optional(Calibration.from_json,
                                                    data.get("calibration")),
                               measured=optional(MeasuredWindow.from_json,
                                                 data.get("measured")),
                               measure_from=optional(float, data.get("measure_from")),
                               faults=None if faults is None
                               else [FaultWindow.from_json(w) for w in faults])

    @classmethod
    def check_json(cls, data: dict[str, Any], file: str) -> None:
        """run.json's fields of the JSON types in RUN_FIELDS, `interval_s` > 0, and the
        nested fields readers use; else InputError naming the file and the field."""
        for name, types in RUN_FIELDS.items():
            if name in data:
                _check_type(data[name], types, file, name)
        if data.get("interval_s", 1.0) <= 0:
            raise InputError(f"expected a number of seconds > 0, got {data['interval_s']!r}",
                             file=file, field="interval_s")
        measured, scenario, target = (data.get(k) or {}
                                      for k in ("measured", "scenario", "target"))
        for name in ("from", "to"):
            if measured:
                _check_type(measured.get(name), _NUMBER, file, f"measured.{name}")
        _check_type(scenario.get("name"), (str, type(None)), file, "scenario.name")
        _check_type(target.get("url"), (str, type(None)), file, "target.url")
        _check_type(target.get("nodes", []), (list,), file, "target.nodes")
        for index, window in enumerate(data.get("faults") or []):
            _check_type(window, (dict,), file, f"faults[{index}]")


class RunWriter:
    """Writes one run directory as the run goes; a context manager.

    It owns run.json: the caller describes the run (a `RunInfo` without status), the
    writer stamps what only it knows (format, interval length, start, end, status,
    measured window, measure_from) and rewrites the file; nobody else edits it. What
    `bench run` learns after the Locust side has finished is written by `record_faults`
    (the fault windows) and `mark_interrupted` (a run that `bench run` stopped early,
    by a signal or for a full disk).

    Leaving the `with` block by an exception finishes the run as "aborted" for a
    TargetError (target lost) and "interrupted" for anything else (Ctrl-C included),
    then lets the exception through; leaving it normally finishes it as "completed"
    unless `finish` was already called.
    """

    def __init__(self, path: str | Path, info: RunInfo, start_time: float,
                 interval_s: float = INTERVAL_S, measure_from: float | None = None) -> None:
        """`info` describes the run (scenario, target, load...); `interval_s` is the
        interval length the recorders use, recorded in run.json and the hlog grid;
        `measure_from` when the measured window is due to start (epoch seconds), in the
        first run.json already, for whoever times things by it (bench.faults)."""
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.info = replace(info, interval_s=float(interval_s), started=iso_utc(start_time),
                            ended=None, status="running", completed=False, measured=None,
                            reason=None, measure_from=measure_from, faults=None)
        _write_json_atomically(self.path / RUN_JSON, self.info.to_json())
        self._hlog_file = open(self.path / LATENCY_HLOG, "w", encoding="utf-8")
        # The log's time axis starts on the interval grid at or before the run start, so
        # no interval has a negative timestamp (HdrHistogram's tools would skip it).
        self._hlog = HlogWriter(self._hlog_file,
                                math.floor(start_time / interval_s) * interval_s, HLOG_COMMENT)
        self._timeline = _csv_file(self.path / TIMELINE_CSV, TIMELINE_COLUMNS)
        self._loadgen = _csv_file(self.path / LOADGEN_CSV, LOADGEN_COLUMNS)
        self.finished = False

    def write_interval(self, interval: Interval) -> None:
        """Append the interval's hlog lines, timeline and loadgen rows (ops, then sources,
        in name order), and flush."""
        for op in sorted(interval.ops):
            numbers = interval.ops[op]
            self._hlog.write(op, interval.start, interval.length, numbers.latency)
            self._hlog.write(op + SERVICE_SUFFIX, interval.start, interval.length,
                             numbers.service)
            self._timeline.write(TimelineRow.of(interval, op, numbers).to_csv() + "\n")
        for source in sorted(interval.sources):
            load = interval.sources[source]
            if load.lag.total_count:
                self._hlog.write(LAG_PREFIX + source, interval.start, interval.length, load.lag)
            self._loadgen.write(LoadgenRow.of(interval, source, load).to_csv() + "\n")
        for out in (self._hlog, self._timeline, self._loadgen):
            out.flush()

    def write_server_stats(self, before: dict[str, Any], after: dict[str, Any] | None,
                           kind: str) -> None:
        """(Re)write server-stats.json; `after` may be None to save `before` early."""
        _write_json_atomically(self.path / SERVER_STATS_JSON,
                               {"kind": kind, "before": before, "after": after})

    def set_measured(self, start: float, end: float) -> None:
        """The measured window (epoch seconds), written to run.json by `finish`."""
        self.info = replace(self.info, measured=MeasuredWindow(start, end))

    def finish(self, status: str = "completed", ended: float | None = None,
               reason: str | None = None) -> None:
        """Close the files and rewrite run.json with the final status and end time.

        `reason` says why a run did not complete (run.json `reason`), for the user.
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STATUSES}, got {status!r}")
        if self.finished:
            raise RuntimeError(f"run {self.path} already finished as {self.info.status}")
        for out in (self._hlog_file, self._timeline, self._loadgen):
            out.close()
        self.info = replace(self.info, ended=iso_utc(time.time() if ended is None else ended),
                            status=status, completed=status == "completed",
                            reason=reason or None)
        _write_json_atomically(self.path / RUN_JSON, self.info.to_json())
        self.finished = True

    @staticmethod
    def record_faults(path: str | Path, windows: list[FaultWindow]) -> None:
        """run.json `faults` of a finished run: the fault windows `bench run` observed
        while the Locust side wrote the run (so they come after its `finish`, from
        another process); the rest of run.json is kept as it is."""
        run_json = Path(path) / RUN_JSON
        info = read_versioned(run_json, RUN_FORMATS, RunInfo)
        _write_json_atomically(run_json, replace(info, faults=list(windows)).to_json())

    @staticmethod
    def mark_interrupted(path: str | Path, reason: str) -> bool:
        """A run stopped early from outside its writer (`bench run` got a signal, or its
        disk filled up): status "interrupted" with `reason`, so that it reads as what it
        is and can be analysed. A run.json the Locust side already finished as
        "interrupted" keeps its own reason after `reason`; a completed or aborted one is
        left as it is. False when run.json is missing or was left as it is."""
        run_json = Path(path) / RUN_JSON
        if not run_json.is_file():
            return False
        info = read_versioned(run_json, RUN_FORMATS, RunInfo)
        if info.status == "running":
            info = replace(info, ended=iso_utc(time.time()), status="interrupted",
                           completed=False, reason=reason)
        elif info.status == "interrupted":
            info = replace(info, reason=f"{reason}: {info.reason}" if info.reason else reason)
        else:
            return False
        _write_json_atomically(run_json, info.to_json())
        return True

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.finished:
            return
        if exc_type is None:
            self.finish("completed")
        else:
            self.finish("aborted" if issubclass(exc_type, TargetError) else "interrupted")


def _csv_file(path: Path, columns: tuple[str, ...]) -> TextIO:
    """A CSV file opened for appending rows, its header written and flushed."""
    out = open(path, "w", encoding="utf-8", newline="")
    out.write(",".join(columns) + "\n")
    out.flush()
    return out


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(data, indent=2) + "\n")


def write_atomically(path: Path, data: str | bytes) -> None:
    """Write a temporary file beside `path`, then rename it over `path`: readers never see
    half a file, and a full disk leaves the previous file intact. OutputError (exit 3)
    says which directory could not be written, and why, in one line."""
    temp = path.with_name(f".{path.name}.tmp")
    try:
        with open(temp, "wb") as out:
            out.write(data.encode("utf-8") if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise OutputError(f"cannot write {path.parent}: {_reason(err)}") from None


def _reason(err: OSError) -> str:
    """`no space left on device`, `read-only file system`..."""
    text = err.strerror or str(err)
    return text[:1].lower() + text[1:]


#: Less free space than this in a run directory's file system counts as a full disk.
MIN_FREE_BYTES = 256 * 1024


def disk_full(path: str | Path) -> bool:
    """Whether the file system of `path` is (nearly) full: a run writing there would
    lose its intervals and could not finish its run.json."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES


@dataclass
class RunFiles:
    """What a run directory holds, as read by `read_run` (hlog: read with hlog.read_hlog).

    `loadgen` is empty for a run directory written before loadgen.csv existed."""

    path: Path
    info: RunInfo
    timeline: list[TimelineRow]
    server_stats: dict[str, Any] | None
    hlog: Path
    loadgen: list[LoadgenRow]


def read_run(path: str | Path) -> RunFiles:
    """Read run.json, timeline.csv and server-stats.json (optional) of a run directory.

    InputError names the missing or malformed file when `path` is not a run directory.
    """
    run = Path(path)
    info = read_run_info(run)
    for name in (LATENCY_HLOG, TIMELINE_CSV):
        if not (run / name).is_file():
            raise InputError(f"not a run directory: {name} is missing", file=str(run))
    stats_path = run / SERVER_STATS_JSON
    loadgen_path = run / LOADGEN_CSV
    return RunFiles(path=run, info=info,
                    timeline=read_timeline(run / TIMELINE_CSV),
                    server_stats=_read_json(stats_path) if stats_path.is_file() else None,
                    hlog=run / LATENCY_HLOG,
                    loadgen=_read_rows(loadgen_path, LOADGEN_COLUMNS, LoadgenRow.parse)
                    if loadgen_path.is_file() else [])


def read_run_info(path: str | Path) -> RunInfo:
    """Only run.json of a run directory: cheap, e.g. to check a run's status."""
    run = Path(path)
    if not run.is_dir():
        raise InputError("not a run directory (no such directory)", file=str(run))
    if not (run / RUN_JSON).is_file():
        raise InputError(f"not a run directory: {RUN_JSON} is missing", file=str(run))
    return read_versioned(run / RUN_JSON, RUN_FORMATS, RunInfo)


def read_versioned(path: Path, formats: tuple[int, ...], record: type[Record]) -> Record:
    """A versioned run file (run.json, summary.json) as a `record`, refused in one line
    when its format is not one of `formats` or its content does not fit the record: a
    field of the wrong JSON type is named (`record.check_json`), anything else the record
    cannot take is "malformed"."""
    data = _read_json(path)
    found = data.get("format", UNVERSIONED_FORMAT)
    if type(found) is not int or found not in formats:
        raise InputError(f"format {json.dumps(found)} is not known; this cachebench reads "
                         f"format {', '.join(map(str, formats))} (was the file written by a "
                         f"newer cachebench?)", file=str(path))
    record.check_json(data, str(path))
    try:
        return record.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"malformed: {type(exc).__name__}: {exc}", file=str(path)) from None


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or InputError with the file and line."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
    except UnicodeDecodeError:
        raise InputError("expected UTF-8 JSON, found bytes that are not UTF-8",
                         file=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", file=str(path))
    return data


_NUMBER = (int, float)
_OBJECT = (dict, type(None))
#: The run.json fields that readers use and the JSON types each may hold; a copied or
#: hand-edited run.json with another type is refused here, naming the field, instead
#: of failing somewhere in the analysis.
RUN_FIELDS: dict[str, tuple[type, ...]] = {
    "run_id": (str, type(None)), "interval_s": _NUMBER, "started": (str, type(None)),
    "ended": (str, type(None)), "status": (str,), "completed": (bool,),
    "reason": (str, type(None)), "measured": _OBJECT, "scenario": _OBJECT,
    "target": _OBJECT, "load": _OBJECT, "slo": _OBJECT, "versions": _OBJECT,
    "host": _OBJECT, "argv": (list, type(None)), "measure_from": (*_NUMBER, type(None)),
    "faults": (list, type(None))}
_TYPE_NAMES = {str: "a string", int: "a number", float: "a number", bool: "true or false",
               dict: "an object", list: "a list", type(None): "null"}


def _check_type(value: Any, types: tuple[type, ...], file: str, field: str) -> None:
    """InputError unless `value` is one of `types` (a bool is not a number here)."""
    if isinstance(value, types) and not (isinstance(value, bool) and bool not in types) \
            and not (isinstance(value, float) and not math.isfinite(value)):
        return
    expected = " or ".join(dict.fromkeys(_TYPE_NAMES[t] for t in types))
    raise InputError(f"expected {expected}, got {json.dumps(value)[:40]}", file=file,
                     field=field)


def read_timeline(path: str | Path) -> list[TimelineRow]:
    """All rows of a timeline.csv; a last line cut short by an interrupted run is skipped."""
    return _read_rows(path, TIMELINE_COLUMNS, TimelineRow.parse)


Row = TypeVar("Row")


def _read_rows(path: str | Path, columns: tuple[str, ...],
               parse: Callable[[list[str]], Row]) -> list[Row]:
    """The rows of one of our CSV files, checked against its header; a last line cut
    short by an interrupted run is skipped, any other bad line is an InputError."""
    with open(path, encoding="utf-8", newline="") as lines:
        header = lines.readline().rstrip("\r\n")
        if header != ",".join(columns):
            raise InputError(f"expected the header {','.join(columns)}", file=str(path), line=1)
        rows = []
        for number, line in enumerate(lines, start=2):
            try:
                rows.append(parse(line.rstrip("\r\n").split(",")))
            except ValueError as exc:
                if line.endswith("\n"):
                    raise InputError(str(exc), file=str(path), line=number) from None
        return rows
