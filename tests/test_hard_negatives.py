"""Hard negatives in the pair batch, the independent EMA start, and the JSON training log."""
import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from agsm.backbones.factory import load_backbone
from agsm.training.config import load_config
from agsm.data import build_or_load_cache
from agsm.shapes.grammar import object_phrase
from agsm.shapes.spec import COLORS
from agsm.objectives.pairs import in_batch_captions, with_hard_negatives
from agsm.training.batches import build_batch, load_records
from agsm.training.loop import train
from agsm.training.trainables import make_ema_tokens, make_tokens


def test_hard_columns_replace_negatives_and_keep_the_own_caption():
    index, pos = in_batch_captions(4, 4)
    hard = [[4, 5], [6], [], [7, 8, 9]]
    new = with_hard_negatives(index, pos, hard, torch.Generator().manual_seed(0))
    for i in range(4):
        assert new[i, pos[i]] == i  # the own caption stays where pos_index says
        assert set(hard[i]) <= set(new[i].tolist())
        assert len(set(new[i].tolist())) == 4  # still K distinct captions
    assert torch.equal(new[2], index[2])


def _config(sd15_dir, image_folder, tmp_path, *extra):
    return load_config(None, ["--model.path", str(sd15_dir), "--data.path", str(image_folder),
                              "--train.output_dir", str(tmp_path / "run"), "--data.cache_dir",
                              str(tmp_path / "cache"), *extra])


def test_batch_holds_one_attribute_perturbations_of_each_own_caption(sd15_dir, image_folder, tmp_path):
    config = _config(sd15_dir, image_folder, tmp_path, "--method.hard_negatives", "1.0",
                     "--method.hard_negative_kinds", "[color]")
    backbone = load_backbone(sd15_dir)
    dataset = build_or_load_cache(load_records(config), backbone, backbone.resolution, tmp_path / "cache",
                                  progress=False)
    g = torch.Generator().manual_seed(3)
    ids = torch.arange(4)
    batch = build_batch(dataset, ids, g, Accelerator(cpu=True), config, "cpu", encoder=backbone)
    assert len(batch.captions) == 4 + 4 * 3  # own captions + 3 perturbed per image
    own = [dataset.captions[dataset.caption_ids_of(i)[0]] for i in range(4)]
    for i in range(4):
        assert batch.caption_index[i, batch.pos_index[i]] == i
        for k in range(4):
            if k == batch.pos_index[i]:
                continue
            column = int(batch.caption_index[i, k])
            assert column >= 4  # every negative is a hard one at ratio 1
    for i in range(4):  # three distinct perturbations per image
        assert len(set(batch.caption_index[i].tolist())) == 4
    # The extra rows are the encodings of captions that differ from the own one in its colour word only.
    extra = batch.captions.embeds[4:]
    words = [c.split() for c in own]
    texts = [object_phrase(w[2], c) for w in words for c in COLORS if c != w[1]]
    encoded = backbone.encode_text(texts).embeds
    for row in extra:
        assert min((row - e).abs().max().item() for e in encoded) < 1e-5
    with pytest.raises(ValueError, match="encoder"):
        build_batch(dataset, ids, g, Accelerator(cpu=True), config, "cpu")


def test_independent_ema_is_its_own_small_draw(sd15_dir, image_folder, tmp_path):
    config = _config(sd15_dir, image_folder, tmp_path, "--tokens.init", "empty_prompt", "--method.ema_init",
                     "independent")
    torch.manual_seed(0)
    tokens = make_tokens(config, load_backbone(sd15_dir))
    ema = make_ema_tokens(config, tokens)
    assert ema.sets.shape == tokens.sets.shape and not ema.sets.requires_grad
    # BOS-initialised online tokens sit at text scale; the independent EMA starts near zero (std 0.02).
    assert ema.sets.norm(dim=-1).mean() < 0.2 * tokens.sets.norm(dim=-1).mean()
    copy = make_ema_tokens(_config(sd15_dir, image_folder, tmp_path, "--tokens.init", "empty_prompt"), tokens)
    assert torch.equal(copy.sets, tokens.sets)


@pytest.mark.slow
def test_training_with_hard_negatives_logs_the_signal(sd15_dir, image_folder, tmp_path):
    config = _config(sd15_dir, image_folder, tmp_path, "--method.hard_negatives", "0.67", "--train.steps", "4",
                     "--train.log_every", "2", "--train.checkpoint_every", "100", "--method.ema_init", "independent")
    train(config)
    lines = [json.loads(line) for line in (Path(config.train.output_dir) / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4]
    for key in ("loss", "own_caption_weight", "shift_rms_pos", "shift_rms_neg", "token_norm_pos", "token_norm_neg",
                "token_norm_ema_pos", "lr"):
        assert key in lines[-1] and lines[-1][key] == lines[-1][key]  # present and not NaN
    assert lines[-1]["shift_rms_pos"] > 0
