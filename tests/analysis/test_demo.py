"""The demo's parts: deterministic stimuli and a trainable CNN that records its input convention."""

from __future__ import annotations

import numpy as np

from analysis.demo.model import DEMO_SPEC
from analysis.demo.stimuli import CLASSES, generate
from analysis.demo.train import MIN_STEPS, train_demo_cnn, training_epochs
from analysis.models import load_model


def test_stimuli_are_deterministic_and_cover_every_class():
    images, labels = generate(2, seed=3)
    again, _ = generate(2, seed=3)
    other, _ = generate(2, seed=4)
    assert len(CLASSES) >= 10
    assert images.shape == (2 * len(CLASSES), 64, 64, 3) and images.dtype == np.uint8
    assert sorted(set(labels.tolist())) == list(range(len(CLASSES)))
    assert np.array_equal(images, again) and not np.array_equal(images, other)
    assert images.std() > 20  # not blank


def test_training_records_accuracy_and_input_convention(tmp_path):
    images, labels = generate(6, seed=0)
    report = train_demo_cnn(images, labels, tmp_path / "demo.safetensors", epochs=1, min_steps=1)
    assert report.epochs == 1
    loaded = load_model(DEMO_SPEC, weights=tmp_path / "demo.safetensors")
    assert loaded.input.size == (64, 64)
    assert np.allclose(loaded.input.mean, report.mean, atol=1e-5)
    assert float(loaded.metadata["neuronscope.val_accuracy"]) == round(report.val_accuracy, 4)


def test_a_small_stimulus_set_still_gets_enough_optimiser_steps():
    """60 stimuli fit in one batch: eight epochs were eight steps, and the network stayed at
    chance. The full demo's 4,000 stimuli take 54 steps an epoch and keep their eight epochs."""
    assert training_epochs(60) == MIN_STEPS == 40
    assert training_epochs(4000) == 8
    assert training_epochs(300, epochs=8) == 10  # 255 training images: 4 steps an epoch
