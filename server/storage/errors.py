"""Errors every reader shares, so the CLI and the web can turn them into one line or a 404."""

from __future__ import annotations


class NotFoundError(LookupError):
    """A run, layer, neuron, job or decomposition that does not exist; the message names which."""
