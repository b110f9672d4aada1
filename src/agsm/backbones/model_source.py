"""Where a model comes from: a local pipeline folder (always the first reading) or a Hugging Face Hub id.

    source = resolve_model("stabilityai/stable-diffusion-3-medium-diffusers", revision="main", weights_variant="fp16")
    source.folder      # the local folder to load: the id's snapshot in the Hub cache, fetched by diffusers
    source.record()    # {"model": id, "revision": "main", "weights_variant": "fp16", "snapshot": <commit>}

The rules, in order:
- a name that exists on disk is a local folder (a Path object is always one); a Hub revision is refused for it;
- a name that looks like a path (absolute, or starting with . or ~) or is no Hub id (owner/name) and does not
  exist is a missing folder, and says so;
- an owner/name id is fetched with diffusers' own `DiffusionPipeline.download` (what from_pretrained calls): only
  the files the pipeline loads, safetensors only, into the Hub cache. A cached snapshot loads offline
  (HF_HUB_OFFLINE=1); an id that is not cached while the Hub cannot be reached gets one message naming the id and
  the command that downloads it into a folder --model takes.

`weights_variant` is diffusers' `variant` (loads diffusion_pytorch_model.fp16.safetensors ...); agsm's own
"variant" is another denoiser or a LoRA (variants.py), hence the longer name here. `ModelSource` is a model name
that carries a revision and weights variant through code that passes the model on as a string (the commands).
"""
from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name, as the Hub spells repo ids


class ModelSource(str):
    """A model name (a local folder or a Hub id) with the Hub revision and weights variant to load it at.

    It is the name itself as a str, so commands that print, record or hand on the model keep working unchanged;
    the loaders (resolve_model) read `.revision` and `.weights_variant`."""

    def __new__(cls, name, revision: str | None = None, weights_variant: str | None = None):
        source = super().__new__(cls, os.fspath(name))
        source.revision = revision or None
        source.weights_variant = weights_variant or None
        return source

    def __reduce__(self):  # copies and pickles keep the revision and variant
        return ModelSource, (str(self), self.revision, self.weights_variant)


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load from a local `folder`; for a Hub id, the id, revision and snapshot commit it came from."""

    folder: Path
    name: str
    hub_id: str | None = None
    revision: str | None = None
    weights_variant: str | None = None
    snapshot: str | None = None

    def record(self) -> dict:
        """What a run records to be repeated: the name as given, and for a Hub id its revision and the commit of the
        snapshot that was loaded (pass it as the revision to load exactly these weights again)."""
        record = {"model": self.name}
        if self.hub_id:
            record.update(revision=self.revision, snapshot=self.snapshot)
        if self.weights_variant:
            record["weights_variant"] = self.weights_variant
        return record


def resolve_model(model, revision: str | None = None, weights_variant: str | None = None) -> ResolvedModel:
    """The local folder `model` names (see the module docstring); revision / weights_variant default to a
    ModelSource's own. A ResolvedModel is returned as it is."""
    if isinstance(model, ResolvedModel):
        return model
    revision = revision or getattr(model, "revision", None) or None
    weights_variant = weights_variant or getattr(model, "weights_variant", None) or None
    name = os.fspath(model)
    local = Path(name).expanduser()
    if local.exists():
        if revision:
            raise ValueError(f"model revision {revision!r} picks a version of a Hugging Face Hub model, but {name} is "
                             "a local folder; drop the revision (--model-revision, model.revision) to load the folder")
        return ResolvedModel(local, name, weights_variant=weights_variant)
    if isinstance(model, os.PathLike) or looks_like_path(name) or not HUB_ID.match(name):
        raise FileNotFoundError(f"model folder {name} does not exist; give a diffusers pipeline folder (one saved "
                                "with save_pretrained) or a Hugging Face Hub id (owner/name)")
    folder = _fetch(name, revision, weights_variant)
    return ResolvedModel(folder, name, name, revision, weights_variant, _snapshot_commit(folder))


def looks_like_path(name: str) -> bool:
    """Absolute, or starting with . or ~: meant as a folder, never as a Hub id."""
    return name.startswith((".", "~")) or os.path.isabs(name)


def download_command(hub_id: str, revision: str | None = None) -> str:
    """The shell command that downloads `hub_id` into a folder: `hf download` (huggingface_hub >= 0.34), else the
    older `huggingface-cli download`."""
    from huggingface_hub import __version__

    major, minor = (int(n) for n in re.match(r"(\d+)\.(\d+)", __version__).groups())
    tool = "hf" if (major, minor) >= (0, 34) else "huggingface-cli"
    pinned = f" --revision {revision}" if revision else ""
    return f"{tool} download {hub_id}{pinned} --local-dir DIR"


def _fetch(hub_id: str, revision: str | None, weights_variant: str | None) -> Path:
    from diffusers import DiffusionPipeline

    from .base import _quiet_image_processor_fallback

    _quiet_image_processor_fallback()  # finding the pipeline class imports the image processors it names
    try:
        with _cache_fallback_notices_off():
            # safety_checker=None: never loaded here (evaluation follows the paper, without the NSFW filter), so
            # never downloaded; use_safetensors: no pickled weights are fetched
            folder = DiffusionPipeline.download(hub_id, revision=revision, variant=weights_variant,
                                                use_safetensors=True, safety_checker=None)
    except Exception as exc:  # the Hub client and diffusers raise many types (offline, network, missing repo ...)
        raise FileNotFoundError(_not_fetched(hub_id, revision, exc)) from exc
    return Path(folder)


def _not_fetched(hub_id: str, revision: str | None, exc: Exception) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    at = f" at revision {revision!r}" if revision else ""
    then = (f"download it where the Hub is reachable, `{download_command(hub_id, revision)}`, then give that folder "
            "as the model (--model DIR, or model.path DIR in a train config)")
    causes = list(_causes(exc))
    refusal = next((e for e in causes if isinstance(e, (RepositoryNotFoundError, RevisionNotFoundError,
                                                         GatedRepoError))), None)
    if refusal is not None:
        return (f"model {hub_id}{at} is no local folder, and the Hugging Face Hub did not give it "
                f"({_one_line(refusal)}); check the id and revision (a gated model needs its licence accepted on "
                f"the Hub and a login token), or {then}")
    reason = ("HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE
              else f"the Hub could not be reached ({_one_line(causes[-1])})")  # the root cause: what failed first
    return (f"model {hub_id}{at} is no local folder and is not in the Hugging Face Hub cache "
            f"({constants.HF_HUB_CACHE}), and {reason}; {then}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _snapshot_commit(folder: Path) -> str | None:
    """The commit hash a Hub cache snapshot folder is named by (models--owner--name/snapshots/<commit>)."""
    return folder.name if folder.parent.name == "snapshots" else None


@contextmanager
def _cache_fallback_notices_off():
    """Offline by choice (HF_HUB_OFFLINE), loading from the cache is the plan, not news: drop diffusers' and the Hub
    client's warnings that they could not reach the Hub and fell back to it. Online they stay: they explain a slow
    or failed load."""
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("diffusers", "huggingface_hub")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
