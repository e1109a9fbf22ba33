"""The workflow config checked against its JSON Schema, with one short line per mistake.

workflow/schemas/config.schema.yaml stays the single source of truth for keys,
types and ranges. snakemake.utils.validate prints the whole failing schema
(about 530 lines for an unknown top-level key); here each error names the key
path (`train.model.widht`), what is allowed there (the block's keys, the type,
the range or the choices) and the value given, and unknown keys get the closest
known key as a suggestion.

config/config.yaml is the one home of every default value: `defaults()` reads it
(shipped inside the package as run/config.yaml, a link to that file), and the
`tiledup` commands fill the keys a block leaves out from it, as Snakemake does.
Library functions state no defaults of their own (tests/test_defaults.py).
"""

from __future__ import annotations

import copy
import difflib
import functools
from importlib import resources
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from tiledup.run.errors import TiledupError

MAX_ERRORS = 8
TYPE_NAMES = {"integer": "an integer", "number": "a number", "string": "a string (text)",
              "boolean": "true or false", "object": "a block of keys", "array": "a list",
              "null": "empty"}


class ConfigError(TiledupError):
    """The config breaks the schema; the message lists each mistake on its own line."""


def defaults() -> dict:
    """The default config: config/config.yaml (a fresh copy: callers may change it)."""
    return copy.deepcopy(_packaged("config.yaml"))


def packaged_schema() -> dict:
    """workflow/schemas/config.schema.yaml as shipped with the package."""
    return copy.deepcopy(_packaged("config.schema.yaml"))


@functools.cache
def _packaged(name: str) -> dict:
    return yaml.safe_load(resources.files(__package__).joinpath(name).read_text())


def merged(base: dict, update: dict) -> dict:
    """`update` merged into a copy of `base`, nested blocks key by key (Snakemake's --configfile rule)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config(path) -> dict:
    """A config file merged over the defaults and checked against the schema (as the workflow reads it)."""
    try:
        with open(path) as f:
            given = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(given, dict):
        raise ConfigError(f"config file {path} must hold a block of keys, not {type(given).__name__}")
    config = merged(defaults(), given)
    raise_errors(config_errors(config, packaged_schema()), f"invalid config file {path}")
    return config


def load_schema(path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def config_errors(config: dict, schema: dict) -> list[str]:
    """One line per schema violation, in key order (empty if the config is valid)."""
    errors = sorted(Draft202012Validator(schema).iter_errors(config),
                    key=lambda e: [str(p) for p in e.absolute_path])
    return [describe(e) for e in errors]


def check_config(config: dict, schema_path) -> None:
    """Raise ConfigError listing every mistake (at most MAX_ERRORS lines) if `config` breaks the schema."""
    raise_errors(config_errors(config, load_schema(schema_path)), "invalid config")


def raise_errors(lines: list[str], what: str) -> None:
    """ConfigError listing the lines (at most MAX_ERRORS), if there are any."""
    if not lines:
        return
    shown = lines[:MAX_ERRORS]
    if len(lines) > MAX_ERRORS:
        shown.append(f"... and {len(lines) - MAX_ERRORS} more")
    raise ConfigError(f"{what} (every key is explained in config/README.md):\n"
                      + "\n".join(f"  - {line}" for line in shown))


def key_path(parts) -> str:
    return ".".join(str(p) for p in parts)


def describe(error) -> str:
    """A jsonschema ValidationError as one line naming the key path, what is allowed and what was given."""
    path = key_path(error.absolute_path)
    where = f"`{path}`" if path else "the config"
    kind, value, schema = error.validator, error.instance, error.schema
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(value) - set(allowed), key=str)
        block = f"in `{path}`" if path else "at the top level"
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hints.append(f"`{key_path([*error.absolute_path, key])}`"
                         + (f" (did you mean `{key_path([*error.absolute_path, close[0]])}`?)" if close else ""))
        return f"unknown key {', '.join(hints)}; allowed keys {block}: {', '.join(allowed)}"
    if kind == "required":
        missing = [k for k in schema.get("required", []) if k not in value]
        return f"{where} lacks key(s) {', '.join(missing)}"
    return f"{where} must be {allowed_values(schema)}; got {given(value)}"


def allowed_values(schema: dict) -> str:
    """What a schema accepts, in words: `an integer >= 1`, `one of: rank, threshold, none`, ..."""
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of: " + ", ".join(str(v) for v in schema["enum"])
    for combine in ("oneOf", "anyOf"):
        if combine in schema:
            return " or ".join(allowed_values(s) for s in schema[combine])
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    text = " or ".join(TYPE_NAMES.get(t, t) for t in types) or "a valid value"
    lo = ("[", schema["minimum"]) if "minimum" in schema else ("(", schema.get("exclusiveMinimum"))
    hi = ("]", schema["maximum"]) if "maximum" in schema else (")", schema.get("exclusiveMaximum"))
    if lo[1] is not None and hi[1] is not None:
        text += f" in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    elif lo[1] is not None:
        text += f" {'>=' if lo[0] == '[' else '>'} {lo[1]}"
    elif hi[1] is not None:
        text += f" {'<=' if hi[0] == ']' else '<'} {hi[1]}"
    if "minItems" in schema or "maxItems" in schema:
        lo, hi = schema.get("minItems"), schema.get("maxItems")
        text += f" of {lo} items" if lo == hi else f" of {lo or 0} to {hi if hi is not None else 'any'} items"
    if "items" in schema and isinstance(schema["items"], dict):
        text += f", each {allowed_values(schema['items'])}"
    if schema.get("minLength"):
        text += " (not empty)"
    return text


def given(value) -> str:
    kind = {bool: "true/false", int: "an integer", float: "a number", str: "text", dict: "a block of keys",
            list: "a list", type(None): "empty"}.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({kind})"


def schema_path(workflow_dir) -> Path:
    """The schema file of a workflow folder (the one holding the Snakefile)."""
    return Path(workflow_dir) / "workflow" / "schemas" / "config.schema.yaml"
