"""Reference outputs from Meta's SAM 3 package (facebookresearch/sam3), through its public API only.

Used by ``ovss-bench verify-checkpoint``. Nothing here is CPU-specific: with Meta's package installed
as published (CUDA, torchvision) it runs with ``device="cuda"``. Meta's package hard-codes CUDA in a
few places; docs/backend.md says how it was run on a CPU for the table there (stand-ins kept outside
this repository).

What it calls:

- ``sam3.model_builder.build_sam3_image_model(checkpoint_path=..., load_from_HF=False, device=...,
  eval_mode=True)``; importing ``sam3.model_builder`` enables TF32 on an Ampere-or-newer GPU;
- ``sam3.model.sam3_image_processor.Sam3Processor(model, resolution=1008, device=...)``:
  ``set_image`` (its transform: resize to 1008 x 1008, bilinear with antialias, /255, mean = std =
  0.5; then the ViT and neck) and, per prompt, ``reset_all_prompts`` + ``set_text_prompt`` (the text
  encoder, then ``model.forward_grounding`` with the dummy geometric prompt).

The processor keeps only thresholded detections, so ``model.forward_grounding`` is wrapped for the
duration of each call to read its raw output dict: ``presence_logit_dec`` [1, 1] (unclamped: Meta's
decoder discards its clamp), ``pred_logits`` [1, Q, 1], ``pred_masks`` [1, Q, h, w],
``semantic_seg`` [1, 1, h, w]; the prompt features are ``backbone_out["language_features"]``
[L, 1, D] (sequence first) with ``language_mask`` [1, L] (True = padding).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import OvssError


def meta_available() -> bool:
    """True when Meta's ``sam3`` package can be imported."""
    import importlib.util

    return importlib.util.find_spec("sam3") is not None and importlib.util.find_spec("sam3.model_builder") is not None


def meta_outputs(sam3_pt: str, image: np.ndarray, prompts: list[str], device: str = "cpu",
                 model: Any = None) -> dict[str, torch.Tensor]:
    """Meta's SAM 3 on one uint8 RGB [H, W, 3] image, each prompt on its own (as SegEarth-OV-3 calls it).

    Returns float32 CPU tensors, N = len(prompts): ``presence_logits`` [N], ``pred_logits`` [N, Q],
    ``pred_masks`` [N, Q, h, w], ``semantic_seg`` [N, h, w], ``text_features`` [N, L, D] with
    ``text_valid`` bool [N, L] (True = a real token), ``pixel_values`` [1, 3, 1008, 1008]. No sigmoid
    is applied. ``model``: an already built Meta image model (then ``sam3_pt`` is not read).
    """
    if not meta_available():
        raise OvssError("Meta's sam3 package is not installed: pip install it (github facebookresearch/sam3) "
                        "to compare against it, or pass --reference backend-transformers")
    import PIL.Image
    from sam3.model.sam3_image_processor import Sam3Processor
    from sam3.model_builder import build_sam3_image_model
    from torchvision.transforms import v2

    if model is None:
        model = build_sam3_image_model(checkpoint_path=str(sam3_pt), load_from_HF=False, device=device, eval_mode=True)
    processor = Sam3Processor(model, resolution=1008, device=device)
    pil = PIL.Image.fromarray(np.ascontiguousarray(image))
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("presence_logits", "pred_logits", "pred_masks",
                                                          "semantic_seg", "text_features", "text_valid")}
    with torch.inference_mode():
        pixels = processor.transform(v2.functional.to_image(pil).to(device)).unsqueeze(0)
        state = processor.set_image(pil)
        captured: list[dict[str, torch.Tensor]] = []
        forward = model.forward_grounding

        def capture(*args: Any, **kwargs: Any) -> Any:
            out = forward(*args, **kwargs)
            captured.append(out)
            return out

        model.forward_grounding = capture
        try:
            for prompt in prompts:
                captured.clear()
                processor.reset_all_prompts(state)
                state = processor.set_text_prompt(prompt, state)
                if len(captured) != 1:
                    raise OvssError(f"Meta's Sam3Processor.set_text_prompt ran forward_grounding {len(captured)} times; "
                                    f"this version of the sam3 package is not supported")
                out = captured[0]
                rows["presence_logits"].append(out["presence_logit_dec"].reshape(-1)[0])
                rows["pred_logits"].append(out["pred_logits"][0, :, 0])
                rows["pred_masks"].append(out["pred_masks"][0])
                rows["semantic_seg"].append(out["semantic_seg"][0, 0])
                rows["text_features"].append(state["backbone_out"]["language_features"][:, 0])
                rows["text_valid"].append(~state["backbone_out"]["language_mask"][0].bool())
        finally:
            del model.forward_grounding  # back to the class's method
    result = {k: torch.stack(v).detach().cpu() for k, v in rows.items()}
    result = {k: v.float() if v.is_floating_point() else v for k, v in result.items()}
    result["pixel_values"] = pixels.detach().float().cpu()
    return result
