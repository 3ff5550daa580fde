"""Load a ``Config``: defaults < YAML file(s) in order < dotted CLI overrides.

Every error becomes one ``ConfigError`` line that names the key and what is allowed,
e.g. ``algo.nme: unknown key; allowed: name, selection, prefix, ...``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.config import Config
from orchestrator.config_hints import unknown_key_hint

_EXPONENT_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
_KEY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
RESOLVED_CONFIG_NAME = "config.yaml"


class ConfigError(ValueError):
    """A config that cannot be used; ``str()`` is one line naming the key."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'algo.prefix.tokens=64'`` -> ``(['algo', 'prefix', 'tokens'], 64)``; values are YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not _KEY.match(key):
        raise ConfigError(f"override {text!r}: expected dotted.key=value, e.g. rollout.n=8")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML (e.g. an unbalanced bracket): take it as a string
    if isinstance(value, str) and _EXPONENT_NUMBER.match(value):
        value = float(value)  # YAML 1.1 reads 1e-5 (no dot) as a string
    if isinstance(value, dict) and value and ":" not in raw and all(v is None for v in value.values()):
        # "{question}" is YAML for {question: null}; a template placeholder is what was meant
        value = raw
    return key.split("."), value


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: str, _depth: int = 0) -> dict:
    """A YAML mapping; a top-level ``base: other.yaml`` (relative to this file) is loaded
    first and this file's keys are merged over it."""
    if _depth > 8:
        raise ConfigError(f"{path}: 'base' chain deeper than 8 files (a cycle?)")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(error, 'problem', error)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected a file name, got {base!r}")
    # a preset that switches its base's tagged section (a diagrams source over a synthetic one)
    # replaces that section's variant keys, silently: it is the preset's own choice
    return _merge_layer(_read_yaml(str(Path(path).parent / base), _depth + 1), data, quiet=True)


def _merge_layer(raw: dict, layer: dict, *, quiet: bool = False) -> dict:
    """``layer`` merged over ``raw``; where it switches a tagged section (``algo.name``,
    ``data.source.kind``), the keys of ``raw``'s variant the new one lacks go, as with an
    override (the layer's own keys stay, to be validated)."""
    tagged = _tagged_sections()
    tags = {name: _section(raw, where).get(tag) for name, where, tag, _, _ in tagged}
    merged = _merge(raw, layer)
    for name, where, tag, variants, what in tagged:
        keep = set(_section(layer, where))
        _drop_other_variant_keys(_section(merged, where), name, tag, tags[name], variants, keep, what, quiet=quiet)
    return merged


def load_config(paths: list[str] | tuple[str, ...] = (), overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Merge the YAML files in order, then apply the overrides, then validate."""
    raw: dict = {}
    tagged = _tagged_sections()

    def tags_now() -> dict[str, str | None]:
        return {name: _section(raw, where).get(tag) for name, where, tag, _, _ in tagged}

    for path in paths:
        # A later file may switch a tagged section (a data block with kind: file over a synthetic
        # preset): the earlier files' keys the new variant lacks go, as with an override.
        raw = _merge_layer(raw, _read_yaml(path))
    file_tags = tags_now()
    override_keys: dict[str, set[str]] = {name: set() for name in file_tags}
    for text in overrides:
        keys, value = parse_override(text)
        for name, where, _, _, _ in tagged:
            if tuple(keys[: len(where)]) == where and len(keys) > len(where):
                override_keys[name].add(keys[len(where)])
        node = raw
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(keys[: depth + 1])}: is a value, not a section; cannot set {text!r}")
            node = child
        node[keys[-1]] = value
    for name, where, tag, variants, what in tagged:
        _drop_other_variant_keys(_section(raw, where), name, tag, file_tags[name], variants, override_keys[name], what)
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None


def _section(raw: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        raw = raw.get(key) if isinstance(raw, dict) else None
    return raw if isinstance(raw, dict) else {}


def _variants(owner: type[BaseModel], field: str, tag: str) -> dict[str, type[BaseModel]]:
    """A tagged union's variants by tag value (``algo`` by ``name``, ``data.source`` by ``kind``)."""
    return {v.model_fields[tag].default: v for v in typing.get_args(owner.model_fields[field].annotation)}


def _drop_other_variant_keys(
    section: dict,
    path: str,
    tag: str,
    file_tag: str | None,
    variants: dict,
    keep: set[str],
    what: str,
    *,
    quiet: bool = False,
) -> None:
    """Switching a tagged section on the command line (``algo.name=grpo`` on a BPPO preset,
    ``data.source.kind=file`` on a hub one) keeps everything else equal: the preset's keys the
    new variant lacks are dropped, with a note. Keys in ``keep`` (given on the command line)
    are never dropped: they stay errors."""
    new_tag = section.get(tag)
    variant = variants.get(new_tag)
    if file_tag is None or new_tag == file_tag or variant is None:
        return  # no switch, or an unknown tag (validation reports it)
    dropped = [key for key in list(section) if key not in variant.model_fields and key not in keep]
    for key in dropped:
        del section[key]
    if dropped and not quiet:
        keys = ", ".join(f"{path}.{k}" for k in dropped)
        print(f"note: {path}.{tag}={new_tag} drops the preset's {file_tag}-{what} keys {keys}", file=sys.stderr)


def _algo_variants() -> dict[str, type[BaseModel]]:
    return _variants(Config, "algo", "name")


def _tagged_sections() -> list[tuple[str, tuple[str, ...], str, dict, str]]:
    """(name, path, tag, variants by tag, what a variant is called) of each tagged union a
    file or an override can switch."""
    from prompts.config import DataConfig

    return [
        ("algo", ("algo",), "name", _algo_variants(), "only"),
        ("data.source", ("data", "source"), "kind", _variants(DataConfig, "source", "kind"), "source"),
    ]


def describe_validation_error(error: ValidationError) -> str:
    """One line for the first error (plus how many more there are)."""
    first = error.errors()[0]
    path, model = _walk(first["loc"])
    key = ".".join(path)
    if first["type"] == "extra_forbidden":
        allowed = list(model.model_fields) if model else []
        hint = unknown_key_hint(path, first.get("input"), allowed) if path else ""
        message = f"{key}: unknown key{f' ({hint})' if hint else ''}; allowed: {', '.join(allowed) or '?'}"
    elif first["type"] in ("union_tag_invalid", "value_error") or not first["loc"]:
        # Cross-field checks name their keys in the message; the input would be the whole config.
        message = first["msg"].removeprefix("Value error, ")
        message = f"{key}: {message}" if path else message
    elif first["type"] == "missing":
        message = f"{key}: required, not set"
    else:
        message = f"{key}: {first['msg']} (got {first.get('input')!r:.80})"
    more = len(error.errors()) - 1
    return message + (f" (and {more} more error{'s' * (more > 1)})" if more else "")


def _walk(loc: tuple) -> tuple[list[str], type[BaseModel] | None]:
    """Display path of an error location (discriminator tags removed) and the model that
    owns its last key."""
    path: list[str] = []
    model: type[BaseModel] | None = Config
    parent: type[BaseModel] | None = Config
    union: tuple[tuple, str] | None = None  # (variants, discriminator) just entered
    for part in loc:
        if union is not None:
            variants, tag_field = union
            union = None
            chosen = [v for v in variants if v.model_fields[tag_field].default == part]
            if chosen:  # a discriminator tag in the location, not a key
                model = chosen[0]
                continue
        parent = model
        path.append(str(part))
        field = model.model_fields.get(str(part)) if model else None
        annotation = field.annotation if field else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if field is not None and isinstance(field.discriminator, str):
            union = (typing.get_args(annotation), field.discriminator)
    return path, parent


def write_resolved_config(config: Config, run_dir: str | os.PathLike) -> Path:
    """Write ``run_dir/config.yaml`` atomically (temp file + rename): what the run really used."""
    directory = Path(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / RESOLVED_CONFIG_NAME
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp", encoding="utf-8") as f:
        f.write(text)
    os.replace(f.name, target)
    return target
