"""``ups cluster-check cluster.yaml``: validate a Ray autoscaler file offline, before spending money.

Six layers, all offline (no AWS credentials, no network):

0. The file itself: UTF-8, valid YAML, one document, no duplicate keys (YAML would keep the last).
1. Ray's own schema and semantics (``ray.autoscaler._private.util.prepare_config`` +
   ``validate_config``; private API, hence ray is pinned).
2. botocore's offline EC2 model: parameter validation of every ``node_config`` against the
   ``RunInstances`` input shape and of the security group rules against
   ``AuthorizeSecurityGroupIngress``, enum values (``MarketType``, ``VolumeType``, …), the instance
   type, the region (botocore's endpoint data) and that availability zones lie in the region; a spot
   ``MaxPrice`` is a positive decimal string (botocore's shape only says "string").
3. Security rules: no rule opens a port to the internet, i.e. to a CIDR that is not private and wider
   than /16 (IPv4) or /32 (IPv6) (dashboard 8265, GCS 6379, client 10001 or any other port); no Ray port
   (those three and the object manager's 8076, over TCP) is open to an IPv4 range outside the private space VPCs
   use (RFC 1918, 100.64/10, 198.18/15), an office's /24 included (IPv6 outside fc00::/7: a warning, as a VPC's
   own IPv6 block is global); SSH is allowed from a configured CIDR only; with ``auth.ssh_private_key``, every
   node type names a ``KeyName`` (Ray asserts it at ``ray up``) and the key file exists (a warning); every node has an IAM instance profile; no credentials or
   tokens anywhere in the file; the dashboard binds to localhost.
4. Project rules: the head node has ``resources: {CPU: 0}`` (it runs no trials); some worker type
   can provide a GPU (NVIDIA GPU instance family, see ``NVIDIA_GPU_FAMILIES``, and max_workers > 0,
   a node type's max_workers not above the top-level one); no torch without CUDA (PyTorch's
   ``whl/cpu`` or ``whl/rocm…`` index, a ``+cpu`` / ``+rocm…`` pin, inline or in a ``-r`` / ``-c``
   file) on the GPU workers; ``idle_timeout_minutes`` a positive number;
   every install of ray/torch/optuna/wandb/hydra-core in any setup command, inline or in a
   ``pip install -r`` file that a file_mount brings, is pinned with ``==`` to ``pyproject.toml`` (ray
   also to the client's ``ray.__version__``); ``file_mounts`` sources exist and the setup installs
   the mounted repository (``pip install -e <mount target>``); ray with its ``default`` extra (a warning: the
   dashboard and the Jobs API), or Ray's own docker image of the client's version; no V100 type (the pinned torch
   has no Volta kernels), a warning for an arm64 GPU host.
5. Start commands: the head's ``ray start --head`` with the autoscaler's config, the workers' with
   ``--address=$RAY_HEAD_IP``, and a ``ray`` a venv holds activated in ``~/.bashrc`` (Ray sources it).

Every problem names the file, the line, the YAML key path and the fix; errors make the exit code 1.
The checker never raises for a problem in the file.
"""
from __future__ import annotations

import argparse
import copy
import difflib
import functools
import ipaddress
import json
import logging
import math
import posixpath
import re
import shlex
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from ups.yamlio import DuplicateKeyError, UniqueKeyLoader

DASHBOARD_PORT, GCS_PORT, CLIENT_PORT, SSH_PORT = 8265, 6379, 10001, 22
NAMED_PORTS = {DASHBOARD_PORT: "Ray dashboard/job API", GCS_PORT: "Ray GCS", CLIENT_PORT: "Ray client",
               SSH_PORT: "SSH", 8076: "object manager"}
RAY_PORTS = (GCS_PORT, 8076, DASHBOARD_PORT, CLIENT_PORT)  # what must never be reachable from outside the VPC
AMI_ID = re.compile(r"ami-(?:[0-9a-f]{8}|[0-9a-f]{17})")  # what EC2 takes as an ImageId
PLACEHOLDERS = {
    "ami-0123456789abcdef0": "ImageId is the documentation example AMI",
    "203.0.113.0/24": "the SSH CIDR is the documentation range 203.0.113.0/24",
}
# (name, regex on the raw text) — anything that looks like a credential is refused.
SECRET_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b")),
    ("AWS secret key setting", re.compile(r"aws_secret_access_key|AWS_SECRET_ACCESS_KEY|SecretAccessKey", re.I)),
    ("AWS session token setting", re.compile(r"aws_session_token|AWS_SECURITY_TOKEN", re.I)),
    ("private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("GitHub token", re.compile(r"\b(?:ghp|gho|ghs|ghu|github_pat)_[A-Za-z0-9_]{20,}")),
    ("Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}")),
    ("Slack token", re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}")),
    ("W&B API key", re.compile(r"WANDB_API_KEY\s*[=:]", re.I)),
    ("password/token/secret value", re.compile(
        r"\b[\w.-]*(?:password|passwd|secret|token|api[_-]?key)s?\s*[=:]\s*['\"]?"
        r"(?=[A-Za-z0-9/+_\-=.]*\d)(?=[A-Za-z0-9/+_\-=.]*[A-Za-z])[A-Za-z0-9/+_\-=.]{12,}", re.I)),
]
# Packages whose every install on the nodes must be pinned with == to pyproject.toml.
PINNED = ("torch", "ray", "optuna", "wandb", "hydra-core")
# EC2 instance families with NVIDIA GPUs that the pinned torch's PyPI CUDA wheels run on (torch ≥ 2.11: CUDA 13,
# Turing sm_75 and newer; pytorch/pytorch#172352, #175253). botocore's offline model lists instance type names only
# (GPU counts need the online DescribeInstanceTypes call), hence this table. Not here on purpose: p2/g2/g3/g3s
# (Kepler/Maxwell), p3/p3dn (VOLTA_FAMILIES), g4ad (AMD), inf*/trn*/dl* (not CUDA). Ray autodetects the GPU count
# of these types when resources has no GPU.
NVIDIA_GPU_FAMILIES = frozenset({
    "g4dn", "g5", "g5g", "g6", "g6e", "g6f", "gr6", "gr6f", "g7", "g7e",
    "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "p6-b300", "p6e-gb200",
})
# V100 (sm_70): dropped from PyTorch's CUDA 12.8+ wheels in 2.11; the PyPI torch==2.13.0 fails there with "no kernel
# image is available for execution on the device"
VOLTA_FAMILIES = frozenset({"p3", "p3dn"})
# arm64 hosts (Graviton g5g, Grace p6e-gb200): they boot only an arm64 AMI, not the x86 Deep Learning AMI of the head
ARM64_GPU_FAMILIES = frozenset({"g5g", "p6e-gb200"})
# PyTorch's indexes of builds without CUDA: CPU-only (whl/cpu, whl/nightly/cpu, whl/cpu-cxx11-abi, …) and
# AMD's ROCm (whl/rocm6.2, …)
CPU_TORCH_INDEX = re.compile(r"[^\s'\"=]*download\.pytorch\.org/whl/(?:nightly/|test/)?(?:cpu|rocm[\d.]*)\b[^\s'\"]*")
TORCH_PACKAGES = frozenset({"torch", "torchvision", "torchaudio"})
# botocore's MaxPrice documentation: "Specifying a value below USD $0.001 will result in an InvalidParameterValue".
MIN_SPOT_PRICE = Decimal("0.001")
# below this, the gaps of a sweep (promotion full-eval, baselines, a resume) outlast the timeout (Ray's default: 5)
SHORT_IDLE_MINUTES = 2
# IPv4 ranges that are not private and wider than this prefix are "the internet" (IPv6: /32).
PUBLIC_MAX_PREFIX = {4: 16, 6: 32}


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


# ------------------------------------------------------------------------------- key paths
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


def _map(x: Any) -> dict:
    """``x`` if it is a mapping, else {} (the schema check reports the wrong type)."""
    return x if isinstance(x, dict) else {}


def _seq(x: Any) -> list:
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


class _Checker:
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


# --------------------------------------------------------------------------------- checks
def _check_secrets(c: _Checker) -> None:
    key_at_line = {}
    for key, ln in c.lines.items():
        key_at_line.setdefault(ln, key)
    for n, raw in enumerate(c.text.splitlines(), start=1):
        for name, pat in SECRET_PATTERNS:
            if pat.search(raw):
                key = key_at_line.get(n, ("<comment>",))
                c.report.errors.append(Issue(
                    fmt_key(key), f"looks like a {name} (line {n}); credentials must never be in the cluster file",
                    "delete it (and rotate it if it was real); nodes get S3 access from IamInstanceProfile, "
                    "W&B/other tokens come from the environment or a secrets manager", n))
                break
    c.report.checks.append("secrets")


def _ray_semantic_issue(e: BaseException, cfg: dict[str, Any]) -> tuple[Path_, str]:
    """Key path and fix for an exception of Ray's prepare_config/validate_config."""
    msg = str(e)
    nts = _map(cfg.get("available_node_types"))
    if "docker" in cfg and (isinstance(e, AssertionError) or "container" in msg or "image" in msg):
        return ("docker",), ("set both docker.image and docker.container_name (e.g. container_name: ray_container), "
                             "or delete the docker section to run Ray on the host (this project's setup)")
    if "head_node_type" in msg:
        if "head_node_type" not in cfg:
            return ("head_node_type",), f"add head_node_type: one of {', '.join(map(str, nts)) or '(no node types)'}"
        return ("head_node_type",), (f"head_node_type is {cfg.get('head_node_type')!r}; set it to one of the "
                                     f"available_node_types: {', '.join(map(str, nts))}")
    if "min_workers" in msg and "max_workers" in msg:
        total = sum(nt.get("min_workers", 0) for nt in nts.values()
                    if isinstance(nt, dict) and isinstance(nt.get("min_workers", 0), int))
        return ("max_workers",), f"raise max_workers to at least {total} (the sum of min_workers) or lower min_workers"
    if "cluster_synced_files" in msg:
        return (), f"use the same ray version on this machine and in the cluster ({msg})"
    return (), "fix the field named in Ray's message"


_TYPE_EXAMPLES = {"integer": "4, no quotes", "number": "4, no quotes", "boolean": "true, no quotes",
                  "string": "text", "array": "[a, b]", "object": "{key: value, …} (indented lines or braces)"}


def _type_example(key: tuple[Any, ...], kind: Any) -> str:
    """`` (e.g. <leaf>: <a value of that type>)``, for the schema's type errors."""
    example = _TYPE_EXAMPLES.get(kind if isinstance(kind, str) else "")
    leaf = next((k for k in reversed(key) if isinstance(k, str)), None)
    return f" (e.g. {leaf}: {example})" if example and leaf else ""


def _check_ray_schema(c: _Checker, cfg: dict[str, Any]) -> dict[str, Any] | None:
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema_path = Path(__import__("ray.autoscaler", fromlist=["x"]).__file__).parent / "ray-schema.json"
    schema = json.loads(schema_path.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    for e in errors:
        key = tuple(e.absolute_path)
        if key == ("idle_timeout_minutes",):
            continue  # _check_idle_timeout says what the value does to a sweep
        if e.validator == "additionalProperties":
            bad = re.findall(r"'([^']+)'", e.message.split("(")[-1])
            allowed = list(e.schema.get("properties", {}))
            for b in bad or ["?"]:
                near = difflib.get_close_matches(b, allowed, n=1)
                hint = f"did you mean '{near[0]}'?" if near else f"valid keys here: {', '.join(allowed)}"
                c.error(key + (b,), f"unknown key '{b}' (Ray's cluster schema)", f"remove it or correct the spelling: {hint}")
        elif e.validator == "type":
            c.error(key, f"{e.instance!r} is not of type {e.validator_value}",
                    f"write a value of type {e.validator_value}{_type_example(key, e.validator_value)}")
        elif e.validator == "required":
            c.error(key, e.message, "add the missing key (see Ray's example-full.yaml)")
        else:
            c.error(key, e.message, "follow Ray's cluster schema (ray/autoscaler/ray-schema.json)")
    if errors:
        return None
    try:
        ray_logger = logging.getLogger("ray.autoscaler")
        level, ray_logger.level = ray_logger.level, logging.WARNING
        try:
            prepared = prepare_config(copy.deepcopy(cfg))
        finally:
            ray_logger.setLevel(level)
        validate_config(prepared)
    except jsonschema.ValidationError as e:
        c.error(tuple(e.absolute_path), e.message, "follow Ray's cluster schema")
        return None
    except Exception as e:  # noqa: BLE001 - Ray raises ValueError, AssertionError, KeyError, …
        key, fix = _ray_semantic_issue(e, cfg)
        c.error(key, f"Ray rejects the file: {type(e).__name__}: {e}", fix)
        return None
    c.report.checks.append("Ray schema")
    return prepared


@functools.lru_cache(maxsize=1)
def _ec2_model() -> Any:
    """botocore's EC2 service model, read once per process (its JSON takes ~0.15 s to parse; a check reads
    it twice, and the model is only read from)."""
    import botocore.session

    return botocore.session.get_session().get_service_model("ec2")


def _report_param_errors(c: _Checker, base: Path_, report: Any, api: str) -> None:
    for kind, where, details in getattr(report, "_errors", []):
        key = base + _botocore_path(where)
        if kind == "unknown field":
            bad, valid = details["unknown_param"], details["valid_names"]
            near = difflib.get_close_matches(bad, valid, n=1)
            hint = f"did you mean '{near[0]}'?" if near else f"see the EC2 {api} API"
            c.error(key + (bad,), f"'{bad}' is not an EC2 {api} parameter", hint)
        elif kind == "invalid type":
            c.error(key, f"{details['param']!r} has the wrong type",
                    f"use {', '.join(t.strip('<>').replace('class ', '') for t in map(str, details['valid_types']))}")
        elif kind == "missing required field":
            c.error(key + (details["required_name"],), f"required by EC2 {api}", "add it")
        else:
            c.error(key, f"EC2 {api}: {kind} {details}", f"see the EC2 {api} API")


def _check_enums(c: _Checker, value: Any, shape: Any, key: Path_, skip: frozenset[str] = frozenset()) -> None:
    """Enum values anywhere below ``shape`` (botocore's ParamValidator ignores enums)."""
    tname = getattr(shape, "type_name", None)
    if tname == "structure" and isinstance(value, dict):
        for k, v in value.items():
            if k in shape.members and k not in skip:
                _check_enums(c, v, shape.members[k], key + (k,))
    elif tname == "list" and isinstance(value, list):
        for i, v in enumerate(value):
            _check_enums(c, v, shape.member, key + (i,))
    elif tname == "map" and isinstance(value, dict):
        for k, v in value.items():
            _check_enums(c, v, shape.value, key + (k,))
    elif tname == "string" and isinstance(value, str) and getattr(shape, "enum", None):
        enum = list(shape.enum)
        if value not in enum:
            near = difflib.get_close_matches(value, enum, n=1)
            hint = f"did you mean '{near[0]}'? " if near else ""
            c.error(key, f"'{value}' is not a valid value (EC2 accepts: {', '.join(enum[:12])}"
                    f"{', …' if len(enum) > 12 else ''})", f"{hint}use one of the listed values")


def _check_node_configs(c: _Checker, cfg: dict[str, Any]) -> None:
    from botocore.validate import ParamValidator

    model = _ec2_model()
    shape = model.operation_model("RunInstances").input_shape
    known_types = set(shape.members["InstanceType"].enum or [])
    for name, nt in _map(cfg.get("available_node_types")).items():
        if not isinstance(nt, dict) or not isinstance(nt.get("node_config"), dict):
            continue
        base: Path_ = ("available_node_types", name, "node_config")
        params = copy.deepcopy(nt["node_config"])
        spot = _map(_map(params.get("InstanceMarketOptions")).get("SpotOptions"))
        if "MaxPrice" in spot:  # botocore knows only "string"; _check_max_price says what EC2 accepts
            _check_max_price(c, base + ("InstanceMarketOptions", "SpotOptions", "MaxPrice"), spot.pop("MaxPrice"))
        subnet_ids = params.pop("SubnetIds", None)  # Ray-specific list, translated to SubnetId
        if subnet_ids is not None and not (isinstance(subnet_ids, list) and all(isinstance(s, str) for s in subnet_ids)):
            c.error(base + ("SubnetIds",), "must be a list of subnet ids", "write SubnetIds: [subnet-…]")
        params.setdefault("MinCount", 1)
        params.setdefault("MaxCount", 1)
        _report_param_errors(c, base, ParamValidator().validate(params, shape), "RunInstances")
        _check_enums(c, params, shape, base, skip=frozenset({"InstanceType"}))
        itype = params.get("InstanceType")
        if isinstance(itype, str) and known_types and itype not in known_types:
            near = difflib.get_close_matches(itype, sorted(known_types), n=1)
            c.error(base + ("InstanceType",), f"unknown EC2 instance type '{itype}'",
                    (f"did you mean '{near[0]}'?" if near else "check the type") +
                    " (if it is newer than botocore, upgrade botocore)")
        for value_key in ("ImageId",):
            v = params.get(value_key)
            if isinstance(v, str) and v in PLACEHOLDERS:
                c.warn(base + (value_key,), PLACEHOLDERS[v], "replace it with the AMI id for your region (docs/CLUSTER.md)")
            elif isinstance(v, str) and v.lower() not in ("", "latest_dlami") and not AMI_ID.fullmatch(v):
                c.error(base + (value_key,), f"'{v}' is not an AMI id (ami- and 8 or 17 hex digits): RunInstances fails "
                        f"with InvalidAMIID.Malformed and no node of this type starts",
                        "the AMI id for your region (docs/CLUSTER.md), or latest_dlami for Ray's default deep "
                        "learning AMI")
        _check_volume_sizes(c, params.get("BlockDeviceMappings"), base + ("BlockDeviceMappings",))
    c.report.checks.append("EC2 RunInstances parameters")


def _check_volume_sizes(c: _Checker, mappings: Any, key: Path_) -> None:
    """EBS volume sizes EC2 refuses (botocore's shape has no minimum): at least 1 GiB (125 for st1/sc1, 4 for io1/io2)."""
    if not isinstance(mappings, list):
        return
    for i, m in enumerate(mappings):
        ebs = _map(_map(m).get("Ebs"))
        size, vtype = ebs.get("VolumeSize"), str(ebs.get("VolumeType") or "gp3")
        least = {"st1": 125, "sc1": 125, "io1": 4, "io2": 4}.get(vtype, 1)
        if isinstance(size, int) and not isinstance(size, bool) and size < least:
            c.error(key + (i, "Ebs", "VolumeSize"), f"{size} GiB is below the {least} GiB a {vtype} volume needs: "
                    f"RunInstances fails and no node of this type starts",
                    f"a size ≥ {least} GiB, and at least the AMI's own snapshot (the example uses 150)")


def _max_price_problem(value: Any) -> str | None:
    """Why EC2 would reject this spot ``MaxPrice`` (a decimal USD amount per hour, as a string), or None."""
    if isinstance(value, str):
        if re.fullmatch(r"\d+(?:\.\d+)?|\.\d+", value) and Decimal(value) >= MIN_SPOT_PRICE:
            return None
        return (f"MaxPrice {value!r} is not a price EC2 accepts (a positive decimal USD amount per hour, at least "
                f"${MIN_SPOT_PRICE}): RunInstances fails with InvalidParameterValue and no spot worker ever starts")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (f"MaxPrice is the YAML number {value}: EC2's RunInstances takes a string (botocore's shape), so "
                "the launch is refused and no spot worker ever starts")
    return f"MaxPrice is {value!r}, not a price string: no spot worker would ever start"


def _check_max_price(c: _Checker, key: Path_, value: Any) -> None:
    problem = _max_price_problem(value)
    if problem is None:
        return
    quoted = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and _max_price_problem(str(value)) is None)
    fix = (f'write MaxPrice: "{value}" (quoted)' if quoted else
           'write the hourly USD limit as a quoted decimal, e.g. MaxPrice: "1.20"')
    c.error(key, problem, fix + ", or delete MaxPrice (AWS's advice: you then pay the current spot price, "
            "never more than on-demand)")


@functools.lru_cache(maxsize=1)
def _known_regions() -> frozenset[str]:
    import botocore.session

    session = botocore.session.get_session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(regions)


def _check_provider(c: _Checker, cfg: dict[str, Any]) -> None:
    """Region against botocore's offline endpoint data, zones inside the region, security group params."""
    from botocore.validate import ParamValidator

    provider = _map(cfg.get("provider"))
    region = provider.get("region")
    if isinstance(region, str):
        known = _known_regions()
        if known and region not in known:
            near = difflib.get_close_matches(region, sorted(known), n=1)
            c.error(("provider", "region"), f"'{region}' is not an AWS region with EC2 (botocore's endpoint data)",
                    (f"did you mean '{near[0]}'? " if near else "") +
                    "use your bucket's region, e.g. us-west-2 (if the region is newer than botocore, upgrade botocore)")
        zones = provider.get("availability_zone")
        if isinstance(zones, str) and (not known or region in known):
            bad = [z for z in (z.strip() for z in zones.split(","))
                   if z and not (z.startswith(region) and len(z) > len(region))]
            if bad:
                c.error(("provider", "availability_zone"),
                        f"zone(s) {', '.join(bad)} not in region '{region}' (a zone name starts with its region)",
                        f"use zones of {region} (e.g. {region}a,{region}b) or change provider.region")
    sg = provider.get("security_group")
    if isinstance(sg, dict) and "IpPermissions" in sg:
        shape = _ec2_model().operation_model("AuthorizeSecurityGroupIngress").input_shape
        params = {"IpPermissions": sg["IpPermissions"]}
        _report_param_errors(c, ("provider", "security_group"), ParamValidator().validate(params, shape),
                             "AuthorizeSecurityGroupIngress")
        _check_enums(c, params, shape, ("provider", "security_group"))
    c.report.checks.append("region and zones")


def _botocore_path(where: str) -> Path_:
    out: list[Any] = []
    for part in re.findall(r"\.?([^.\[\]]+)|\[(\d+)\]", where):
        out.append(int(part[1]) if part[1] else part[0])
    return tuple(out)


def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None


def _world(cidr: str) -> bool:
    net = _network(cidr)
    return net is not None and net.prefixlen == 0


def _public_wide(cidr: str) -> bool:
    """The CIDR is the internet for our purposes: not private and wider than /16 (IPv6: /32)."""
    net = _network(cidr)
    return net is not None and not net.is_private and net.prefixlen < PUBLIC_MAX_PREFIX[net.version]


VPC_RANGES = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                                     "198.18.0.0/15", "fc00::/7"))  # what VPC blocks are drawn from


def _vpc_range(cidr: str) -> bool:
    """The CIDR lies in the private address space VPCs use (RFC 1918, 100.64/10, 198.18/15, IPv6 unique local):
    the cluster's own network.  Not ``is_private``, which also counts the documentation ranges (203.0.113.0/24)
    users edit."""
    net = _network(cidr)
    return net is not None and any(net.version == v.version and net.subnet_of(v) for v in VPC_RANGES)


def _ports(rule: dict[str, Any]) -> tuple[int, int]:
    if str(rule.get("IpProtocol", "")) in ("-1", "all"):
        return 0, 65535
    lo, hi = rule.get("FromPort", 0), rule.get("ToPort", 65535)
    lo = 0 if lo in (-1, None) else int(lo)
    hi = 65535 if hi in (-1, None) else int(hi)
    return lo, hi


DASHBOARD_ALL = re.compile(r"--dashboard-host(?:=|\s+)\s*['\"]?\s*(0\.0\.0\.0|::|\[::\]|\*)\s*['\"]?(?:\s|$|;|&)")


def _check_security(c: _Checker, cfg: dict[str, Any]) -> None:
    # Wrong types here are reported by Ray's schema and botocore's AuthorizeSecurityGroupIngress model
    # (_check_provider); this only skips them.
    provider = _map(cfg.get("provider"))
    sg = _map(provider.get("security_group"))
    rules = _seq(sg.get("IpPermissions"))
    malformed = (not isinstance(cfg.get("provider"), dict) or not isinstance(provider.get("security_group", {}), dict)
                 or not isinstance(sg.get("IpPermissions", []), list))
    base: Path_ = ("provider", "security_group", "IpPermissions")
    ssh_ok = False
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        try:
            lo, hi = _ports(rule)
        except (TypeError, ValueError):
            continue
        named = [f"{p} ({NAMED_PORTS[p]})" for p in sorted(NAMED_PORTS) if lo <= p <= hi]
        what = ", ".join(named) if named else f"ports {lo}-{hi}"
        tcp = str(rule.get("IpProtocol", "")).lower() in ("tcp", "6", "-1", "all")  # Ray's ports are TCP
        ray_ports = [f"{p} ({NAMED_PORTS[p]})" for p in RAY_PORTS if lo <= p <= hi] if tcp else []
        for field_, cidr_key in (("IpRanges", "CidrIp"), ("Ipv6Ranges", "CidrIpv6")):
            for j, rng in enumerate(_seq(rule.get(field_))):
                if not isinstance(rng, dict) or not isinstance(rng.get(cidr_key, ""), str):
                    continue
                cidr = rng.get(cidr_key, "")
                key = base + (i, field_, j, cidr_key)
                if cidr and _network(cidr) is None:
                    c.error(key, f"'{cidr}' is not a CIDR", "write an address range such as 198.51.100.0/24")
                elif _world(cidr):
                    c.error(key, f"opens {what} to the whole internet ({cidr})",
                            "never expose Ray ports (unauthenticated job API, CVE-2023-48022); allow SSH from "
                            "your own CIDR only and reach the dashboard with `ray dashboard cluster.yaml`")
                elif _public_wide(cidr):
                    net = _network(cidr)
                    c.error(key, f"opens {what} to a public range of 2^{net.max_prefixlen - net.prefixlen} "
                            f"addresses ({cidr}): ranges that are not private and wider than "
                            f"/{PUBLIC_MAX_PREFIX[net.version]} count as the internet",
                            "allow SSH from your own office/VPN CIDR only and reach the dashboard with "
                            "`ray dashboard cluster.yaml`; never open Ray ports")
                elif ray_ports and cidr and not _vpc_range(cidr):
                    ssh_ok = ssh_ok or lo <= SSH_PORT <= hi  # one error for this rule, not a second for SSH
                    # IPv6: a VPC's own block is Amazon's global unicast, which no offline check tells from an
                    # office's, so a warning; IPv4 outside the ranges VPCs are drawn from: an error
                    (c.warn if _network(cidr).version == 6 else c.error)(
                        key, f"opens {', '.join(ray_ports)} to {cidr}, outside the address space VPCs use: anyone "
                        "there can run code on the cluster through Ray's unauthenticated job API and GCS "
                        "(CVE-2023-48022)",
                        f"open only port 22 to {cidr} (FromPort: 22, ToPort: 22) and reach the dashboard with "
                        "`ray dashboard cluster.yaml`; the nodes reach each other through the security group itself "
                        "(Ray adds that rule; for your own, a UserIdGroupPairs entry naming the group)")
                elif lo <= SSH_PORT <= hi and cidr:
                    ssh_ok = True
                    if cidr in PLACEHOLDERS:
                        c.warn(key, PLACEHOLDERS[cidr], "set it to your office/VPN CIDR before `ray up`")
                    if lo != hi:
                        c.warn(base + (i,), f"opens {what}, more than SSH, to {cidr}", "open only port 22")
    nts = _map(cfg.get("available_node_types"))
    user_groups = bool(nts) and all(
        isinstance(nt, dict) and isinstance(nt.get("node_config"), dict) and nt["node_config"].get("SecurityGroupIds")
        for nt in nts.values()
    )
    if user_groups:
        c.warn(("available_node_types",), "every node type names its own SecurityGroupIds; their rules cannot be "
               "checked offline", "make sure they allow SSH from your CIDR only and no Ray port from the internet")
    elif not ssh_ok and not malformed:
        # Ray uses a group that exists with rules as it is, and gives a group it creates (or finds empty) its own rules:
        # SSH from 0.0.0.0/0, the group itself, then IpPermissions (aws/config.py, _update_inbound_rules). So no
        # IpPermissions here is right for a group made beforehand, and no rule here keeps Ray's 0.0.0.0/0 out.
        c.warn(base, "no SSH rule limited to a CIDR. Ray keeps the rules of a group that exists and has rules, but a "
               "group it creates itself (none by this name in the VPC it picks) gets SSH from 0.0.0.0/0 whatever "
               "IpPermissions says",
               "create the group beforehand with SSH from your CIDR and the group's own rule (docs/CLUSTER.md, One-time "
               "AWS set-up) or name it in every node_config (SecurityGroupIds: [sg-…]); `ups cluster-check --aws` "
               "checks the live group")
    # dashboard must not listen on all interfaces
    for cmd_key in ("head_start_ray_commands",):
        for i, cmd in enumerate(_seq(cfg.get(cmd_key))):
            if DASHBOARD_ALL.search(str(cmd)):
                c.error((cmd_key, i), "starts the dashboard on all interfaces (--dashboard-host=0.0.0.0)",
                        "use --dashboard-host=127.0.0.1 and `ray dashboard cluster.yaml` (SSH tunnel)")
    # IAM instance profile instead of keys
    for name, nt in nts.items():
        nc = nt.get("node_config") if isinstance(nt, dict) else None
        if isinstance(nc, dict) and not nc.get("IamInstanceProfile"):
            c.error(("available_node_types", name, "node_config"),
                    "no IamInstanceProfile: this node cannot reach S3 without keys",
                    "add IamInstanceProfile: {Name: ups-sweeps-worker} (docs/CLUSTER.md)")
        elif isinstance(nc, dict) and isinstance(nc["IamInstanceProfile"], dict) \
                and not (nc["IamInstanceProfile"].get("Name") or nc["IamInstanceProfile"].get("Arn")):
            c.error(("available_node_types", name, "node_config", "IamInstanceProfile"),
                    "IamInstanceProfile has no Name or Arn: this node cannot reach S3 without keys",
                    "write IamInstanceProfile: {Name: ups-sweeps-worker} (docs/CLUSTER.md)")
    for remote, local in _map(cfg.get("file_mounts")).items():
        if re.search(r"(^|/)\.aws(/|$)", str(local)) or re.search(r"(^|/)\.aws(/|$)", str(remote)):
            c.error(("file_mounts", remote), "copies AWS credentials to every node",
                    "remove the mount; nodes use their IAM instance profile")
    c.report.checks.append("security rules")


# ------------------------------------------------------------------------ commands / installs
COMMAND_KEYS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands")
NODE_COMMAND_KEYS = ("initialization_commands", "worker_setup_commands")
# pip options that take a value (the value is not a requirement)
PIP_OPTS_WITH_VALUE = frozenset({
    "-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url", "-f", "--find-links",
    "-t", "--target", "--prefix", "--root", "--src", "--upgrade-strategy", "--trusted-host", "--platform",
    "--python-version", "--implementation", "--abi", "--progress-bar", "--report", "-C", "--config-settings",
    "--global-option", "--no-binary", "--only-binary", "--log", "--cache-dir", "--timeout", "--retries", "--proxy",
    "--exists-action", "--cert", "--client-cert", "--python", "-p",
})


def _all_commands(cfg: dict[str, Any]) -> list[tuple[Path_, str]]:
    out = []
    for key in COMMAND_KEYS:
        for i, cmd in enumerate(_seq(cfg.get(key))):
            out.append(((key, i), str(cmd)))
    for name, nt in _map(cfg.get("available_node_types")).items():
        if isinstance(nt, dict):
            for key in NODE_COMMAND_KEYS:
                for i, cmd in enumerate(_seq(nt.get(key))):
                    out.append((("available_node_types", name, key, i), str(cmd)))
    return out


def _node_commands(cfg: dict[str, Any]) -> dict[str, list[tuple[Path_, str]]]:
    """The setup commands each node type runs (Ray: a node type's worker_setup_commands replace the global ones)."""
    head = cfg.get("head_node_type")
    out: dict[str, list[tuple[Path_, str]]] = {}
    for name, nt in _map(cfg.get("available_node_types")).items():
        nt = _map(nt)
        keys: list[Path_] = [("initialization_commands",), ("available_node_types", name, "initialization_commands"),
                             ("setup_commands",)]
        if name == head:
            keys.append(("head_setup_commands",))
        elif "worker_setup_commands" in nt:
            keys.append(("available_node_types", name, "worker_setup_commands"))
        else:
            keys.append(("worker_setup_commands",))
        cmds = []
        for key in keys:
            holder = cfg if len(key) == 1 else nt
            for i, cmd in enumerate(_seq(holder.get(key[-1]))):
                cmds.append((key + (i,), str(cmd)))
        out[str(name)] = cmds
    return out


@dataclass
class _Install:
    key: Path_
    token: str  # as written
    requirement: Any = None  # packaging Requirement, for a package
    path: str | None = None  # remote path, for a local directory (``-e DIR`` or ``DIR``)
    editable: bool = False
    cwd: str = "~"
    reqfile: str | None = None  # remote path, for ``-r FILE`` / ``--requirement FILE`` (or ``-c FILE``)
    constraint: bool = False  # ``reqfile`` is a constraints file (``-c`` / ``--constraint``): pins, installs nothing


def _split_shell(cmd: str) -> list[list[str]]:
    out = []
    for segment in re.split(r"&&|\|\||;|\||\n", cmd):
        try:
            tokens = shlex.split(segment, comments=True)
        except ValueError:
            tokens = segment.split()
        if tokens:
            out.append(tokens)
    return out


def _installs(key: Path_, cmd: str) -> list[_Install]:
    """Every ``pip install`` argument of one command: packages (as Requirements) and local directories."""
    from packaging.requirements import InvalidRequirement, Requirement

    out: list[_Install] = []
    cwd = "~"
    for tokens in _split_shell(cmd):
        if tokens[0] == "cd" and len(tokens) > 1:
            cwd = tokens[1] if tokens[1].startswith(("/", "~", "$")) else posixpath.join(cwd, tokens[1])
            continue
        idx = next((i for i in range(1, len(tokens)) if tokens[i] == "install"
                    and re.fullmatch(r"pip(3(\.\d+)?)?", posixpath.basename(tokens[i - 1]))), None)
        if idx is None:
            continue
        skip, editable, reqfile_next = False, False, ""
        for tok in tokens[idx + 1:]:
            req_opt = re.fullmatch(r"(?:--requirement=|-r)(.+)", tok)
            con_opt = re.fullmatch(r"(?:--constraint=|-c)(.+)", tok)
            if reqfile_next or req_opt or con_opt:
                opt = req_opt or con_opt
                out.append(_Install(key, tok, reqfile=opt.group(1) if opt else tok, cwd=cwd,
                                    constraint=bool(con_opt) or reqfile_next == "-c"))
                reqfile_next = ""
                continue
            if skip:
                skip = False
                continue
            if tok in ("-r", "--requirement", "-c", "--constraint"):
                reqfile_next = "-c" if tok in ("-c", "--constraint") else "-r"
                continue
            if tok in ("-e", "--editable"):
                editable = True
                continue
            if tok.startswith("--editable="):
                editable, tok = True, tok.split("=", 1)[1]
            elif tok.startswith("-"):
                skip = tok in PIP_OPTS_WITH_VALUE
                continue
            bare = re.sub(r"\[[^\]]*\]$", "", tok)
            if editable or bare.startswith((".", "/", "~", "$")) or ("/" in bare and "://" not in bare
                                                                       and "@" not in bare):
                out.append(_Install(key, tok, path=bare, editable=editable, cwd=cwd))
            else:
                try:
                    out.append(_Install(key, tok, requirement=Requirement(tok)))
                except InvalidRequirement:
                    pass
            editable = False
    return out


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_pins(pyproject: Path) -> dict[str, str]:
    """{package: version} of every ``pkg==X`` in pyproject's dependencies and optional dependencies."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        import tomllib
        data = tomllib.loads(pyproject.read_text())
        project = _map(data.get("project"))
        reqs = list(_seq(project.get("dependencies")))
        for group in _map(project.get("optional-dependencies")).values():
            reqs += _seq(group)
    except Exception:  # noqa: BLE001 - unreadable/invalid TOML: fall back to the text
        reqs = re.findall(r"[\"']([A-Za-z0-9_.\-\[\], ]+==[0-9][^\"']*)[\"']", pyproject.read_text())
    pins = {}
    for r in reqs:
        try:
            req = Requirement(str(r))
        except InvalidRequirement:
            continue
        specs = list(req.specifier)
        if len(specs) == 1 and specs[0].operator == "==":
            pins[_canon(req.name)] = specs[0].version
    return pins


def _find_pyproject(path: Path, pyproject: str | Path | None) -> tuple[Path | None, str]:
    """The pyproject.toml to compare pins with, and where it came from."""
    if pyproject:
        return Path(pyproject), "--pyproject"
    nxt = path.resolve().parent / "pyproject.toml"
    if nxt.is_file():
        return nxt, "next to the cluster file"
    import ups

    installed = Path(ups.__file__).resolve().parents[1] / "pyproject.toml"
    if installed.is_file():
        return installed, "of the installed ups project"
    return None, "none found"


def _remote_path(p: str, cwd: str, home: str) -> str:
    p = p.strip().rstrip("/") or "/"
    if not p.startswith(("/", "~", "$HOME", "${HOME}")):
        p = posixpath.join(cwd, p)
    for prefix in ("${HOME}", "$HOME", "~"):
        if p == prefix or p.startswith(prefix + "/"):
            p = home + p[len(prefix):]
            break
    return posixpath.normpath(p)


def _under(p: str, root: str) -> bool:
    return p == root or p.startswith(root.rstrip("/") + "/")


def _home(cfg: dict[str, Any]) -> str:
    user = _map(cfg.get("auth")).get("ssh_user")
    return "/root" if user == "root" else f"/home/{user or 'ubuntu'}"


def _local_source(local: str, yaml_dir: Path) -> Path | None:
    """Where `ray up` finds a file_mounts source: absolute, else the current directory, else next to the file."""
    src = Path(local).expanduser()
    for cand in [src] if src.is_absolute() else [Path.cwd() / src, yaml_dir / src]:
        if cand.exists():
            return cand
    return None


@dataclass(frozen=True)
class _ReqLine:
    file: str  # as written in the command (or in the including file)
    number: int  # 1-based, the first physical line of a continued line
    text: str  # comment stripped, continuation lines joined
    constraint: bool = False  # from a constraints file (pins a version, installs nothing)

    @property
    def where(self) -> str:
        return f" ({self.file} line {self.number})"

    def requirement(self) -> Any:
        """The packaging Requirement of a requirement line (options such as --hash dropped), else None."""
        from packaging.requirements import InvalidRequirement, Requirement

        if self.text.startswith("-"):
            return None
        try:
            return Requirement(re.split(r"\s+--?[A-Za-z]", self.text, maxsplit=1)[0])
        except InvalidRequirement:
            return None


def _read_requirements(path: Path, label: str, depth: int = 0,
                       constraint: bool = False) -> tuple[list[_ReqLine], list[str]]:
    """The lines of a requirements (or constraints) file, nested ``-r`` / ``-c`` followed, and the nested
    files that are missing."""
    lines: list[_ReqLine] = []
    missing: list[str] = []
    pending, start = "", 0
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        start = start if pending else n
        raw = re.sub(r"(^|\s)#.*", "", raw)
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        text, pending = (pending + raw).strip(), ""
        nested = re.fullmatch(r"(-r|--requirement|-c|--constraint)(?:\s+|=)?(\S+)", text)
        if nested and depth < 5:
            sub, sub_label = path.parent / nested.group(2), posixpath.join(posixpath.dirname(label), nested.group(2))
            if sub.is_file():
                more, gone = _read_requirements(sub, sub_label, depth + 1,
                                                constraint or nested.group(1) in ("-c", "--constraint"))
                lines, missing = lines + more, missing + gone
            else:
                missing.append(f"{sub_label} (included at {label} line {start}) does not exist here")
        elif text:
            lines.append(_ReqLine(label, start, text, constraint))
    return lines, missing


def _requirements_of(cfg: dict[str, Any], inst: _Install, yaml_dir: Path) -> tuple[list[_ReqLine], list[str]]:
    """The lines of the file behind ``pip install -r`` (its local side through file_mounts), or why not."""
    ref = str(inst.reqfile)
    if "://" in ref:
        return [], [f"{ref} is a URL, which the offline check does not fetch"]
    if re.search(r"\$(?!HOME\b|\{HOME\})", ref):
        return [], [f"{ref} depends on a shell variable"]
    home = _home(cfg)
    remote = _remote_path(ref, inst.cwd, home)
    mounts = sorted(((_remote_path(str(t), "~", home), src) for t, src in _map(cfg.get("file_mounts")).items()),
                    key=lambda m: -len(m[0]))
    for target, local in mounts:
        if not _under(remote, target):
            continue
        src = _local_source(local, yaml_dir) if isinstance(local, str) and local.strip() else None
        if src is None:
            return [], [f"the file_mounts source {local!r} of {target} does not exist here"]
        path = src if remote == target else src / posixpath.relpath(remote, target)
        if not path.is_file():
            return [], [f"{path} (the local side of {remote}) does not exist"]
        return _read_requirements(path, ref, constraint=inst.constraint)
    return [], [f"{remote} is not inside any file_mounts target, so its content is unknown before `ray up`"]


def _gpu_worker_types(cfg: dict[str, Any]) -> list[str]:
    """Worker node types that advertise a GPU (declared GPU > 0, or an NVIDIA instance family and no GPU key)."""
    head, out = cfg.get("head_node_type"), []
    for name, nt in _map(cfg.get("available_node_types")).items():
        if name == head or not isinstance(nt, dict):
            continue
        declared = _map(nt.get("resources")).get("GPU")
        itype = _map(nt.get("node_config")).get("InstanceType")
        if declared is None:
            gpu = isinstance(itype, str) and itype.split(".")[0] in NVIDIA_GPU_FAMILIES
        else:
            gpu = isinstance(declared, (int, float)) and not isinstance(declared, bool) and declared > 0
        if gpu:
            out.append(str(name))
    return out


def _is_cpu_build(req: Any) -> bool:
    """A torch pin with a local label of a build without CUDA: ``+cpu`` or ``+rocm…``."""
    return _canon(req.name) in TORCH_PACKAGES and any(re.search(r"\+(?:cpu|rocm)", s.version) for s in req.specifier)


def _cpu_torch_sources(cfg: dict[str, Any], key: Path_, cmd: str, yaml_dir: Path) -> list[str]:
    """What in one command installs a PyTorch without CUDA: a whl/cpu or whl/rocm… index, a +cpu / +rocm… pin
    (inline, or in a -r requirements or -c constraints file)."""
    found = [f"index {m.group(0)}" for m in CPU_TORCH_INDEX.finditer(cmd)]
    for inst in _installs(key, cmd):
        if inst.requirement is not None and _is_cpu_build(inst.requirement):
            found.append(repr(inst.token))
        elif inst.reqfile is not None:
            for line in _requirements_of(cfg, inst, yaml_dir)[0]:
                req = line.requirement()
                if CPU_TORCH_INDEX.search(line.text) or (req is not None and _is_cpu_build(req)):
                    found.append(f"{line.file} line {line.number}: {line.text}")
    return found


def _check_torch_build(c: _Checker, cfg: dict[str, Any], yaml_dir: Path, pyproject: Path | None) -> None:
    gpu_types = _gpu_worker_types(cfg)
    hits: dict[Path_, tuple[list[str], list[str]]] = {}  # command key → (what, GPU node types running it)
    for node, cmds in _node_commands(cfg).items():
        if node not in gpu_types:
            continue
        for key, cmd in cmds:
            found = hits[key][0] if key in hits else _cpu_torch_sources(cfg, key, cmd, yaml_dir)
            if found:
                hits.setdefault(key, (found, []))[1].append(node)
    want = _pyproject_pins(pyproject).get("torch") if pyproject is not None and pyproject.is_file() else None
    for key, (found, nodes) in hits.items():
        kind = "ROCm (AMD GPU) PyTorch build" if all("rocm" in f.lower() for f in found) else "CPU-only PyTorch build"
        c.error(key, f"installs a {kind} on the GPU worker(s) {', '.join(nodes)} ({'; '.join(found)}): "
                "torch.cuda.is_available() is False there (the NVIDIA GPUs need a CUDA build), so every trial "
                "would silently train on the CPU",
                f"drop the CPU/ROCm index or the +cpu/+rocm label so pip installs PyPI's default CUDA wheel (torch=={want or 'X'}), "
                "or use a CUDA index (https://download.pytorch.org/whl/cu12X, the CUDA 12 build the AMI's NVIDIA "
                "driver supports)")
    c.report.checks.append("torch build on GPU workers")


def _check_idle_timeout(c: _Checker, cfg: dict[str, Any]) -> None:
    key: Path_ = ("idle_timeout_minutes",)
    if "idle_timeout_minutes" not in cfg:
        c.warn(key, "not set (Ray's default is 5)", "set it explicitly, e.g. 10")
        return
    v = cfg["idle_timeout_minutes"]
    fix = ("set idle_timeout_minutes: 10 (minutes, a plain number, no quotes): long enough to keep the GPU workers "
           "between the trials of a sweep, short enough to release them after it")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        c.error(key, f"idle_timeout_minutes is {v!r}, not a number: Ray refuses the file", fix)
    elif not math.isfinite(v):
        c.error(key, f"idle_timeout_minutes is {v}: idle workers are never terminated and the spot GPUs bill until "
                "`ray down`", fix)
    elif v < 0:
        c.error(key, f"idle_timeout_minutes is {v}: Ray refuses a negative timeout (its schema's minimum is 0)", fix)
    elif v == 0:
        c.warn(key, "idle_timeout_minutes is 0: a worker is terminated as soon as it is idle, so GPU workers are torn "
               "down between trials of a sweep and each next trial waits minutes for a new spot instance and its "
               "setup", fix)
    elif v < SHORT_IDLE_MINUTES:
        c.warn(key, f"idle_timeout_minutes is {v}: a GPU worker idle for {v * 60:.0f} s is terminated, and the gaps "
               "of a sweep last longer (the driver's promotion full-eval, the data and baselines before a round, a "
               "resume), so each next trial waits minutes for a new spot instance and its setup", fix)
    c.report.checks.append("idle timeout")


def _check_workers_gpu(c: _Checker, cfg: dict[str, Any]) -> None:
    head = cfg.get("head_node_type")
    nts = _map(cfg.get("available_node_types"))
    global_max = cfg.get("max_workers")
    if isinstance(global_max, int) and not isinstance(global_max, bool) and global_max <= 0:
        c.error(("max_workers",), f"max_workers is {global_max}: the autoscaler never starts a GPU worker and "
                "every trial stays pending", "set max_workers: 4 (`ray up --max-workers N` overrides this value, not a "
                "node type's own max_workers)")
        return
    gpu_types, why_not = [], []
    for name, nt in nts.items():
        if name == head or not isinstance(nt, dict):
            continue
        key: Path_ = ("available_node_types", name)
        mn, mx = nt.get("min_workers", 0), nt.get("max_workers")
        if isinstance(mn, int) and isinstance(mx, int) and mn > mx:
            c.error(key + ("min_workers",), f"min_workers ({mn}) is larger than max_workers ({mx})",
                    f"set min_workers: 0 (or at most {mx}) and max_workers ≥ min_workers")
        if isinstance(global_max, int) and not isinstance(global_max, bool) and isinstance(mx, int) \
                and not isinstance(mx, bool) and mx > global_max:
            c.warn(key + ("max_workers",), f"max_workers ({mx}) is above the top-level max_workers ({global_max}): "
                   f"Ray silently caps {name} at {global_max} worker(s)",
                   f"set max_workers: {global_max} here, or raise the top-level max_workers: {mx} "
                   "(`ray up --max-workers N` overrides the top-level value only, never a node type's)")
        itype = _map(nt.get("node_config")).get("InstanceType")
        if not isinstance(itype, str):
            continue
        family = itype.split(".")[0]
        if family in VOLTA_FAMILIES:
            c.error(key + ("node_config", "InstanceType"), f"{itype} has V100 GPUs (Volta, sm_70), which the pinned "
                    "torch's CUDA wheels no longer support (PyTorch 2.11 dropped Volta from its CUDA 12.8+ builds): "
                    "every trial would fail with 'no kernel image is available for execution on the device'",
                    "use an Ampere or newer type (g5.2xlarge: A10G; g6.2xlarge: L4; p4d: A100)")
            why_not.append(f"{name}: {itype} is Volta")
            continue
        if family in ARM64_GPU_FAMILIES:
            c.warn(key + ("node_config", "InstanceType"), f"{itype} is an arm64 (Graviton/Grace) host: it boots an "
                   "arm64 AMI only, and its setup needs aarch64 wheels; an x86 AMI id (the Deep Learning AMI of the "
                   "head) fails at launch", "give this node type the arm64 Deep Learning AMI of the region, or use an "
                   "x86 GPU type such as g5.2xlarge")
        has_gpu = family in NVIDIA_GPU_FAMILIES
        res = nt.get("resources")
        declared = _map(res).get("GPU") if isinstance(res, dict) else None
        if declared is not None and not isinstance(declared, bool) and isinstance(declared, (int, float)) \
                and declared > 0 and not has_gpu:
            c.error(key + ("resources", "GPU"),
                    f"declares GPU: {declared} but {itype} has no NVIDIA GPU: GPU trials would be placed there and "
                    "fail (no CUDA device)", "use a GPU instance type (e.g. g5.2xlarge) and resources: {} so Ray "
                    "detects the GPUs, or remove GPU from resources")
            why_not.append(f"{name}: {itype} has no NVIDIA GPU")
            continue
        provides = (declared > 0) if isinstance(declared, (int, float)) and not isinstance(declared, bool) \
            else has_gpu
        if isinstance(mx, int) and mx <= 0:
            provides = False
            why_not.append(f"{name}: max_workers: {mx}")
        elif not provides:
            why_not.append(f"{name}: " + (f"resources GPU: {declared}" if declared is not None
                                          else f"{itype} has no NVIDIA GPU"))
        if provides:
            gpu_types.append(name)
        elif declared is None and not has_gpu:
            c.warn(key + ("node_config", "InstanceType"), f"{itype} has no NVIDIA GPU (Ray detects GPU: 0)",
                   "trials ask for a GPU and never run on it: use a GPU type such as g5.2xlarge")
    if not any(name != head for name in nts):  # only the head (CPU: 0): no node could ever run a trial
        c.error(("available_node_types",), f"has no worker node type (only the head, {head}): every trial asks "
                "for a GPU and would stay pending forever",
                "add a GPU worker type as in the repository's cluster.yaml (e.g. ray.worker.gpu_spot with "
                "InstanceType: g5.2xlarge, resources: {}, min_workers: 0, max_workers: 4)")
    if why_not and not gpu_types:
        c.error(("available_node_types",), f"no worker node type can provide a GPU ({'; '.join(why_not)}): "
                "every trial asks for a GPU and would stay pending forever",
                "give a worker type an NVIDIA GPU instance type (e.g. InstanceType: g5.2xlarge) with resources: {}, "
                "max_workers > 0 and no GPU: 0")
    c.report.checks.append("GPU workers")


def _check_ssh_key(c: _Checker, cfg: dict[str, Any], yaml_dir: Path) -> None:
    """``auth.ssh_private_key``: every node type without ``UserData`` must name its ``KeyName``, which Ray asserts
    at ``ray up`` (``_configure_key_pair``; without the key, Ray creates and names a key pair itself).  The key
    file, which ``ray up`` reads from the folder it runs in, is looked for there and next to the cluster file: a
    warning where it is in neither (the check may run where the key is not, in CI)."""
    c.report.checks.append("SSH key")
    auth = cfg.get("auth")
    if not isinstance(auth, dict) or not isinstance(key := auth.get("ssh_private_key"), str):
        return  # absent (Ray makes a key pair), or a wrong type (the schema check reports it)
    path = Path(key).expanduser()
    if not any(p.is_file() for p in ([path] if path.is_absolute() else [Path.cwd() / path, yaml_dir / path])):
        where = str(path) if path.is_absolute() else f"{Path.cwd()} or {yaml_dir}"
        c.warn(("auth", "ssh_private_key"), f"'{key}' is not a file here ({where}); `ray up` reads it from the folder "
               "it runs in and fails without it",
               "give the private key of the EC2 key pair the nodes name in KeyName, or delete ssh_private_key (and "
               "the KeyNames) to let Ray create a key pair")
    nts = cfg.get("available_node_types")
    for name, nt in (nts.items() if isinstance(nts, dict) else ()):
        nc = nt.get("node_config") if isinstance(nt, dict) else None
        if isinstance(nc, dict) and "KeyName" not in nc and "UserData" not in nc:
            c.error(("available_node_types", name, "node_config"), "has no KeyName while auth.ssh_private_key is set: "
                    "Ray refuses the file at `ray up` (nodes it could not SSH into)",
                    f"add KeyName: <the EC2 key pair of {key}> to its node_config")


def _check_file_mounts(c: _Checker, cfg: dict[str, Any], yaml_dir: Path) -> None:
    fm = cfg.get("file_mounts")
    fix_all = ('add file_mounts: {/home/ubuntu/ups-sweeps: .} and `pip install -e "/home/ubuntu/ups-sweeps[tune,cloud]"` '
               "to setup_commands, and run `ray up` from the repository root")
    if fm is not None and not isinstance(fm, dict):
        return  # the schema check reports the type
    if not fm:
        c.error(("file_mounts",), "no file_mounts: the repository is never copied to the nodes, so `import ups` "
                "fails in every trial", fix_all)
        return
    cwd = Path.cwd().resolve()
    for remote, local in fm.items():
        key: Path_ = ("file_mounts", remote)
        if not isinstance(local, str) or not local.strip():
            c.error(key, f"the local source is {local!r}", "write the local path to copy, e.g. `.` (the repository)")
            continue
        src = Path(local).expanduser()
        if src.is_absolute():
            if not src.exists():
                c.error(key, f"the local source {local} does not exist", "correct the path (or create it)")
            continue
        in_cwd, in_yaml = (cwd / src).exists(), (yaml_dir / src).exists()
        if not in_cwd and not in_yaml:
            c.error(key, f"the local source '{local}' exists neither in the current directory ({cwd}) nor next to "
                    f"the cluster file ({yaml_dir}); `ray up` resolves relative sources against the directory it "
                    "runs in", "correct the path and run `ray up` from the repository root")
        elif in_cwd != in_yaml:
            where, other = (cwd, yaml_dir) if in_cwd else (yaml_dir, cwd)
            c.warn(key, f"the local source '{local}' exists in {where} but not in {other}; `ray up` resolves relative "
                   "sources against the directory it runs in", f"run `ray up` from {where}")
    # the setup must install the mounted repository
    home = _home(cfg)
    targets = {_remote_path(str(r), "~", home): r for r in fm}
    missing, mismatched = [], []
    for node, cmds in _node_commands(cfg).items():
        paths = [(i, _remote_path(i.path, i.cwd, home)) for k, cmd in cmds for i in _installs(k, cmd) if i.path]
        if any(any(_under(p, t) for t in targets) for _, p in paths):
            continue
        if paths:
            mismatched.append((node, paths[0]))
        else:
            missing.append(node)
    for node, (inst, p) in mismatched[:1]:
        c.error(("file_mounts",) + ((next(iter(fm)),) if len(fm) == 1 else ()),
                f"the setup installs {inst.token} ({p}) but file_mounts copies to {', '.join(targets)}: on "
                f"{node} `import ups` finds nothing", "use the same path for the file_mounts target and the "
                "`pip install -e` path (e.g. /home/ubuntu/ups-sweeps)")
    if missing:
        key = ("setup_commands",)
        c.error(key, f"no `pip install -e <mounted repository>` in the setup commands of {', '.join(missing)}: "
                "`ups` is not importable there and every trial fails",
                f'add `~/ups-venv/bin/pip install -e "{next(iter(targets))}[tune,cloud]"` to setup_commands')
    c.report.checks.append("file_mounts")


def _check_pin(c: _Checker, key: Path_, req: Any, token: str, where: str, wanted: dict[str, str],
               constraint: bool = False) -> None:
    """One install of a PINNED package: an exact == pin equal to pyproject.toml (ray: to this client).  A
    constraints-file line installs nothing: only an exact pin there is compared (it forces that version)."""
    import ray

    name = _canon(req.name)
    want = ray.__version__ if name == "ray" else wanted.get(name)
    specs = list(req.specifier)
    if not (len(specs) == 1 and specs[0].operator == "=="):
        if constraint:
            return
        extra = (" (an unpinned or >= torch pulls another torch and gigabytes of CUDA wheels)"
                 if name == "torch" else "")
        c.error(key, f"installs {token!r}{where} without an exact == pin{extra}",
                f"write {name}=={want}" if want else f"pin {name} with == to the version in pyproject.toml")
        return
    got = specs[0].version
    public = got.split("+", 1)[0]  # a local label (+cpu, +cu126) is the build, not the version
    if name == "ray" and public != ray.__version__:
        c.error(key, f"nodes get ray=={got}{where} but this client has ray {ray.__version__}",
                f'pin "ray[tune]=={ray.__version__}" (client and cluster must match)')
    elif name in wanted and public != wanted[name]:
        c.error(key, f"pins {name}=={got}{where} but pyproject.toml pins {name}=={wanted[name]}",
                f"use {name}=={wanted[name]} so every node matches the project")


def _check_project(c: _Checker, cfg: dict[str, Any], pyproject: Path | None, origin: str, yaml_dir: Path) -> None:
    import ray

    head = cfg.get("head_node_type")
    nts = _map(cfg.get("available_node_types"))
    if isinstance(head, str) and head in nts and isinstance(nts[head], dict):
        res = nts[head].get("resources")
        cpu = res.get("CPU") if isinstance(res, dict) else None
        if cpu is not None and not isinstance(cpu, (int, float)):
            pass  # a CPU count of the wrong type: the schema check says so
        elif not isinstance(res, dict) or cpu != 0:
            c.error(("available_node_types", head, "resources"), f"head node resources are {res!r}; it would run trials",
                    "set resources: {CPU: 0} so trials only run on the GPU workers")
        elif res.get("GPU"):
            c.error(("available_node_types", head, "resources", "GPU"), "the head node advertises GPUs",
                    "remove GPU from the head's resources")
    for name, nt in nts.items():
        if name == head or not isinstance(nt, dict):
            continue
        if isinstance(nt.get("min_workers"), int) and nt["min_workers"] > 0:
            c.warn(("available_node_types", name, "min_workers"), f"keeps {nt['min_workers']} worker(s) up while idle",
                   "use min_workers: 0 so idle GPUs are released")

    wanted: dict[str, str] = {}
    if pyproject is not None and pyproject.is_file():
        wanted = _pyproject_pins(pyproject)
    ray_installs, unread = 0, []
    minimal: list[tuple[Path_, str]] = []  # ray installs without the dashboard's packages (the `default` extra)
    for key, cmd in _all_commands(cfg):
        for inst in _installs(key, cmd):
            found: list[tuple[Any, str, str, bool]] = []  # (requirement, as written, where, installs it)
            if inst.reqfile is not None:
                lines, problems = _requirements_of(cfg, inst, yaml_dir)
                for why in problems:
                    unread.append(inst.reqfile)
                    c.warn(key, f"the pins in `pip install {'-c' if inst.constraint else '-r'} {inst.reqfile}` "
                                f"were not checked: {why}",
                           "copy the file with file_mounts from a local path that exists (e.g. keep it in the "
                           "repository, which is mounted) and run `ray up` from the repository root, or install "
                           f"{', '.join(PINNED)} inline with == pins")
                found += [(line.requirement(), line.text, line.where, not line.constraint) for line in lines]
            else:
                found.append((inst.requirement, inst.token, "", True))
            for req, token, where, installs in found:
                if req is not None and _canon(req.name) in PINNED:
                    is_ray = installs and _canon(req.name) == "ray"  # a constraint alone installs nothing
                    ray_installs += is_ray
                    if is_ray and not ({"default", "all"} & {e.lower() for e in req.extras}):
                        minimal.append((key, token))
                    _check_pin(c, key, req, token, where, wanted, constraint=not installs)
    images = _ray_images(cfg)
    for key, image, version in images:
        if version != ray.__version__:
            c.error(key, f"the image {image} has ray {version} but this client has ray {ray.__version__}",
                    f"use rayproject/ray:{ray.__version__}-… (client and cluster must match)")
    if not ray_installs and not images:
        unchecked = f" (nor in a requirements file that could be read: {', '.join(unread)})" if unread else ""
        c.error(("setup_commands",), f"ray is not pinned in the setup commands{unchecked}",
                f'install "ray[default,tune]=={ray.__version__}" (the client\'s version) on every node, or use the '
                f"image rayproject/ray:{ray.__version__}-gpu (docker: image)")
    for key, token in minimal:
        c.warn(key, f"installs {token!r} without Ray's `default` extra: the head then starts a minimal dashboard, with "
               "no web server, so `ray dashboard cluster.yaml` tunnels to nothing and `ray job submit` fails (sweeps "
               "run as usual)", f'install "ray[default,tune]=={ray.__version__}"')
    if pyproject is not None and pyproject.is_file():
        c.report.checks.append(f"project rules (pins compared with {pyproject}, {origin})")
    else:
        c.report.checks.append("project rules (pin comparison with pyproject.toml SKIPPED: "
                               f"{pyproject or 'no pyproject.toml found'})")
        c.warn(("setup_commands",), "the pins were not compared with pyproject.toml (none found)",
               "pass --pyproject path/to/pyproject.toml")


RAY_IMAGE = re.compile(r"^(?:[\w.-]+/)?rayproject/ray(?:-ml)?:(\d+\.\d+\.\d+)")


def _ray_images(cfg: dict[str, Any]) -> list[tuple[Path_, str, str]]:
    """(key, image, ray version) of the ``docker`` images that are Ray's own (``rayproject/ray:2.60.0-py310-gpu``):
    ray comes installed with them, the dashboard's packages too."""
    docker = _map(cfg.get("docker"))
    out = []
    for k in ("image", "head_image", "worker_image"):
        image = docker.get(k)
        if isinstance(image, str) and (m := RAY_IMAGE.match(image.strip())):
            out.append((("docker", k), image, m.group(1)))
    return out


HEAD_AUTOSCALER = re.compile(r"--autoscaling-config(?:=|\s+)['\"]?~?/?\S*ray_bootstrap_config\.yaml")
WORKER_ADDRESS = re.compile(r"--address(?:=|\s+)['\"]?\$\{?RAY_HEAD_IP\}?:\d+")
VENV_PIP = re.compile(r"(?:^|[\s;&|])(~?[\w./-]*)/bin/pip3?\b")
VENV_MADE = re.compile(r"(?:-m\s+venv|\bvirtualenv|\buv\s+venv)(?:\s+-\S+)*\s+['\"]?(~?[\w./-]+)")


def _check_start_commands(c: _Checker, cfg: dict[str, Any]) -> None:
    """``ray up`` runs the start commands as given: without ``--autoscaling-config`` on the head no worker is ever
    launched, without ``--address=$RAY_HEAD_IP`` a worker never joins, and a ``ray`` installed in a venv is found only
    through the ``~/.bashrc`` Ray sources (``bash --login -c -i 'source ~/.bashrc; …'``).  Left out, Ray's defaults
    apply: those bind the dashboard to every interface."""
    checks = (("head_start_ray_commands", "--head", HEAD_AUTOSCALER,
               "ray start --head without --autoscaling-config=~/ray_bootstrap_config.yaml: the autoscaler never runs, "
               "no GPU worker is ever launched and every trial stays pending",
               "ulimit -n 65536; ray start --head --port=6379 --object-manager-port=8076 "
               "--autoscaling-config=~/ray_bootstrap_config.yaml --dashboard-host=127.0.0.1"),
              ("worker_start_ray_commands", "", WORKER_ADDRESS,
               "ray start without --address=$RAY_HEAD_IP:6379: a worker never joins the head's cluster",
               "ulimit -n 65536; ray start --address=$RAY_HEAD_IP:6379 --object-manager-port=8076"))
    starts: list[str] = []
    for key, flag, needed, what, line in checks:
        if key not in cfg:
            if key == "head_start_ray_commands":
                c.warn((key,), "is not given: Ray's default starts the dashboard on all interfaces "
                       "(--dashboard-host=0.0.0.0)", f"copy the repository's {key} (dashboard on 127.0.0.1)")
            continue
        cmds = [str(x) for x in _seq(cfg.get(key))]
        starts += cmds
        text = "\n".join(cmds)
        if not re.search(r"\bray\s+start\b" + (r"[^\n]*" + flag if flag else ""), text):
            c.error((key,), f"has no `ray start{' ' + flag if flag else ''}`: Ray is never started on these nodes",
                    f"end it with: {line}")
        elif not needed.search(text):
            at = next(i for i, x in enumerate(cmds) if re.search(r"\bray\s+start\b", x))
            c.error((key, at), what, f"write: {line}")
    # only the venvs a setup command makes (a conda prefix, /opt/conda or ~/anaconda3, is on PATH already)
    made = {m.group(1).rstrip("/") for _, cmd in _all_commands(cfg) for m in VENV_MADE.finditer(cmd)}
    venvs = {m.group(1) for _, cmd in _all_commands(cfg) for m in VENV_PIP.finditer(cmd)
             if m.group(1).rstrip("/") in made}
    bare = [x for x in starts if re.search(r"(?:^|[\s;&|])ray\s+(?:start|stop)\b", x)]
    if venvs and bare:
        setup = [cmd for key, cmd in _all_commands(cfg) if "start_ray" not in str(key[-2])]  # key: (…, list, i)
        activated = any(".bashrc" in cmd and any(v.rstrip("/") in cmd for v in venvs) for cmd in setup)
        if not activated:
            v = sorted(venvs)[0]
            c.error(("setup_commands",), f"ray is installed into {v} but no setup command activates it in ~/.bashrc, "
                    "and the start commands call a bare `ray`: Ray runs them through `bash --login -c -i 'source "
                    "~/.bashrc; …'`, where that ray is not on PATH",
                    f"add `grep -q {v.strip('~/') or v} ~/.bashrc || echo 'source {v}/bin/activate' >> ~/.bashrc` "
                    f"to setup_commands, or call {v}/bin/ray in the start commands")
    c.report.checks.append("start commands")


# ----------------------------------------------------------------------------------- entry
def _guarded(c: _Checker, name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one check; a crash on a malformed value becomes an error instead of a traceback."""
    try:
        return fn(c, *args)
    except Exception as e:  # noqa: BLE001 - the checker never raises for a problem in the file
        c.error((), f"the {name} check could not run on this file ({type(e).__name__}: {e})",
                "fix the other errors reported for this file (usually a value of the wrong type) and run "
                "`ups cluster-check` again")
        return None


def _decode(path: Path, data: bytes) -> tuple[str | None, Issue | None]:
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        return None, Issue("<file>", f"is not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r}; binary file "
                           "or another encoding such as UTF-16)", "save the cluster file as UTF-8 YAML", line)


def check_cluster_file(path: str | Path, pyproject: str | Path | None = None) -> CheckReport:
    """Run every offline check on ``path``; never raises for problems in the file."""
    path = Path(path)
    text, bad = _decode(path, path.read_bytes())
    if text is None:
        report = CheckReport(path)
        report.errors.append(bad)
        return report
    c = _Checker(path, text)
    _guarded(c, "secrets", _check_secrets)
    try:
        cfg = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as e:
        c.report.errors.append(Issue(e.key, f"duplicate key '{e.key}' (line {e.first} and line {e.again}); YAML would "
                                     "silently keep only the last value", "delete one of them", e.again))
        return c.report
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        c.report.errors.append(Issue("<yaml>", f"not valid YAML: {getattr(e, 'problem', None) or e}",
                                     "fix the indentation/quoting at that line (one YAML document per file)",
                                     mark.line + 1 if mark is not None else None))
        return c.report
    if not isinstance(cfg, dict):
        c.error((), "the file must be a YAML mapping" + (" (it is empty)" if cfg is None else ""),
                "start from cluster.yaml in the repository")
        return c.report
    c.report.config = cfg
    provider = cfg.get("provider")
    ptype = provider.get("type") if isinstance(provider, dict) else None
    if ptype != "aws":
        c.error(("provider", "type") if isinstance(provider, dict) else ("provider",),
                f"is {ptype!r}" if isinstance(provider, dict) else f"must be a mapping, not {provider!r}",
                "this project targets provider: {type: aws, region: …}")
    pyproject_path, origin = _find_pyproject(path, pyproject)
    _guarded(c, "Ray schema", _check_ray_schema, cfg)
    _guarded(c, "EC2 parameter", _check_node_configs, cfg)
    _guarded(c, "region", _check_provider, cfg)
    _guarded(c, "security", _check_security, cfg)
    _guarded(c, "GPU worker", _check_workers_gpu, cfg)
    _guarded(c, "SSH key", _check_ssh_key, cfg, path.resolve().parent)
    _guarded(c, "file_mounts", _check_file_mounts, cfg, path.resolve().parent)
    _guarded(c, "torch build", _check_torch_build, cfg, path.resolve().parent, pyproject_path)
    _guarded(c, "idle timeout", _check_idle_timeout, cfg)
    _guarded(c, "project", _check_project, cfg, pyproject_path, origin, path.resolve().parent)
    _guarded(c, "start commands", _check_start_commands, cfg)
    return c.report


def check_aws(report: CheckReport, cfg: dict[str, Any]) -> None:
    """Optional live checks (``--aws``, needs read-only credentials): what the file cannot show.

    The security group Ray will use (it exists, and no rule opens anything to the internet), the
    instance profiles and the AMIs exist in the region.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    c = _Checker(report.path, report.path.read_text())
    c.report = report
    region = (cfg.get("provider") or {}).get("region") or "us-east-1"
    conf = Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 2})
    try:
        ec2 = boto3.client("ec2", region_name=region, config=conf)
        iam = boto3.client("iam", region_name=region, config=conf)
        sg_name = ((cfg.get("provider") or {}).get("security_group") or {}).get("GroupName")
        if sg_name:
            groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [sg_name]}])["SecurityGroups"]
            key: Path_ = ("provider", "security_group", "GroupName")
            if not groups:
                c.error(key, f"security group '{sg_name}' does not exist in {region}: `ray up` would create it with "
                        "SSH open to 0.0.0.0/0", "create it first (docs/CLUSTER.md, One-time AWS set-up)")
            if len({g.get("VpcId") for g in groups}) > 1:
                c.warn(key, f"{len(groups)} groups named '{sg_name}' in {region}, in VPCs "
                       f"{', '.join(sorted(str(g.get('VpcId')) for g in groups))}: Ray uses the one in the VPC of the "
                       "first usable subnet it finds, which this check cannot tell", "name the group in every "
                       "node_config (SecurityGroupIds: [sg-…]), which also fixes the VPC")
            for g in groups:
                rules = g.get("IpPermissions", [])
                # Ray leaves an existing group's rules alone: without one letting the group reach itself, workers never
                # reach the head's GCS (6379) or object manager (8076), nor the head their SSH, and none ever joins
                if rules and not any(g["GroupId"] in {pair.get("GroupId") for pair in r.get("UserIdGroupPairs", [])}
                                     and (str(r.get("IpProtocol")) == "-1" or _ports(r) == (0, 65535))
                                     for r in rules):
                    c.error(key, f"the live group {g['GroupId']} has no rule letting its own members reach each "
                            "other: Ray keeps an existing group's rules, so no worker ever joins the head (GCS 6379, "
                            "object manager 8076) and the head cannot SSH into one",
                            f"aws ec2 authorize-security-group-ingress --group-id {g['GroupId']} --ip-permissions "
                            f"'IpProtocol=-1,UserIdGroupPairs=[{{GroupId={g['GroupId']}}}]'")
                for rule in rules:
                    lo, hi = _ports(rule)
                    for rng in rule.get("IpRanges", []) + rule.get("Ipv6Ranges", []):
                        cidr = rng.get("CidrIp") or rng.get("CidrIpv6") or ""
                        if _world(cidr) or _public_wide(cidr):
                            c.error(key, f"the live group {g['GroupId']} opens ports {lo}-{hi} to {cidr}",
                                    f"aws ec2 revoke-security-group-ingress --group-id {g['GroupId']} "
                                    f"--protocol {rule.get('IpProtocol')} --port {lo}-{hi} --cidr {cidr}")
        for name, nt in (cfg.get("available_node_types") or {}).items():
            nc = (nt or {}).get("node_config") or {}
            base: Path_ = ("available_node_types", name, "node_config")
            prof = (nc.get("IamInstanceProfile") or {}).get("Name")
            if prof:
                try:
                    iam.get_instance_profile(InstanceProfileName=prof)
                except ClientError as e:
                    if e.response.get("Error", {}).get("Code") != "NoSuchEntity":
                        raise
                    c.error(base + ("IamInstanceProfile", "Name"), f"instance profile '{prof}' does not exist",
                            "create it (docs/CLUSTER.md, Instance profiles)")
            ami = nc.get("ImageId")
            if ami and ami not in PLACEHOLDERS:
                try:
                    found = ec2.describe_images(ImageIds=[ami])["Images"]
                except ClientError:
                    found = []
                if not found:
                    c.error(base + ("ImageId",), f"AMI {ami} does not exist in {region}",
                            "look up the current AMI id for this region (docs/CLUSTER.md)")
    except (BotoCoreError, ClientError) as e:
        c.error(("provider",), f"live AWS checks failed: {e}", "check credentials/network, or run without --aws")
    report.checks.append("live AWS resources")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ups cluster-check", description=__doc__.split("\n")[0])
    parser.add_argument("cluster_yaml", nargs="?", default="cluster.yaml")
    parser.add_argument("--pyproject", default=None, help="pyproject.toml whose pins the nodes must match")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument("--aws", action="store_true",
                        help="also check live AWS resources (security group rules, instance profiles, AMIs); "
                             "needs read-only credentials")
    args = parser.parse_args(argv)
    path = Path(args.cluster_yaml)
    if path.is_dir():
        print(f"ups cluster-check: error: {path} is a directory, not a cluster file. Fix: pass the file inside it, "
              f"e.g. `ups cluster-check {path / 'cluster.yaml'}`.", file=sys.stderr)
        return 2
    if not path.is_file():
        print(f"ups cluster-check: error: {path} does not exist. Fix: pass the cluster file, e.g. "
              "`ups cluster-check cluster.yaml`.", file=sys.stderr)
        return 2
    if args.pyproject and not Path(args.pyproject).is_file():
        print(f"ups cluster-check: error: --pyproject {args.pyproject} does not exist. Fix: pass the project's "
              "pyproject.toml or leave --pyproject out.", file=sys.stderr)
        return 2
    try:
        report = check_cluster_file(path, args.pyproject)
    except OSError as e:
        print(f"ups cluster-check: error: cannot read {path}: {e.strerror or e}. Fix: check the path and its "
              "permissions.", file=sys.stderr)
        return 2
    if args.aws and report.ok and report.config is not None:
        check_aws(report, report.config)
    failed = not report.ok or bool(args.strict and report.warnings)
    print(report.format(strict=args.strict), file=sys.stderr if failed else sys.stdout)
    if failed:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
