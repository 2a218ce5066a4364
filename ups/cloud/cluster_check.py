"""``ups cluster-check cluster.yaml``: validate a Ray autoscaler file offline, before spending money.

Four layers, all offline (no AWS credentials, no network):

1. Ray's own schema and semantics (``ray.autoscaler._private.util.prepare_config`` +
   ``validate_config``; private API, hence ray is pinned).
2. botocore's parameter validation of every ``node_config`` against the EC2 ``RunInstances`` input
   shape, plus the instance type against botocore's list of known types.
3. Security rules: no rule opens a port to 0.0.0.0/0 or ::/0 (dashboard 8265, GCS 6379, client 10001
   or any other); SSH is allowed from a configured CIDR only; every node has an IAM instance profile;
   no credentials or tokens anywhere in the file; the dashboard binds to localhost.
4. Project rules: the head node has ``resources: {CPU: 0}`` (it runs no trials), ``ray`` is pinned to
   the client's ``ray.__version__`` and the other pins agree with ``pyproject.toml``.

Every problem names the file, the line, the YAML key path and the fix; errors make the exit code 1.
"""
from __future__ import annotations

import argparse
import copy
import difflib
import ipaddress
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

DASHBOARD_PORT, GCS_PORT, CLIENT_PORT, SSH_PORT = 8265, 6379, 10001, 22
NAMED_PORTS = {DASHBOARD_PORT: "Ray dashboard/job API", GCS_PORT: "Ray GCS", CLIENT_PORT: "Ray client",
               SSH_PORT: "SSH", 8076: "object manager"}
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
PINNED = ("torch", "ray", "optuna", "wandb", "hydra-core")


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

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        out = []
        for level, issues in (("error", self.errors), ("warning", self.warnings)):
            for i in issues:
                loc = f"{self.path}:{i.line}" if i.line else str(self.path)
                out.append(f"{loc}: {level}: {i.key}: {i.message}. Fix: {i.fix}")
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
                index[path + (key,)] = k.start_mark.line + 1
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


def _check_ray_schema(c: _Checker, cfg: dict[str, Any]) -> dict[str, Any] | None:
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema_path = Path(__import__("ray.autoscaler", fromlist=["x"]).__file__).parent / "ray-schema.json"
    schema = json.loads(schema_path.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    for e in errors:
        key = tuple(e.absolute_path)
        if e.validator == "additionalProperties":
            bad = re.findall(r"'([^']+)'", e.message.split("(")[-1])
            allowed = list(e.schema.get("properties", {}))
            for b in bad or ["?"]:
                near = difflib.get_close_matches(b, allowed, n=1)
                hint = f"did you mean '{near[0]}'?" if near else f"valid keys here: {', '.join(allowed)}"
                c.error(key + (b,), f"unknown key '{b}' (Ray's cluster schema)", f"remove it or correct the spelling: {hint}")
        elif e.validator == "type":
            c.error(key, f"{e.instance!r} is not of type {e.validator_value}",
                    f"write a value of type {e.validator_value} (e.g. max_workers: 4, no quotes)")
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
    except (ValueError, RuntimeError, KeyError, TypeError) as e:
        c.error((), f"Ray rejects the file: {e}", "fix the field named in Ray's message")
        return None
    c.report.checks.append("Ray schema")
    return prepared


def _check_node_configs(c: _Checker, cfg: dict[str, Any]) -> None:
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("ec2")
    shape = model.operation_model("RunInstances").input_shape
    known_types = set(shape.members["InstanceType"].enum or [])
    for name, nt in (cfg.get("available_node_types") or {}).items():
        if not isinstance(nt, dict) or not isinstance(nt.get("node_config"), dict):
            continue
        base: Path_ = ("available_node_types", name, "node_config")
        params = dict(nt["node_config"])
        subnet_ids = params.pop("SubnetIds", None)  # Ray-specific list, translated to SubnetId
        if subnet_ids is not None and not (isinstance(subnet_ids, list) and all(isinstance(s, str) for s in subnet_ids)):
            c.error(base + ("SubnetIds",), "must be a list of subnet ids", "write SubnetIds: [subnet-…]")
        params.setdefault("MinCount", 1)
        params.setdefault("MaxCount", 1)
        report = ParamValidator().validate(params, shape)
        for kind, where, details in getattr(report, "_errors", []):
            key = base + _botocore_path(where)
            if kind == "unknown field":
                bad, valid = details["unknown_param"], details["valid_names"]
                near = difflib.get_close_matches(bad, valid, n=1)
                hint = f"did you mean '{near[0]}'?" if near else "see the EC2 RunInstances API"
                c.error(key + (bad,), f"'{bad}' is not an EC2 RunInstances parameter", hint)
            elif kind == "invalid type":
                c.error(key, f"{details['param']!r} has the wrong type",
                        f"use {', '.join(t.strip('<>').replace('class ', '') for t in map(str, details['valid_types']))}")
            elif kind == "missing required field":
                c.error(key + (details["required_name"],), "required by EC2 RunInstances", "add it")
            else:
                c.error(key, f"EC2 RunInstances: {kind} {details}", "see the EC2 RunInstances API")
        itype = params.get("InstanceType")
        if isinstance(itype, str) and known_types and itype not in known_types:
            near = difflib.get_close_matches(itype, sorted(known_types), n=1)
            c.error(base + ("InstanceType",), f"unknown EC2 instance type '{itype}'",
                    (f"did you mean '{near[0]}'?" if near else "check the type") +
                    " (if it is newer than botocore, upgrade botocore)")
        for value_key in ("ImageId",):
            v = params.get(value_key)
            if v in PLACEHOLDERS:
                c.warn(base + (value_key,), PLACEHOLDERS[v], "replace it with the AMI id for your region (docs/CLUSTER.md)")
    c.report.checks.append("EC2 RunInstances parameters")


def _botocore_path(where: str) -> Path_:
    out: list[Any] = []
    for part in re.findall(r"\.?([^.\[\]]+)|\[(\d+)\]", where):
        out.append(int(part[1]) if part[1] else part[0])
    return tuple(out)


def _world(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _ports(rule: dict[str, Any]) -> tuple[int, int]:
    if str(rule.get("IpProtocol", "")) in ("-1", "all"):
        return 0, 65535
    lo, hi = rule.get("FromPort", 0), rule.get("ToPort", 65535)
    lo = 0 if lo in (-1, None) else int(lo)
    hi = 65535 if hi in (-1, None) else int(hi)
    return lo, hi


def _check_security(c: _Checker, cfg: dict[str, Any]) -> None:
    provider = cfg.get("provider") or {}
    sg = provider.get("security_group") or {}
    rules = sg.get("IpPermissions") or []
    base: Path_ = ("provider", "security_group", "IpPermissions")
    ssh_ok = False
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            c.error(base + (i,), "must be a mapping", "see AuthorizeSecurityGroupIngress IpPermissions")
            continue
        try:
            lo, hi = _ports(rule)
        except (TypeError, ValueError):
            c.error(base + (i,), "FromPort/ToPort must be integers", "write e.g. FromPort: 22")
            continue
        named = [f"{p} ({NAMED_PORTS[p]})" for p in sorted(NAMED_PORTS) if lo <= p <= hi]
        what = ", ".join(named) if named else f"ports {lo}-{hi}"
        for field_, cidr_key in (("IpRanges", "CidrIp"), ("Ipv6Ranges", "CidrIpv6")):
            for j, rng in enumerate(rule.get(field_) or []):
                cidr = str((rng or {}).get(cidr_key, ""))
                key = base + (i, field_, j, cidr_key)
                if _world(cidr):
                    c.error(key, f"opens {what} to the whole internet ({cidr})",
                            "never expose Ray ports (unauthenticated job API, CVE-2023-48022); allow SSH from "
                            "your own CIDR only and reach the dashboard with `ray dashboard cluster.yaml`")
                elif lo <= SSH_PORT <= hi and cidr:
                    ssh_ok = True
                    if cidr in PLACEHOLDERS:
                        c.warn(key, PLACEHOLDERS[cidr], "set it to your office/VPN CIDR before `ray up`")
                    if lo != hi:
                        c.warn(base + (i,), f"opens {what}, more than SSH, to {cidr}", "open only port 22")
    user_groups = all(
        isinstance(nt, dict) and isinstance(nt.get("node_config"), dict) and nt["node_config"].get("SecurityGroupIds")
        for nt in (cfg.get("available_node_types") or {}).values()
    )
    if user_groups:
        c.warn(("available_node_types",), "every node type names its own SecurityGroupIds; their rules cannot be "
               "checked offline", "make sure they allow SSH from your CIDR only and no Ray port from the internet")
    elif not ssh_ok:
        c.error(base, "no SSH rule limited to a CIDR; when Ray creates the group it opens SSH to 0.0.0.0/0",
                "add an IpPermissions rule for tcp 22 from your CIDR and create the group beforehand "
                "(docs/CLUSTER.md, One-time AWS set-up)")
    # dashboard must not listen on all interfaces
    for cmd_key in ("head_start_ray_commands",):
        for i, cmd in enumerate(cfg.get(cmd_key) or []):
            if re.search(r"--dashboard-host[= ]+(0\.0\.0\.0|::|\[::\])", str(cmd)):
                c.error((cmd_key, i), "starts the dashboard on all interfaces (--dashboard-host=0.0.0.0)",
                        "use --dashboard-host=127.0.0.1 and `ray dashboard cluster.yaml` (SSH tunnel)")
    # IAM instance profile instead of keys
    for name, nt in (cfg.get("available_node_types") or {}).items():
        nc = nt.get("node_config") if isinstance(nt, dict) else None
        if isinstance(nc, dict) and not nc.get("IamInstanceProfile"):
            c.error(("available_node_types", name, "node_config"),
                    "no IamInstanceProfile: this node cannot reach S3 without keys",
                    "add IamInstanceProfile: {Name: ups-sweeps-worker} (docs/CLUSTER.md)")
    for remote, local in (cfg.get("file_mounts") or {}).items():
        if re.search(r"(^|/)\.aws(/|$)", str(local)) or re.search(r"(^|/)\.aws(/|$)", str(remote)):
            c.error(("file_mounts", remote), "copies AWS credentials to every node",
                    "remove the mount; nodes use their IAM instance profile")
    c.report.checks.append("security rules")


def _all_commands(cfg: dict[str, Any]) -> list[tuple[Path_, str]]:
    out = []
    for key in ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands"):
        for i, cmd in enumerate(cfg.get(key) or []):
            out.append(((key, i), str(cmd)))
    for name, nt in (cfg.get("available_node_types") or {}).items():
        if isinstance(nt, dict):
            for key in ("initialization_commands", "worker_setup_commands"):
                for i, cmd in enumerate(nt.get(key) or []):
                    out.append((("available_node_types", name, key, i), str(cmd)))
    return out


def _pins(text: str) -> dict[str, str]:
    """``pkg==1.2.3`` / ``"pkg[extra]==1.2.3"`` occurrences → {pkg: version}."""
    return {m.group(1).lower(): m.group(2)
            for m in re.finditer(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([0-9][0-9A-Za-z.+\-]*)", text)}


def _check_project(c: _Checker, cfg: dict[str, Any], pyproject: Path | None) -> None:
    import ray

    head = cfg.get("head_node_type")
    nts = cfg.get("available_node_types") or {}
    if head in nts and isinstance(nts[head], dict):
        res = nts[head].get("resources")
        if not isinstance(res, dict) or res.get("CPU") != 0:
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
    if "idle_timeout_minutes" not in cfg:
        c.warn(("idle_timeout_minutes",), "not set (Ray's default is 5)", "set it explicitly, e.g. 10")

    commands = _all_commands(cfg)
    found = {}
    for key, cmd in commands:
        for pkg, ver in _pins(cmd).items():
            found.setdefault(pkg, (ver, key))
    if "ray" not in found:
        c.error(("setup_commands",), "ray is not pinned in the setup commands",
                f'install "ray[tune]=={ray.__version__}" (the client\'s version) on every node')
    elif found["ray"][0] != ray.__version__:
        c.error(found["ray"][1], f"nodes get ray=={found['ray'][0]} but this client has ray {ray.__version__}",
                f'pin "ray[tune]=={ray.__version__}" (client and cluster must match)')
    if pyproject is not None and pyproject.is_file():
        wanted = _pins(pyproject.read_text())
        for pkg in PINNED:
            if pkg in found and pkg in wanted and found[pkg][0] != wanted[pkg]:
                c.error(found[pkg][1], f"pins {pkg}=={found[pkg][0]} but pyproject.toml pins {pkg}=={wanted[pkg]}",
                        f"use {pkg}=={wanted[pkg]} so every node matches the project")
    c.report.checks.append("project rules")


# ----------------------------------------------------------------------------------- entry
def check_cluster_file(path: str | Path, pyproject: str | Path | None = None) -> CheckReport:
    """Run every offline check on ``path``; never raises for problems in the file."""
    path = Path(path)
    text = path.read_text()
    c = _Checker(path, text)
    _check_secrets(c)
    c.report.checks.append("secrets")
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        c.report.errors.append(Issue("<yaml>", f"not valid YAML: {getattr(e, 'problem', e)}",
                                     "fix the indentation/quoting at that line",
                                     mark.line + 1 if mark is not None else None))
        return c.report
    if not isinstance(cfg, dict):
        c.error((), "the file must be a YAML mapping", "start from cluster.yaml in the repository")
        return c.report
    if (cfg.get("provider") or {}).get("type") != "aws":
        c.error(("provider", "type"), f"is {(cfg.get('provider') or {}).get('type')!r}", "this project targets type: aws")
    pyproject_path = Path(pyproject) if pyproject else path.resolve().parent / "pyproject.toml"
    _check_ray_schema(c, cfg)
    _check_node_configs(c, cfg)
    _check_security(c, cfg)
    _check_project(c, cfg, pyproject_path)
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
            for g in groups:
                for rule in g.get("IpPermissions", []):
                    lo, hi = _ports(rule)
                    for rng in rule.get("IpRanges", []) + rule.get("Ipv6Ranges", []):
                        cidr = rng.get("CidrIp") or rng.get("CidrIpv6") or ""
                        if _world(cidr):
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
    if not path.is_file():
        print(f"ups cluster-check: error: {path} does not exist. Fix: pass the cluster file, e.g. "
              "`ups cluster-check cluster.yaml`.", file=sys.stderr)
        return 2
    report = check_cluster_file(path, args.pyproject)
    if args.aws and report.ok:
        check_aws(report, yaml.safe_load(path.read_text()))
    print(report.format(), file=sys.stdout if report.ok else sys.stderr)
    if not report.ok or (args.strict and report.warnings):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
