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
