"""PE API ``diffusers``: a pre-trained pixel-space diffusion model (``UNet2DModel``) loaded with 🤗 diffusers.

Config::

    api: {name: diffusers, options: {model: DIR_OR_HUB_NAME, trained_on: [imagenet], num_inference_steps: 50, batch_size: 64}}

``trained_on`` is required: the runner refuses a model trained on the private dataset's family (e.g.
``google/ddpm-cifar10-32`` for CIFAR-10: it was fitted on CIFAR-10's own training images).

``model`` is a Hugging Face hub name or a local folder. A folder may be a pipeline saved with
``DDPMPipeline(unet, scheduler).save_pretrained(dir)`` (``unet/`` + ``scheduler/``), or a flat folder holding
a ``UNet2DModel.save_pretrained`` output plus the scheduler's ``scheduler_config.json``. Hub repos use the same
two layouts. Whatever scheduler the model was saved with, sampling uses ``DDIMScheduler.from_config`` of its
config (same noise schedule and prediction type), deterministic (η = 0), ``num_inference_steps`` steps.

* RANDOM_API: DDIM from pure Gaussian noise; the noise is drawn from the given ``torch.Generator`` (on its
  device, for all samples at once, then moved to the model's device batch by batch), so a seed fixes the
  samples whatever ``batch_size`` is, and the global RNG is never used.
* VARIATION_API (SDEdit, Meng et al. 2022): noise each image to the DDIM timestep at fraction ``strength`` of
  the schedule (``ceil(strength · num_inference_steps)`` of the steps, at least one, so strength is
  quantised to 1/num_inference_steps) with ``scheduler.add_noise`` and the generator's noise, then denoise
  with DDIM to t = 0. ``strength = 1`` starts at the first (noisiest) DDIM timestep: almost a fresh sample.

``state`` is the image at the model's resolution and channels (N, C_model, H_model, W_model), in **[0, 1]**
(the model's [-1, 1] output mapped by x/2 + 1/2 and clamped); variations start from it, not from the resized
``images``. A population whose state has the dataset's shape instead (e.g. public images in [0, 1]) is
accepted too and taken into model space like any input: grey repeated to RGB, resized bilinearly.

``images`` is the state brought to the dataset (``info``): an RGB model on a grey dataset is converted with
the ITU-R 601 luminance 0.299 R + 0.587 G + 0.114 B; then resized (bilinear, antialiased) to info's H×W.
Refused: a grey model for an RGB dataset, and models whose ``in_channels`` is neither 1 nor 3 (e.g. a latent
diffusion UNet with 4). A learned-variance UNet (``out_channels = 2 · in_channels``) uses its first half.

Class-conditional UNets (``UNet2DModel`` with ``num_class_embeds``, embedding type ``None``) are supported:
such an instance has ``conditional = True`` when its ``num_class_embeds`` equals the dataset's classes
(dataset class i is model class i), and requested labels go in as ``class_labels``. Label -1 (unlabelled PE)
gets a class drawn uniformly from the generator, afresh for each sample and each variation. The class
attribute stays ``conditional = False`` (it is what PE can know before a model is loaded).

Missing weights raise :class:`PEWeightsMissing`: nothing is downloaded when ``HF_HUB_OFFLINE=1`` (read at each
load, not only when huggingface_hub is imported), and the local Hugging Face cache is always tried first.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dpgen_bench.data.types import DatasetInfo

from .pe_api import GenerationAPI, Population, register_pe_api

INSTALL_HINT = "pip install 'dpgen-bench[diffusers]'"
LUMINANCE = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights for RGB → grey."""

_UNET_CONFIG = "config.json"
_SCHEDULER_CONFIG = "scheduler_config.json"
# (UNet subfolder, scheduler subfolder) of the layouts accepted, in order of preference.
_LAYOUTS = (("unet", "scheduler"), ("", ""))
_CONFIG_PATTERNS = ["model_index.json", _UNET_CONFIG, _SCHEDULER_CONFIG, f"unet/{_UNET_CONFIG}",
                    f"scheduler/{_SCHEDULER_CONFIG}"]


class PEWeightsMissing(FileNotFoundError):
    """The diffusion model is neither on disk nor in the Hugging Face cache (and could not be downloaded)."""


def missing_model_message(model: str, reason: str, local: bool = False) -> str:
    """One message: which model, why it is not available, and how to make it available."""
    if local:
        return (
            f"diffusion model {model!r} could not be found locally ({reason}): pass a folder written by "
            f"DDPMPipeline(unet, scheduler).save_pretrained(DIR) (or a UNet2DModel.save_pretrained folder with the "
            f"scheduler's {_SCHEDULER_CONFIG} beside it), or a Hugging Face hub name (one trained on data other than the private dataset's family)"
        )
    return (
        f"diffusion model {model!r} could not be found locally or downloaded ({reason}). Either run once with "
        f"network access (HF_HUB_OFFLINE unset) to fill the Hugging Face cache at ~/.cache/huggingface "
        f"(or $HF_HOME), or save it with DDPMPipeline.from_pretrained({model!r}).save_pretrained(DIR) on a "
        f"machine that has it, copy DIR here and pass model: DIR (a local folder)"
    )


def _offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE as set now (huggingface_hub reads them once, at import)."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.is_offline_mode() or flag.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _looks_like_path(model: str) -> bool:
    """A name that can only be a filesystem path (a hub id is ``name`` or ``owner/name``)."""
    return (model.startswith((".", "/", "~", "\\")) or model.count("/") > 1 or "\\" in model
            or (len(model) > 1 and model[1] == ":"))


def _layout(folder: Path) -> tuple[str, str] | None:
    """(UNet subfolder, scheduler subfolder) of ``folder``, or None if it holds neither layout."""
    for unet, sched in _LAYOUTS:
        if (folder / unet / _UNET_CONFIG).is_file() and (folder / sched / _SCHEDULER_CONFIG).is_file():
            return unet, sched
    return None


def _layout_error(model: str, folder: Path) -> str:
    return (
        f"{model!r} ({folder}) holds no UNet2DModel + scheduler: expected unet/{_UNET_CONFIG} and "
        f"scheduler/{_SCHEDULER_CONFIG} (a pipeline saved with DDPMPipeline(unet, scheduler).save_pretrained) or "
        f"{_UNET_CONFIG} and {_SCHEDULER_CONFIG} side by side"
    )


def _hub_config_snapshot(model: str, cache_dir: str | None, offline: bool) -> Path:
    """The cached (or freshly downloaded) config files of hub repo ``model``: cache first, network second."""
    from huggingface_hub import snapshot_download

    errors: list[str] = [f"no local folder {Path(model).expanduser()}; as a hub repo:"]
    for local_only in (True, False):
        if not local_only and offline:
            errors.append("HF_HUB_OFFLINE is set, so no download was tried")
            break
        try:
            folder = Path(snapshot_download(model, allow_patterns=_CONFIG_PATTERNS, cache_dir=cache_dir,
                                            local_files_only=local_only))
        except Exception as e:  # not cached, no network, no such repo, invalid name: all mean "not available"
            errors.append(f"{'cache' if local_only else 'download'}: {_one_line(e)}")
            continue
        if _layout(folder) is not None:
            return folder
        if not local_only:
            raise ValueError(_layout_error(model, folder))
        errors.append("cache: incomplete snapshot")
    raise PEWeightsMissing(missing_model_message(model, " ".join([errors[0], "; ".join(errors[1:])])))


def load_diffusion_model(model: str, cache_dir: str | None = None) -> tuple[Any, dict[str, Any], str]:
    """(UNet2DModel in eval mode, scheduler config dict, where it came from) for a local folder or hub name.

    Raises :class:`PEWeightsMissing` if the model is not on disk / in the cache and cannot be downloaded.
    """
    from diffusers import UNet2DModel

    path = Path(model).expanduser()
    if path.is_dir():
        layout = _layout(path)
        if layout is None:
            raise PEWeightsMissing(missing_model_message(model, _layout_error(model, path), local=True))
        unet_sub, sched_sub = layout
        try:
            unet = UNet2DModel.from_pretrained(str(path), subfolder=unet_sub or None, local_files_only=True,
                                               low_cpu_mem_usage=False)
        except OSError as e:  # config present, weights file absent
            raise PEWeightsMissing(missing_model_message(model, f"in {path}: {e}", local=True)) from e
        config = json.loads((path / sched_sub / _SCHEDULER_CONFIG).read_text())
        return unet.eval(), config, str(path)
    if path.exists() or _looks_like_path(model):
        reason = f"{path} is not a folder" if path.exists() else f"no local folder {path}"
        raise PEWeightsMissing(missing_model_message(model, reason, local=True))

    offline = _offline()
    folder = _hub_config_snapshot(model, cache_dir, offline)
    unet_sub, sched_sub = _layout(folder)  # type: ignore[misc]
    errors: list[str] = []
    for local_only in (True, False):
        if not local_only and offline:
            errors.append("HF_HUB_OFFLINE is set, so no download was tried")
            break
        try:
            unet = UNet2DModel.from_pretrained(model, subfolder=unet_sub or None, cache_dir=cache_dir,
                                               local_files_only=local_only, low_cpu_mem_usage=False)
        except Exception as e:  # weights not cached / not downloadable
            errors.append(f"{'cache' if local_only else 'download'} of the UNet weights: {_one_line(e)}")
            continue
        config = json.loads((folder / sched_sub / _SCHEDULER_CONFIG).read_text())
        return unet.eval(), config, f"hub:{model}"
    raise PEWeightsMissing(missing_model_message(model, "; ".join(errors)))


def _int_option(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"PE API 'diffusers': {name} must be an integer >= {minimum}, got {value!r}")
    return value


@register_pe_api("diffusers")
class DiffusersAPI(GenerationAPI):
    """A diffusers ``UNet2DModel`` sampled with DDIM (RANDOM_API) and SDEdit (VARIATION_API); see the module doc.

    Options: ``model`` (hub name or local folder, required), ``trained_on`` (data families the model was
    trained on, required by the runner's check: never the private dataset's), ``num_inference_steps`` (DDIM steps of a full
    sample, default 50), ``batch_size`` (images per UNet call, default 64), ``cache_dir`` (Hugging Face cache
    folder; default: huggingface_hub's, ~/.cache/huggingface/hub).
    """

    conditional = True
    """Before a model is loaded: it may be (PE allows labelled runs). Per instance: True only for a
    class-conditional UNet whose classes match the dataset's; labelled PE refuses an instance without."""
    channels = (1, 3)

    trained_on = None  # per model: the required option trained_on (trained_on_for)

    @classmethod
    def trained_on_for(cls, options: dict[str, Any]) -> tuple[str, ...]:
        """The ``trained_on`` option: the data families the model was trained on (required; a hub name says
        nothing the runner can check)."""
        declared = options.get("trained_on")
        if declared is None:
            raise ValueError(f"PE API 'diffusers': declare what model {options.get('model')!r} was trained on with "
                             f"option trained_on: [families] (e.g. [imagenet]); a model trained on the private "
                             f"dataset's family is refused")
        return (declared,) if isinstance(declared, str) else tuple(declared)

    @classmethod
    def describe_options(cls, options: dict[str, Any]) -> str:
        return f"model {options.get('model')!r}"

    def __init__(self, info: DatasetInfo, device: str | torch.device = "cpu", *, model: str | None = None,
                 num_inference_steps: int = 50, batch_size: int = 64, cache_dir: str | None = None,
                 trained_on: Any = None, **options: Any) -> None:
        super().__init__(info, device=device, **options)
        try:
            from diffusers import DDIMScheduler
        except ImportError as e:
            raise ImportError(f"PE API 'diffusers' needs the diffusers package: {INSTALL_HINT}") from e
        if not isinstance(model, str) or not model:
            raise ValueError("PE API 'diffusers' needs option model: a Hugging Face hub name or a local folder saved "
                             "with save_pretrained, of a model trained on data other than the private dataset's "
                             "family (declare it with option trained_on)")
        self.model_name = model
        self.num_inference_steps = _int_option("num_inference_steps", num_inference_steps)
        self.batch_size = _int_option("batch_size", batch_size)

        unet, scheduler_config, self.source = load_diffusion_model(model, cache_dir=cache_dir)
        cfg = unet.config
        self.model_channels = int(cfg.in_channels)
        size = cfg.sample_size
        self.model_size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if self.model_channels not in (1, 3):
            raise ValueError(f"diffusion model {model!r} has in_channels={self.model_channels}: only pixel-space "
                             f"models with 1 (grey) or 3 (RGB) channels are supported (a latent diffusion UNet is not)")
        if info.channels not in (1, 3):
            raise ValueError(f"dataset {info.name!r} has {info.channels} channels; PE API 'diffusers' makes 1 or 3")
        if self.model_channels == 1 and info.channels == 3:
            raise ValueError(f"diffusion model {model!r} generates grey images but dataset {info.name!r} is RGB")
        if int(cfg.out_channels) not in (self.model_channels, 2 * self.model_channels):
            raise ValueError(f"diffusion model {model!r} has in_channels={self.model_channels} but "
                             f"out_channels={cfg.out_channels}: not a noise/sample predictor this API can use")

        self.num_class_embeds: int | None = None
        if cfg.num_class_embeds is not None:
            if cfg.class_embed_type is not None:
                raise ValueError(f"diffusion model {model!r} has class_embed_type={cfg.class_embed_type!r}; "
                                 f"only plain class embeddings (num_class_embeds, class_embed_type None) are supported")
            self.num_class_embeds = int(cfg.num_class_embeds)
        self.conditional = self.num_class_embeds is not None and self.num_class_embeds == info.num_classes

        self.unet = unet.to(self.device)
        self.scheduler = DDIMScheduler.from_config(scheduler_config)
        self.scheduler.set_timesteps(self.num_inference_steps)
        self.timesteps = self.scheduler.timesteps.clone()

    # -- spaces -------------------------------------------------------------------------------------------

    def _model_shape(self) -> tuple[int, int, int]:
        return (self.model_channels, *self.model_size)

    def to_dataset(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space images in [0, 1] → the dataset's channels and H×W, float32 in [0, 1] on CPU."""
        x = x.float()
        if self.model_channels == 3 and self.info.channels == 1:
            w = torch.tensor(LUMINANCE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * w).sum(dim=1, keepdim=True)
        if tuple(x.shape[-2:]) != (self.info.height, self.info.width):
            x = F.interpolate(x, size=(self.info.height, self.info.width), mode="bilinear", align_corners=False,
                              antialias=True)
        return x.clamp(0.0, 1.0).cpu()

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Dataset-space images in [0, 1] → model channels (grey repeated to RGB) and resolution, in [0, 1]."""
        x = x.float()
        if x.shape[1] == 1 and self.model_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != self.model_size:
            x = F.interpolate(x, size=self.model_size, mode="bilinear", align_corners=False, antialias=True)
        return x.clamp(0.0, 1.0)

    # -- sampling -----------------------------------------------------------------------------------------

    def _class_labels(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
        """What goes in as ``class_labels`` (None for an unconditional UNet); refuses impossible requests."""
        labels = labels.long().cpu()
        requested = labels != -1
        if self.num_class_embeds is None:
            if bool(requested.any()):
                raise ValueError(f"PE API 'diffusers' with model {self.model_name!r} is unconditional: it cannot "
                                 f"generate a requested class (got labels other than -1); run PE with labelled: false")
            return None
        if bool(requested.any()):
            if not self.conditional:
                raise ValueError(f"diffusion model {self.model_name!r} has {self.num_class_embeds} classes but dataset "
                                 f"{self.info.name!r} has {self.info.num_classes}: it cannot generate the dataset's "
                                 f"classes; run PE with labelled: false")
            bad = labels[requested & ((labels < 0) | (labels >= self.num_class_embeds))]
            if bad.numel():
                raise ValueError(f"labels {bad.unique().tolist()} outside [0, {self.num_class_embeds}) (or -1)")
        drawn = torch.randint(0, self.num_class_embeds, labels.shape, generator=generator, device=generator.device)
        return torch.where(requested, labels, drawn.cpu())

    def _eps(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        out = self.unet(x, t, class_labels=class_labels).sample
        return out[:, : self.model_channels]

    @torch.no_grad()
    def _denoise(self, x: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        """DDIM (η = 0, deterministic) from ``x`` at ``timesteps[0]`` down to t = 0; [-1, 1] → [0, 1]."""
        for t in timesteps:
            eps = self._eps(x, t.to(self.device), class_labels)
            x = self.scheduler.step(eps, t, x, eta=0.0).prev_sample
        return (x / 2 + 0.5).clamp(0.0, 1.0)

    def _run(self, x0: torch.Tensor | None, labels: torch.Tensor, start: int, generator: torch.Generator) -> Population:
        """Noised ``x0`` (None: pure noise), then DDIM from ``timesteps[start]``, in batches of ``batch_size``.

        All randomness (classes for label -1, then the noise of every sample) is drawn from ``generator`` before
        batching, so the result does not depend on ``batch_size``."""
        n = int(labels.shape[0])
        class_labels = self._class_labels(labels, generator)
        noise = torch.randn((n, *self._model_shape()), generator=generator, device=generator.device)
        timesteps = self.timesteps[start:]
        states = []
        for lo in range(0, n, self.batch_size):
            hi = min(lo + self.batch_size, n)
            eps = noise[lo:hi].to(self.device, torch.float32)
            if x0 is None:
                x = eps * self.scheduler.init_noise_sigma
            else:
                clean = x0[lo:hi].to(self.device, torch.float32) * 2 - 1
                x = self.scheduler.add_noise(clean, eps, timesteps[:1].repeat(hi - lo).to(self.device))
            cl = None if class_labels is None else class_labels[lo:hi].to(self.device)
            states.append(self._denoise(x, timesteps, cl).float().cpu())
        state = torch.cat(states) if states else torch.empty((0, *self._model_shape()))
        return Population(self.to_dataset(state), labels.long().cpu().clone(), state)

    def random(self, labels: torch.Tensor, generator: torch.Generator) -> Population:
        return self._run(None, labels, 0, generator)

    def variation(self, population: Population, strength: float, generator: torch.Generator) -> Population:
        strength = float(strength)
        if not (0.0 < strength <= 1.0):
            raise ValueError(f"variation strength must be in (0, 1], got {strength}")
        steps = len(self.timesteps)
        n_denoise = min(steps, max(1, math.ceil(strength * steps - 1e-9)))
        state = population.state
        if tuple(state.shape[1:]) == self._model_shape():
            x0 = state
        elif tuple(state.shape[1:]) == self.info.shape:
            x0 = self.to_model(state)
        else:
            raise ValueError(f"population state of shape {tuple(state.shape[1:])} per sample is neither the model's "
                             f"{self._model_shape()} nor the dataset's {self.info.shape}")
        return self._run(x0, population.labels, steps - n_denoise, generator)

    def describe(self) -> str:
        classes = f", {self.num_class_embeds} classes" if self.num_class_embeds is not None else ", unconditional"
        return (f"diffusers {self.model_name} (UNet2DModel {self.model_channels}x{self.model_size[0]}x"
                f"{self.model_size[1]}{classes}; DDIM eta=0, {self.num_inference_steps} steps; "
                f"SDEdit variations)")
