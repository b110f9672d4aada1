"""What the preference methods (dpo, inpo, spo) train: the backbone's denoiser itself, against a frozen reference.

`tune.params lora` (default) puts a peft LoRA on the denoiser's attention projections (`tune.lora_targets`, rank
`tune.lora_rank`); it starts as the identity (B = 0), and the reference is the same denoiser with the adapter switched
off, so no second copy is held. `tune.params full` trains every weight of the denoiser (in float32) and keeps a frozen
copy as the reference. The trainable weights are kept in float32 whatever train.mixed_precision says (diffusers'
training scripts do the same), so small updates are not rounded away.

Export, when training ends (BackboneTrainable.export), into the run folder:
    unet/ (or transformer/)          the tuned denoiser as a diffusers model folder (a LoRA is fused into it first):
                                     what `model.denoiser` / `--denoiser` read
    pytorch_lora_weights.safetensors (LoRA runs) the LoRA in the diffusers format: what `model.lora` / `--lora` and
                                     `pipe.load_lora_weights` read
    pipeline/                        with tune.export_pipeline: the whole pipeline with the tuned denoiser (and the
                                     model folder's sampler.json), for commands that take a model folder
    tuned.json                       method, what was trained, base model, step, files, and the denoiser's hash
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from ..utils.atomic_files import write_json
from ..backbones.variants import content_hash, forget_content_hash
from ..objectives import get_method, method_names
from .denoisers import PreferenceDenoiser

ADAPTER = "agsm_tuned"
LORA_FILE = "pytorch_lora_weights.safetensors"
SUMMARY = "tuned.json"


class AdapterSwitch:
    """`enabled` switches the trained LoRA on and off (the validator draws the base model with it off); for a fully
    trained denoiser there is nothing to switch, and the base round only ever runs before the first step."""

    def __init__(self, model, lora: bool):
        self.model, self.lora, self._enabled = model, lora, True

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if self.lora and bool(value) != self._enabled:
            (self.model.enable_adapters if value else self.model.disable_adapters)()
        self._enabled = bool(value)


class BackboneTrainable:
    """A LoRA on the denoiser, or the whole denoiser, trained by a preference objective; see the module docstring."""

    kind = "backbone"
    checkpoint_names = ("params", "ema")  # no moving average: `averaged` is None

    def __init__(self, config, backbone):
        method, tune = config.method.name, config.tune
        needs = get_method(method).unet_only  # why the method needs a UNet ('' when any backbone will do)
        if needs and backbone.family != "unet":
            anywhere = [n for n in method_names() if get_method(n).trains == "backbone" and not get_method(n).unet_only]
            raise ValueError(f"method.name {method} {needs} and needs a UNet backbone "
                             f"(SD1.5, SDXL); {config.model.path} is an {backbone.family} ({backbone.architecture}) "
                             f"model: use method.name {' or '.join(anywhere)}")
        if config.model.lora and not config.model.fuse_lora:
            raise ValueError("preference methods train on top of model.lora only when it is fused (model.fuse_lora "
                             "true): the reference switches the trained adapter off and must keep the given LoRA")
        self.backbone, self.tune, self.method = backbone, tune, config.method
        self.model = model = backbone.denoiser
        self.lora = tune.params == "lora"
        if self.lora:
            from peft import LoraConfig

            lora_config = LoraConfig(r=tune.lora_rank, lora_alpha=tune.lora_alpha or tune.lora_rank,
                                     init_lora_weights="gaussian", target_modules=list(tune.lora_targets))
            try:
                model.add_adapter(lora_config, adapter_name=ADAPTER)
            except ValueError as exc:
                raise ValueError(f"tune.lora_targets {tune.lora_targets} cannot take a LoRA in this "
                                 f"{type(model).__name__} ({exc}); name its attention projections (to_q, to_k, to_v, "
                                 "to_out.0)") from None
            self.reference_model = None
        else:
            model.requires_grad_(True)
            self.reference_model = None
        for p in model.parameters():  # the trained weights in float32 (see the module docstring)
            if p.requires_grad:
                p.data = p.data.float()
        if not self.lora:
            self.reference_model = copy.deepcopy(model).requires_grad_(False)
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.trained, self.averaged = _Weights(self.named), None
        self.switch = AdapterSwitch(model, self.lora)
        # only a method that ranks its own samples (spo) names a scorer; it loads on first use
        self.denoiser = PreferenceDenoiser(backbone, self, getattr(config.method, "scorer", None))

    def parameters(self):
        return [p for _, p in self.named]

    def named_parameters(self):
        return iter(self.named)

    def after_step(self) -> None:
        """Nothing to average: the reference stays the start."""

    def norms(self) -> dict[str, float]:
        with torch.no_grad():
            return {"trained_norm": float(torch.sqrt(sum(p.float().pow(2).sum() for _, p in self.named)))}

    @contextmanager
    def reference(self):
        """Within this block the backbone predicts with the frozen reference."""
        if self.lora:
            self.model.disable_adapters()
            try:
                yield
            finally:
                self.model.enable_adapters()
            return
        name = self.backbone.denoiser_name
        setattr(self.backbone, name, self.reference_model)
        try:
            yield
        finally:
            setattr(self.backbone, name, self.model)

    def export(self, out: Path, config, step: int, num_images: int) -> Path:
        """Write the tuned denoiser (and LoRA, and optionally the whole pipeline) into `out`; returns the denoiser's
        folder. The LoRA is fused into the denoiser here, so this ends the run's use of the backbone."""
        out = Path(out)
        name = self.backbone.denoiser_name
        files = {}
        if self.lora:
            files["lora"] = str(self._save_lora(out, name))
            self.model.fuse_lora(adapter_names=[ADAPTER])
            self.model.unload_lora()
            forget_content_hash(self.model)  # fusing wrote the weights through .data
        folder = _save_folder(out / name, self.model.save_pretrained)
        files["denoiser"] = str(folder)
        if self.tune.export_pipeline:
            files["pipeline"] = str(self._save_pipeline(out / "pipeline", config.model.path))
        write_json(out / SUMMARY, {"method": config.method.name, "trained": self.tune.params, "step": step,
                                   "base_model": config.model.path, "trained_on": self.backbone.trained_on,
                                   "pairs_or_prompts": num_images, "files": files,
                                   "denoiser_hash": content_hash(self.model)})
        return folder

    def _save_lora(self, out: Path, name: str) -> Path:
        from peft.utils import get_peft_model_state_dict

        state = get_peft_model_state_dict(self.model, adapter_name=ADAPTER)
        metadata = self.model.peft_config[ADAPTER].to_dict()
        tmp = Path(tempfile.mkdtemp(prefix=".lora-", dir=out))
        try:
            type(self.backbone.pipe).save_lora_weights(tmp, **{f"{name}_lora_layers": state,
                                                             f"{name}_lora_adapter_metadata": metadata})
            (tmp / LORA_FILE).chmod(0o644)
            os.replace(tmp / LORA_FILE, out / LORA_FILE)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out / LORA_FILE

    def _save_pipeline(self, folder: Path, model_path: str) -> Path:
        def save(target: Path) -> None:
            self.backbone.pipe.save_pretrained(target)
            sampler = Path(model_path) / "sampler.json"  # the folder's recommended sampler travels with it
            if sampler.is_file():
                shutil.copyfile(sampler, target / "sampler.json")
        return _save_folder(folder, save)

    def remove(self) -> None:
        if self.lora and ADAPTER in getattr(self.model, "peft_config", {}):
            self.model.delete_adapters([ADAPTER])


def _save_folder(folder: Path, save) -> Path:
    """save(tmp) into a temporary sibling, then rename it into place: the folder is whole or absent."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    tmp.chmod(0o755)  # mkdtemp's private mode would stay on the published folder
    try:
        save(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


class _Weights:
    """The trained tensors by name, as a checkpoint stores them (state_dict / load_state_dict, checked strictly)."""

    def __init__(self, named):
        self.named = dict(named)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.named.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> None:
        if set(state) != set(self.named):
            missing, extra = sorted(set(self.named) - set(state)), sorted(set(state) - set(self.named))
            raise ValueError(f"the checkpoint's trained weights do not match this run's ({len(missing)} missing, e.g. "
                             f"{missing[:1]}; {len(extra)} unknown, e.g. {extra[:1]}): resume with the run's config")
        with torch.no_grad():
            for n, p in self.named.items():
                p.copy_(state[n].to(p.dtype))


def summary(out: Path) -> dict:
    """The tuned.json of a finished preference run."""
    return json.loads((Path(out) / SUMMARY).read_text())
