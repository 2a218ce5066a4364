"""Strict YAML reading for files users write (search spaces, sweep profiles, cluster files).

``yaml.safe_load`` keeps the last of two equal mapping keys without a word (a parameter written twice,
two ``params:`` sections): :class:`UniqueKeyLoader` refuses them with the mapping they are in and both lines.
:func:`read_yaml` turns every way a file can fail to read (missing, a folder, not UTF-8, bad syntax,
duplicate keys) into one line naming the file, the place and the fix.  No Ray, no OmegaConf.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping has the same key twice: ``key``, the ``first`` and the repeated (``again``) 1-based line, and
    the ``path`` of the mapping it is in (``params``, ``a.b``, ``trial[0]``; "" at the top level)."""

    def __init__(self, key: str, first: int, again: int, mark: Any, path: str = "") -> None:
        where = f"in '{path}'" if path else "at the top level"
        super().__init__(None, None, f"key '{key}' appears twice {where} (lines {first} and {again}); YAML would keep "
                                     f"only the last one. Fix: remove one of them, or merge them into one entry", mark)
        self.key, self.first, self.again, self.path = key, first, again, path


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate mapping keys (the mapping's path and the lines in the message)."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._paths: dict[int, str] = {}
        self._index(node, "")
        return super().construct_document(node)

    def _index(self, node: yaml.Node, path: str) -> None:
        """The dotted path of every mapping/sequence node (an alias keeps the path of its anchor)."""
        if id(node) in self._paths:
            return
        self._paths[id(node)] = path
        if isinstance(node, yaml.MappingNode):
            for key_node, value in node.value:
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                self._index(value, f"{path}.{name}" if path else str(name))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index(item, f"{path}[{i}]")

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges are not duplicates
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports unhashable keys
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(str(key), seen[key], line, key_node.start_mark,
                                        getattr(self, "_paths", {}).get(id(node), ""))
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def yaml_error_text(e: yaml.YAMLError) -> str:
    """One line: where (line, column) and what, for any PyYAML error."""
    if isinstance(e, DuplicateKeyError):
        return str(e.problem)
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = " ".join(x for x in (e.problem, e.context) if x) or str(e).split("\n")[0]
        hint = " (tabs are not allowed for indentation: use spaces)" if "\\t" in what or "tab" in what else ""
        return f"{where}{what}{hint}"
    return str(e).replace("\n", " ")


def loads_yaml(text: str, source: str, error: type[Exception] = ValueError) -> Any:
    """Parse YAML text with :class:`UniqueKeyLoader`; errors become ``error("<source>: …")``."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise error(f"{source}: not valid YAML at {yaml_error_text(e)}"
                    if isinstance(e, yaml.MarkedYAMLError) and not isinstance(e, DuplicateKeyError)
                    else f"{source}: {yaml_error_text(e)}") from None


def read_yaml(path: str | Path, error: type[Exception] = ValueError, what: str = "YAML file") -> Any:
    """Read and parse a user-written YAML file; every failure is ``error`` with one line naming the file."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder, not a {what}. Fix: give the path of a .yaml file, e.g. "
                    f"{path / 'example.yaml'}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as e:
        raise error(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise error(f"{path}: not UTF-8 text (byte {raw[e.start]:#04x} at line {line}). Fix: save the file as "
                    f"UTF-8") from None
    return loads_yaml(text, str(path), error)
