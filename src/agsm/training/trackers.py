"""Where a training run's metrics and images go: `train.report_to` as accelerate trackers.

    tensorboard (default): <output_dir>/agsm/events.out.tfevents.*   (tensorboard --logdir <output_dir>)
    wandb: a Weights & Biases run in project "agsm", its local files under <output_dir>/wandb
    all: both; none: neither (train_log.jsonl is written in every case)

`check_report_to` runs before the run folder is claimed or the model loads, so a missing package fails in a
second with the fix, not after minutes of loading and encoding. `log_images` sends images with their captions to
whichever trackers the run has.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path

from ..errors import AgsmError

REPORT_TO = ("tensorboard", "wandb", "all", "none")
TRACKERS = {"tensorboard": ["tensorboard"], "wandb": ["wandb"], "all": ["tensorboard", "wandb"], "none": []}
# The module each tracker imports (accelerate's TensorBoard tracker reads torch.utils.tensorboard, which needs
# the tensorboard package), and what to install.
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}


class TrackerUnavailable(AgsmError):
    """train.report_to names a tracker whose package is not installed."""


def check_report_to(report_to: str) -> list[str]:
    """The accelerate tracker names for `report_to`, after checking that their packages import."""
    if report_to not in TRACKERS:
        raise ValueError(f"train.report_to {report_to!r} is not one of {', '.join(REPORT_TO)}")
    for name in TRACKERS[report_to]:
        module, package = PACKAGES[name]
        try:
            importlib.import_module(module)
        except ImportError:
            others = " or ".join(repr(o) for o in REPORT_TO if o not in (report_to, "all") and name not in TRACKERS[o])
            raise TrackerUnavailable(f"train.report_to {report_to!r} needs the {package} package, which is not "
                                     f"installed; install it (pip install {package}) or set train.report_to to "
                                     f"{others}") from None
    return TRACKERS[report_to]


def accelerate_log_with(report_to: str) -> list[str] | None:
    """Accelerator(log_with=...) for `report_to`: None logs nowhere."""
    return TRACKERS[report_to] or None


def tracker_init_kwargs(out: Path) -> dict:
    """Tracker options: wandb keeps its local files in the run folder and names the run after it."""
    return {"wandb": {"dir": str(out), "name": Path(out).name}}


def log_images(accelerator, step: int, images: list, prompts: list[str], note: str = "",
               tag: str = "validation") -> None:
    """Send PIL images, each with its prompt (plus `note`) as caption, to the run's trackers (a no-op without any).

    TensorBoard shows no captions, so each prompt gets its own tag, the same at every step, so that its slider
    steps through the rounds of that prompt."""
    import numpy as np

    for tracker in getattr(accelerator, "trackers", []):
        if tracker.name == "tensorboard":
            writer = tracker.writer
            for i, (image, prompt) in enumerate(zip(images, prompts)):
                pixels = np.asarray(image.convert("RGB"))[None]  # [1, H, W, 3] uint8
                writer.add_images(f"{tag}/{i:02d}_{_tag_text(prompt)}", pixels, global_step=step, dataformats="NHWC")
            writer.flush()
        elif tracker.name == "wandb":
            import wandb

            captioned = [wandb.Image(image, caption=f"{prompt}{note}") for image, prompt in zip(images, prompts)]
            tracker.log({tag: captioned}, step=step)


def _tag_text(caption: str, limit: int = 60) -> str:
    """A caption as TensorBoard tag text: letters, digits and underscores."""
    return re.sub(r"[^A-Za-z0-9]+", "_", caption).strip("_")[:limit] or "prompt"
