"""Run under `accelerate launch --num_processes 2`: train, then every process saves the tokens it holds."""
import sys

import torch
from accelerate import PartialState
from safetensors.torch import save_file

from agsm.training.config import load_config
from agsm.training.loop import train

if __name__ == "__main__":
    out_prefix, overrides = sys.argv[1], sys.argv[2:]
    captured = {}
    import agsm.training.loop as train_module

    original = train_module.update_ema

    def spy(ema_tokens, tokens, decay):  # keep a handle on this process's live tokens
        captured["tokens"] = tokens
        original(ema_tokens, tokens, decay)

    train_module.update_ema = spy
    train(load_config(None, overrides))
    rank = PartialState().process_index
    save_file({k: v.detach().contiguous() for k, v in captured["tokens"].state_dict().items()},
              f"{out_prefix}-rank{rank}.safetensors")
