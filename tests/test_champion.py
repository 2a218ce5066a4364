"""Champion record: a seed mean is only ever weighed against a seed mean (ups.tune.promotion)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from ups.tune.promotion import seed_mean_candidates, update_champion


def full_eval(rid: str, nrmse_ttc: float, seed_scores: list[float] | None = None) -> dict:
    row = {"run_id": f"full-{rid}", "source_run_id": rid, "round": "round_a", "experiment": "exp",
           "nrmse": nrmse_ttc, "nrmse_ttc": nrmse_ttc, "checkpoint": f"/ckpt/{rid}", "config_json": "{}",
           "data_hash": "d1"}
    if seed_scores is not None:  # as seed_mean_candidates writes it: own seed first, JSON text
        row.update({"seed_mean": sum(seed_scores) / len(seed_scores), "seed_scores": json.dumps(seed_scores),
                    "seed_run_ids": ";".join(f"{rid}-s{i}" for i in range(len(seed_scores)))})
    return row


def test_a_seed_mean_is_compared_like_for_like(tmp_path: Path) -> None:
    champ, lb = tmp_path / "champion.json", tmp_path / "leaderboard.csv"
    # Single-seed champion at 0.100 (a selected, hence lucky, seed).
    assert update_champion(champ, [full_eval("a", 0.100)], lb)["run_id"] == "a"
    # Candidate with seeds: own seed 0.090 beats 0.100, its mean 0.105 would not. Like for like, it wins.
    rec = update_champion(champ, [full_eval("b", 0.090, [0.090, 0.115, 0.110])], lb)
    assert rec["run_id"] == "b" and rec["compared_on"] == "own_seed" and rec["replaced"] == "a"
    # Now both sides have seed means: a better own seed (0.080) with a worse mean (0.1133) loses.
    rec = update_champion(champ, [full_eval("c", 0.080, [0.080, 0.130, 0.130])], lb)
    assert rec["run_id"] == "b"
    # ... and a better mean wins on the mean.
    rec = update_champion(champ, [full_eval("d", 0.095, [0.095, 0.100, 0.102])], lb)
    assert rec["run_id"] == "d" and rec["compared_on"] == "seed_mean"
    # A later single-seed round is compared with the seed-mean champion's own seed (0.095).
    assert update_champion(champ, [full_eval("e", 0.097)], lb)["run_id"] == "d"
    rec = update_champion(champ, [full_eval("f", 0.093)], lb)
    assert rec["run_id"] == "f" and rec["compared_on"] == "own_seed"
    history = [json.loads(line)["run_id"] for line in (tmp_path / "champion_history.jsonl").read_text().splitlines()]
    assert history == ["a", "b", "d", "f"]


def test_two_rounds_promoting_at_once_take_turns(tmp_path: Path) -> None:
    """Two sweeps (two terminals, one reports/) can promote at the same moment. Each read champion.json,
    compared, and wrote: the later writer could crown its 0.15 over the 0.10 the other had just crowned.
    update_champion now holds champion.json.lock: a second round waits, then compares with the new champion."""
    import threading
    import time

    from ups.filelock import exclusive_lock
    from ups.tune.promotion import _crown, read_champion

    champ, lb = tmp_path / "champion.json", tmp_path / "leaderboard.csv"
    update_champion(champ, [full_eval("a", 0.200)], lb)
    done: dict = {}
    with exclusive_lock(Path(str(champ) + ".lock")):  # round X is promoting
        t = threading.Thread(target=lambda: done.update(rec=update_champion(champ, [full_eval("b", 0.150)], lb)))
        t.start()  # round Y's promotion, with a candidate better than the recorded champion
        time.sleep(0.5)
        assert read_champion(champ)["run_id"] == "a" and "rec" not in done  # Y waits for X
        _crown(champ, [full_eval("c", 0.100)], lb)  # X crowns a better one
    t.join(10)
    assert done["rec"]["run_id"] == "c" and read_champion(champ)["run_id"] == "c"  # Y's 0.15 does not beat it


def test_a_dethroned_champion_loses_its_label(tmp_path: Path) -> None:
    """The leaderboard shows one champion per champion file: the replaced one's rows go back to full_eval
    (they all said ``champion`` before)."""
    from ups.leaderboard import read_leaderboard, upsert_rows

    champ, lb = tmp_path / "champion.json", tmp_path / "leaderboard.csv"
    upsert_rows(lb, [{"run_id": r, "kind": "trial", "promotion": "full_eval"} for r in ("a", "b")]
                + [{**full_eval(r, v), "kind": "full_eval", "promotion": "full_eval"} for r, v in (("a", 0.1), ("b", 0.05))])
    update_champion(champ, [full_eval("a", 0.1)], lb)
    assert update_champion(champ, [full_eval("b", 0.05)], lb)["replaced"] == "a"
    labels = dict(read_leaderboard(lb)[["run_id", "promotion"]].itertuples(index=False))
    assert labels == {"a": "full_eval", "full-a": "full_eval", "b": "champion", "full-b": "champion"}


def test_a_record_with_only_a_score_is_compared_on_it(tmp_path: Path) -> None:
    """A hand-written champion.json holds what read_champion asks for (run_id, score, checkpoint, config,
    data_hash), no nrmse/nrmse_ttc: its score was read as +inf and any candidate dethroned it."""
    champ, lb = tmp_path / "champion.json", tmp_path / "leaderboard.csv"
    champ.write_text(json.dumps({"run_id": "mine", "score": 0.01, "checkpoint": "/ckpt/mine", "config": {"a": 1},
                                 "data_hash": "d1"}))
    assert update_champion(champ, [full_eval("worse", 0.5)], lb)["run_id"] == "mine"
    assert update_champion(champ, [full_eval("better", 0.005)], lb)["run_id"] == "better"


def test_round_c_with_a_champion_folder_says_which_file(tmp_path: Path) -> None:
    """champion=reports/ (the folder): round C stopped with IsADirectoryError, a raw traceback."""
    import pytest

    from ups.config import ConfigError
    from ups.tune.prepare import prepare

    folder = tmp_path / "reports"
    folder.mkdir()
    with pytest.raises(ConfigError, match=f"champion={folder} is a folder.*champion={folder / 'champion.json'}"):
        prepare("round_c", [f"champion={folder}", f"storage_path={tmp_path / 'runs'}",
                            f"leaderboard={tmp_path / 'lb.csv'}"], around_champion=True)


def test_the_record_follows_its_checkpoint_when_the_sweep_moved(tmp_path: Path) -> None:
    """The sweep's folder moved, then resume=true storage_path=<new place>: the rows follow it and the promotion
    full-evaluates the champion again from there, but champion.json kept the old path (export: no checkpoint)."""
    champ, lb = tmp_path / "champion.json", tmp_path / "leaderboard.csv"
    update_champion(champ, [full_eval("a", 0.1)], lb)
    moved = {**full_eval("a", 0.1), "checkpoint": "/moved/a"}
    rec = update_champion(champ, [moved], lb)
    assert rec["run_id"] == "a" and rec["checkpoint"] == "/moved/a"
    assert json.loads(champ.read_text())["checkpoint"] == "/moved/a"
    last = (tmp_path / "champion_history.jsonl").read_text().splitlines()[-1]
    assert json.loads(last)["checkpoint"] == "/moved/a"  # "tail -n 1 champion_history.jsonl" restores it
    # another run's candidate, or the champion's run on other data, does not move it
    update_champion(champ, [{**full_eval("b", 0.5), "checkpoint": "/elsewhere/b"}], lb)
    update_champion(champ, [{**moved, "checkpoint": "/other-data/a", "data_hash": "d2"}], lb)
    assert json.loads(champ.read_text())["checkpoint"] == "/moved/a"


def test_a_history_a_killed_driver_left_short_is_completed_and_the_old_champion_relabelled(tmp_path: Path,
                                                                                          capsys) -> None:
    """A driver killed between champion.json and its history line (the order before 2026-12-07) left the history
    naming the champion before, and the leaderboard both champions' rows labelled champion; ``tail -n 1`` of the
    history then restored the dethroned one. The next promotion completes the history and the labels."""
    from ups.leaderboard import read_leaderboard, set_values, upsert_rows

    champ, lb = tmp_path / "champion.json", tmp_path / "leaderboard.csv"
    history = tmp_path / "champion_history.jsonl"
    upsert_rows(lb, [{"run_id": r, "kind": "trial" if len(r) == 1 else "full_eval"}
                     for r in ("a", "full-a", "b", "full-b", "z", "full-z")])
    update_champion(champ, [full_eval("a", 0.2)], lb)
    update_champion(champ, [full_eval("b", 0.1)], lb)
    history.write_text("\n".join(history.read_text().splitlines()[:-1]) + "\n")  # b's line never written
    set_values(lb, "promotion", {"a": "champion", "full-a": "champion", "z": "champion"})  # z: another file's
    kept = update_champion(champ, [full_eval("b", 0.1)], lb)  # the resumed sweep's promotion
    assert kept["run_id"] == "b" and "the best candidate is the champion itself" in capsys.readouterr().out
    assert [json.loads(x)["run_id"] for x in history.read_text().splitlines()] == ["a", "b"]
    labels = read_leaderboard(lb).set_index("run_id")["promotion"].to_dict()
    assert labels["a"] == labels["full-a"] == "full_eval" and labels["b"] == labels["full-b"] == "champion"
    assert labels["z"] == "champion"  # not in this record's history: another champion file's (the full profile's)
    # the order now: the history line first, so a kill in between leaves the history one record ahead, whose tail
    # is what the re-run promotion crowns again without a second line
    update_champion(champ, [full_eval("c", 0.05)], lb)
    assert [json.loads(x)["run_id"] for x in history.read_text().splitlines()] == ["a", "b", "c"]
    assert json.loads(history.read_text().splitlines()[-1]) == json.loads(champ.read_text())


def test_no_finite_candidate_is_said(tmp_path: Path, capsys) -> None:
    """A promotion whose every candidate scored inf (a training seed of each failed) printed nothing, where the
    docs promise one line whatever the outcome."""
    champ, lb = tmp_path / "champion.json", tmp_path / "leaderboard.csv"
    assert update_champion(champ, [full_eval("a", 0.2, seed_scores=[0.19, float("inf")])], lb) is None
    out = capsys.readouterr().out
    assert "no champion crowned: no candidate has a finite score; the best, a, scored inf" in out
    assert "scores over training seeds" in out


def test_a_score_written_as_text_is_read_as_the_number(tmp_path: Path) -> None:
    """A hand-written "score": "0.01" passed read_champion as text: round C kept that champion, then died after its
    whole sweep printing it (ValueError: Unknown format code 'g' for object of type 'str')."""
    from ups.tune.promotion import read_champion

    champ, lb = tmp_path / "champion.json", tmp_path / "leaderboard.csv"
    champ.write_text(json.dumps({"run_id": "mine", "score": "0.01", "checkpoint": "/ckpt/mine", "config": {"a": 1},
                                 "data_hash": "d1"}))
    assert read_champion(champ)["score"] == 0.01
    kept = update_champion(champ, [full_eval("worse", 0.5)], lb)
    assert kept["run_id"] == "mine" and f"{kept['score']:.4g}" == "0.01"


def _round_c_champion(tmp_path: Path, run_id: str, lr: float) -> tuple[list[str], dict]:
    """A champion record for round C (the smoke profile's base with ``lr``) and the round's overrides."""
    from ups.config import load_config, to_dict
    from ups.tune.sweep_config import load_sweep_config
    from tests.fixtures.modules import sweep_script

    mod = sweep_script("round_c")
    args = [f"storage_path={tmp_path / 'runs'}", f"champion={tmp_path / 'champion.json'}",
            f"leaderboard={tmp_path / 'lb.csv'}"]
    cfg = to_dict(load_config(load_sweep_config("round_c", args, mod.DEFAULTS).trial))
    cfg["stages"]["operator"]["optimizer"]["lr"] = lr
    (tmp_path / "champion.json").write_text(json.dumps({"run_id": run_id, "score": 0.1, "checkpoint": "/c",
                                                        "data_hash": "d", "round": "round_a", "config": cfg}))
    return args, mod.DEFAULTS


def test_round_c_says_which_champion_it_searches_around(tmp_path: Path) -> None:
    """Round C printed only the champion after its promotion (or nothing): which champion the ±20 % window
    was centred on, and the window itself, was said nowhere before the trials."""
    from ups.tune.prepare import prepare

    args, defaults = _round_c_champion(tmp_path, "round_a-20260101-000000-abcd1234", 1.0e-3)
    p = prepare("round_c", args, defaults, around_champion=True)
    out = p.centre_note  # run_round prints it, after a resume has chosen the champion (the next test)
    assert "round_c: from champion round_a-20260101-000000-abcd1234" in out, out
    assert "stages.operator.optimizer.lr 0.0008…0.0012 (log)" in out, out
    assert "training.lambda_spectral 0…0.02 (from 0: zero_width)" in out, out
    assert p.centre["run_id"] == "round_a-20260101-000000-abcd1234"


def _resume_round_c(tmp_path: Path, monkeypatch, capsys, space: Path | None = None,
                    then: str = "new-champ", named: bool = False) -> tuple[object, str]:
    """A round C sweep started from champion old-champ (its record written as run_round writes it), then
    ``then``: "new-champ" (another round crowned one since) or "deleted" (champion.json removed); returns the
    Prepared its resume (with name= when ``named``, else as a plain resume finds the newest round_c sweep) reaches
    the Tune state check with, and what the resume printed."""
    import pytest

    from ups.tune import launcher
    from ups.tune.prepare import prepare
    from ups.tune.sweep_record import sweep_record, write_record

    args, defaults = _round_c_champion(tmp_path, "old-champ", 1.0e-3)
    args += [f"space={space}"] if space else []
    p = prepare("round_c", args, defaults, around_champion=True)
    name = "round_c-20260101-000000"
    write_record(p.storage_path, p.filesystem, name, {**sweep_record(p, args), "name": name})
    if then == "deleted":
        (tmp_path / "champion.json").unlink()
    else:
        _round_c_champion(tmp_path, "new-champ", 2.0e-3)
    seen = []

    class Reached(Exception):
        pass

    def stop_here(q, _name):  # the step after the resume check: nothing more is needed here (no Ray)
        seen.append(q)
        raise Reached

    monkeypatch.setattr(launcher, "check_sweep_folder", stop_here)
    capsys.readouterr()  # what the start printed
    with pytest.raises(Reached):
        launcher.run_round("round_c", [*args, "resume=true", *([f"name={name}"] if named else [])],
                           defaults=defaults, around_champion=True)
    return seen[0], capsys.readouterr().out


def test_round_c_resumed_after_a_new_champion_keeps_its_window(tmp_path: Path, monkeypatch, capsys) -> None:
    """A new champion crowned while a round C sweep was unfinished: its resume was refused ("this command would
    continue … under other settings: lr 0.001 → 0.002") with the same command as the fix, which read the new
    champion again. The resumed sweep now centres on the champion it started from, as recorded."""
    import pytest

    q, out = _resume_round_c(tmp_path, monkeypatch, capsys, named=True)
    lr = q.space.params["stages.operator.optimizer.lr"]
    assert q.base.stages.operator.optimizer.lr == 1.0e-3 and (lr.low, lr.high) == pytest.approx((0.8e-3, 1.2e-3))
    assert q.centre["run_id"] == "old-champ"
    assert "started from champion old-champ" in out and "round_c: from champion old-champ" in out, out
    assert "round_c: from champion new-champ" not in out, out


def test_round_c_from_a_champion_of_other_data_says_it_cannot_replace_it(tmp_path: Path) -> None:
    """A champion trained on other data (champion=reports/champion_full.json under the smoke profile) was searched
    around silently; only after every trial and the full-eval did the promotion say it kept the champion (other
    data_hash). The round says so before anything runs."""
    from ups.tune.prepare import prepare

    args, defaults = _round_c_champion(tmp_path, "full-champ", 1.0e-3)
    rec = json.loads((tmp_path / "champion.json").read_text())
    rec["config"]["data"].update({"n": 2000, "resolution": 1024})
    (tmp_path / "champion.json").write_text(json.dumps(rec))
    q = prepare("round_c", args, defaults, around_champion=True)
    note = q.centre_note
    assert q.centre_data_differs  # the launcher then does not say it again from the data_hash
    assert "trained on other data (data.n 2000 → 256; data.resolution 1024 → 256)" in note, note
    assert "cannot replace it" in note and "Fix: champion=" in note, note
    _round_c_champion(tmp_path, "same-data", 1.0e-3)
    p = prepare("round_c", args, defaults, around_champion=True)
    assert "other data" not in p.centre_note and not p.centre_data_differs
    # a file given as data.path= changes no data.* setting: the data's own hash tells (centre_data_note, after the
    # data loads); the champion's record has the hash it was scored on
    from types import SimpleNamespace

    from ups.tune.prepare import centre_data_note

    p.centre["data_hash"] = "aaaaaaaaaaaa"
    note = centre_data_note(p, SimpleNamespace(data_hash="bbbbbbbbbbbbbbbb", source="/data/1D_Burgers_Nu0.02.hdf5"))
    assert "champion same-data was scored on other data (data_hash aaaaaaaaaaaa" in note, note
    assert "1D_Burgers_Nu0.02.hdf5: bbbbbbbbbbbb" in note and "Fix: champion=" in note
    assert centre_data_note(p, SimpleNamespace(data_hash="aaaaaaaaaaaabbbb", source="x")) == ""


def test_round_c_with_a_warning_still_says_its_champion(tmp_path: Path) -> None:
    """prepare's warning loop reused the name of the centre note: with an EMA-decay warning, the line round C prints
    before its trials was that warning again, and which champion it searched around was said nowhere."""
    from ups.tune.prepare import prepare

    args, defaults = _round_c_champion(tmp_path, "the-champ", 1.0e-3)
    space = tmp_path / "space.yaml"
    space.write_text((Path(__file__).resolve().parents[1] / "search_spaces" / "round_c.yaml").read_text()
                     + "  stages.operator.ema_decay: {dist: uniform, low: 0.99, high: 0.9999}\n")
    note = prepare("round_c", [*args, f"space={space}"], defaults, around_champion=True).centre_note
    assert note.startswith("round_c: from champion the-champ") and "ema_decay" not in note, note


def test_round_c_resumed_without_its_champion_file_continues_from_the_recorded_one(tmp_path: Path, monkeypatch,
                                                                                    capsys) -> None:
    """champion.json deleted (or moved) after a round C sweep started: its resume failed with "no champion yet"
    although the sweep's ups_sweep.json holds the champion it started from, all the resume needs."""
    import pytest

    q, out = _resume_round_c(tmp_path, monkeypatch, capsys, then="deleted")
    lr = q.space.params["stages.operator.optimizer.lr"]
    assert q.base.stages.operator.optimizer.lr == 1.0e-3 and (lr.low, lr.high) == pytest.approx((0.8e-3, 1.2e-3))
    assert q.centre["run_id"] == "old-champ"
    assert (f"resume: round_c-20260101-000000 started from champion old-champ (its ups_sweep.json); "
            f"{tmp_path / 'champion.json'} is not there now: the sweep continues from the recorded one") in out, out
    assert (f"round_c: from champion old-champ (round round_a, score 0.1, "  # the record it was read from
            f"{tmp_path / 'runs' / 'round_c-20260101-000000' / 'ups_sweep.json'})") in out, out
    assert not (tmp_path / "champion.json").exists()  # the resume writes no champion before its promotion


def test_round_c_resumed_after_a_new_champion_prepares_once(tmp_path: Path, monkeypatch, capsys) -> None:
    """The resume of a round C sweep after a newer champion was crowned prepared the sweep twice (on the new
    champion, then on the one it started from): every warning prepare gives (here: searched EMA decays the
    warm-up never reaches) was printed twice, the first time about a window the sweep does not search."""
    space = tmp_path / "space.yaml"
    space.write_text((Path(__file__).resolve().parents[1] / "search_spaces" / "round_c.yaml").read_text()
                     + "  stages.operator.ema_decay: {dist: uniform, low: 0.99, high: 0.9999}\n")
    q, out = _resume_round_c(tmp_path, monkeypatch, capsys, space=space)
    assert q.centre["run_id"] == "old-champ"
    warnings = [line for line in out.splitlines() if "params.stages.operator.ema_decay" in line]
    assert len(warnings) == 1 and warnings[0].startswith("[ups sweep] warning: "), out
    assert out.count("started from champion old-champ") == 1 and "champion in" in out, out
    assert out.count("round_c: from champion old-champ") == 1, out


def test_round_c_around_an_ema_decay_near_1_names_a_fix_that_works(tmp_path: Path) -> None:
    """A space with ``stages.operator.ema_decay: {dist: around, rel: 0.2}`` on a champion at 0.97 gives 0.776…1.164:
    refused with the config's own fix ("use e.g. 0.999"), a value nothing in the command or space can set. The
    refusal says the window, and a rel and a fixed range that the config takes, as the space writes them; both pass."""
    import re

    import pytest

    from ups.tune.prepare import prepare
    from ups.tune.space import SearchSpaceError

    args, defaults = _round_c_champion(tmp_path, "champ", 1.0e-3)
    rec = json.loads((tmp_path / "champion.json").read_text())
    rec["config"]["stages"]["operator"]["ema_decay"] = 0.97
    (tmp_path / "champion.json").write_text(json.dumps(rec))
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  stages.operator.ema_decay: {dist: around, rel: 0.2}\n")
    with pytest.raises(SearchSpaceError) as e:
        prepare("round_c", [*args, f"space={space}"], defaults, around_champion=True)
    msg = str(e.value)
    assert msg.startswith(f"{space}: params.stages.operator.ema_decay: ±0.2 around the champion's 0.97 "
                          f"({tmp_path / 'champion.json'}) gives 0.776…1.164: 1.164 is refused"), msg
    assert "must be in [0,1)" in msg and "use e.g. 0.999" not in msg, msg
    assert f"Fix: in {space} (or a copy of it, as space=<copy.yaml>), " in msg, msg
    fixes = re.findall(r"params\.stages\.operator\.ema_decay: (\{dist: [a-z]+[^}]*\})", msg)
    assert [f.split(",")[0] for f in fixes] == ["{dist: around", "{dist: uniform"], msg  # a rel, a fixed range
    for entry in fixes:  # each fix as the message writes it
        space.write_text(f"params:\n  stages.operator.ema_decay: {entry}\n")
        ema = prepare("round_c", [*args, f"space={space}"], defaults, around_champion=True).space.params[
            "stages.operator.ema_decay"]
        assert ema.dist == "uniform" and ema.low <= 0.97 <= ema.high < 1 and ema.high > 0.99, (entry, ema)


def test_the_promotion_says_which_champion_it_crowned_or_kept_and_why(tmp_path: Path, capsys) -> None:
    """A sweep whose best full-eval lost to the recorded champion ended without a word about the champion (seen in
    run.sh: round A's 0.1318 against a dims champion's 0.0835); crowning said nothing either.  The comparison each
    made is now printed, on the basis it was made on."""
    champ, lb = tmp_path / "champion.json", tmp_path / "leaderboard.csv"
    update_champion(champ, [full_eval("a", 0.100)], lb)
    assert f"crowned a in {champ}: the first champion in this file; its score 0.1" in capsys.readouterr().out
    update_champion(champ, [full_eval("worse", 0.120)], lb)
    out = capsys.readouterr().out
    assert f"kept the champion a in {champ}: it scored 0.1, the best candidate worse 0.12 (each at its own " \
           "training seed)" in out and "crowned" not in out
    # own seed 0.090 beats 0.100 though the seed mean (0.105) would not: the line gives both, and the basis
    update_champion(champ, [full_eval("b", 0.090, [0.090, 0.115, 0.110])], lb)
    assert "crowned b in" in (out := capsys.readouterr().out) and \
        "0.09 against a's 0.1 (each at its own training seed); its score 0.105" in out
    baseline = [{"label": "fno", "nrmse": 0.095, "data_hash": "d1"}]
    update_champion(champ, [full_eval("d", 0.080, [0.080, 0.090, 0.091])], lb, baseline)
    assert "crowned d in" in (out := capsys.readouterr().out) and \
        "0.087 against b's 0.105 (means over training seeds); its score 0.087 below the fno baseline's 0.095" in out
    # a re-run promotion (resume=true of a finished sweep) offers the champion again: not "d 0.087, the best
    # candidate d 0.087 (each at its own training seed)"
    update_champion(champ, [full_eval("d", 0.080, [0.080, 0.090, 0.091])], lb, baseline)
    assert f"kept the champion d in {champ}: the best candidate is the champion itself (0.087; " \
           "recorded 0.087)" in capsys.readouterr().out


def test_the_record_names_its_leaderboard_and_the_baselines_fno(tmp_path: Path) -> None:
    """``ups export champion`` read the default leaderboard for a champion crowned with another one (its card said
    "not recorded" for every figure), and ``ups eval`` of the champion trained another FNO (60 s against the sweep's
    30) than the one the promotion compared with: the record names both."""
    champ, lb = tmp_path / "champion.json", tmp_path / "lb.csv"
    baselines = [{"label": "fno", "nrmse": 0.2, "data_hash": "d1", "fno_budget_s": 30.0, "seed": 3},
                 {"label": "fno", "nrmse": 0.1, "data_hash": "other", "fno_budget_s": 60.0, "seed": 0}]
    rec = update_champion(champ, [full_eval("a", 0.100)], lb, baselines)
    run = {"fno_budget_s": 30.0, "fno_steps": 0, "seed": 3}  # rows from before fno_steps: trained for the budget
    assert rec["leaderboard"] == str(lb.resolve()) and rec["baselines_run"] == run
    assert json.loads(champ.read_text())["baselines_run"] == run
    # a sweep with fno_steps=N trained exactly N steps (no wall-clock cut): ups eval trains the same FNO
    steps = [dict(baselines[0], fno_budget_s=0.0, fno_steps=100, nrmse=0.09)]
    rec = update_champion(tmp_path / "c2.json", [full_eval("a", 0.080)], lb, steps)
    assert rec["baselines_run"] == {"fno_budget_s": 0.0, "fno_steps": 100, "seed": 3}


def test_the_best_candidate_is_crowned_whatever_its_place_in_the_list(tmp_path: Path) -> None:
    """The lowest score wins (a max crowned the worst full-eval of the round)."""
    lb = tmp_path / "leaderboard.csv"
    assert update_champion(tmp_path / "c1.json", [full_eval("a", 0.3), full_eval("b", 0.1)], lb)["run_id"] == "b"
    assert update_champion(tmp_path / "c2.json", [full_eval("b", 0.1), full_eval("a", 0.3)], lb)["run_id"] == "b"


def test_candidates_are_scored_on_their_nrmse_with_ttc(tmp_path: Path) -> None:
    """The champion's score is nRMSE with TTC where the full-eval has it, not the plain rollout's nRMSE."""
    lb = tmp_path / "leaderboard.csv"
    a = {**full_eval("a", 0.1), "nrmse": 0.3}
    b = {**full_eval("b", 0.2), "nrmse": 0.15}
    rec = update_champion(tmp_path / "champion.json", [b, a], lb)
    assert rec["run_id"] == "a" and rec["score"] == 0.1


def test_no_champion_without_a_finite_score_or_on_a_tie_with_a_baseline(tmp_path: Path) -> None:
    """A NaN full-eval is no score of 0; a candidate only as good as the FNO on the same data does not beat it."""
    lb = tmp_path / "leaderboard.csv"
    assert update_champion(tmp_path / "c1.json", [full_eval("a", math.nan)], lb) is None
    fno = [{"label": "fno", "nrmse": 0.2, "data_hash": "d1"}]
    assert update_champion(tmp_path / "c2.json", [full_eval("a", 0.2)], lb, fno) is None
    assert update_champion(tmp_path / "c2.json", [full_eval("a", 0.19)], lb, fno)["run_id"] == "a"


def test_a_seed_without_a_full_eval_makes_the_seed_mean_infinite() -> None:
    """promotion.seeds=2 with no retrain scored: the two missing seeds count as failed, not as absent."""
    got = seed_mean_candidates([full_eval("a", 0.1)], {"a": []}, 2)
    assert got[0]["seed_mean"] == math.inf and json.loads(got[0]["seed_scores"])[0] == 0.1
