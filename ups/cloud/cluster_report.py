"""What ``ups cluster-check`` reports (``Issue``, ``CheckReport``), the checker every check writes to (each
problem at its YAML key path and line), and the facts more than one check reads."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml


PLACEHOLDERS = {
    "ami-0123456789abcdef0": "ImageId is the documentation example AMI",
    "203.0.113.0/24": "the SSH CIDR is the documentation range 203.0.113.0/24",
}

# EC2 instance families with NVIDIA GPUs that the pinned torch's PyPI CUDA wheels run on (torch ≥ 2.11: CUDA 13,
# Turing sm_75 and newer; pytorch/pytorch#172352, #175253). botocore's offline model lists instance type names only
# (GPU counts need the online DescribeInstanceTypes call), hence this table. Not here on purpose: p2/g2/g3/g3s
# (Kepler/Maxwell), p3/p3dn (VOLTA_FAMILIES), g4ad (AMD), inf*/trn*/dl* (not CUDA). Ray autodetects the GPU count
# of these types when resources has no GPU.
NVIDIA_GPU_FAMILIES = frozenset({
    "g4dn", "g5", "g5g", "g6", "g6e", "g6f", "gr6", "gr6f", "g7", "g7e",
    "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "p6-b300", "p6e-gb200",
})


@dataclass(frozen=True)
class Issue:
    key: str  # YAML key path, e.g. available_node_types['ray.head.cpu'].resources.CPU
    message: str
    fix: str
    line: int | None = None  # 1-based


@dataclass
class CheckReport:
    path: Path
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    config: dict[str, Any] | None = None  # the parsed file, when it parsed to a mapping

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self, strict: bool = False) -> str:
        """One line per problem, then the verdict; ``strict``: warnings are errors (``--strict``) and say so."""
        out = []
        for level, issues in (("error", self.errors), ("error (a warning; --strict)" if strict else "warning",
                                                      self.warnings)):
            for i in issues:
                loc = f"{self.path}:{i.line}" if i.line else str(self.path)
                out.append(f"{loc}: {level}: {i.key}: {i.message}. Fix: {i.fix}")
        if strict and self.ok and self.warnings:
            verdict = f"FAILED under --strict ({len(self.warnings)} warning(s))"
        else:
            verdict = "OK" if self.ok else f"FAILED ({len(self.errors)} error(s))"
        out.append(f"{self.path}: {verdict}; checked {', '.join(self.checks)}; {len(self.warnings)} warning(s)")
        return "\n".join(out)


Path_ = tuple[Any, ...]


def fmt_key(path: Iterable[Any]) -> str:
    s = ""
    for p in path:
        if isinstance(p, int):
            s += f"[{p}]"
        elif "." in str(p) or " " in str(p):
            s += f"['{p}']"
        else:
            s += ("." if s else "") + str(p)
    return s or "<top level>"


def as_map(x: Any) -> dict:
    """``x`` if it is a mapping, else {} (the schema check reports the wrong type)."""
    return x if isinstance(x, dict) else {}


def as_seq(x: Any) -> list:
    """``x`` if it is a list, else [] (the schema check reports the wrong type)."""
    return x if isinstance(x, list) else []


def _line_index(text: str) -> dict[Path_, int]:
    """YAML key path → 1-based line, from the composed node tree."""
    index: dict[Path_, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return index

    def walk(node: yaml.Node, path: Path_) -> None:
        index.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                index.setdefault(path + (key,), k.start_mark.line + 1)
                walk(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, path + (i,))

    if root is not None:
        walk(root, ())
    return index


class Checker:
    def __init__(self, path: Path, text: str) -> None:
        self.report = CheckReport(path)
        self.lines = _line_index(text)
        self.text = text

    def line(self, key: Path_) -> int | None:
        while key not in self.lines and key:
            key = key[:-1]
        return self.lines.get(key)

    def error(self, key: Path_, message: str, fix: str) -> None:
        self.report.errors.append(Issue(fmt_key(key), message, fix, self.line(key)))

    def warn(self, key: Path_, message: str, fix: str) -> None:
        self.report.warnings.append(Issue(fmt_key(key), message, fix, self.line(key)))


def botocore_path(where: str) -> Path_:
    out: list[Any] = []
    for part in re.findall(r"\.?([^.\[\]]+)|\[(\d+)\]", where):
        out.append(int(part[1]) if part[1] else part[0])
    return tuple(out)
