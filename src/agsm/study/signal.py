"""Is there a signal for AGSM to amplify? How often the frozen model's own implicit reward prefers the true caption.

    python -m agsm.study.signal --model src/agsm/shapes/models/sd15-tiny --out docs/study/signal-sd15

AGSM sharpens the model's preference r(x_t, c) = -mean (f(x_t, t, c) - y)^2 (docs/method.md, "AGSM loss", step 3)
for an image's own caption over others. Where the model cannot tell the true caption from a wrong one
(ranking accuracy near 50%), the Plackett-Luce weights are flat, the shift D carries no direction, and the
method has nothing to amplify. For rendered ShapesWorld scenes with true captions (a development seed, not
the suite) this measures, per category, per timestep bucket and per kind of negative:
- `in_batch`: another scene's caption (what the paper contrasts against),
- `color` / `shape` / `count` / `relation`: the true caption with one attribute changed (data/perturb.py),
the fraction of (scene, noise) draws where the true caption's reward is higher, the mean reward gap, and the
Plackett-Luce weight of the own caption among 4 in-batch captions at the training temperature.
Writes signal.json and signal.png.
"""
from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

import torch

from ..backbones.factory import load_backbone
from ..data.images import to_tensor
from ..data.perturb import KINDS, perturb_shapes
from ..shapes.render import render
from ..shapes.scenes import sample_many
from ..shapes.spec import CATEGORIES
from ..utils.markdown_tables import fixed, table_lines

DEV_SEED = 101  # scenes for the study: a seed no training set or suite uses
NEGATIVES = ("in_batch", *KINDS)


def negatives_for(samples, rng: random.Random) -> list[dict[str, str]]:
    """Per scene: one in-batch caption (another scene's) and one perturbation per applicable attribute kind."""
    out = []
    for i, smp in enumerate(samples):
        other = samples[(i + 1 + rng.randrange(len(samples) - 1)) % len(samples)].prompt
        negs = {"in_batch": other} if other != smp.prompt else {}
        for kind in KINDS:
            changed = perturb_shapes(smp.prompt, rng, kinds=(kind,))
            if changed is not None:
                negs[kind] = changed[0]
        out.append(negs)
    return out


@torch.no_grad()
def rewards(backbone, x0: torch.Tensor, captions: list[list[str]], t: torch.Tensor, eps: torch.Tensor) -> list:
    """r for each scene's captions at one (t, eps) per scene: a list of [n_captions] tensors."""
    flat = [c for caps in captions for c in caps]
    owner = torch.tensor([i for i, caps in enumerate(captions) for _ in caps])
    cond = backbone.encode_text(flat)
    x_t = backbone.add_noise(x0, eps, t)
    y = backbone.target(x0, eps, t)
    pred = backbone.predict(x_t[owner], t[owner], cond)
    r = -(pred.float() - y[owner].float()).pow(2).flatten(1).mean(1)
    out, start = [], 0
    for caps in captions:
        out.append(r[start:start + len(caps)])
        start += len(caps)
    return out


def measure(model, per_category: int = 40, timesteps=(50, 150, 250, 350, 450, 550, 650, 750, 850, 950),
            draws: int = 2, seed: int = DEV_SEED, temperature: float = 0.1, batch: int = 48) -> dict:
    backbone = load_backbone(model)
    samples = sample_many(per_category * len(CATEGORIES), seed)
    rng = random.Random(seed)
    negatives = negatives_for(samples, rng)
    pixels = torch.stack([to_tensor(render(s.scene)) for s in samples])
    x0 = torch.cat([backbone.encode_images(pixels[i:i + batch]) for i in range(0, len(samples), batch)])
    gen = torch.Generator().manual_seed(seed)

    wins = defaultdict(list)      # (category, kind, t) -> [bool]
    gaps = defaultdict(list)      # (category, kind, t) -> [r_true - r_neg]
    own_weight = defaultdict(list)  # (category, t) -> own caption's PL weight among 4 in-batch captions
    for t_value in timesteps:
        for _ in range(draws):
            eps = torch.randn(x0.shape, generator=gen)
            for start in range(0, len(samples), batch):
                idx = range(start, min(start + batch, len(samples)))
                pool = [samples[(i + 1 + j * 7) % len(samples)].prompt for i in idx for j in range(3)]
                caps = []
                for n, i in enumerate(idx):
                    caps.append([samples[i].prompt, *negatives[i].values(), *pool[3 * n:3 * n + 3]])
                t = torch.full((len(idx),), float(t_value))
                rs = rewards(backbone, x0[list(idx)], caps, t, eps[list(idx)])
                for n, i in enumerate(idx):
                    r, category = rs[n], samples[i].category
                    for j, kind in enumerate(negatives[i], start=1):
                        wins[(category, kind, t_value)].append(bool(r[0] > r[j]))
                        gaps[(category, kind, t_value)].append(float(r[0] - r[j]))
                    k = len(negatives[i]) + 1
                    four = torch.cat([r[:1], r[k:k + 3]])
                    own_weight[(category, t_value)].append(float(torch.softmax(four / temperature, 0)[0]))
    return summarise(wins, gaps, own_weight, timesteps, model, per_category, draws, seed, temperature)


def _mean(values) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(wins, gaps, own_weight, timesteps, model, per_category, draws, seed, temperature) -> dict:
    table = {}
    for category in CATEGORIES:
        table[category] = {}
        for kind in NEGATIVES:
            per_t = {str(t): _mean(wins[(category, kind, t)]) for t in timesteps}
            if all(v is None for v in per_t.values()):
                continue
            every = [w for t in timesteps for w in wins[(category, kind, t)]]
            table[category][kind] = {"accuracy": _mean(every), "n": len(every), "by_t": per_t,
                                     "gap": _mean([g for t in timesteps for g in gaps[(category, kind, t)]]),
                                     "gap_by_t": {str(t): _mean(gaps[(category, kind, t)]) for t in timesteps}}
    overall = {kind: _mean([w for c in CATEGORIES for t in timesteps for w in wins[(c, kind, t)]]) for kind in NEGATIVES}
    overall_by_t = {kind: {str(t): _mean([w for c in CATEGORIES for w in wins[(c, kind, t)]]) for t in timesteps}
                    for kind in NEGATIVES}
    weight = {"overall": _mean([w for v in own_weight.values() for w in v]),
              "by_t": {str(t): _mean([w for c in CATEGORIES for w in own_weight[(c, t)]]) for t in timesteps},
              "by_category": {c: _mean([w for t in timesteps for w in own_weight[(c, t)]]) for c in CATEGORIES}}
    return {"model": str(model), "per_category": per_category, "draws": draws, "seed": seed, "timesteps": list(timesteps),
            "temperature": temperature, "table": table, "overall": overall, "overall_by_t": overall_by_t,
            "own_weight_in_batch_k4": weight}


def markdown(result: dict) -> str:
    """Ranking accuracy (true caption's reward above the negative's), per category and kind of negative."""
    rows = [[category, *(fixed(kinds[k]["accuracy"] if k in kinds else None, 2, missing="") for k in NEGATIVES)]
            for category, kinds in result["table"].items()]
    rows.append(["all", *(fixed(result["overall"][k], 2, missing="") for k in NEGATIVES)])
    t_rows = [[str(t), *(fixed(result["overall_by_t"][k][str(t)], 2, missing="") for k in NEGATIVES),
               f"{result['own_weight_in_batch_k4']['by_t'][str(t)]:.2f}"] for t in result["timesteps"]]
    return "\n".join([*table_lines(["category", *NEGATIVES], rows), "",
                      *table_lines(["t", *NEGATIVES, "own PL weight (K=4)"], t_rows)])


def plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = result["timesteps"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), dpi=110)
    for kind in NEGATIVES:
        values = [result["overall_by_t"][kind][str(t)] for t in ts]
        if any(v is not None for v in values):
            axes[0].plot(ts, [v if v is not None else float("nan") for v in values], marker="o", label=kind)
    axes[0].axhline(0.5, color="gray", lw=0.8, ls="--")
    axes[0].set(xlabel="timestep t", ylabel="P(r_true > r_negative)", ylim=(0.3, 1.02),
                title="all categories, by kind of negative")
    axes[0].legend(fontsize=7, ncols=3)
    for category, kinds in result["table"].items():
        one_attribute = [k for k in KINDS if k in kinds]
        if one_attribute:
            per_t = [_mean([kinds[k]["by_t"][str(t)] for k in one_attribute]) for t in ts]
            axes[1].plot(ts, per_t, marker=".", label=category)
    axes[1].axhline(0.5, color="gray", lw=0.8, ls="--")
    axes[1].set(xlabel="timestep t", ylim=(0.3, 1.02), title="one-attribute negatives, by category")
    axes[1].legend(fontsize=7, ncols=2)
    fig.suptitle(Path(result["model"]).name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    from ..cli_options import SHAPES_PIPELINE_HELP, add_model_options

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser, model_help=SHAPES_PIPELINE_HELP, tokens=False, uncond_tokens=False)
    parser.add_argument("--out", required=True)
    parser.add_argument("--per-category", type=int, default=40)
    parser.add_argument("--draws", type=int, default=2, help="noise draws per scene and timestep")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[50, 150, 250, 350, 450, 550, 650, 750, 850, 950])
    parser.add_argument("--seed", type=int, default=DEV_SEED)
    parser.add_argument("--temperature", type=float, default=0.1)
    args = parser.parse_args(argv)
    result = measure(args.model, args.per_category, tuple(args.timesteps), args.draws, args.seed, args.temperature)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "signal.json").write_text(json.dumps(result, indent=2))
    (out / "signal.md").write_text(markdown(result) + "\n")
    plot(result, out / "signal.png")
    print(markdown(result))


if __name__ == "__main__":
    main()
