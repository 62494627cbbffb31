"""Build a network from a model spec and load its weights without executing untrusted code.

A model spec is one of:

- ``torchvision:NAME``: any torchvision classification architecture (random init unless weights);
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
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import nn

from analysis.safetensors_io import SafetensorsError, load_safetensors

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

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

# Keys under which a model records its own input convention in safetensors metadata.
META_INPUT_SIZE = "neuronscope.input_size"
META_MEAN = "neuronscope.mean"
META_STD = "neuronscope.std"
# The names of the output classes in logit order, comma-separated (shown on the classes page).
META_CLASSES = "neuronscope.classes"


class ModelError(ValueError):
    """A model spec or weights file that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class InputSpec:
    """How images become model input: square size in pixels and per-channel normalisation."""

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """Map RGB images in [0, 1] (N, 3, H, W) to what the model expects."""
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        return (images - mean) / std


@dataclass
class LoadedModel:
    """A network in eval mode, with what produced it and the input it expects."""

    module: nn.Module
    spec: str
    input: InputSpec
    weights_path: str | None
    weights_sha256: str
    metadata: dict[str, str] = field(default_factory=dict)


def build_architecture(spec: str) -> nn.Module:
    """Instantiate the network named by ``spec`` (see the module docstring)."""
    if spec.startswith("torchvision:"):
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

    Export it with a dynamic batch dimension so the sweep can use any batch size.
    """
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        program = torch.export.load(str(path))
    except Exception as error:
        raise ModelError(f"{path} is not a torch.export program: {_first_line(error)}") from None
    return torch.export.unflatten(program)


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a weights file as ``(state_dict, metadata)`` without unpickling code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
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
    input_size: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    seed: int = 0,
) -> LoadedModel:
    """Build ``spec``, load ``weights`` strictly, and settle the input convention.

    Random initialisation is seeded, so an un-weighted architecture still hashes to the same
    run. Explicit ``input_size``/``mean``/``std`` win over those recorded in the weights' metadata,
    which win over the ImageNet defaults.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_architecture(spec)
    metadata: dict[str, str] = {}
    if weights is not None:
        state, metadata = read_state_dict(Path(weights))
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ModelError(
                f"weights {weights} do not fit {spec}: {_first_line(error, limit=300)}"
            ) from None
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    recorded = InputSpec(
        size=int(metadata.get(META_INPUT_SIZE, InputSpec.size)),
        mean=_triple(metadata[META_MEAN]) if META_MEAN in metadata else IMAGENET_MEAN,
        std=_triple(metadata[META_STD]) if META_STD in metadata else IMAGENET_STD,
    )
    input_spec = InputSpec(
        size=input_size or recorded.size,
        mean=mean or recorded.mean,
        std=std or recorded.std,
    )
    return LoadedModel(
        module=module,
        spec=spec,
        input=input_spec,
        weights_path=str(Path(weights).expanduser().resolve()) if weights else None,
        weights_sha256=weights_sha256(module),
        metadata=metadata,
    )


def parse_triple(text: str) -> tuple[float, float, float]:
    """Parse ``"R,G,B"`` into three floats (used for --mean and --std)."""
    return _triple(text)


def _triple(text: str) -> tuple[float, float, float]:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ModelError(f"expected three numbers R,G,B, got {text!r}") from None
    if len(values) != 3:
        raise ModelError(f"expected three numbers R,G,B, got {text!r}")
    return values  # type: ignore[return-value]


def _first_line(error: BaseException, limit: int = 200) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:limit]
