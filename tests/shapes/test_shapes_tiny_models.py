"""The word-level tokenizer behaves like CLIP's for the pipeline (pretraining: test_shapes_pretraining.py)."""

from agsm.shapes.suite import load_eval_suite
from agsm.shapes.tiny_models import build_tokenizer


def test_tokenizer_pads_with_eos_and_covers_the_grammar(tmp_path):
    tok = build_tokenizer()
    ids = tok("a red circle", padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
    assert len(ids) == 16 and ids[0] == tok.bos_token_id and ids[4] == tok.eos_token_id
    assert ids[4:] == [tok.pad_token_id] * 12 and tok.pad_token_id == tok.eos_token_id
    assert tok("a sparkly circle").input_ids[2] == tok.unk_token_id
    for line in load_eval_suite():
        assert tok.unk_token_id not in tok(line["prompt"]).input_ids
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("two blue squares", padding="max_length", max_length=16).input_ids == tok(
        "two blue squares", padding="max_length", max_length=16).input_ids

