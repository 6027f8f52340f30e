"""Reading a pipeline config: YAML layers and ``--set`` overrides into the schema (``pipelines.config.schema``).

A pipeline's settings come from up to four layers, later ones winning:

1. ``base.yaml`` in the same folder as the pipeline file (project-wide defaults),
2. the pipeline file itself (``--config conf/demo.yaml``),
3. ``local.yaml`` in that folder, if present (machine-specific, gitignored),
4. ``--set section.key=value`` overrides from the command line.

Every key is checked when the job starts, before any Spark work: an unknown key, a value of the wrong type or an
impossible value raises :class:`ConfigError` naming the key and the layer (file) that set it.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from dlpipe.pipelines.config.schema import DEFAULTS, Config, ConfigError, _FieldError


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a pipeline config with its base and local layers and ``--set`` overrides; validate everything."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found (pass --config PATH to a pipeline YAML such as conf/demo.yaml)")
    layers: list[tuple[str, dict]] = []
    base = path.parent / "base.yaml"
    if base.is_file() and base.resolve() != path.resolve():
        layers.append((str(base), _read_yaml(base)))
    layers.append((str(path), _read_yaml(path)))
    local = path.parent / "local.yaml"
    if local.is_file() and local.resolve() != path.resolve():
        layers.append((str(local), _read_yaml(local)))
    layers.append(("--set", _parse_overrides(overrides)))

    merged: dict = {}
    origins: dict[str, str] = {}
    for source, data in layers:
        _merge(merged, data, origins, source, prefix="")
    merged["source_files"] = [source for source, _ in layers if source != "--set"]
    return _build(Config, merged, origins, prefix="")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file: {err.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _parse_overrides(overrides: Sequence[str]) -> dict:
    result: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.strip().split(".")
        if parts[:2] == ["spark", "conf"] and len(parts) > 3:
            # Spark's own keys contain dots: spark.conf.spark.executor.memory=2g
            parts = ["spark", "conf", ".".join(parts[2:])]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is set both as a value and as a section")
        node[parts[-1]] = value
    return result


# A table source is one choice (a table or a path), and a search space one scan: a layer that sets one replaces it
# rather than merging into it.
_REPLACED_WHOLE = {"featurize.input", "infer.input", "tune.space"}


def _merge(into: dict, data: dict, origins: dict[str, str], source: str, prefix: str) -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict) and dotted not in _REPLACED_WHOLE:
            _merge(into[key], value, origins, source, prefix=f"{dotted}.")
            origins.setdefault(dotted, source)
        else:
            into[key] = value
            origins[dotted] = source
            for sub in [k for k in origins if k.startswith(f"{dotted}.")]:
                origins[sub] = source


def _origin(origins: Mapping[str, str], dotted: str) -> str:
    dotted = re.sub(r"\[\d+\]$", "", dotted)
    while dotted:
        if dotted in origins:
            return origins[dotted]
        dotted = dotted.rpartition(".")[0]
    return DEFAULTS


def _build(cls: type, data: Any, origins: Mapping[str, str], prefix: str) -> Any:
    label = prefix.rstrip(".") or "the top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{_origin(origins, label)}: {label}: must be a mapping, got {_type_name(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        dotted = f"{prefix}{unknown[0]}"
        valid = ", ".join(sorted(n for n in names if n != "source_files"))
        raise ConfigError(f"{_origin(origins, dotted)}: unknown key {dotted} (valid keys here: {valid})")
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = coerce(hints[name], data[name], origins, f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except _FieldError as err:
        dotted = f"{prefix}{err.key}" if err.key else label
        raise ConfigError(f"{_origin(origins, dotted)}: {dotted}: {err.message}") from None


def coerce(hint: Any, value: Any, origins: Mapping[str, str], dotted: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def fail(expected: str) -> typing.NoReturn:
        raise ConfigError(f"{_origin(origins, dotted)}: {dotted}: expected {expected}, got {_type_name(value)} {value!r}")

    if dataclasses.is_dataclass(hint):
        # A dataclass may accept a shorter spelling (a bare column name, `missing: mean`): see its ``shorthand``.
        shorthand = getattr(hint, "shorthand", None)
        return _build(hint, shorthand(value) if shorthand else value, origins, f"{dotted}.")
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            fail(" or ".join(_hint_name(a) for a in args))
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:  # Optional[X]: X's own error is the useful one
            return coerce(inner[0], value, origins, dotted)
        for hint_ in inner[:-1]:
            try:
                return coerce(hint_, value, origins, dotted)
            except ConfigError:
                pass
        try:
            return coerce(inner[-1], value, origins, dotted)
        except ConfigError:
            fail(" or ".join(_hint_name(a) for a in args))
    if origin is Literal:
        if value not in args:
            fail("one of " + ", ".join(repr(a) for a in args))
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            fail(f"a list of {_hint_name(args[0])}")
        return tuple(coerce(args[0], v, origins, f"{dotted}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            fail("a mapping")
        if args and args[1] is Any:  # checked by the section that owns it
            return {str(k): v for k, v in value.items()}
        if args and args[1] is not str:
            return {str(k): coerce(args[1], v, origins, f"{dotted}.{k}") for k, v in value.items()}
        return {str(k): str(v) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail("an integer")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string: accept what Python reads as a number
            try:
                return float(value)
            except ValueError:
                fail("a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            fail("a string")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {dotted}")


def _hint_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
