"""Tiny deterministic plugins for the harness tests: a dataset, methods and corruptions.

Import with ``--plugins harness_plugins.toy`` (tests/ on PYTHONPATH). Nothing here reads a label
inside a method: the segmenters look at colours only.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_ovss.corruptions import Corruption
from robustbench_ovss.datasets.base import Dataset
from robustbench_ovss.method import Method
from robustbench_ovss.registry import CORRUPTIONS, DATASETS, METHODS

COLOURS = np.array([[40, 40, 40], [220, 30, 30], [30, 200, 40], [30, 40, 210]], dtype=np.int16)


@DATASETS.register("toy")
class ToyDataset(Dataset):
    """``n`` images of ``h`` x ``w`` pixels: 1-3 coloured rectangles (red, green, blue) on grey, with a
    one-pixel ignore border. Everything follows from ``seed``."""

    name = "toy"
    default_root = ""
    bg_idx = 0
    prob_thd = 0.0

    def __init__(self, root: str = "", vocab: str | None = None, n: int = 6, seed: int = 0, h: int = 32, w: int = 48):
        self.root, self.n, self.seed, self.h, self.w = root, n, seed, h, w
        self.classes = [["background"], ["red"], ["green", "lime"], ["blue"]]
        if vocab:
            self.classes = [[a.strip() for a in line.split(",")] for line in Path(vocab).read_text().splitlines() if line.strip()]

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"toy|{self.n}|{self.seed}|{self.h}|{self.w}".encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> tuple[str, np.ndarray, np.ndarray]:
        if not 0 <= k < self.n:
            raise IndexError(k)
        rng = np.random.default_rng([self.seed, k])
        label = np.zeros((self.h, self.w), dtype=np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.integers(1, 4))
            y0, x0 = int(rng.integers(0, self.h - 8)), int(rng.integers(0, self.w - 8))
            y1, x1 = y0 + int(rng.integers(6, self.h // 2)), x0 + int(rng.integers(6, self.w // 2))
            label[y0:y1, x0:x1] = c
        image = COLOURS[label] + rng.integers(-25, 26, size=(self.h, self.w, 3))
        label[0, :] = label[-1, :] = 255
        label[:, 0] = label[:, -1] = 255
        image[0, :, :] = k  # the index, in the (ignored) top row, so a test method can fail on one image
        return f"toy_{k:03d}", np.clip(image, 0, 255).astype(np.uint8), label


@DATASETS.register("toy-b")
class ToyB(ToyDataset):
    """A second toy dataset with three classes (blue rectangles are ignored) and other image sizes."""

    name = "toy-b"

    def __init__(self, root: str = "", vocab: str | None = None, n: int = 4, seed: int = 7, h: int = 24, w: int = 40):
        super().__init__(root, vocab, n, seed, h, w)
        self.classes = self.classes[:3]

    def __getitem__(self, k: int) -> tuple[str, np.ndarray, np.ndarray]:
        image_id, image, label = super().__getitem__(k)
        return image_id.replace("toy", "toyb"), image, np.where(label == 3, 255, label).astype(np.uint8)


def colour_segment(image: np.ndarray, thresh: int, num_classes: int = 4) -> np.ndarray:
    """Class per pixel from colour alone: 1 + argmax channel where that channel is bright, else 0
    (0 too where that class does not exist in the vocabulary)."""
    im = image.astype(np.int16)
    cls = im.argmax(axis=2) + 1
    out = np.where(im.max(axis=2) > thresh, cls, 0)
    return np.where(out < num_classes, out, 0).astype(np.int64)


ORDER: list[str] = []  # names of the toy methods in predict-call order, for the method-order tests


def signal_self(call: int) -> None:
    """``OVSS_TOY_SIGNAL="SIGTERM@5"``: send this process that signal during toy-color's 5th predict call
    (a deterministic kill point for the process tests; several comma-separated are allowed)."""
    for spec in filter(None, os.environ.get("OVSS_TOY_SIGNAL", "").split(",")):
        name, at = spec.split("@")
        if int(at) == call:
            os.kill(os.getpid(), getattr(signal, name))


@METHODS.register("toy-color")
class ToyColour(Method):
    """Colour-threshold segmenter; ``fail_on`` = k >= 0 raises on clean image k (read from the top row),
    ``sleep`` slows each predict."""

    name = "toy-color"
    version = "1"
    defaults = {"thresh": 120, "sleep": 0.0, "fail_on": -1, "bad_output": False}
    calls = 0  # predict calls in this process, for resume tests
    fail_enabled = True  # tests switch a failure off to check that a rerun retries the failed unit
    interrupt_at = 0  # raise KeyboardInterrupt at this call number (Ctrl-C in the middle of a chunk)
    sigint_at = 0  # send this process SIGINT at this call number

    def predict(self, image: np.ndarray) -> Any:
        import torch

        type(self).calls += 1
        ORDER.append(self.name)
        signal_self(type(self).calls)
        if type(self).interrupt_at and type(self).calls == type(self).interrupt_at:
            raise KeyboardInterrupt
        if type(self).sigint_at and type(self).calls == type(self).sigint_at:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered while this prediction runs
        if self.params["sleep"]:
            time.sleep(self.params["sleep"])
        if self.params["fail_on"] >= 0 and type(self).fail_enabled and int(np.median(image[0])) == self.params["fail_on"]:
            raise RuntimeError(f"boom on image {self.params['fail_on']}")
        seg = colour_segment(image, self.params["thresh"], self.ctx.num_classes)
        self._active = sorted(int(c) for c in np.unique(seg) if (seg == c).sum() >= 10)
        if self.params["bad_output"]:
            return seg  # numpy, not a tensor: a contract violation
        return torch.from_numpy(seg)

    def stats(self) -> dict[str, Any]:
        return {"prompts_decoded": self.ctx.num_classes, "active": self._active}


@METHODS.register("toy-const")
class ToyConst(Method):
    """Predicts ``value`` everywhere."""

    name = "toy-const"
    version = "1"
    defaults = {"value": 0}
    calls = 0

    def predict(self, image: np.ndarray) -> Any:
        import torch

        type(self).calls += 1
        ORDER.append(self.name)
        return torch.full(image.shape[:2], int(self.params["value"]), dtype=torch.long)


@METHODS.register("toy-linear")
class ToyLinear(Method):
    """Class scores = pixel colours x a fixed 3 x C matrix, argmax: float arithmetic that autocast runs
    in bf16, with near-tied columns so that bf16 and fp32 disagree on some pixels."""

    name = "toy-linear"
    version = "1"
    defaults = {}

    @staticmethod
    def weights(num_classes: int) -> Any:
        import torch

        g = torch.Generator().manual_seed(0)
        return 1.0 + 0.004 * torch.rand(3, num_classes, generator=g)

    def predict(self, image: np.ndarray) -> Any:
        import torch

        x = torch.from_numpy(image).float().reshape(-1, 3) / 255.0
        scores = x @ self.weights(self.ctx.num_classes)
        self._dtype = str(scores.dtype)
        return scores.argmax(dim=1).reshape(image.shape[:2])

    def stats(self) -> dict[str, Any]:
        return {"score_dtype": self._dtype}


def _noise(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0, 12 * severity, image.shape), 0, 255).astype(np.uint8)


def _roll_pair(image: np.ndarray, label: np.ndarray, severity: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    s = 2 * severity + seed % 3
    return np.roll(image, s, axis=1), np.roll(label, s, axis=1)


CORRUPTIONS.register("toy_noise", Corruption("toy_noise", _noise, family="extra", reference="tests"))
CORRUPTIONS.register(
    "toy_roll", Corruption("toy_roll", lambda im, sev, seed: _roll_pair(im, im[..., 0], sev, seed)[0], _roll_pair, "extra", "tests")
)
