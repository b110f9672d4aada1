"""`agsm eval edit-shapes` interrupted mid-run, then run again: only the missing edits are redone and results.json is
byte for byte that of an uninterrupted run (times go to timing.json)."""
import json

import pytest

import agsm.eval.edit_shapes as bench


@pytest.mark.slow
def test_interrupted_benchmark_resumes_to_byte_identical_results(shapes_model_dir, shapes_pipe, make_token_file,
                                                                   tmp_path, monkeypatch):
    tokens = make_token_file(tmp_path / "tokens", shapes_pipe)
    run = lambda out: bench.run_edit_benchmark(shapes_model_dir, out, tokens=tokens, n=3, seed=1, steps=4,  # noqa: E731
                                               pipe=shapes_pipe, progress=False)
    run(tmp_path / "straight")

    real_edit, calls = bench.edit, []

    def dies_on_the_fourth_edit(*args, **kwargs):  # the first tokens edit: the base variant is finished
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # as a kill would, between two manifest entries
        return real_edit(*args, **kwargs)

    monkeypatch.setattr(bench, "edit", dies_on_the_fourth_edit)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "results.json").exists()
    calls.clear()
    monkeypatch.setattr(bench, "edit", lambda *a, **k: (calls.append(1), real_edit(*a, **k))[1])
    run(tmp_path / "resumed")
    assert len(calls) == 3  # the three tokens edits; the base edits came from the manifest
    for name in ("results.json", "grid.png"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name
    assert set(json.loads((tmp_path / "resumed" / "timing.json").read_text())["seconds"]) == {"base", "tokens"}
