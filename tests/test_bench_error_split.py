"""benchmarks/error_split.py: a bad variant is refused before any training; a tiny real run reports the round trip
beside the forecast, per variant, against the first variant."""
from __future__ import annotations

import json

import pytest

from tests.fixtures.modules import benchmark_module


@pytest.fixture()
def champion(tmp_path, tiny_cfg, tiny_data):  # tiny_data: the dataset generated once for the session
    from ups.config import to_dict

    path = tmp_path / "champion.json"
    cfg = to_dict(tiny_cfg)
    cfg["stages"]["autoencoder"]["epochs"] = 1
    path.write_text(json.dumps({"run_id": "r1", "config": cfg}))
    return path


def test_a_bad_variant_is_refused_before_any_training(champion, capsys):
    es = benchmark_module("error_split")
    with pytest.raises(Exception, match="stages.autoencoder.epoch"):  # the misspelt key, named with the fix
        es.main([f"--champion={champion}", "--variant", "", "--variant", "stages.autoencoder.epoch=4"])
    assert "seed 0:" not in capsys.readouterr().err  # nothing trained
    with pytest.raises(SystemExit, match="not key=value"):
        es.main([f"--champion={champion}", "--variant", "stages.autoencoder.epochs"])


def test_a_tiny_run_splits_the_error(champion, capsys):
    es = benchmark_module("error_split")
    assert es.main([f"--champion={champion}", "--threads=1", "--variant", "",
                    "--variant", "stages.autoencoder.epochs=3"]) == 0
    out = capsys.readouterr().out
    rec = json.loads(out[: out.rindex("}") + 1])
    assert [r["variant"] for r in rec["runs"]] == ["", "stages.autoencoder.epochs=3"]
    for r in rec["runs"]:
        assert 0 < r["recon_nrmse"] and 0 < r["nrmse"] and r["recon_frmse_high_pdebench"] > 0
    base, more = rec["means"][""], rec["means"]["stages.autoencoder.epochs=3"]
    assert base["vs_first"]["nrmse"] == pytest.approx(1.0)
    assert more["vs_first"]["recon_nrmse"] == pytest.approx(more["recon_nrmse"] / base["recon_nrmse"])
    assert more["recon_nrmse"] != base["recon_nrmse"]  # the variant really trained another autoencoder
    assert "(base): nRMSE" in out and "stages.autoencoder.epochs=3: nRMSE" in out
