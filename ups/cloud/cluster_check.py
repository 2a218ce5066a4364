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

Layers 0–2 and the project's node rules are here; layer 3 is ``cluster_network``, the setup commands of layers 4
and 5 are ``cluster_setup``, and ``cluster_report`` holds the report and the checker they all write to.
"""
from __future__ import annotations

import argparse
import copy
import difflib
import functools
import json
import logging
import math
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import yaml

from ups.cloud.cluster_network import check_security, open_to_world, public_and_wide, rule_ports
from ups.cloud.cluster_report import (Checker, CheckReport, Issue, NVIDIA_GPU_FAMILIES, Path_, PLACEHOLDERS, as_map,
                                      botocore_path, fmt_key)
from ups.cloud.cluster_setup import (check_project, check_start_commands, check_torch_build, command_installs,
                                     find_pyproject, node_commands, path_under, remote_home, remote_path)
from ups.yamlio import DuplicateKeyError, UniqueKeyLoader


AMI_ID = re.compile(r"ami-(?:[0-9a-f]{8}|[0-9a-f]{17})")  # what EC2 takes as an ImageId

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

# V100 (sm_70): dropped from PyTorch's CUDA 12.8+ wheels in 2.11; the PyPI torch==2.13.0 fails there with "no kernel
# image is available for execution on the device"
VOLTA_FAMILIES = frozenset({"p3", "p3dn"})

# arm64 hosts (Graviton g5g, Grace p6e-gb200): they boot only an arm64 AMI, not the x86 Deep Learning AMI of the head
ARM64_GPU_FAMILIES = frozenset({"g5g", "p6e-gb200"})

# botocore's MaxPrice documentation: "Specifying a value below USD $0.001 will result in an InvalidParameterValue".
MIN_SPOT_PRICE = Decimal("0.001")

# below this, the gaps of a sweep (promotion full-eval, baselines, a resume) outlast the timeout (Ray's default: 5)
SHORT_IDLE_MINUTES = 2


def _check_secrets(c: Checker) -> None:
    key_at_line = {}
    for key, ln in c.lines.items():
        key_at_line.setdefault(ln, key)
    for n, raw in enumerate(c.text.splitlines(), start=1):
        for name, pat in SECRET_PATTERNS:
            if pat.search(raw):
                key = key_at_line.get(n, ("<comment>",))
                c.report.errors.append(Issue(
                    fmt_key(key), f"looks like {'an' if name[0] in 'AEIOU' else 'a'} {name} (line {n}); credentials must never be in the cluster file",
                    "delete it (and rotate it if it was real); nodes get S3 access from IamInstanceProfile, "
                    "W&B/other tokens come from the environment or a secrets manager", n))
                break
    c.report.checks.append("secrets")


def _ray_semantic_issue(e: BaseException, cfg: dict[str, Any]) -> tuple[Path_, str]:
    """Key path and fix for an exception of Ray's prepare_config/validate_config."""
    msg = str(e)
    nts = as_map(cfg.get("available_node_types"))
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


def _check_ray_schema(c: Checker, cfg: dict[str, Any]) -> dict[str, Any] | None:
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


def _report_param_errors(c: Checker, base: Path_, report: Any, api: str) -> None:
    for kind, where, details in getattr(report, "_errors", []):
        key = base + botocore_path(where)
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


def _check_enums(c: Checker, value: Any, shape: Any, key: Path_, skip: frozenset[str] = frozenset()) -> None:
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


def _check_node_configs(c: Checker, cfg: dict[str, Any]) -> None:
    from botocore.validate import ParamValidator

    model = _ec2_model()
    shape = model.operation_model("RunInstances").input_shape
    known_types = set(shape.members["InstanceType"].enum or [])
    for name, nt in as_map(cfg.get("available_node_types")).items():
        if not isinstance(nt, dict) or not isinstance(nt.get("node_config"), dict):
            continue
        base: Path_ = ("available_node_types", name, "node_config")
        params = copy.deepcopy(nt["node_config"])
        spot = as_map(as_map(params.get("InstanceMarketOptions")).get("SpotOptions"))
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


def _check_volume_sizes(c: Checker, mappings: Any, key: Path_) -> None:
    """EBS volume sizes EC2 refuses (botocore's shape has no minimum): at least 1 GiB (125 for st1/sc1, 4 for io1/io2)."""
    if not isinstance(mappings, list):
        return
    for i, m in enumerate(mappings):
        ebs = as_map(as_map(m).get("Ebs"))
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


def _check_max_price(c: Checker, key: Path_, value: Any) -> None:
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


def _check_provider(c: Checker, cfg: dict[str, Any]) -> None:
    """Region against botocore's offline endpoint data, zones inside the region, security group params."""
    from botocore.validate import ParamValidator

    provider = as_map(cfg.get("provider"))
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


def _check_idle_timeout(c: Checker, cfg: dict[str, Any]) -> None:
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


def _check_workers_gpu(c: Checker, cfg: dict[str, Any]) -> None:
    head = cfg.get("head_node_type")
    nts = as_map(cfg.get("available_node_types"))
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
        itype = as_map(nt.get("node_config")).get("InstanceType")
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
        declared = as_map(res).get("GPU") if isinstance(res, dict) else None
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


def _check_ssh_key(c: Checker, cfg: dict[str, Any], yaml_dir: Path) -> None:
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


def _check_file_mounts(c: Checker, cfg: dict[str, Any], yaml_dir: Path) -> None:
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
    home = remote_home(cfg)
    targets = {remote_path(str(r), "~", home): r for r in fm}
    missing, mismatched = [], []
    for node, cmds in node_commands(cfg).items():
        paths = [(i, remote_path(i.path, i.cwd, home)) for k, cmd in cmds for i in command_installs(k, cmd) if i.path]
        if any(any(path_under(p, t) for t in targets) for _, p in paths):
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


def _guarded(c: Checker, name: str, fn: Callable[..., Any], *args: Any) -> Any:
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
    c = Checker(path, text)
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
    pyproject_path, origin = find_pyproject(path, pyproject)
    _guarded(c, "Ray schema", _check_ray_schema, cfg)
    _guarded(c, "EC2 parameter", _check_node_configs, cfg)
    _guarded(c, "region", _check_provider, cfg)
    _guarded(c, "security", check_security, cfg)
    _guarded(c, "GPU worker", _check_workers_gpu, cfg)
    _guarded(c, "SSH key", _check_ssh_key, cfg, path.resolve().parent)
    _guarded(c, "file_mounts", _check_file_mounts, cfg, path.resolve().parent)
    _guarded(c, "torch build", check_torch_build, cfg, path.resolve().parent, pyproject_path)
    _guarded(c, "idle timeout", _check_idle_timeout, cfg)
    _guarded(c, "project", check_project, cfg, pyproject_path, origin, path.resolve().parent)
    _guarded(c, "start commands", check_start_commands, cfg)
    return c.report


def check_aws(report: CheckReport, cfg: dict[str, Any]) -> None:
    """Optional live checks (``--aws``, needs read-only credentials): what the file cannot show.

    The security group Ray will use (it exists, and no rule opens anything to the internet), the
    instance profiles and the AMIs exist in the region.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    c = Checker(report.path, report.path.read_text())
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
                                     and (str(r.get("IpProtocol")) == "-1" or rule_ports(r) == (0, 65535))
                                     for r in rules):
                    c.error(key, f"the live group {g['GroupId']} has no rule letting its own members reach each "
                            "other: Ray keeps an existing group's rules, so no worker ever joins the head (GCS 6379, "
                            "object manager 8076) and the head cannot SSH into one",
                            f"aws ec2 authorize-security-group-ingress --group-id {g['GroupId']} --ip-permissions "
                            f"'IpProtocol=-1,UserIdGroupPairs=[{{GroupId={g['GroupId']}}}]'")
                for rule in rules:
                    lo, hi = rule_ports(rule)
                    for rng in rule.get("IpRanges", []) + rule.get("Ipv6Ranges", []):
                        cidr = rng.get("CidrIp") or rng.get("CidrIpv6") or ""
                        if open_to_world(cidr) or public_and_wide(cidr):
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
