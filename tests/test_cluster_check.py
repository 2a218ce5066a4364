"""`ups cluster-check` on the shipped cluster.yaml and on broken variants (offline, no AWS)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import ray
import yaml

from ups.cli import main as ups_main
from ups.cloud.cluster_check import check_cluster_file

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster.yaml"
WORKER = "ray.worker.gpu_spot"
HEAD = "ray.head.cpu"


@pytest.fixture(scope="module")
def base() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def _write(tmp_path: Path, cfg: dict | str) -> Path:
    p = tmp_path / "cluster.yaml"
    p.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False))
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    return p


def _errors(path: Path) -> str:
    report = check_cluster_file(path)
    assert not report.ok, report.format()
    return "\n".join(f"{i.key} | {i.message} | {i.fix} | line {i.line}" for i in report.errors)


def test_shipped_cluster_yaml_passes(capsys):
    assert ups_main(["cluster-check", str(CLUSTER)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "Ray schema" in out and "EC2 RunInstances parameters" in out


def test_shipped_file_has_the_required_shape(base):
    head = base["available_node_types"][base["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    worker = base["available_node_types"][WORKER]
    assert worker["min_workers"] == 0 and worker["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert all("IamInstanceProfile" in nt["node_config"] for nt in base["available_node_types"].values())
    assert any(f"ray[tune]=={ray.__version__}" in c for c in base["setup_commands"])


def test_rejects_unknown_top_level_key(tmp_path, base, capsys):
    cfg = copy.deepcopy(base)
    cfg["max_worker"] = 3
    path = _write(tmp_path, cfg)
    assert ups_main(["cluster-check", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "max_worker" in err and "did you mean 'max_workers'" in err


def test_rejects_non_integer_worker_count(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["available_node_types"][WORKER]["max_workers"] = "four"
    errs = _errors(_write(tmp_path, cfg))
    assert f"available_node_types['{WORKER}'].max_workers" in errs and "not of type integer" in errs


def test_rejects_misspelt_instance_type_key(tmp_path, base):
    cfg = copy.deepcopy(base)
    nc = cfg["available_node_types"][WORKER]["node_config"]
    nc["InstanceTyp"] = nc.pop("InstanceType")
    errs = _errors(_write(tmp_path, cfg))
    assert "node_config.InstanceTyp" in errs and "did you mean 'InstanceType'" in errs


def test_rejects_unknown_instance_type_value(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["available_node_types"][WORKER]["node_config"]["InstanceType"] = "g5.xlarg"
    errs = _errors(_write(tmp_path, cfg))
    assert "unknown EC2 instance type 'g5.xlarg'" in errs and "g5.xlarge" in errs


def test_rejects_wrong_ec2_param_type(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["available_node_types"][WORKER]["node_config"]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] = "150GB"
    errs = _errors(_write(tmp_path, cfg))
    assert "BlockDeviceMappings[0].Ebs.VolumeSize" in errs and "int" in errs


@pytest.mark.parametrize("port, cidr_field, cidr", [
    (8265, "IpRanges", "0.0.0.0/0"),
    (6379, "IpRanges", "0.0.0.0/0"),
    (8265, "Ipv6Ranges", "::/0"),
])
def test_rejects_ray_ports_open_to_world(tmp_path, base, port, cidr_field, cidr):
    cfg = copy.deepcopy(base)
    key = "CidrIp" if cidr_field == "IpRanges" else "CidrIpv6"
    cfg["provider"]["security_group"]["IpPermissions"].append(
        {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, cidr_field: [{key: cidr}]})
    errs = _errors(_write(tmp_path, cfg))
    assert f"provider.security_group.IpPermissions[1].{cidr_field}[0].{key}" in errs
    assert str(port) in errs and "whole internet" in errs and "ray dashboard cluster.yaml" in errs


def test_rejects_ssh_open_to_world_and_missing_ssh_rule(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["provider"]["security_group"]["IpPermissions"][0]["IpRanges"][0]["CidrIp"] = "0.0.0.0/0"
    errs = _errors(_write(tmp_path, cfg))
    assert "22 (SSH)" in errs and "whole internet" in errs
    cfg["provider"]["security_group"]["IpPermissions"] = []
    errs = _errors(_write(tmp_path, cfg))
    assert "no SSH rule limited to a CIDR" in errs


def test_rejects_aws_key_in_file(tmp_path):
    text = CLUSTER.read_text().replace(
        "head_setup_commands: []",
        "head_setup_commands:\n  - export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE")
    errs = _errors(_write(tmp_path, text))
    assert "AWS access key id" in errs and "head_setup_commands[0]" in errs and "IamInstanceProfile" in errs


def test_rejects_secret_setting_in_a_comment(tmp_path):
    text = CLUSTER.read_text() + "\n# aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
    errs = _errors(_write(tmp_path, text))
    assert "AWS secret key setting" in errs


def test_rejects_head_that_runs_trials(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["available_node_types"][HEAD]["resources"] = {}
    errs = _errors(_write(tmp_path, cfg))
    assert f"available_node_types['{HEAD}'].resources" in errs and "CPU: 0" in errs


def test_rejects_ray_version_mismatch_and_pin_drift(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["setup_commands"] = [c.replace(f"ray[tune]=={ray.__version__}", "ray[tune]==2.9.0")
                             .replace("torch==2.13.0", "torch==2.1.0") for c in cfg["setup_commands"]]
    errs = _errors(_write(tmp_path, cfg))
    assert f"client has ray {ray.__version__}" in errs and "pyproject.toml pins torch==2.13.0" in errs


def test_rejects_missing_instance_profile_and_public_dashboard(tmp_path, base):
    cfg = copy.deepcopy(base)
    del cfg["available_node_types"][WORKER]["node_config"]["IamInstanceProfile"]
    cfg["head_start_ray_commands"][1] = cfg["head_start_ray_commands"][1].replace("127.0.0.1", "0.0.0.0")
    errs = _errors(_write(tmp_path, cfg))
    assert "no IamInstanceProfile" in errs and "--dashboard-host=0.0.0.0" in errs


def test_bad_yaml_and_missing_file(tmp_path, capsys):
    assert ups_main(["cluster-check", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    errs = _errors(_write(tmp_path, "cluster_name: x\n  max_workers: [1\n"))
    assert "not valid YAML" in errs


def test_live_aws_checks_against_moto(s3_env, capsys):
    """--aws: the security group must exist without world-open rules, profiles must exist (moto EC2/IAM)."""
    import boto3

    region = yaml.safe_load(CLUSTER.read_text())["provider"]["region"]
    ec2 = boto3.client("ec2", region_name=region)
    iam = boto3.client("iam", region_name=region)
    # a fresh moto account: nothing exists yet → the group and both profiles are reported missing
    for name in ("ups-sweeps-head", "ups-sweeps-worker"):
        try:
            iam.delete_instance_profile(InstanceProfileName=name)
        except iam.exceptions.NoSuchEntityException:
            pass
    for g in ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["ups-sweeps"]}])["SecurityGroups"]:
        ec2.delete_security_group(GroupId=g["GroupId"])
    assert ups_main(["cluster-check", str(CLUSTER), "--aws"]) == 1
    err = capsys.readouterr().err
    assert "security group 'ups-sweeps' does not exist" in err and "instance profile 'ups-sweeps-worker'" in err

    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    sg = ec2.create_security_group(GroupName="ups-sweeps", Description="t", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "203.0.113.0/24"}]}])
    for name in ("ups-sweeps-head", "ups-sweeps-worker"):
        iam.create_instance_profile(InstanceProfileName=name)
    assert ups_main(["cluster-check", str(CLUSTER), "--aws"]) == 0, capsys.readouterr().err
    assert "live AWS resources" in capsys.readouterr().out

    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8265, "ToPort": 8265, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    assert ups_main(["cluster-check", str(CLUSTER), "--aws"]) == 1
    err = capsys.readouterr().err
    assert f"live group {sg} opens ports 8265-8265 to 0.0.0.0/0" in err and "revoke-security-group-ingress" in err
    ec2.delete_security_group(GroupId=sg)
    for name in ("ups-sweeps-head", "ups-sweeps-worker"):
        iam.delete_instance_profile(InstanceProfileName=name)
