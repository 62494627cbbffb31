"""Build a network from a model spec and load its weights without executing untrusted code.

A model spec is one of:

- ``torchvision:NAME``: any torchvision classification architecture (random init unless weights:
  a file, or the name of torchvision's pretrained weights, ``IMAGENET1K_V2`` or ``DEFAULT``, read
  from the torch hub cache, :mod:`analysis.zoo`);
- ``timm:NAME`` or ``timm:NAME.TAG``: any timm model; with a pretrained tag, its weights from the
  Hugging Face hub cache; its input configuration either way (timm is an optional extra);
- a path to a ``torch.export`` program (``.pt2``, saved with ``torch.export.save``). TorchScript
  files are refused with an explanation: loaded TorchScript modules silently ignore forward
  hooks, and ``torch.jit`` is deprecated;
- ``package.module:callable``: an importable callable returning an ``nn.Module``. The operator
  names it on the command line; it is never taken from an upload.

Weights come from ``.safetensors`` or a state-dict ``.pt/.pth`` read with
``torch.load(weights_only=True)``, which refuses any pickle that would construct arbitrary objects.
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from analysis.exported import (
    ProgramInputError,
    accept_any_batch,
    input_constraints,
    name_original_classes,
    read_constraints,
)
from analysis.metadata import (
    META_INPUT_CHANNELS,
    META_INPUT_SIZE,
    META_MEAN,
    META_RESIZE,
    META_STD,
)
from analysis.resize import ResizePolicy
from analysis.safetensors_io import SafetensorsError, load_safetensors, looks_like_safetensors

if TYPE_CHECKING:
    from analysis.zoo import Pretrained

# torchvision's own DenseNet checkpoints name "norm.1" what the module calls "norm1" (torchvision
# renames them on load the same way).
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# A greyscale model's defaults: ImageNet's statistics of the luminance below.
GREY_MEAN = (0.449,)
GREY_STD = (0.226,)
# ITU-R 601 luma, the weights Pillow's convert("L") uses: how an RGB image becomes grey.
LUMA = (0.299, 0.587, 0.114)

# One architecture per torchvision CNN family: what the tests and benchmarks/layers.py cover.
CNN_FAMILIES = (
    "alexnet",
    "vgg11_bn",
    "resnet18",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "densenet121",
    "googlenet",
    "inception_v3",
    "squeezenet1_1",
    "shufflenet_v2_x0_5",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mnasnet0_5",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "convnext_tiny",
)


class ModelError(ValueError):
    """A model spec or weights file that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class InputSpec:
    """How images become model input: size (height, width), channels and normalisation.

    Images are always handled as RGB in [0, 1] (loaded, cut into patches, averaged into NFs,
    rendered); a greyscale model (``channels == 1``) has its images read as grey, R = G = B, and
    :meth:`normalise` hands it their luminance, so stimuli drawn in colour reach it as the
    luminance a camera would have recorded. A square size may be given as one int.
    """

    size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.size, int):
            object.__setattr__(self, "size", (self.size, self.size))
        if self.channels not in (1, 3):
            raise ModelError(f"models must take 1 (grey) or 3 (RGB) channels, not {self.channels}")
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) == 1 and self.channels == 3:
                values *= 3
            if len(values) != self.channels:
                raise ModelError(
                    f"--{name} needs {self.channels} number(s) for a {self.kind} model, "
                    f"got {len(values)}"
                )
            object.__setattr__(self, name, values)

    @property
    def height(self) -> int:
        return self.size[0]

    @property
    def width(self) -> int:
        return self.size[1]

    @property
    def grey(self) -> bool:
        return self.channels == 1

    @property
    def kind(self) -> str:
        """``greyscale`` or ``RGB``, for messages."""
        return "greyscale" if self.grey else "RGB"

    def describe(self) -> str:
        """``224×224 RGB``: the input in words, for messages and tables."""
        return f"{self.height}×{self.width} {self.kind}"

    def blank(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """One all-zero model input (1, channels, H, W): what layer listings trace."""
        return torch.zeros(1, self.channels, self.height, self.width, device=device)

    def probe(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """One seeded random image (1, 3, H, W) in [0, 1], normalised as the model expects: an
        input whose every pixel differs, for checks that a rewritten model computes the same."""
        pixels = torch.rand(
            1, 3, self.height, self.width, generator=torch.Generator().manual_seed(0)
        )
        return self.normalise(pixels.to(device))

    def as_seen(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images (N, 3, H, W) as the model sees them: a greyscale model's luminance in all
        three channels (an optimised image's colours are invisible to it, so not shown)."""
        return luma(images).expand_as(images).clone() if self.grey else images

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """Map RGB images in [0, 1] (N, 3, H, W) to what the model expects."""
        if self.grey:
            images = luma(images)
        shape = (1, self.channels, 1, 1)
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(shape)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(shape)
        return (images - mean) / std


def luma(images: torch.Tensor) -> torch.Tensor:
    """The luma (N, 1, H, W) of RGB images (N, 3, H, W): what a greyscale camera records."""
    weights = torch.tensor(LUMA, device=images.device, dtype=images.dtype)
    return (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)


@dataclass
class LoadedModel:
    """A network in eval mode, with what produced it and the input it expects."""

    module: nn.Module
    spec: str
    input: InputSpec
    weights_path: str | None
    weights_sha256: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def resize(self) -> ResizePolicy:
        """How the model wants an image file resized: its zoo configuration's evaluation
        transform, or the whole image squeezed to the input."""
        return ResizePolicy.of(self.metadata.get(META_RESIZE, "whole"))


def build_architecture(spec: str) -> nn.Module:
    """Instantiate the network named by ``spec`` (see the module docstring)."""
    if spec.startswith("timm:"):
        from analysis.zoo import ZooError, timm_zoo

        try:
            return timm_zoo.build(spec.removeprefix("timm:"))
        except ZooError as error:
            raise ModelError(str(error)) from None
    if spec.startswith("torchvision:"):
        # Imported here, not at the top: torchvision's ``ops`` import ``torch._dynamo``, a
        # second of start-up that a model of one's own never needs.
        import torchvision

        name = spec.removeprefix("torchvision:")
        available = set(torchvision.models.list_models(module=torchvision.models))
        if name not in available:
            raise ModelError(f"unknown torchvision model {name!r} (try e.g. vgg16, resnet50)")
        return torchvision.models.get_model(name, weights=None)
    path = Path(spec).expanduser()
    if path.suffix == ".pt2":
        return _load_exported_program(path)
    if path.suffix in {".pt", ".pth", ".ts", ".torchscript"}:
        raise ModelError(
            f"{path}: TorchScript modules ignore forward hooks, so their layers cannot be "
            "recorded; save the model with torch.export.save(...) as a .pt2 file instead "
            "(or pass a state_dict with --weights)"
        )
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise ModelError(f"cannot import {spec!r}: {error}") from None
        model = factory()
        if not isinstance(model, nn.Module):
            raise ModelError(f"{spec!r} returned {type(model).__name__}, not an nn.Module")
        return model
    raise ModelError(
        f"unrecognised model spec {spec!r}: use torchvision:NAME, a TorchScript file "
        "or package.module:callable"
    )


def _load_exported_program(path: Path) -> nn.Module:
    """A ``torch.export`` program, unflattened so its submodules keep their names and hooks.

    Its input constraints are read once (:mod:`analysis.exported`): a program whose batch is
    fixed or bounded is refused, since every stage picks its own batch size.
    """
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        program = torch.export.load(str(path))
    except Exception as error:
        raise ModelError(f"{path} is not a torch.export program: {_first_line(error)}") from None
    try:
        constraints = read_constraints(program)
        module = accept_any_batch(torch.export.unflatten(program), constraints)
    except ProgramInputError as error:
        raise ModelError(f"{path}: {error}") from None
    name_original_classes(module, program)
    return module


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a weights file as ``(state_dict, metadata)`` without unpickling code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    if path.suffix == ".safetensors" or looks_like_safetensors(path):
        try:
            return load_safetensors(path)
        except SafetensorsError as error:
            raise ModelError(str(error)) from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = str(error).split("WeightsUnpickler error:")[-1].strip()
        if "Unsupported global" in detail:
            raise ModelError(
                f"{path} needs unpickling of arbitrary code, which neuronscope refuses; "
                f"save a state_dict or .safetensors instead ({_first_line(ValueError(detail))})"
            ) from None
        raise ModelError(
            f"{path} is not a readable weights file: {_first_line(ValueError(detail))}"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ModelError(f"{path} is not a readable weights file: {_first_line(error)}") from None
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise ModelError(f"{path} does not hold a state_dict of tensors")
    return {key.removeprefix("module."): value for key, value in loaded.items()}, {}


def weights_sha256(module: nn.Module) -> str:
    """Hash the parameters and buffers themselves, so a run is pinned to the exact numbers."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        data = tensor.detach().cpu().contiguous()
        digest.update(str(data.dtype).encode())
        digest.update(str(tuple(data.shape)).encode())
        if data.numel():
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_model(
    spec: str,
    weights: str | Path | None = None,
    input_size: int | tuple[int, int] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    seed: int = 0,
) -> LoadedModel:
    """Build ``spec``, load ``weights`` strictly, and settle the input convention.

    Random initialisation is seeded, so an un-weighted architecture still hashes to the same
    run. Explicit ``input_size``/``mean``/``std`` win over those recorded in the weights' metadata,
    which win over the defaults (224 px, ImageNet's statistics). The channel count is recorded in
    the metadata or read from the first convolution: one channel makes a greyscale model.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_architecture(spec)
    metadata: dict[str, str] = {}
    pretrained = _zoo_weights(module, spec, weights)
    if pretrained is not None:
        state, metadata, weights = pretrained.state, pretrained.metadata, pretrained.path
    elif weights is not None:
        state, metadata = read_state_dict(Path(weights))
    if spec.startswith("timm:"):
        from analysis.zoo import timm_zoo

        metadata = {**timm_zoo.preprocessing(module), **metadata}
    if weights is not None:
        if spec.startswith("torchvision:densenet"):
            state = {_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state.items()}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ModelError(
                f"weights {weights} do not fit {spec}: {_first_line(error, limit=300)}"
            ) from None
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    channels = int(metadata.get(META_INPUT_CHANNELS, 0)) or input_channels(module)
    grey = channels == 1
    input_spec = InputSpec(
        size=input_size or parse_size(metadata.get(META_INPUT_SIZE, "224")),
        mean=mean or _numbers(metadata.get(META_MEAN), GREY_MEAN if grey else IMAGENET_MEAN),
        std=std or _numbers(metadata.get(META_STD), GREY_STD if grey else IMAGENET_STD),
        channels=channels,
    )
    constraints = input_constraints(module)
    if not constraints.accepts(*input_spec.size):
        raise ModelError(
            f"{spec} cannot take its input size {input_spec.height}×{input_spec.width}: "
            f"{constraints.describe()} (pass --input-size)"
        )
    return LoadedModel(
        module=module,
        spec=spec,
        input=input_spec,
        weights_path=str(Path(weights).expanduser().resolve()) if weights else None,
        weights_sha256=weights_sha256(module),
        metadata=metadata,
    )


def _zoo_weights(module: nn.Module, spec: str, weights: str | Path | None) -> Pretrained | None:
    """Pretrained weights from a zoo's local cache: a ``timm:NAME.TAG`` spec's (unless a file
    is given), or torchvision's named by ``weights`` (``IMAGENET1K_V2``, ``DEFAULT``)."""
    from analysis.zoo import ZooError

    try:
        if spec.startswith("timm:") and weights is None:
            from analysis.zoo import timm_zoo

            name = spec.removeprefix("timm:")
            return timm_zoo.pretrained(module, name) if timm_zoo.has_tag(name) else None
        if spec.startswith("torchvision:") and weights is not None:
            from analysis.zoo import torchvision_zoo

            if torchvision_zoo.is_weights_name(str(weights)):
                return torchvision_zoo.pretrained(spec.removeprefix("torchvision:"), str(weights))
    except ZooError as error:
        raise ModelError(str(error)) from None
    return None


def input_channels(module: nn.Module) -> int:
    """The channels the network reads: its first convolution's, when that is 1 (greyscale);
    3 otherwise. An exported program's input shape says it; a model whose first layer is no
    ``nn.Conv2d`` says so in its weights' metadata, or is taken as RGB."""
    if (channels := input_constraints(module).channels) is not None:
        return channels  # an exported program's input says it
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return 1 if first is not None and first.in_channels == 1 else 3


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"N"`` (square) or ``"H,W"`` (also ``HxW``) into (height, width) (--input-size)."""
    found = re.fullmatch(r"\s*(\d{1,5})\s*(?:[,x×]\s*(\d{1,5})\s*)?", text)
    if found is None:
        raise ModelError(f"expected an input size N or H,W in pixels, got {text!r}")
    height = int(found.group(1))
    width = int(found.group(2) or height)
    if min(height, width) < 8:
        raise ModelError(f"the input size must be at least 8 pixels a side, got {text!r}")
    return height, width


def parse_numbers(text: str) -> tuple[float, ...]:
    """Parse ``"R,G,B"`` or one number (greyscale, or the same for all three) for --mean/--std."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ModelError(f"expected three numbers R,G,B or one, got {text!r}") from None
    if len(values) not in (1, 3):
        raise ModelError(f"expected three numbers R,G,B or one, got {text!r}")
    return values


def _numbers(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    return parse_numbers(text) if text is not None else default


def _first_line(error: BaseException, limit: int = 200) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:limit]
