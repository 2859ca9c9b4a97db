"""Validated YAML documents whose every error says `file:line: field: expected`.

Why a hand-rolled YAML walk: PyYAML's data has no line numbers, and a message without
a line is hard to act on in a 100-line file. `YamlDoc` composes the node tree once,
records the start line of every mapping key and list item by its path, and
`input_error` maps pydantic's error locations back through that table.

Shared by the scenario models (bench.scenario.model) and the SLO spec
(bench.scenario.slo): both build on `StrictModel` and locate errors with `error_path`
and `field_path`, so a mistake is placed the same way in either file
(`keyspaces[0].ttl`, `objectives[1].under`).
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from bench.errors import InputError

#: A YAML document that expands to more nodes than this (alias bombs) is refused.
MAX_YAML_NODES = 200_000
#: A scenario or SLO file larger than this is refused before it is parsed: composing the
#: YAML of a 33 MB file took minutes and gigabytes before the node limit could apply.
MAX_DOCUMENT_BYTES = 2**20

#: Where a value sits in parsed data: mapping keys and list indexes from the top.
DataPath = tuple[Any, ...]


class StrictModel(BaseModel):
    """Base of scenario and SLO models: frozen, and unknown keys refused by name.

    Why a validator and not just `extra="forbid"`: pydantic's message ("Extra inputs are
    not permitted") does not say which keys the mapping accepts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = [info.alias or name for name, info in cls.model_fields.items()]
            for key in data:
                if key not in known:
                    raise error_at((key,), cls._unknown_key(key, known))
        return data

    @classmethod
    def _unknown_key(cls, key: Any, known: list[str]) -> str:
        """What to say about an unknown `key`; `known` is in field order (files override
        the wording, e.g. SLO files speak of settings)."""
        return f"unknown field {key!r}; expected one of: {', '.join(sorted(known))}"


def error_at(path: DataPath, message: str) -> PydanticCustomError:
    """A validation error about `path` below the model that raises it.

    pydantic locates a model validator's error at the model itself; carrying the
    field's path lets the message name the field and its line instead.
    """
    return PydanticCustomError("at", "{message}", {"message": message, "at": path})


def read_document(path: str, what: str) -> str:
    """The UTF-8 text of a scenario or SLO file (`what`), never more than
    MAX_DOCUMENT_BYTES read into memory: such a file is a few KiB, and a 10 GiB one
    (a log passed by mistake) should be one clear error, not an exhausted machine."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
        if len(data) > MAX_DOCUMENT_BYTES:
            raise InputError(f"larger than {MAX_DOCUMENT_BYTES // 2**20} MiB; a {what} is "
                             "a few KiB (a scenario's big tables belong in a value_size or "
                             "trace file)", file=path)
        return data.decode("utf-8")
    except OSError as err:
        raise InputError(f"cannot read the {what}: {err.strerror}", file=path) from None
    except UnicodeDecodeError:
        raise InputError("expected a UTF-8 text file (YAML)", file=path) from None


class YamlDoc:
    """Parsed YAML plus the line (1-based) where each mapping key / list item starts."""

    def __init__(self, text: str, file: str | None,
                 expected: str = "a scenario mapping (name, load, keyspaces)") -> None:
        self.file = file
        self.lines: dict[DataPath, int] = {}
        self._visited = 0
        try:
            loader = yaml.SafeLoader(text)
        except yaml.reader.ReaderError as err:
            raise InputError(f"not valid YAML: character {err.character:#x} is not allowed",
                             file=file, line=text[:err.position].count("\n") + 1) from None
        try:
            node = loader.get_single_node()
            if node is None:
                raise InputError(f"the file is empty; expected {expected}", file=file)
            self._record(loader, node, (), set())
            self.data = loader.construct_document(node)
        except yaml.MarkedYAMLError as err:
            raise InputError(_yaml_problem(err), file=file,
                             line=_yaml_line(err, text)) from None
        except (yaml.YAMLError, ValueError, OverflowError) as err:
            raise InputError(f"not valid YAML: {str(err).splitlines()[0]}", file=file) from None
        except RecursionError:
            raise InputError("not valid YAML here: nested too deeply", file=file) from None
        finally:
            loader.dispose()

    def _record(self, loader: yaml.SafeLoader, node: yaml.Node, path: DataPath,
                active: set[int]) -> None:
        """Walk the node tree: note lines, refuse duplicate keys, cycles and alias bombs."""
        self._visited += 1
        if self._visited > MAX_YAML_NODES:
            raise InputError(f"the document expands to more than {MAX_YAML_NODES} nodes "
                             "(aliases?); a scenario is much smaller", file=self.file)
        if id(node) in active:
            raise InputError("a YAML alias refers to itself; expected plain data",
                             file=self.file, line=node.start_mark.line + 1)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._record(loader, item, path + (i,), active | {id(node)})
        elif isinstance(node, yaml.MappingNode):
            self._record_mapping(loader, node, path, active | {id(node)})

    def _record_mapping(self, loader: yaml.SafeLoader, node: yaml.MappingNode, path: DataPath,
                        active: set[int]) -> None:
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._record(loader, value_node, path, active)
                continue
            key = loader.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) \
                else None
            line = key_node.start_mark.line + 1
            if key is not None and key in seen:
                raise InputError(f"duplicate key {key!r} (first at line {seen[key]})",
                                 file=self.file, line=line,
                                 field=field_path(path + (key,)))
            if key is not None:
                seen[key] = line
                self.lines[path + (key,)] = line
            self._record(loader, value_node, path + (key,), active)

    def line_of(self, path: DataPath) -> int | None:
        """Line of the longest prefix of `path` that the document has."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def _yaml_problem(err: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem, with where the construct it was parsing started."""
    message = f"not valid YAML: {err.problem or err.context}"
    if err.problem and err.context and err.context_mark:
        message += f" ({err.context} at line {err.context_mark.line + 1})"
    return message


def _yaml_line(err: yaml.MarkedYAMLError, text: str) -> int | None:
    """The problem's line, within the file (the end of the stream is past its last line)."""
    mark = err.problem_mark or err.context_mark
    if mark is None:
        return None
    return max(1, min(mark.line + 1, len(text.splitlines())))


def field_path(path: DataPath) -> str:
    """('keyspaces', 0, 'popularity') -> `keyspaces[0].popularity`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _data_path(loc: DataPath, data: Any, missing: bool) -> DataPath:
    """pydantic's location mapped onto the data: union tags and validator names dropped.

    A loc element that is not a key (or index) of the data at that point is a tag such as
    `zipf` or `function-after[...]`, except the last one of a `missing` error: the name of
    the field that is missing.
    """
    path: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and str(part) in {str(k) for k in node}:
            key = next(k for k in node if str(k) == str(part))
            node = node[key]
            path.append(key)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif missing and i == len(loc) - 1:
            path.append(part)
    return tuple(path)


def _describe(error: dict[str, Any], written: Any) -> str:
    """pydantic's message, trimmed, with the value as written when it is a scalar."""
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind != "at" and isinstance(written, (str, int, float, bool)) and "got" not in message:
        message += f" (got {written!r})"
    return message


def _value_at(data: Any, path: DataPath) -> Any:
    """The value at `path` in the parsed document, or None when there is none."""
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def error_path(error: dict[str, Any], data: Any) -> DataPath:
    """Where in `data` a pydantic error is: its location mapped onto the data, then the
    field an `error_at` error names."""
    path = _data_path(error["loc"], data, error["type"] == "missing")
    if error["type"] == "at":
        path += tuple(error["ctx"]["at"])
    return path


def input_error(err: ValidationError, doc: YamlDoc | None, data: Any,
                file: str | None) -> InputError:
    """The first validation error as one InputError with file, line and field path."""
    error = err.errors(include_url=False)[0]
    path = error_path(error, data)
    line = doc.line_of(path) if doc else None
    return InputError(_describe(error, _value_at(data, path)), file=file, line=line,
                      field=field_path(path) or "(top level)")
