"""The editing study's table and plot: mean ± std over token seeds per editor and variant, read from results.json."""
import json

import pytest

from agsm.report.edit_study import collect, main, markdown


def _results(folder, success_base, success_tokens):
    folder.mkdir(parents=True)
    summary = lambda s: {"summary": {"all": {"success": s, "clean": s / 2, "psnr_outside": 30.0 - s,  # noqa: E731
                                             "objects_kept": 0.9}}}
    (folder / "results.json").write_text(json.dumps({"variants": {"base": summary(success_base),
                                                                  "tokens": summary(success_tokens)}}))


def test_table_gives_spread_over_token_seeds_and_the_plot_is_written(tmp_path):
    for k, s in enumerate((0.4, 0.5, 0.6)):
        _results(tmp_path / "runs" / "sd15" / "pnp" / f"seed{k}", 0.3, s)
    table = collect(tmp_path / "runs")
    assert table["sd15"]["pnp"]["tokens"]["success"] == [0.4, 0.5, 0.6]
    text = markdown(table)
    assert "| pnp | tokens | 3 | 0.500 ± 0.100 |" in text
    assert "| pnp | base | 3 | 0.300 ± 0.000 |" in text
    main([str(tmp_path / "runs"), "--out", str(tmp_path / "doc")])
    assert (tmp_path / "doc" / "edit_pareto.png").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="no <backbone>/<editor>"):
        collect(tmp_path / "empty")
