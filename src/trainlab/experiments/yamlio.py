"""Reading config YAML the way people write it: numbers are numbers, keys are unique, sizes are bounded.

PyYAML follows YAML 1.1, whose float rule needs a dot, so ``1e-3`` and ``1.0e6`` load as strings
and an optimizer then refuses the "learning rate 1e-3". :class:`ConfigLoader` uses the YAML 1.2
float rule instead (``1e-3``, ``1E6``, ``.5``, ``-2.``, ``.inf``, ``.nan`` are floats). A key given
twice in one mapping is an error (PyYAML keeps the last one silently). Anchors and aliases are
allowed, but a document whose expansion would hold more than :data:`MAX_NODES` values (a
"billion laughs" file is 670 bytes and expands to 10⁹ strings), nests deeper than
:data:`MAX_DEPTH`, refers to itself or holds a text longer than :data:`MAX_STRING` characters is
refused before anything walks it.
"""
from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Any

import yaml

MAX_NODES = 100_000      # values in the fully expanded document (a large sweep file has a few thousand)
MAX_DEPTH = 64           # nesting levels (configs use about five)
MAX_STRING = 10_000      # characters in one value (a path or a name is far shorter)
MAX_FILE_BYTES = 10 * 2**20

# YAML 1.2 core schema float (plus PyYAML's inf/nan spellings); ints keep PyYAML's rule
_FLOAT_12 = re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?
                            |[-+]?\.(?:inf|Inf|INF)
                            |\.(?:nan|NaN|NAN))$""", re.X)

_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxtuple, _short.maxdict, _short.maxlevel = 40, 40, 4, 4, 4, 2


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters without ever building the whole repr."""
    text = _short.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def clip(text: str, limit: int = 60) -> str:
    """``text`` itself (no quotes), cut to ``limit`` characters."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


class YamlError(ValueError):
    """A YAML document breaks one of the rules above; the message names where."""


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the YAML 1.2 float rule, an error on duplicate keys and a nesting bound."""

    _depth = 0

    def compose_node(self, parent, index):
        # composing recurses once per level: stop a 5000-deep "[[[[..." long before Python's stack does
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        None, None, "a mapping key must be a plain value, not a list or mapping",
                        key_node.start_mark) from None
                if key in seen:
                    line = seen[key].start_mark.line + 1
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {short(key)} (first given on line {line}); keep one",
                        key_node.start_mark)
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+.0123456789"))


def check_expansion(data: Any, source: str = "config") -> None:
    """Refuse documents that expand to more than :data:`MAX_NODES` values, nest too deep or loop.

    Aliases share one object, so sizes are counted per object once and multiplied by its uses:
    a billion-laughs document is refused after visiting its ten small lists.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node, depth: int, path=()) -> int:
        if isinstance(node, str) and len(node) > MAX_STRING:
            where = ".".join(map(str, path)) or "(top level)"
            raise YamlError(f"{source}: {clip(where)} is a text of {len(node):,} characters ({short(node, 30)}); "
                            f"a config value is at most {MAX_STRING:,}")
        if not isinstance(node, (dict, list)):
            return 1
        ident = id(node)
        if ident in sizes:
            return sizes[ident]
        if ident in active:
            raise YamlError(f"{source}: an alias refers to the mapping or list that contains it (a loop)")
        if depth > MAX_DEPTH:
            raise YamlError(f"{source}: nested more than {MAX_DEPTH} levels deep")
        active.add(ident)
        total = 1
        for key, child in (node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(key, str) and len(key) > MAX_STRING:
                raise YamlError(f"{source}: a key of {len(key):,} characters ({short(key, 30)}); keys are names")
            total += size(child, depth + 1, (*path, key))
            if total > MAX_NODES:
                raise YamlError(f"{source}: expands to more than {MAX_NODES:,} values (through aliases or sheer "
                                "size); a config needs far fewer, so look for an alias used many times")
        active.discard(ident)
        sizes[ident] = total
        return total

    size(data, 0)


def _unshare(node):
    """A plain tree: each alias use becomes its own copy, so editing one place changes only that place."""
    if isinstance(node, dict):
        return {k: _unshare(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unshare(v) for v in node]
    return node


def loads(text: str, source: str = "config") -> Any:
    """Parse one YAML document with :class:`ConfigLoader` and the size bounds (``YamlError`` on failure)."""
    try:
        data = yaml.load(text, Loader=ConfigLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(err.problem or err.context or "").split())
        raise YamlError(f"{source} is not valid YAML{where}: {what}") from None
    except yaml.YAMLError as err:
        raise YamlError(f"{source} is not valid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise YamlError(f"{source}: nested more than {MAX_DEPTH} levels deep") from None
    check_expansion(data, source)
    return _unshare(data)


def load_file(path: str | Path) -> Any:
    """Read and parse a YAML file (``YamlError`` when missing, too large, invalid or bounded out)."""
    path = Path(path)
    if not path.is_file():
        raise YamlError(f"config file {path} does not exist")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise YamlError(f"config file {path} is {path.stat().st_size:,} bytes; a config is at most "
                        f"{MAX_FILE_BYTES:,}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise YamlError(f"config file {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    return loads(text, str(path))
