"""Data sets that need no download."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIGITS_CLASSES = 10
DIGITS_MAX_PIXEL = 16.0  # load_digits pixels are integers in 0..16


@dataclass(frozen=True)
class ImageSplit:
    """Train and test images (N, H, W, C) as float32 in [0, 1], with integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image, (H, W, C)."""
        return tuple(int(d) for d in self.x_train.shape[1:])


def stratified_split_indices(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Splits indices so each class keeps about the same share in train and test.

    Args:
        labels: One integer label per example.
        test_fraction: Share of each class that goes to test, rounded per class.
        seed: Seed for the shuffles; the same seed gives the same split.

    Returns:
        (train indices, test indices), each shuffled.
    """
    rng = np.random.default_rng(seed)
    test_parts = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        test_parts.append(members[: int(round(len(members) * test_fraction))])
    test = np.concatenate(test_parts)
    in_test = np.zeros(len(labels), dtype=bool)
    in_test[test] = True
    train = np.flatnonzero(~in_test)
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def load_digits_split(seed: int, test_fraction: float = 0.2) -> ImageSplit:
    """Loads scikit-learn's bundled 8x8 digits (1797 images, no download) as a stratified split.

    Args:
        seed: Seed for the split.
        test_fraction: Share of each class held out for test.

    Returns:
        Images shaped (N, 8, 8, 1) scaled to [0, 1], labels 0-9.
    """
    from sklearn.datasets import load_digits  # imported here: scikit-learn costs ~1 s and only this needs it

    digits = load_digits()
    images = (digits.images.astype(np.float32) / DIGITS_MAX_PIXEL)[..., np.newaxis]
    labels = digits.target.astype(np.int64)
    train, test = stratified_split_indices(labels, test_fraction, seed)
    return ImageSplit(images[train], labels[train], images[test], labels[test], DIGITS_CLASSES)
