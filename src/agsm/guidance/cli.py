"""The --align-* options of `agsm sample` (alignment-guided sampling, docs/alignment_guidance.md), declared once."""
from __future__ import annotations

from .alignment import WHERE
from .negatives import DEFAULT_K, NEGATIVE_KINDS

_DEFAULTS = {"align_negatives": "hard", "align_temperature": 0.1, "align_where": "conditional", "align_k": DEFAULT_K}


def add_align_options(parser) -> None:
    group = parser.add_argument_group(
        "alignment guidance", "sample with AGSM's target applied by the frozen model: eps(c) + gamma (eps(c) - "
        "sum_j w_j eps(c_j)) over the prompt and K-1 negative captions (docs/alignment_guidance.md); K-1 extra "
        "predictions per step")
    group.add_argument("--align-guidance", type=float, metavar="GAMMA",
                       help="the shift's weight gamma (0: the stock pipeline; off unless given)")
    group.add_argument("--align-negatives", choices=NEGATIVE_KINDS,
                       help="hard: the prompt with one colour, object, number or spatial word changed (default); "
                            "inbatch: other prompts of --prompts")
    group.add_argument("--align-temperature", type=float, metavar="T", help="softmax temperature (default 0.1)")
    group.add_argument("--align-where", choices=WHERE,
                       help="conditional: shift the conditional prediction, so the guidance scale multiplies it "
                            "(where AGSM's tokens act; default); after-guidance: add gamma D to the guided one")
    group.add_argument("--align-k", type=int, metavar="K",
                       help=f"the prompt plus K-1 negatives (default {DEFAULT_K}, the method's 1:3)")


def align_from_args(args):
    """AlignOptions from the parsed options, or None without --align-guidance (the other --align-* need it)."""
    from .options import AlignOptions

    given = [name for name in _DEFAULTS if getattr(args, name, None) is not None]
    if args.align_guidance is None:
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise ValueError(f"{flag} needs --align-guidance GAMMA (alignment guidance is off without it)")
        return None
    values = {name: _DEFAULTS[name] if getattr(args, name) is None else getattr(args, name) for name in _DEFAULTS}
    return AlignOptions(args.align_guidance, values["align_negatives"], values["align_temperature"],
                        values["align_where"], values["align_k"])
