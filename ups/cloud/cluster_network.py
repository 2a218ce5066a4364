"""``ups cluster-check``'s security-group checks (layer 3): no port open to the internet, no Ray port open
outside the private ranges VPCs use, SSH from a configured CIDR only, the dashboard bound to localhost."""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from ups.cloud.cluster_report import Checker, Path_, PLACEHOLDERS, as_map, as_seq


DASHBOARD_PORT, GCS_PORT, CLIENT_PORT, SSH_PORT = 8265, 6379, 10001, 22

NAMED_PORTS = {DASHBOARD_PORT: "Ray dashboard/job API", GCS_PORT: "Ray GCS", CLIENT_PORT: "Ray client",
               SSH_PORT: "SSH", 8076: "object manager"}

RAY_PORTS = (GCS_PORT, 8076, DASHBOARD_PORT, CLIENT_PORT)  # what must never be reachable from outside the VPC

# IPv4 ranges that are not private and wider than this prefix are "the internet" (IPv6: /32).
PUBLIC_MAX_PREFIX = {4: 16, 6: 32}


def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None


def open_to_world(cidr: str) -> bool:
    net = _network(cidr)
    return net is not None and net.prefixlen == 0


def public_and_wide(cidr: str) -> bool:
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


def rule_ports(rule: dict[str, Any]) -> tuple[int, int]:
    if str(rule.get("IpProtocol", "")) in ("-1", "all"):
        return 0, 65535
    lo, hi = rule.get("FromPort", 0), rule.get("ToPort", 65535)
    lo = 0 if lo in (-1, None) else int(lo)
    hi = 65535 if hi in (-1, None) else int(hi)
    return lo, hi


DASHBOARD_ALL = re.compile(r"--dashboard-host(?:=|\s+)\s*['\"]?\s*(0\.0\.0\.0|::|\[::\]|\*)\s*['\"]?(?:\s|$|;|&)")


def check_security(c: Checker, cfg: dict[str, Any]) -> None:
    # Wrong types here are reported by Ray's schema and botocore's AuthorizeSecurityGroupIngress model
    # (_check_provider); this only skips them.
    provider = as_map(cfg.get("provider"))
    sg = as_map(provider.get("security_group"))
    rules = as_seq(sg.get("IpPermissions"))
    malformed = (not isinstance(cfg.get("provider"), dict) or not isinstance(provider.get("security_group", {}), dict)
                 or not isinstance(sg.get("IpPermissions", []), list))
    base: Path_ = ("provider", "security_group", "IpPermissions")
    ssh_ok = False
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        try:
            lo, hi = rule_ports(rule)
        except (TypeError, ValueError):
            continue
        named = [f"{p} ({NAMED_PORTS[p]})" for p in sorted(NAMED_PORTS) if lo <= p <= hi]
        what = ", ".join(named) if named else f"ports {lo}-{hi}"
        tcp = str(rule.get("IpProtocol", "")).lower() in ("tcp", "6", "-1", "all")  # Ray's ports are TCP
        ray_ports = [f"{p} ({NAMED_PORTS[p]})" for p in RAY_PORTS if lo <= p <= hi] if tcp else []
        for field_, cidr_key in (("IpRanges", "CidrIp"), ("Ipv6Ranges", "CidrIpv6")):
            for j, rng in enumerate(as_seq(rule.get(field_))):
                if not isinstance(rng, dict) or not isinstance(rng.get(cidr_key, ""), str):
                    continue
                cidr = rng.get(cidr_key, "")
                key = base + (i, field_, j, cidr_key)
                if cidr and _network(cidr) is None:
                    c.error(key, f"'{cidr}' is not a CIDR", "write an address range such as 198.51.100.0/24")
                elif open_to_world(cidr):
                    c.error(key, f"opens {what} to the whole internet ({cidr})",
                            "never expose Ray ports (unauthenticated job API, CVE-2023-48022); allow SSH from "
                            "your own CIDR only and reach the dashboard with `ray dashboard cluster.yaml`")
                elif public_and_wide(cidr):
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
    nts = as_map(cfg.get("available_node_types"))
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
        for i, cmd in enumerate(as_seq(cfg.get(cmd_key))):
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
    for remote, local in as_map(cfg.get("file_mounts")).items():
        if re.search(r"(^|/)\.aws(/|$)", str(local)) or re.search(r"(^|/)\.aws(/|$)", str(remote)):
            c.error(("file_mounts", remote), "copies AWS credentials to every node",
                    "remove the mount; nodes use their IAM instance profile")
    c.report.checks.append("security rules")
