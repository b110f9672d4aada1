"""Run under `accelerate launch --num_processes 2`: train, then every process saves the tokens it holds."""
import sys

from accelerate import PartialState
from safetensors.torch import save_file

from agsm.training.config import load_config
from agsm.training.loop import train

if __name__ == "__main__":
    out_prefix, overrides = sys.argv[1], sys.argv[2:]
    captured = {}
    from agsm.training.trainables import TokenTrainable

    original = TokenTrainable.after_step

    def spy(self):  # keep a handle on this process's live tokens
        captured["tokens"] = self.trained
        original(self)

    TokenTrainable.after_step = spy
    train(load_config(None, overrides))
    rank = PartialState().process_index
    save_file({k: v.detach().contiguous() for k, v in captured["tokens"].state_dict().items()},
              f"{out_prefix}-rank{rank}.safetensors")
