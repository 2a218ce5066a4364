"""`ups cluster-check` on the shipped cluster.yaml and on broken variants (offline, no AWS)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import ray
import yaml

from ups.cli import main as ups_main
from ups.cloud.cluster_check import check_cluster_file
from ups.cloud.cluster_network import rule_ports
from ups.cloud.cluster_report import Checker, CheckReport, fmt_key
from ups.cloud.cluster_setup import path_under

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


def test_strict_says_that_its_warnings_failed_the_file(capsys):
    """`--strict` exited 1 on the shipped file's placeholder warnings but printed them as warnings and the verdict
    as "OK", so nothing on screen said why it failed."""
    assert ups_main(["cluster-check", str(CLUSTER)]) == 0
    n = capsys.readouterr().out.count(": warning: ")
    assert n > 0  # the shipped file's placeholders (bucket, key, ...) are warnings
    assert ups_main(["cluster-check", str(CLUSTER), "--strict"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and ": warning: " not in captured.err
    assert captured.err.count(": error (a warning; --strict): ") == n
    assert f"FAILED under --strict ({n} warning(s))" in captured.err and ": OK;" not in captured.err


def test_shipped_file_has_the_required_shape(base):
    head = base["available_node_types"][base["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    worker = base["available_node_types"][WORKER]
    assert worker["min_workers"] == 0 and worker["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert all("IamInstanceProfile" in nt["node_config"] for nt in base["available_node_types"].values())
    assert any(f"ray[default,tune]=={ray.__version__}" in c for c in base["setup_commands"])


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


def test_rejects_ssh_open_to_world_and_warns_of_a_missing_ssh_rule(tmp_path, base):
    """No IpPermissions is right for a group made beforehand (Ray keeps an existing group's rules), so a warning; it
    says what Ray does to a group it creates: SSH from 0.0.0.0/0 whatever IpPermissions holds (aws/config.py)."""
    cfg = copy.deepcopy(base)
    cfg["provider"]["security_group"]["IpPermissions"][0]["IpRanges"][0]["CidrIp"] = "0.0.0.0/0"
    errs = _errors(_write(tmp_path, cfg))
    assert "22 (SSH)" in errs and "whole internet" in errs
    cfg["provider"]["security_group"]["IpPermissions"] = []
    report = check_cluster_file(_write(tmp_path, cfg))
    assert report.ok, report.format()
    (w,) = _warnings_at(report, "provider.security_group.IpPermissions")
    assert "no SSH rule limited to a CIDR" in w.message and "0.0.0.0/0 whatever IpPermissions says" in w.message
    assert "SecurityGroupIds" in w.fix and "--aws" in w.fix


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
    cfg["setup_commands"] = [c.replace(f"ray[default,tune]=={ray.__version__}", "ray[tune]==2.9.0")
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
    """--aws: the security group must exist, let its members reach each other and open nothing to the world;
    profiles must exist (moto EC2/IAM)."""
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
    # SSH alone: Ray keeps the group's rules as they are, and no worker could reach the head
    assert ups_main(["cluster-check", str(CLUSTER), "--aws"]) == 1
    err = capsys.readouterr().err
    assert f"the live group {sg} has no rule letting its own members reach each other" in err, err
    assert f"'IpProtocol=-1,UserIdGroupPairs=[{{GroupId={sg}}}]'" in err
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": sg}]}])
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


# ------------------------------------------------------------------ mutations of the real file
# (name, [(old, new), …] applied to cluster.yaml's text, substrings the errors must contain: the key and the fix)
_SSH_RULE = "          - CidrIp: 203.0.113.0/24       # FILL-IN: your office/VPN CIDR (never 0.0.0.0/0)\n"
_WORKER = "    resources: {}                        # CPU/GPU detected from the instance type\n"
_EXTRA_RULE = "      - IpProtocol: tcp\n        FromPort: {p}\n        ToPort: {p}\n        IpRanges:\n{r}"


def _max_price(value: str) -> list[tuple[str, str]]:
    return [("        MarketType: spot", f"        MarketType: spot\n        SpotOptions:\n          MaxPrice: {value}")]


MUTATIONS = [
    # 1. crashes → errors with key and fix
    ("docker_noname", [("cluster_name: ups-sweeps", "cluster_name: ups-sweeps\ndocker:\n  image: rayproject/ray:2.9.0-gpu")],
     ["docker | Ray rejects the file", "container_name"]),
    ("ant_list", [("available_node_types:\n", "available_node_types: [1, 2]\nxx_available_node_types:\n")],
     ["available_node_types | [1, 2] is not of type object"]),
    ("provider_str", [("provider:\n  type: aws", "provider: aws\nxprovider:\n  type: aws")],
     ["provider | 'aws' is not of type object"]),
    ("sg_list", [("  security_group:\n    GroupName: ups-sweeps", "  security_group: [a]\n  xsecurity_group:\n    GroupName: ups-sweeps")],
     ["provider.security_group | ['a'] is not of type object"]),
    ("ipranges_str", [("        IpRanges:\n          - CidrIp: 203.0.113.0/24", '        IpRanges: "0.0.0.0/0"\n        XIpRanges:\n          - CidrIp: 203.0.113.0/24')],
     ["IpPermissions[0].IpRanges | '0.0.0.0/0' has the wrong type | use 'list'"]),
    ("iprange_list_of_str", [("          - CidrIp: 203.0.113.0/24", "          - 0.0.0.0/0\n          - CidrIp: 203.0.113.0/24")],
     ["IpPermissions[0].IpRanges[0] | '0.0.0.0/0' has the wrong type | use 'dict'"]),
    ("file_mounts_list", [("  /home/ubuntu/ups-sweeps: .", "  - /home/ubuntu/ups-sweeps")],
     ["file_mounts | ['/home/ubuntu/ups-sweeps'] is not of type object"]),
    ("setup_str", [("setup_commands:\n  - sudo", 'setup_commands: "pip install ray==2.60.0"\nxsetup_commands:\n  - sudo')],
     ["setup_commands | 'pip install ray==2.60.0' is not of type array"]),
    ("node_type_int", [("  ray.worker.gpu_spot:\n", "  ray.worker.x: 5\n  ray.worker.gpu_spot:\n")],
     ["available_node_types['ray.worker.x'] | 5 is not of type object"]),
    ("cidr_not_cidr", [("CidrIp: 203.0.113.0/24", "CidrIp: office")], ["CidrIp | 'office' is not a CIDR"]),
    # 2. workers must be able to provide a GPU
    ("cpu_declares_gpu", [(_WORKER + "    node_config:\n      InstanceType: g5.2xlarge",
                           "    resources: {CPU: 2, GPU: 1}\n    node_config:\n      InstanceType: m5.large")],
     [f"{WORKER}'].resources.GPU | declares GPU: 1 but m5.large has no NVIDIA GPU", "no worker node type can provide a GPU"]),
    ("cpu_autodetect", [("InstanceType: g5.2xlarge", "InstanceType: m5.large")],
     ["available_node_types | no worker node type can provide a GPU", "m5.large has no NVIDIA GPU", "g5.2xlarge"]),
    ("gpu_zero", [(_WORKER, "    resources: {GPU: 0}\n")], ["resources GPU: 0", "no GPU: 0"]),
    ("global_mw0", [("max_workers: 4\nupscaling", "max_workers: 0\nupscaling")],
     ["max_workers | max_workers is 0", "ray up --max-workers"]),
    ("type_mw0", [("    min_workers: 0\n    max_workers: 4", "    min_workers: 0\n    max_workers: 0")],
     [f"{WORKER}: max_workers: 0"]),
    # 3. every install pinned to pyproject / the client
    ("ray_head_only", [("head_setup_commands: []", "head_setup_commands:\n  - ~/ups-venv/bin/pip install ray==2.59.0")],
     ["head_setup_commands[0] | nodes get ray==2.59.0 but this client has ray"]),
    ("ray_worker_upgrade", [("worker_setup_commands: []", 'worker_setup_commands:\n  - ~/ups-venv/bin/pip install -U "ray[tune]"')],
     ["worker_setup_commands[0] | installs 'ray[tune]' without an exact == pin", f"ray=={ray.__version__}"]),
    ("node_type_setup", [(_WORKER, _WORKER + "    worker_setup_commands:\n      - pip install optuna==4.0.0\n"
                          '      - ~/ups-venv/bin/pip install -q -e "/home/ubuntu/ups-sweeps[tune,cloud]"\n')],
     [f"{WORKER}'].worker_setup_commands[0] | pins optuna==4.0.0 but pyproject.toml pins optuna==5.0.0"]),
    ("torch_unpinned", [("torch==2.13.0", "torch")], ["installs 'torch' without an exact == pin", "CUDA", "torch==2.13.0"]),
    ("torch_ge", [("torch==2.13.0", '"torch>=2.0"')], ["installs 'torch>=2.0' without an exact == pin"]),
    # 4. file_mounts
    ("mount_missing_src", [("  /home/ubuntu/ups-sweeps: .", "  /home/ubuntu/ups-sweeps: ./does-not-exist")],
     ["file_mounts./home/ubuntu/ups-sweeps | the local source './does-not-exist' exists neither", "ray up"]),
    ("mount_missing_abs", [("  /home/ubuntu/ups-sweeps: .", "  /home/ubuntu/ups-sweeps: /nonexistent/ups-path")],
     ["file_mounts./home/ubuntu/ups-sweeps | the local source /nonexistent/ups-path does not exist"]),
    ("no_file_mounts", [("file_mounts:\n  /home/ubuntu/ups-sweeps: .\n", "")],
     ["file_mounts | no file_mounts", "pip install -e"]),
    ("no_pip_e", [('  - ~/ups-venv/bin/pip install -q -e "/home/ubuntu/ups-sweeps[tune,cloud]"\n', "")],
     ["setup_commands | no `pip install -e <mounted repository>`", "/home/ubuntu/ups-sweeps[tune,cloud]"]),
    ("mount_mismatch", [("  /home/ubuntu/ups-sweeps: .", "  /home/ubuntu/code: .")],
     ["file_mounts./home/ubuntu/code | the setup installs", "same path"]),
    # 5. EC2 enums
    ("market_enum", [("        MarketType: spot", "        MarketType: spott")],
     ["InstanceMarketOptions.MarketType | 'spott' is not a valid value", "did you mean 'spot'"]),
    ("volume_enum", [("            VolumeType: gp3", "            VolumeType: gp9")],
     ["Ebs.VolumeType | 'gp9' is not a valid value", "gp3"]),
    ("interruption_enum", [("        MarketType: spot", "        MarketType: spot\n        SpotOptions:\n"
                            "          InstanceInterruptionBehavior: banana")],
     ["SpotOptions.InstanceInterruptionBehavior | 'banana' is not a valid value", "terminate"]),
    # 6. per-type min_workers > max_workers
    ("node_minmax", [("max_workers: 4\nupscaling", "max_workers: 10\nupscaling"),
                     ("    min_workers: 0\n    max_workers: 4", "    min_workers: 3\n    max_workers: 2")],
     [f"{WORKER}'].min_workers | min_workers (3) is larger than max_workers (2)"]),
    # 7. security bypasses
    ("dash_halves", [(_SSH_RULE, _SSH_RULE + _EXTRA_RULE.format(p=8265, r="          - CidrIp: 0.0.0.0/1\n"
                                                                     "          - CidrIp: 128.0.0.0/1\n"))],
     ["IpPermissions[1].IpRanges[0].CidrIp | opens 8265", "IpPermissions[1].IpRanges[1].CidrIp | opens 8265",
      "not private and wider than /16", "ray dashboard cluster.yaml"]),
    ("gcs_v6_wide", [(_SSH_RULE, _SSH_RULE + "      - IpProtocol: tcp\n        FromPort: 6379\n        ToPort: 6379\n"
                      "        Ipv6Ranges:\n          - CidrIpv6: 2000::/3\n")],
     ["Ipv6Ranges[0].CidrIpv6 | opens 6379 (Ray GCS) to a public range"]),
    # an SSH key Ray would fail to read at `ray up`, and node types without the KeyName Ray then asserts
    ("ssh_key_no_key_name", [("  ssh_user: ubuntu\n", "  ssh_user: ubuntu\n  ssh_private_key: ~/.ssh/no_such_key.pem\n")],
     ["['ray.head.cpu'].node_config | has no KeyName while auth.ssh_private_key is set", "add KeyName:"]),
    # a narrow public CIDR (the office's) is fine for SSH, never for Ray's ports: the job API runs anyone's code
    ("dash_office", [(_SSH_RULE, _SSH_RULE + _EXTRA_RULE.format(p=8265, r="          - CidrIp: 198.51.100.0/24\n"))],
     ["IpPermissions[1].IpRanges[0].CidrIp | opens 8265 (Ray dashboard/job API) to 198.51.100.0/24, outside the address space VPCs use",
      "CVE-2023-48022", "open only port 22 to 198.51.100.0/24", "ray dashboard cluster.yaml"]),
    ("ssh_range_spans_ray", [("        ToPort: 22\n", "        ToPort: 8265\n")],
     ["IpPermissions[0].IpRanges[0].CidrIp | opens 6379 (Ray GCS), 8076 (object manager), 8265 (Ray dashboard/job API) "
      "to 203.0.113.0/24", "(FromPort: 22, ToPort: 22)"]),
    ("dash_quoted", [("--dashboard-host=127.0.0.1", '--dashboard-host="0.0.0.0"')],
     ["head_start_ray_commands[1] | starts the dashboard on all interfaces", "127.0.0.1"]),
    ("dash_single_quoted_space", [("--dashboard-host=127.0.0.1", "--dashboard-host '0.0.0.0'")],
     ["head_start_ray_commands[1] | starts the dashboard on all interfaces"]),
    ("iam_empty_name", [("        Name: ups-sweeps-head ", '        Name: "" ')],
     ["IamInstanceProfile | IamInstanceProfile has no Name or Arn"]),
    # 8. GPUs the pinned torch cannot use; start commands `ray up` runs as written
    ("volta_worker", [("InstanceType: g5.2xlarge", "InstanceType: p3.2xlarge")],
     [f"{WORKER}'].node_config.InstanceType | p3.2xlarge has V100 GPUs (Volta, sm_70)", "no kernel image",
      "g5.2xlarge", "no worker node type can provide a GPU", "p3.2xlarge is Volta"]),
    ("head_no_autoscaler", [("\n    --autoscaling-config=~/ray_bootstrap_config.yaml", "")],
     ["head_start_ray_commands[1] | ray start --head without --autoscaling-config", "no GPU worker is ever launched",
      "--autoscaling-config=~/ray_bootstrap_config.yaml"]),
    ("worker_no_address", [("ray start --address=$RAY_HEAD_IP:6379 ", "ray start ")],
     ["worker_start_ray_commands[1] | ray start without --address=$RAY_HEAD_IP:6379", "never joins"]),
    ("head_start_empty", [("head_start_ray_commands:\n  - ray stop\n  - >-\n    ulimit -n 65536; ray start --head --port=6379 "
                           "--object-manager-port=8076\n    --autoscaling-config=~/ray_bootstrap_config.yaml "
                           "--dashboard-host=127.0.0.1\n", "head_start_ray_commands: []\n")],
     ["head_start_ray_commands | has no `ray start --head`", "ray start --head --port=6379"]),
    ("venv_not_activated", [("  - grep -q ups-venv ~/.bashrc || echo 'source ~/ups-venv/bin/activate' >> ~/.bashrc\n", "")],
     ["setup_commands | ray is installed into ~/ups-venv but no setup command activates it in ~/.bashrc",
      "source ~/ups-venv/bin/activate", "~/ups-venv/bin/ray"]),
    ("ray_image_other_version", [("cluster_name: ups-sweeps", "cluster_name: ups-sweeps\ndocker:\n"
                                  "  image: rayproject/ray:2.9.0-py310-gpu\n  container_name: ray")],
     ["docker.image | the image rayproject/ray:2.9.0-py310-gpu has ray 2.9.0 but this client has ray"]),
    # 9. region, zones, Ray's semantic errors with real keys, duplicate keys
    ("region_bad", [("  region: us-west-2 ", "  region: us-west-9 ")],
     ["provider.region | 'us-west-9' is not an AWS region", "did you mean 'us-west-2'"]),
    ("zone_other_region", [("  availability_zone: us-west-2a,us-west-2b,us-west-2c", "  availability_zone: us-east-1a")],
     ["provider.availability_zone | zone(s) us-east-1a not in region 'us-west-2'"]),
    ("head_missing", [("head_node_type: ray.head.cpu", "head_node_type: ray.head.gpu")],
     ["head_node_type | Ray rejects the file", "set it to one of the available_node_types: ray.head.cpu"]),
    ("min_sum_gt_global", [("    min_workers: 0\n    max_workers: 4", "    min_workers: 6\n    max_workers: 8")],
     ["max_workers | Ray rejects the file", "at least 6"]),
    ("dup_key", [("idle_timeout_minutes: 10", "idle_timeout_minutes: 10\nidle_timeout_minutes: 100000")],
     ["idle_timeout_minutes | duplicate key 'idle_timeout_minutes' (line 20 and line 21)", "delete one", "line 21"]),
    ("dup_nested_key", [("        MarketType: spot", "        MarketType: spot\n        MarketType: spot")],
     ["MarketType | duplicate key 'MarketType'"]),
    # 10. a CPU-only torch on the GPU workers (trials would silently train on the CPU)
    ("torch_cpu_index_worker", [("worker_setup_commands: []", "worker_setup_commands:\n  - ~/ups-venv/bin/pip install "
                                 "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")],
     [f"worker_setup_commands[0] | installs a CPU-only PyTorch build on the GPU worker(s) {WORKER}",
      "https://download.pytorch.org/whl/cpu", "whl/cu12", "default CUDA wheel"]),
    ("torch_cpu_extra_index", [("~/ups-venv/bin/pip install -q\n    torch==2.13.0",
                                "~/ups-venv/bin/pip install -q --extra-index-url=https://download.pytorch.org/whl/cpu/"
                                "\n    torch==2.13.0")],
     ["setup_commands[4] | installs a CPU-only PyTorch build", "torch.cuda.is_available()"]),
    ("torch_cpu_local_label", [("torch==2.13.0", "torch==2.13.0+cpu")],
     ["setup_commands[4] | installs a CPU-only PyTorch build", "'torch==2.13.0+cpu'", "torch==2.13.0"]),
    ("torch_rocm_index_worker", [("worker_setup_commands: []", "worker_setup_commands:\n  - ~/ups-venv/bin/pip install "
                                  "torch==2.13.0 --index-url https://download.pytorch.org/whl/rocm6.2.4")],
     [f"worker_setup_commands[0] | installs a ROCm (AMD GPU) PyTorch build on the GPU worker(s) {WORKER}",
      "whl/rocm6.2.4", "NVIDIA GPUs need a CUDA build"]),
    ("torch_rocm_local_label", [("torch==2.13.0", "torch==2.13.0+rocm6.2.4")],
     ["setup_commands[4] | installs a ROCm (AMD GPU) PyTorch build", "'torch==2.13.0+rocm6.2.4'"]),
    # 11. idle_timeout_minutes that tears workers down (or never) — 0 is a warning, see below
    ("idle_negative", [("idle_timeout_minutes: 10", "idle_timeout_minutes: -5")],
     ["idle_timeout_minutes | idle_timeout_minutes is -5", "idle_timeout_minutes: 10"]),
    ("idle_not_number", [("idle_timeout_minutes: 10", 'idle_timeout_minutes: "10m"')],
     ["idle_timeout_minutes | idle_timeout_minutes is '10m', not a number", "no quotes"]),
    ("idle_inf", [("idle_timeout_minutes: 10", "idle_timeout_minutes: .inf")],
     ["idle_timeout_minutes | idle_timeout_minutes is inf", "never terminated"]),
    # 12. spot MaxPrice: EC2 wants a positive decimal string (botocore's shape: string)
    ("max_price_negative", _max_price('"-1"'),
     ["SpotOptions.MaxPrice | MaxPrice '-1' is not a price EC2 accepts", 'MaxPrice: "1.20"', "delete MaxPrice"]),
    ("max_price_zero", _max_price('"0"'), ["SpotOptions.MaxPrice | MaxPrice '0' is not a price EC2 accepts"]),
    ("max_price_text", _max_price("abc"), ["SpotOptions.MaxPrice | MaxPrice 'abc' is not a price EC2 accepts"]),
    ("max_price_number", _max_price("0.5"),
     ["SpotOptions.MaxPrice | MaxPrice is the YAML number 0.5", 'write MaxPrice: "0.5"']),
    # 13. values botocore's shapes let through and EC2 refuses: an ImageId that is no AMI id, a volume below 1 GiB
    ("image_not_ami", [("ImageId: ami-0123456789abcdef0     # FILL-IN: same AMI", "ImageId: ubuntu     # FILL-IN: same AMI")],
     ["node_config.ImageId | 'ubuntu' is not an AMI id", "InvalidAMIID.Malformed", "latest_dlami"]),
    ("volume_negative", [("VolumeSize: 150", "VolumeSize: -150")],
     ["Ebs.VolumeSize | -150 GiB is below the 1 GiB a gp3 volume needs", "a size ≥ 1 GiB"]),
    ("volume_zero", [("VolumeSize: 150", "VolumeSize: 0")], ["Ebs.VolumeSize | 0 GiB is below the 1 GiB"]),
]


@pytest.mark.parametrize("subs, expected", [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_mutations_are_refused_with_key_and_fix(tmp_path, capsys, subs, expected):
    text = CLUSTER.read_text()
    for old, new in subs:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = _write(tmp_path, text)
    errs = _errors(path)
    for want in expected:
        assert want in errs, f"{want!r} not in\n{errs}"
    assert ups_main(["cluster-check", str(path)]) == 1  # the CLI: no traceback, exit 1, file named
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{path}:" in err and "Fix:" in err
    assert "could not run on this file" not in err  # handled by a real check, not the last-resort guard


def test_non_utf8_file_and_directory(tmp_path, capsys):
    p = tmp_path / "cluster.yaml"
    p.write_bytes(b"\xff\xfe\x00bad")
    assert ups_main(["cluster-check", str(p)]) == 1
    err = capsys.readouterr().err
    assert "is not UTF-8 text" in err and "save the cluster file as UTF-8" in err
    assert ups_main(["cluster-check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "does not exist" not in err


def test_pins_compared_with_installed_pyproject_when_none_next_to_file(tmp_path, capsys):
    p = tmp_path / "cluster.yaml"  # no pyproject.toml next to it
    p.write_text(CLUSTER.read_text().replace("optuna==5.0.0", "optuna==1.0.0"))
    report = check_cluster_file(p)
    summary = report.format().splitlines()[-1]
    assert f"pins compared with {ROOT / 'pyproject.toml'}" in summary and "installed ups project" in summary
    assert any("pyproject.toml pins optuna==5.0.0" in i.message for i in report.errors)
    assert "next to the cluster file" in check_cluster_file(CLUSTER).format().splitlines()[-1]


def test_relative_mount_source_checked_against_cwd_and_yaml_dir(tmp_path, monkeypatch):
    (tmp_path / "repo").mkdir()
    text = CLUSTER.read_text().replace("  /home/ubuntu/ups-sweeps: .", "  /home/ubuntu/ups-sweeps: ./repo")
    path = _write(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    assert check_cluster_file(path).ok
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    report = check_cluster_file(path)
    assert report.ok and any("exists in" in w.message and w.key == "file_mounts./home/ubuntu/ups-sweeps"
                             and f"run `ray up` from {tmp_path}" in w.fix for w in report.warnings)


def test_cd_then_relative_editable_install_counts_as_installing_the_mount(tmp_path):
    text = CLUSTER.read_text().replace('~/ups-venv/bin/pip install -q -e "/home/ubuntu/ups-sweeps[tune,cloud]"',
                                       'cd ~/ups-sweeps && ~/ups-venv/bin/pip install -q -e ".[tune,cloud]"')
    report = check_cluster_file(_write(tmp_path, text))
    assert report.ok, report.format()


def test_private_wide_ranges_and_public_narrow_ssh_are_allowed(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["provider"]["security_group"]["IpPermissions"][0]["IpRanges"] = [{"CidrIp": "198.51.100.0/24"}]
    cfg["provider"]["security_group"]["IpPermissions"].append(
        {"IpProtocol": "tcp", "FromPort": 6379, "ToPort": 6379, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]})
    report = check_cluster_file(_write(tmp_path, cfg))
    assert report.ok, report.format()


def test_an_ssh_key_that_exists_with_key_names_is_allowed(tmp_path, base):
    cfg = copy.deepcopy(base)
    key = tmp_path / "ups.pem"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")  # read by `ray up`, not by the check
    cfg["auth"]["ssh_private_key"] = str(key)
    for nt in cfg["available_node_types"].values():
        nt["node_config"]["KeyName"] = "ups-sweeps"
    report = check_cluster_file(_write(tmp_path, cfg))
    assert report.ok and "SSH key" in report.checks and not _warnings_at(report, "auth.ssh_private_key"), \
        report.format()
    cfg["auth"]["ssh_private_key"] = "ups.pem"  # relative: found next to the cluster file
    assert not _warnings_at(check_cluster_file(_write(tmp_path, cfg)), "auth.ssh_private_key")
    cfg["auth"]["ssh_private_key"] = "~/.ssh/no_such_key.pem"  # nowhere: a warning (CI may check without the key)
    report = check_cluster_file(_write(tmp_path, cfg))
    (w,) = _warnings_at(report, "auth.ssh_private_key")
    assert report.ok and "is not a file here" in w.message and "delete ssh_private_key" in w.fix, report.format()


def test_ray_ports_to_ipv6_outside_ula_warn_and_icmp_is_not_ray(tmp_path, base):
    """A VPC's own IPv6 block is Amazon's global unicast: Ray ports to such a range warn (an office's may be one
    too); ICMP from an office range opens no Ray port (its FromPort -1 read as every port)."""
    cfg = copy.deepcopy(base)
    rules = cfg["provider"]["security_group"]["IpPermissions"]
    rules.append({"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535, "Ipv6Ranges": [{"CidrIpv6": "2600:1f18:1:100::/56"}]})
    rules.append({"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "198.51.100.0/24"}]})
    rules.append({"IpProtocol": "tcp", "FromPort": 6379, "ToPort": 6379, "IpRanges": [{"CidrIp": "198.19.0.0/16"}]})
    report = check_cluster_file(_write(tmp_path, cfg))
    assert report.ok, report.format()
    (w,) = _warnings_at(report, "provider.security_group.IpPermissions[1].Ipv6Ranges[0].CidrIpv6")
    assert "6379 (Ray GCS)" in w.message and "outside the address space VPCs use" in w.message
    assert not _warnings_at(report, "provider.security_group.IpPermissions[2].IpRanges[0].CidrIp")


def test_docs_do_not_claim_token_auth_on_by_default():
    docs = (ROOT / "docs" / "CLUSTER.md").read_text()
    assert "additionally starts clusters with token authentication" not in docs
    assert "Token authentication is off on this cluster" in docs
    assert "ray_address=auto" in CLUSTER.read_text().split("cluster_name:")[0]


def _warnings_at(report, key: str) -> list:
    return [i for i in report.warnings if i.key == key]


def test_shipped_file_warns_only_about_placeholders():
    report = check_cluster_file(CLUSTER)
    assert report.ok and len(report.warnings) == 3, report.format()
    assert all("documentation" in w.message for w in report.warnings), report.format()


@pytest.mark.parametrize("value, says", [("0", "torn down between trials"), ("0.5", "idle for 30 s is terminated"),
                                         ("1", "idle for 60 s is terminated")])
def test_idle_timeout_zero_or_short_warns(tmp_path, value, says):
    report = check_cluster_file(_write(tmp_path, CLUSTER.read_text().replace(
        "idle_timeout_minutes: 10", f"idle_timeout_minutes: {value}")))
    assert report.ok, report.format()
    (w,) = _warnings_at(report, "idle_timeout_minutes")
    assert says in w.message and "idle_timeout_minutes: 10" in w.fix and w.line == 20
    for fine in ("2", "5"):
        report = check_cluster_file(_write(tmp_path, CLUSTER.read_text().replace(
            "idle_timeout_minutes: 10", f"idle_timeout_minutes: {fine}")))
        assert not _warnings_at(report, "idle_timeout_minutes"), report.format()


def test_node_type_max_workers_above_global_warns(tmp_path):
    text = CLUSTER.read_text().replace("    min_workers: 0\n    max_workers: 4",
                                       "    min_workers: 0\n    max_workers: 8")
    report = check_cluster_file(_write(tmp_path, text))
    assert report.ok, report.format()
    (w,) = _warnings_at(report, f"available_node_types['{WORKER}'].max_workers")
    assert "max_workers (8)" in w.message and "top-level max_workers (4)" in w.message and "caps" in w.message
    assert "max_workers: 4" in w.fix and "max_workers: 8" in w.fix


def test_cpu_torch_on_the_head_only_is_allowed(tmp_path):
    text = CLUSTER.read_text().replace("head_setup_commands: []", "head_setup_commands:\n  - ~/ups-venv/bin/pip "
                                       "install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    report = check_cluster_file(_write(tmp_path, text))
    assert report.ok, report.format()


_INLINE_PINS = ('  - >-\n    ~/ups-venv/bin/pip install -q\n    torch==2.13.0 "ray[default,tune]==2.60.0" optuna==5.0.0 '
                'wandb==0.31.0 hydra-core==1.3.8\n    "boto3>=1.34" "pyarrow>=15"\n')


def _with_requirements(tmp_path: Path, monkeypatch, reqs: str | None, install: str) -> Path:
    """cluster.yaml installing the pins with ``install`` (a `pip install -r …` line), the mount source = tmp_path."""
    monkeypatch.chdir(tmp_path)
    if reqs is not None:
        (tmp_path / "requirements-cloud.txt").write_text(reqs)
    text = CLUSTER.read_text()
    assert _INLINE_PINS in text
    return _write(tmp_path, text.replace(_INLINE_PINS, f"  - {install}\n"))


GOOD_REQS = (f"# pins of pyproject.toml\ntorch==2.13.0\nray[tune]=={ray.__version__}  # = the client\n"
             "optuna==5.0.0\nwandb==0.31.0 \\\n    --hash=sha256:00\nhydra-core==1.3.8\nboto3>=1.34\n")


def test_requirements_file_pins_are_checked(tmp_path, monkeypatch):
    install = "~/ups-venv/bin/pip install -q -r /home/ubuntu/ups-sweeps/requirements-cloud.txt"
    report = check_cluster_file(_with_requirements(tmp_path, monkeypatch, GOOD_REQS, install))
    assert report.ok and not any("requirements" in w.message for w in report.warnings), report.format()
    # relative to the cd'd directory, --requirement= form
    install = "cd ~/ups-sweeps && ~/ups-venv/bin/pip install -q --requirement=requirements-cloud.txt"
    bad = GOOD_REQS.replace("torch==2.13.0", "torch>=2.0").replace(f"=={ray.__version__}", "==2.9.0")
    errs = _errors(_with_requirements(tmp_path, monkeypatch, bad, install))
    assert ("setup_commands[4] | installs 'torch>=2.0' (requirements-cloud.txt line 2) without an exact == pin"
            in errs), errs
    assert "setup_commands[4] | nodes get ray==2.9.0 (requirements-cloud.txt line 3)" in errs
    assert "ray is not pinned" not in errs


def test_requirements_file_with_cpu_torch_index_on_gpu_workers(tmp_path, monkeypatch):
    reqs = "--extra-index-url https://download.pytorch.org/whl/cpu\n" + GOOD_REQS
    install = "~/ups-venv/bin/pip install -q -r /home/ubuntu/ups-sweeps/requirements-cloud.txt"
    errs = _errors(_with_requirements(tmp_path, monkeypatch, reqs, install))
    assert "setup_commands[4] | installs a CPU-only PyTorch build" in errs and "requirements-cloud.txt line 1" in errs


@pytest.mark.parametrize("install, reqs, why", [
    ("~/ups-venv/bin/pip install -r /opt/reqs.txt", GOOD_REQS, "not inside any file_mounts target"),
    ("~/ups-venv/bin/pip install -r /home/ubuntu/ups-sweeps/requirements-cloud.txt", None, "does not exist"),
    ("~/ups-venv/bin/pip install -r https://example.com/reqs.txt", GOOD_REQS, "a URL"),
])
def test_unresolvable_requirements_file_warns(tmp_path, monkeypatch, install, reqs, why):
    cfg_path = _with_requirements(tmp_path, monkeypatch, reqs, install + f' "ray[tune]=={ray.__version__}"')
    report = check_cluster_file(cfg_path)
    assert report.ok, report.format()
    (w,) = [w for w in report.warnings if "were not checked" in w.message]
    assert w.key == "setup_commands[4]" and why in w.message and "file_mounts" in w.fix, w


def test_constraints_file_is_read_for_the_torch_build_and_pins(tmp_path, monkeypatch):
    """``pip install -c FILE``: a constraints file installs nothing but forces versions; a +cpu torch or another
    ray there reaches the GPU workers, a loose constraint is fine, and a ray line there is no ray install."""
    install = ('~/ups-venv/bin/pip install -q -c /home/ubuntu/ups-sweeps/requirements-cloud.txt torch==2.13.0 '
               f'"ray[tune]=={ray.__version__}"')
    ok = check_cluster_file(_with_requirements(tmp_path, monkeypatch, "torch>=2\nray[tune]>=2\n", install))
    assert ok.ok, ok.format()
    errs = _errors(_with_requirements(tmp_path, monkeypatch, "torch==2.13.0+cpu\nray==2.9.0\n", install))
    assert "setup_commands[4] | installs a CPU-only PyTorch build" in errs and "requirements-cloud.txt line 1" in errs
    assert "nodes get ray==2.9.0 (/home/ubuntu/ups-sweeps/requirements-cloud.txt line 2)" in errs
    nested = GOOD_REQS.replace("torch==2.13.0\n", "torch\n-c constraints.txt\n")
    (tmp_path / "constraints.txt").write_text("torch==2.13.0+rocm6.2.4\n")
    install = "~/ups-venv/bin/pip install -q -r /home/ubuntu/ups-sweeps/requirements-cloud.txt"
    errs = _errors(_with_requirements(tmp_path, monkeypatch, nested, install))
    assert "installs a ROCm (AMD GPU) PyTorch build" in errs and "constraints.txt line 1" in errs, errs
    only_constraint = ("~/ups-venv/bin/pip install -q --constraint=/home/ubuntu/ups-sweeps/requirements-cloud.txt "
                       "torch==2.13.0")
    errs = _errors(_with_requirements(tmp_path, monkeypatch, f"ray[tune]=={ray.__version__}\n", only_constraint))
    assert "ray is not pinned" in errs  # constrained, never installed


def test_head_only_cluster_is_refused(tmp_path, base, capsys):
    # only the head (CPU: 0, runs no trials) and no worker type: it passed as OK, and every trial would pend forever
    cfg = copy.deepcopy(base)
    del cfg["available_node_types"][WORKER]
    path = _write(tmp_path, cfg)
    errs = _errors(path)
    assert f"available_node_types | has no worker node type (only the head, {HEAD})" in errs
    assert "add a GPU worker type" in errs
    assert ups_main(["cluster-check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{path}:" in err and "Fix:" in err


def test_a_gpu_type_on_arm64_and_ray_without_its_dashboard_warn(tmp_path):
    """An arm64 GPU host cannot boot the head's x86 AMI; ray[tune] without the `default` extra starts a minimal
    dashboard with no web server (`ray dashboard`, `ray job submit` then fail; ray/_private/services.py)."""
    text = CLUSTER.read_text().replace("InstanceType: g5.2xlarge", "InstanceType: g5g.2xlarge", 1)
    text = text.replace(f'"ray[default,tune]=={ray.__version__}"', f'"ray[tune]=={ray.__version__}"')
    report = check_cluster_file(_write(tmp_path, text))
    assert report.ok, report.format()
    (arm,) = _warnings_at(report, f"available_node_types['{WORKER}'].node_config.InstanceType")
    assert "arm64" in arm.message and "x86" in arm.message and "g5.2xlarge" in arm.fix
    (minimal,) = _warnings_at(report, "setup_commands[4]")
    assert "without Ray's `default` extra" in minimal.message and "ray job submit" in minimal.message
    assert f"ray[default,tune]=={ray.__version__}" in minimal.fix


def test_rays_own_image_installs_ray_and_leaving_out_the_start_commands_warns(tmp_path):
    """A file on Ray's image (ray and the dashboard come with it) needs no ray pin; without head_start_ray_commands
    Ray's defaults run, with the dashboard on every interface."""
    text = CLUSTER.read_text().replace(f'"ray[default,tune]=={ray.__version__}" ', "")
    text = text.replace("cluster_name: ups-sweeps", f"cluster_name: ups-sweeps\ndocker:\n  image: "
                        f"rayproject/ray:{ray.__version__}-py310-gpu\n  container_name: ray_container", 1)
    start = text.index("head_start_ray_commands:")
    text = text[:start] + text[text.index("worker_start_ray_commands:"):]
    report = check_cluster_file(_write(tmp_path, text))
    assert report.ok, report.format()
    assert not any("ray" in w.message and "pinned" in w.message for w in report.warnings)
    (w,) = _warnings_at(report, "head_start_ray_commands")
    assert "--dashboard-host=0.0.0.0" in w.message and "127.0.0.1" in w.fix


def test_a_conda_prefix_on_path_needs_no_activation(tmp_path):
    """/opt/conda/bin/pip (the Deep Learning AMI's conda, Ray's docker image's anaconda3) is on PATH already: only a
    venv a setup command makes has to be activated in ~/.bashrc."""
    text = CLUSTER.read_text().replace("~/ups-venv/bin/pip", "/opt/conda/bin/pip")
    text = "\n".join(line for line in text.splitlines() if "ups-venv" not in line) + "\n"
    report = check_cluster_file(_write(tmp_path, text))
    assert report.ok, report.format()


# ------------------------------------------------------------------ boundaries and exemptions of single rules
_SG = "provider.security_group.IpPermissions"


def _report(tmp_path: Path, cfg: dict | str) -> CheckReport:
    return check_cluster_file(_write(tmp_path, cfg))


def _issues_at(issues: list, key: str) -> list[str]:
    return [i.message for i in issues if i.key == key]


def _one(messages: list[str]) -> str:
    """The single message at a key (assert: exactly one)."""
    assert len(messages) == 1, messages
    return messages[0]


def _with_rule(base: dict, rule: dict) -> dict:
    """The shipped file plus one more security group rule (IpPermissions[1])."""
    cfg = copy.deepcopy(base)
    cfg["provider"]["security_group"]["IpPermissions"].append(rule)
    return cfg


def _ssh_from(base: dict, field_: str, cidr: str) -> dict:
    """The shipped file with its one SSH rule open to ``cidr`` (``field_``: IpRanges or Ipv6Ranges)."""
    cfg = copy.deepcopy(base)
    rule = cfg["provider"]["security_group"]["IpPermissions"][0]
    rule.pop("IpRanges")
    rule[field_] = [{"CidrIp" if field_ == "IpRanges" else "CidrIpv6": cidr}]
    return cfg


@pytest.mark.parametrize("field_, narrow, wide, addresses", [
    ("IpRanges", "8.8.0.0/16", "8.8.0.0/15", "2^17"),
    ("Ipv6Ranges", "2600::/32", "2600::/31", "2^97"),
])
def test_a_public_range_is_the_internet_wider_than_a_16_or_a_32(tmp_path, base, field_, narrow, wide, addresses):
    """SSH from a public /16 (IPv6: /32) is an office's; one bit wider it counts as the internet."""
    key = f"{_SG}[0].{field_}[0].{'CidrIp' if field_ == 'IpRanges' else 'CidrIpv6'}"
    ok = _report(tmp_path, _ssh_from(base, field_, narrow))
    assert ok.ok and not _issues_at(ok.warnings, key), ok.format()
    msg = _one(_issues_at(_report(tmp_path, _ssh_from(base, field_, wide)).errors, key))
    assert f"opens 22 (SSH) to a public range of {addresses} addresses ({wide})" in msg


@pytest.mark.parametrize("cidr", ["100.64.0.0/16", "198.18.0.0/16"])
def test_ray_ports_to_the_shared_and_benchmark_vpc_ranges_are_allowed(tmp_path, base, cidr):
    """100.64/10 and 198.18/15 are address space VPCs use (not ``is_private`` to Python): the cluster's own."""
    cfg = _with_rule(base, {"IpProtocol": "tcp", "FromPort": 6379, "ToPort": 6379, "IpRanges": [{"CidrIp": cidr}]})
    report = _report(tmp_path, cfg)
    assert report.ok and not _issues_at(report.warnings, f"{_SG}[1].IpRanges[0].CidrIp"), report.format()


def test_rule_ports_reads_all_protocols_and_unset_ports_as_every_port():
    """-1 / all: every port whatever FromPort says; FromPort/ToPort -1 or absent: the whole range."""
    assert rule_ports({"IpProtocol": "all", "FromPort": 22, "ToPort": 22}) == (0, 65535)
    assert rule_ports({"IpProtocol": "-1", "FromPort": 22, "ToPort": 22}) == (0, 65535)
    assert rule_ports({"IpProtocol": "tcp", "FromPort": -1, "ToPort": -1}) == (0, 65535)
    assert rule_ports({"IpProtocol": "udp"}) == (0, 65535)
    assert rule_ports({"IpProtocol": "tcp", "FromPort": "20", "ToPort": 23}) == (20, 23)


def test_protocol_number_6_is_tcp_and_opens_ray_ports(tmp_path, base):
    cfg = _with_rule(base, {"IpProtocol": "6", "FromPort": 8265, "ToPort": 8265,
                            "IpRanges": [{"CidrIp": "198.51.100.0/24"}]})
    msg = _one(_issues_at(_report(tmp_path, cfg).errors, f"{_SG}[1].IpRanges[0].CidrIp"))
    assert "opens 8265 (Ray dashboard/job API) to 198.51.100.0/24, outside the address space VPCs use" in msg


def test_an_ssh_rule_spanning_ray_ports_is_one_error_not_also_a_missing_ssh_rule(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["provider"]["security_group"]["IpPermissions"][0]["ToPort"] = 8265
    report = _report(tmp_path, cfg)
    assert len(_issues_at(report.errors, f"{_SG}[0].IpRanges[0].CidrIp")) == 1, report.format()
    assert not _issues_at(report.warnings, _SG), report.format()


def test_an_ssh_rule_wider_than_port_22_warns(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["provider"]["security_group"]["IpPermissions"][0]["FromPort"] = 20
    cfg["provider"]["security_group"]["IpPermissions"][0]["ToPort"] = 23
    report = _report(tmp_path, cfg)
    assert report.ok, report.format()
    assert _issues_at(report.warnings, f"{_SG}[0]") == ["opens 22 (SSH), more than SSH, to 203.0.113.0/24"]


def test_ip_permissions_of_the_wrong_type_do_not_also_warn_of_a_missing_ssh_rule(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["provider"]["security_group"]["IpPermissions"] = "22 from my office"
    report = _report(tmp_path, cfg)
    assert not report.ok and not _issues_at(report.warnings, _SG), report.format()


def test_an_instance_profile_named_by_arn_is_enough(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["available_node_types"][WORKER]["node_config"]["IamInstanceProfile"] = {
        "Arn": "arn:aws:iam::123456789012:instance-profile/ups-sweeps-worker"}
    report = _report(tmp_path, cfg)
    assert report.ok, report.format()


def test_mounting_aws_credentials_is_refused(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["file_mounts"]["/home/ubuntu/creds"] = "~/.aws"
    assert "copies AWS credentials to every node" in _issues_at(_report(tmp_path, cfg).errors,
                                                                "file_mounts./home/ubuntu/creds")


def test_security_groups_named_by_some_node_types_only_are_not_unchecked(tmp_path, base):
    """Only when every node type names its SecurityGroupIds is the provider's group unused (a warning)."""
    cfg = copy.deepcopy(base)
    cfg["available_node_types"][WORKER]["node_config"]["SecurityGroupIds"] = ["sg-0123456789abcdef0"]
    report = _report(tmp_path, cfg)
    assert report.ok and not _issues_at(report.warnings, "available_node_types"), report.format()
    cfg["available_node_types"][HEAD]["node_config"]["SecurityGroupIds"] = ["sg-0123456789abcdef0"]
    assert any("their rules cannot be checked offline" in m
               for m in _issues_at(_report(tmp_path, cfg).warnings, "available_node_types"))


def test_a_dashboard_on_the_wildcard_host_is_refused(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["head_start_ray_commands"][1] = cfg["head_start_ray_commands"][1].replace("127.0.0.1", "*")
    assert _issues_at(_report(tmp_path, cfg).errors, "head_start_ray_commands[1]")


@pytest.mark.parametrize("price, ok", [('"0.001"', True), ('"0.0009"', False)])
def test_the_least_spot_price_ec2_takes_is_accepted(tmp_path, price, ok):
    text = CLUSTER.read_text()
    for old, new in _max_price(price):
        text = text.replace(old, new, 1)
    report = _report(tmp_path, text)
    assert report.ok is ok, report.format()


@pytest.mark.parametrize("vtype, size, ok", [("gp3", 1, True), ("gp3", 0, False), ("st1", 125, True),
                                             ("sc1", 124, False), ("io2", 4, True), ("io1", 3, False)])
def test_volume_sizes_at_and_below_their_minimum(tmp_path, base, vtype, size, ok):
    cfg = copy.deepcopy(base)
    ebs = cfg["available_node_types"][WORKER]["node_config"]["BlockDeviceMappings"][0]["Ebs"]
    ebs.update(VolumeType=vtype, VolumeSize=size)
    if vtype.startswith("io"):
        ebs["Iops"] = 100
    msgs = _issues_at(_report(tmp_path, cfg).errors,
                      f"available_node_types['{WORKER}'].node_config.BlockDeviceMappings[0].Ebs.VolumeSize")
    assert (not msgs) is ok, msgs


@pytest.mark.parametrize("image, ok", [("ami-0123abcd", True), ("latest_dlami", True), ("ami-0123456789", False)])
def test_image_ids_ec2_takes(tmp_path, base, image, ok):
    """ami- and 8 or 17 hex digits, or Ray's latest_dlami; 10 digits is malformed."""
    cfg = copy.deepcopy(base)
    cfg["available_node_types"][WORKER]["node_config"]["ImageId"] = image
    msgs = _issues_at(_report(tmp_path, cfg).errors, f"available_node_types['{WORKER}'].node_config.ImageId")
    assert (not msgs) is ok, msgs


def test_a_zone_is_its_region_and_a_letter(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["provider"]["availability_zone"] = "us-west-2a,us-west-2"
    msg = _one(_issues_at(_report(tmp_path, cfg).errors, "provider.availability_zone"))
    assert msg.startswith("zone(s) us-west-2 not in region")


def test_equal_min_and_max_workers_are_fine(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["available_node_types"][WORKER].update(min_workers=1, max_workers=1)
    report = _report(tmp_path, cfg)
    assert report.ok, report.format()
    assert _issues_at(report.warnings, f"available_node_types['{WORKER}'].min_workers") == [
        "keeps 1 worker(s) up while idle"]


def _cpu_worker(base: dict, resources: dict) -> dict:
    """The shipped file plus a CPU worker type (m5.large) with ``resources``."""
    cfg = copy.deepcopy(base)
    cpu = copy.deepcopy(cfg["available_node_types"][WORKER])
    cpu["resources"] = resources
    cpu["node_config"]["InstanceType"] = "m5.large"
    cfg["available_node_types"]["ray.worker.cpu"] = cpu
    return cfg


def test_a_cpu_worker_beside_the_gpu_one_is_a_warning_and_gpu_0_nothing(tmp_path, base):
    key = "available_node_types['ray.worker.cpu'].node_config.InstanceType"
    report = _report(tmp_path, _cpu_worker(base, {}))
    assert report.ok and any("m5.large has no NVIDIA GPU" in m for m in _issues_at(report.warnings, key)), \
        report.format()
    report = _report(tmp_path, _cpu_worker(base, {"GPU": 0}))
    assert report.ok and not _issues_at(report.warnings, key), report.format()


def test_a_node_with_user_data_needs_no_key_name(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["auth"]["ssh_private_key"] = "~/.ssh/no_such_key.pem"
    cfg["available_node_types"][HEAD]["node_config"]["KeyName"] = "ups-sweeps"
    cfg["available_node_types"][WORKER]["node_config"]["UserData"] = "#!/bin/bash\necho hi\n"
    report = _report(tmp_path, cfg)
    assert report.ok, report.format()


def test_secrets_temporary_keys_and_one_error_a_line(tmp_path):
    text = CLUSTER.read_text() + "\n# ASIAIOSFODNN7EXAMPLE aws_secret_access_key\n"
    report = _report(tmp_path, text)
    assert [i.message.split(" (")[0] for i in report.errors] == ["looks like an AWS access key id"], report.format()


def test_the_min_workers_ray_refuses_are_summed_over_node_types(tmp_path, base):
    cfg = copy.deepcopy(base)
    second = copy.deepcopy(cfg["available_node_types"][WORKER])
    cfg["available_node_types"][WORKER]["min_workers"] = second["min_workers"] = 3
    cfg["available_node_types"]["ray.worker.gpu_spot2"] = second
    assert "raise max_workers to at least 6 (the sum of min_workers)" in _errors(_write(tmp_path, cfg))


def test_a_byte_that_is_not_utf8_is_reported_on_its_line(tmp_path):
    p = tmp_path / "cluster.yaml"
    p.write_bytes(b"cluster_name: x\nmax_workers: 4\n# caf\xe9\n")
    errors = check_cluster_file(p).errors
    assert len(errors) == 1 and errors[0].line == 3 and "is not UTF-8 text" in errors[0].message


# ------------------------------------------------------------------ what the setup commands install
def test_a_node_types_own_setup_commands_replace_the_global_ones(tmp_path, base):
    """Ray runs a node type's worker_setup_commands instead of the global ones: a CPU torch there reaches the GPU
    workers."""
    cfg = copy.deepcopy(base)
    cfg["available_node_types"][WORKER]["worker_setup_commands"] = [
        "~/ups-venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"]
    msg = _one(_issues_at(_report(tmp_path, cfg).errors, f"available_node_types['{WORKER}'].worker_setup_commands[0]"))
    assert msg.startswith(f"installs a CPU-only PyTorch build on the GPU worker(s) {WORKER}")


def test_a_cpu_torch_on_a_gpu_type_told_gpu_0_is_allowed(tmp_path, base):
    """A worker type with resources {GPU: 0} runs no GPU trial, whatever its instance type: a CPU torch is fine."""
    cfg = copy.deepcopy(base)
    cpu = copy.deepcopy(cfg["available_node_types"][WORKER])
    cpu["resources"] = {"GPU": 0}
    cpu["worker_setup_commands"] = cfg["setup_commands"][-1:] + [
        "~/ups-venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"]
    cfg["available_node_types"]["ray.worker.no_gpu"] = cpu
    report = _report(tmp_path, cfg)
    assert report.ok, report.format()


@pytest.mark.parametrize("install, says", [
    ("hydra-core", "installs 'hydra-core' without an exact == pin"),
    ("Hydra_Core==1.0.0", "pins hydra-core==1.0.0 but pyproject.toml pins hydra-core==1.3.8"),
    ("--no-binary torch optuna", "installs 'optuna' without an exact == pin"),
])
def test_every_spelling_of_a_pinned_package_is_compared(tmp_path, base, install, says):
    """hydra-core is pinned like the others, under any spelling of its name; an option's value is no package."""
    cfg = copy.deepcopy(base)
    cfg["worker_setup_commands"] = [f"~/ups-venv/bin/pip install {install}"]
    assert _issues_at(_report(tmp_path, cfg).errors, "worker_setup_commands[0]") == [says]


def test_a_local_build_label_is_not_another_version(tmp_path, base):
    """torch==2.13.0+cu126 is pyproject's torch==2.13.0, built for CUDA 12.6."""
    cfg = copy.deepcopy(base)
    cfg["worker_setup_commands"] = ["~/ups-venv/bin/pip install torch==2.13.0+cu126"]
    report = _report(tmp_path, cfg)
    assert report.ok, report.format()


@pytest.mark.parametrize("setup, ssh_user, mount", [
    ('cd ~/ups-sweeps && ~/ups-venv/bin/pip install -q ".[tune,cloud]"', "ubuntu", "/home/ubuntu/ups-sweeps"),
    ('cd ups-sweeps && ~/ups-venv/bin/pip install -q -e ".[tune,cloud]"', "ubuntu", "/home/ubuntu/ups-sweeps"),
    ('~/ups-venv/bin/pip install -q -e "~/ups-sweeps[tune,cloud]"', "root", "/root/ups-sweeps"),
])
def test_the_mounted_repository_installed_by_other_spellings(tmp_path, base, setup, ssh_user, mount):
    """A non-editable install of ``.``, a cd relative to the home directory, and root's home /root."""
    cfg = copy.deepcopy(base)
    cfg["setup_commands"][-1] = setup
    cfg["auth"]["ssh_user"] = ssh_user
    cfg["file_mounts"] = {mount: "."}
    report = _report(tmp_path, cfg)
    assert report.ok, report.format()


def test_a_path_is_under_a_mount_only_at_a_path_separator():
    assert path_under("/home/ubuntu/ups-sweeps/reqs.txt", "/home/ubuntu/ups-sweeps")
    assert path_under("/home/ubuntu/ups-sweeps", "/home/ubuntu/ups-sweeps")
    assert not path_under("/home/ubuntu/ups-sweeps2/reqs.txt", "/home/ubuntu/ups-sweeps")


def test_a_continued_requirements_line_is_one_requirement(tmp_path, monkeypatch):
    reqs = GOOD_REQS.replace("wandb==0.31.0 \\\n", "wandb==0.1.0 \\\n")
    install = "~/ups-venv/bin/pip install -q -r /home/ubuntu/ups-sweeps/requirements-cloud.txt"
    errs = _errors(_with_requirements(tmp_path, monkeypatch, reqs, install))
    assert "pins wandb==0.1.0 (/home/ubuntu/ups-sweeps/requirements-cloud.txt line 5)" in errs, errs


def test_ray_all_brings_the_dashboard(tmp_path):
    text = CLUSTER.read_text().replace(f'"ray[default,tune]=={ray.__version__}"', f'"ray[all]=={ray.__version__}"')
    report = _report(tmp_path, text)
    assert report.ok and not _issues_at(report.warnings, "setup_commands[4]"), report.format()


def test_a_head_that_advertises_gpus_is_refused(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["available_node_types"][HEAD]["resources"] = {"CPU": 0, "GPU": 1}
    assert _issues_at(_report(tmp_path, cfg).errors, f"available_node_types['{HEAD}'].resources.GPU") == [
        "the head node advertises GPUs"]


@pytest.mark.parametrize("image", ["docker.io/rayproject/ray:2.9.0-py310-gpu", "rayproject/ray-ml:2.9.0-gpu"])
def test_rays_image_from_a_registry_or_ml_is_compared_with_the_client(tmp_path, base, image):
    cfg = copy.deepcopy(base)
    cfg["docker"] = {"image": image, "container_name": "ray"}
    msg = _one(_issues_at(_report(tmp_path, cfg).errors, "docker.image"))
    assert msg == f"the image {image} has ray 2.9.0 but this client has ray {ray.__version__}"


def test_a_worker_address_after_a_space_joins_the_head(tmp_path, base):
    cfg = copy.deepcopy(base)
    cfg["worker_start_ray_commands"][1] = cfg["worker_start_ray_commands"][1].replace(
        "--address=$RAY_HEAD_IP:6379", '--address "${RAY_HEAD_IP}:6379"')
    report = _report(tmp_path, cfg)
    assert report.ok, report.format()


def test_key_paths_quote_names_with_dots_or_spaces_and_a_missing_key_takes_its_parents_line():
    """What every issue is located by: a node type 'my worker' is quoted like 'ray.head.cpu'; the top level is
    named; a key the file lacks (a missing field) is placed at the line of the nearest key it has."""
    assert fmt_key(("available_node_types", "my worker", "resources", 0)) == "available_node_types['my worker'].resources[0]"
    assert fmt_key(()) == "<top level>"
    c = Checker(Path("cluster.yaml"), "a: 1\nb:\n  c: 2\n")
    assert (c.line(("b", "c", "missing", 0)), c.line(("b",)), c.line(("nowhere",))) == (3, 2, 1)
