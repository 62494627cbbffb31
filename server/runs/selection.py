"""Which layers a run records: names and shell-style patterns, checked against the model, or the
default post-activation set (docs/algorithms.md §1)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from analysis.layers import LayerInfo, default_layers


class LayerSelectionError(ValueError):
    """A requested layer that does not exist or cannot be recorded."""


def expand_patterns(available: list[LayerInfo], requested: list[str]) -> list[str]:
    """Layer names, with shell-style patterns (``features.*.block.2``) expanded in execution
    order to the recordable layers they match; a pattern matching none is an error."""
    names: list[str] = []
    for item in requested:
        if not any(char in item for char in "*?["):
            names.append(item)
            continue
        matched = [layer.name for layer in available if fnmatchcase(layer.name, item)]
        matched = [name for name in matched if name not in names]
        if not matched:
            raise LayerSelectionError(f"no layer matches {item!r}; see `neuronscope layers`")
        names += matched
    return names


def select_layers(available: list[LayerInfo], requested: list[str] | None) -> list[LayerInfo]:
    """The requested layers (names or shell-style patterns) in execution order, or the default
    post-activation set (docs/algorithms.md §1)."""
    by_name = {layer.name: layer for layer in available}
    chosen = []
    names = expand_patterns(available, requested) if requested else default_layers(available)
    if not names:
        raise LayerSelectionError(
            "this model has no default layer (no convolution the listing recognises); "
            "see `neuronscope layers` and choose some with --layers"
        )
    for name in names:
        layer = by_name.get(name)
        if layer is None:
            near = [n for n in by_name if n.startswith(name.rsplit(".", 1)[0])][:8]
            hint = f"; similar: {', '.join(near)}" if near else "; see `neuronscope layers`"
            raise LayerSelectionError(f"unknown layer {name!r} (no module with a 4-D output){hint}")
        if not layer.hookable:
            raise LayerSelectionError(
                f"layer {name!r} runs {layer.calls} times per forward pass, so it has no single "
                "output; choose the block that contains it instead"
            )
        chosen.append(layer)
    order = {layer.name: i for i, layer in enumerate(available)}
    return sorted(chosen, key=lambda layer: order[layer.name])
