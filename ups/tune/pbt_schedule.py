"""A PBT trial's schedule from Ray's PBT policy files (no Ray import: the reports read it too).

Under PBT a trial's config is the last of a schedule: its weights trained in other trials, with other values,
before it took them over.  Ray's ``PopulationBasedTraining`` logs each exploit in the experiment folder
(``pbt_policy_<trial id>.txt``, one JSON list a line: trial tag, donor tag, trial iteration, donor iteration,
donor config, new config), copying the donor's file into the exploiting trial's first, so a trial's file holds
the chain of its donors.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


def policy_file(experiment_dir: str | Path, trial_id: str) -> Path:
    """Ray PBT's log of the exploits behind a trial's weights (written in the driver's experiment folder)."""
    return Path(experiment_dir, f"pbt_policy_{trial_id}.txt")


def pbt_schedule(lines: Sequence[Sequence[Any]], tag_ids: Mapping[str, str],
                 decode: Callable[[Mapping[str, Any]], Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A PBT trial's schedule from Ray's policy file (``lines``: ``[trial tag, donor tag, trial iteration,
    donor iteration, donor config, new config]`` each, JSON-decoded): the stretches its final weights trained
    in, first to last, ``{"from_iteration", "trial", "values"}`` each: from that training iteration on, the
    weights trained in ``trial`` (an id via ``tag_ids``, else the tag) with ``values`` (``decode``d).  [] for
    a trial never exploited (it trained with its own values from the start).

    Ray copies a donor's file into the exploiting trial's and appends the exploit, so a file holds the
    chain of its donors; as in Ray's ``PopulationBasedTrainingReplay``, the chain is read from the last
    line back while each earlier line exploited the next one's donor (older lines were overwritten)."""
    chain: list[Sequence[Any]] = []
    for line in reversed(lines):
        if chain and str(line[0]) != str(chain[-1][1]):
            break
        chain.append(line)
    chain.reverse()
    if not chain:
        return []
    name = lambda tag: tag_ids.get(str(tag), str(tag))  # noqa: E731
    out = [{"from_iteration": 0, "trial": name(chain[0][1]), "values": dict(decode(chain[0][4]))}]
    for tag, _donor, _it, donor_it, _old, new in chain:
        # the weights of ``tag`` went on from its donor's checkpoint at donor_it with ``new``
        out.append({"from_iteration": int(donor_it), "trial": name(tag), "values": dict(decode(new))})
    return out


def read_pbt_schedule(experiment_dir: str | Path, trial_id: str, tag_ids: Mapping[str, str],
                      decode: Callable[[Mapping[str, Any]], Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``pbt_schedule`` of a trial from its policy file; [] when it has none (never exploited) or the file
    cannot be read (a torn last line is left out)."""
    try:
        text = policy_file(experiment_dir, trial_id).read_text()
    except OSError:
        return []
    lines = []
    for raw in text.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return pbt_schedule([ln for ln in lines if isinstance(ln, list) and len(ln) == 6], tag_ids, decode)


def schedule_text(schedule: Sequence[Mapping[str, Any]]) -> str:
    """``pbt_schedule`` in one line: ``a1b2: lr=0.001 → it 4 (a1b3): lr=0.0012 → …``."""
    def values(v: Mapping[str, Any]) -> str:
        return ", ".join(f"{k.rsplit('.', 1)[-1]}={f'{x:.4g}' if isinstance(x, float) else x}" for k, x in v.items())
    return " → ".join(f"{'from the start' if s['from_iteration'] == 0 else 'it ' + str(s['from_iteration'])} "
                      f"({s['trial']}): {values(s['values'])}" for s in schedule)
