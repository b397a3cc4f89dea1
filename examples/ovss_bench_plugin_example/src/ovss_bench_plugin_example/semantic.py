"""``sam3-semantic``: SAM 3's semantic head times presence, no instance masks.

An ablation of SegEarth-OV3's fusion and a template for plugins that use the shared SAM 3 backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from robustbench_ovss.method import Method, MethodContext
from robustbench_ovss.registry import METHODS


# Registering here too makes `--plugins ovss_bench_plugin_example.semantic` work without installing.
@METHODS.register("sam3-semantic")
class SemanticOnly(Method):
    name = "sam3-semantic"
    version = "1"
    needs_backend = True
    description = "SAM 3 semantic head x presence over the full vocabulary (example plugin)"
    # every constant is a parameter with its default, so it is recorded in the results
    defaults: dict[str, Any] = {"bucket_size": 32, "prob_thd": None}

    def setup(self, ctx: MethodContext) -> None:
        super().setup(ctx)
        # one prompt per alias; remember which class each prompt belongs to
        self.prompts = [alias for aliases in ctx.vocabulary for alias in aliases]
        self.prompt_class = torch.tensor([c for c, aliases in enumerate(ctx.vocabulary) for _ in aliases])
        self.text = ctx.backend.encode_text(self.prompts)  # cached by the backend, shared with other methods
        self.thd = ctx.prob_thd if self.params["prob_thd"] is None else float(self.params["prob_thd"])
        self._stats: dict[str, Any] = {}

    def resolved_params(self) -> dict[str, Any]:
        return {**self.params, "prob_thd": self.thd}

    @torch.inference_mode()
    def predict(self, image: np.ndarray) -> torch.Tensor:
        assert self.ctx is not None
        backend = self.ctx.backend
        feats = backend.encode_image(image)
        out = backend.decode(feats, self.text, range(len(self.prompts)), self.params["bucket_size"])
        prob = torch.sigmoid(out.semantic_logits.float()) * out.presence.float()[:, None, None]  # [P, h, w]
        prob = F.interpolate(prob[None], size=image.shape[:2], mode="bilinear", align_corners=False)[0]
        classes = torch.full((self.ctx.num_classes, *image.shape[:2]), -1.0, device=prob.device)
        idx = self.prompt_class.to(prob.device)[:, None, None].expand_as(prob)
        classes = classes.scatter_reduce(0, idx, prob, reduce="amax")  # best alias per class
        score, pred = classes.max(0)
        if self.ctx.bg_idx is not None and self.thd > 0:
            pred[score < self.thd] = self.ctx.bg_idx
        self._stats = {"prompts_decoded": len(self.prompts)}
        return pred.long()

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)
