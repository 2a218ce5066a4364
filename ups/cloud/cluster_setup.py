"""``ups cluster-check``'s setup checks (layers 4 and 5): what the setup commands install (pins against
``pyproject.toml``, ``-r`` files a file mount brings, no CPU-only torch on GPU workers, the mounted project
installed) and the head's and workers' ``ray start`` commands."""
from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ups.cloud.cluster_report import Checker, NVIDIA_GPU_FAMILIES, Path_, as_map, as_seq


# Packages whose every install on the nodes must be pinned with == to pyproject.toml.
PINNED = ("torch", "ray", "optuna", "wandb", "hydra-core")

# PyTorch's indexes of builds without CUDA: CPU-only (whl/cpu, whl/nightly/cpu, whl/cpu-cxx11-abi, …) and
# AMD's ROCm (whl/rocm6.2, …)
CPU_TORCH_INDEX = re.compile(r"[^\s'\"=]*download\.pytorch\.org/whl/(?:nightly/|test/)?(?:cpu|rocm[\d.]*)\b[^\s'\"]*")

TORCH_PACKAGES = frozenset({"torch", "torchvision", "torchaudio"})

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
        for i, cmd in enumerate(as_seq(cfg.get(key))):
            out.append(((key, i), str(cmd)))
    for name, nt in as_map(cfg.get("available_node_types")).items():
        if isinstance(nt, dict):
            for key in NODE_COMMAND_KEYS:
                for i, cmd in enumerate(as_seq(nt.get(key))):
                    out.append((("available_node_types", name, key, i), str(cmd)))
    return out


def node_commands(cfg: dict[str, Any]) -> dict[str, list[tuple[Path_, str]]]:
    """The setup commands each node type runs (Ray: a node type's worker_setup_commands replace the global ones)."""
    head = cfg.get("head_node_type")
    out: dict[str, list[tuple[Path_, str]]] = {}
    for name, nt in as_map(cfg.get("available_node_types")).items():
        nt = as_map(nt)
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
            for i, cmd in enumerate(as_seq(holder.get(key[-1]))):
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


def command_installs(key: Path_, cmd: str) -> list[_Install]:
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
        project = as_map(data.get("project"))
        reqs = list(as_seq(project.get("dependencies")))
        for group in as_map(project.get("optional-dependencies")).values():
            reqs += as_seq(group)
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


def find_pyproject(path: Path, pyproject: str | Path | None) -> tuple[Path | None, str]:
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


def remote_path(p: str, cwd: str, home: str) -> str:
    p = p.strip().rstrip("/") or "/"
    if not p.startswith(("/", "~", "$HOME", "${HOME}")):
        p = posixpath.join(cwd, p)
    for prefix in ("${HOME}", "$HOME", "~"):
        if p == prefix or p.startswith(prefix + "/"):
            p = home + p[len(prefix):]
            break
    return posixpath.normpath(p)


def path_under(p: str, root: str) -> bool:
    return p == root or p.startswith(root.rstrip("/") + "/")


def remote_home(cfg: dict[str, Any]) -> str:
    user = as_map(cfg.get("auth")).get("ssh_user")
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
    home = remote_home(cfg)
    remote = remote_path(ref, inst.cwd, home)
    mounts = sorted(((remote_path(str(t), "~", home), src) for t, src in as_map(cfg.get("file_mounts")).items()),
                    key=lambda m: -len(m[0]))
    for target, local in mounts:
        if not path_under(remote, target):
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
    for name, nt in as_map(cfg.get("available_node_types")).items():
        if name == head or not isinstance(nt, dict):
            continue
        declared = as_map(nt.get("resources")).get("GPU")
        itype = as_map(nt.get("node_config")).get("InstanceType")
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
    for inst in command_installs(key, cmd):
        if inst.requirement is not None and _is_cpu_build(inst.requirement):
            found.append(repr(inst.token))
        elif inst.reqfile is not None:
            for line in _requirements_of(cfg, inst, yaml_dir)[0]:
                req = line.requirement()
                if CPU_TORCH_INDEX.search(line.text) or (req is not None and _is_cpu_build(req)):
                    found.append(f"{line.file} line {line.number}: {line.text}")
    return found


def check_torch_build(c: Checker, cfg: dict[str, Any], yaml_dir: Path, pyproject: Path | None) -> None:
    gpu_types = _gpu_worker_types(cfg)
    hits: dict[Path_, tuple[list[str], list[str]]] = {}  # command key → (what, GPU node types running it)
    for node, cmds in node_commands(cfg).items():
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


def _check_pin(c: Checker, key: Path_, req: Any, token: str, where: str, wanted: dict[str, str],
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


def check_project(c: Checker, cfg: dict[str, Any], pyproject: Path | None, origin: str, yaml_dir: Path) -> None:
    import ray

    head = cfg.get("head_node_type")
    nts = as_map(cfg.get("available_node_types"))
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
        for inst in command_installs(key, cmd):
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
    docker = as_map(cfg.get("docker"))
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


def check_start_commands(c: Checker, cfg: dict[str, Any]) -> None:
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
        cmds = [str(x) for x in as_seq(cfg.get(key))]
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
