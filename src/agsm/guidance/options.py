"""Alignment guidance as settings a command carries (`agsm sample --align-guidance ...`): the rule's options plus
how to make the negatives, turned into an AlignmentGuidance once the prompts are known."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from .alignment import WHERE, AlignmentGuidance
from .negatives import DEFAULT_K, NEGATIVE_KINDS, make_negatives
from .rule import REWARD_SPACES


@dataclass(frozen=True)
class AlignOptions:
    gamma: float
    negatives: str = "hard"
    temperature: float = 0.1
    where: str = "conditional"
    k: int = DEFAULT_K
    seed: int = 0
    reward_space: str = "target"

    def __post_init__(self):
        if not self.gamma >= 0:
            raise ValueError(f"--align-guidance {self.gamma} must be >= 0 (0: the stock pipeline)")
        if self.negatives not in NEGATIVE_KINDS:
            raise ValueError(f"--align-negatives {self.negatives!r} is not one of {', '.join(NEGATIVE_KINDS)}")
        if not self.temperature > 0:
            raise ValueError(f"--align-temperature {self.temperature} must be > 0")
        if self.where not in WHERE:
            raise ValueError(f"--align-where {self.where!r} is not one of {', '.join(WHERE)}")
        if self.k < 2:
            raise ValueError(f"--align-k {self.k} must be >= 2: the prompt and at least one negative caption")
        if self.reward_space not in REWARD_SPACES:
            raise ValueError(f"reward_space {self.reward_space!r} is not one of {', '.join(REWARD_SPACES)}")

    def guidance_for(self, prompts: Sequence[str]) -> AlignmentGuidance:
        """The guidance for these prompts (in-batch negatives are drawn from them)."""
        table = make_negatives(self.negatives, prompts, k=self.k, seed=self.seed) if self.gamma > 0 else {}
        return AlignmentGuidance(table, self.gamma, self.temperature, self.where, self.reward_space,
                                 description=f"{self.negatives}, K={self.k}, seed {self.seed}")

    def describe(self) -> dict:
        return asdict(self)
