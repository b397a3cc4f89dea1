"""One training step and the quick in-training evaluation of the demo model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..backends.base import TextFeatures
from ..backends.numerics import NUMERICS_CONFIG_KEY
from ..backends.preprocess import images_to_pixels, tokenize
from ..backends.sam3 import GEOMETRY_CLS_CONFIG_KEY, Sam3Backend
from ..backends.text_pooling import input_token_embeddings, masked_mean
from ..backends.tiny import MAX_TEXT_LENGTH
from ..methods.activesam import select_active
from ..metrics import confusion_matrix, summarize
from .batching import PromptBatch, Scene, make_targets, sample_prompts
from .losses import instance_loss, presence_loss, prompt_softmax_loss, semantic_loss
from .model import TRAINED_WITH, PresenceHook, forward_prompts


def _tokenize(tokenizer, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids long [N, 32] and attention mask bool [N, 32], as the backend tokenises prompts."""
    ids, mask = tokenize(tokenizer, texts, MAX_TEXT_LENGTH, "cpu")
    return ids, mask.bool()


@dataclass
class TextBank:
    """Token ids of the training vocabulary (one prompt text per label id) and of its hypernyms."""

    texts: list[str]
    ids: torch.Tensor  # long [V, 32]
    mask: torch.Tensor  # bool [V, 32]
    hypernyms: list[list[str]]
    tokenizer: Any = field(default=None, repr=False)

    @classmethod
    def build(cls, tokenizer, texts: Sequence[str], hypernyms: Sequence[Sequence[str]] | None = None) -> TextBank:
        ids, mask = _tokenize(tokenizer, texts)
        hyps = [list(h) for h in hypernyms] if hypernyms is not None else [[] for _ in texts]
        return cls(list(texts), ids, mask, hyps, tokenizer)

    def features(self, model) -> torch.Tensor:
        """Projected per-token features [V, L, D] of every vocabulary text (``get_text_features``, as
        the sam3 backend encodes prompts)."""
        out = model.get_text_features(input_ids=self.ids, attention_mask=self.mask.long(), return_dict=True)
        return out.pooler_output

    def encode(self, model, with_extra: bool, extra_drop: float = 0.0, rng: np.random.Generator | None = None):
        """Projected per-token features [V, L(+4), D] and mask of every vocabulary text.

        With ``with_extra``, ActiveSAM's 4 appended tokens (2 neighbours, 2 hypernyms) are built by
        the project's own expansion code from the current weights; ``extra_drop`` masks each slot
        with that probability (robustness to missing tokens).
        """
        feats = self.features(model)
        if not with_extra:
            return feats, self.mask
        from ..vocab.expansion import ExpansionTokens

        # pooled as the sam3 backend's text_embeddings_1024 pools (input token embeddings), so the
        # tokens seen in training are the ones ActiveSAM appends at inference
        pooled = masked_mean(input_token_embeddings(model, self.ids), self.mask)
        cache: dict[str, torch.Tensor] = {}

        def embed(texts: list[str]) -> torch.Tensor:
            missing = [t for t in texts if t not in cache and t not in self.texts]
            if missing:
                ids, m = _tokenize(self.tokenizer, missing)
                pm = masked_mean(input_token_embeddings(model, ids), m)
                for t, v in zip(missing, pm):
                    cache[t] = v
            return torch.stack([pooled[self.texts.index(t)] if t in self.texts else cache[t] for t in texts])

        exp = ExpansionTokens.build(self.texts, self.hypernyms, embed, model.text_projection)
        emask = exp.mask.clone()
        if extra_drop > 0 and rng is not None:
            drop = torch.from_numpy(rng.random(emask.shape) < extra_drop)
            emask &= ~drop
        ef = exp.features * emask.unsqueeze(-1).to(exp.features.dtype)
        return torch.cat([feats, ef.to(feats.dtype)], 1), torch.cat([self.mask, emask], 1)


@dataclass
class StepConfig:
    images_per_step: int = 4
    prompts_per_image: int = 8
    size: int = 336
    low_size: int = 224
    low_prob: float = 0.25
    low_prompts: int = 0  # prompts per image at ``low_size`` (0 = prompts_per_image)
    extra_prob: float = 0.5
    extra_drop: float = 0.15
    aux_presence_weight: float = 0.5
    semantic_weight: float = 1.0
    rank_weight: float = 0.0  # prompt_softmax_loss (cross-entropy across an image's prompts); 0 = off
    instance_weight: float = 0.0  # set by the schedule (0 = presence + semantic only)


def lr_at(step: int, total: int, base: float, warmup: int, hold_frac: float = 0.6, final_frac: float = 0.05) -> float:
    """Linear warm-up, constant until ``hold_frac`` of the run, then cosine to ``final_frac`` x base."""
    if step < warmup:
        return base * (step + 1) / warmup
    hold = int(total * hold_frac)
    if step < hold:
        return base
    t = (step - hold) / max(1, total - hold)
    return base * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def apply_gradients(model, optimizer, loss: torch.Tensor, max_norm: float = 1.0) -> float:
    """Back-propagate ``loss``, clip the gradients' global norm to ``max_norm`` and step ``optimizer``.

    Returns the norm before clipping.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return float(norm)


def train_step(
    model,
    optimizer,
    hook: PresenceHook,
    bank: TextBank,
    batch_scenes: Sequence[Scene],
    num_classes: int,
    cfg: StepConfig,
    rng: np.random.Generator,
    classes: Sequence[int] | None = None,
    negative_pool: Sequence[Sequence[int]] | None = None,
) -> dict:
    """One forward/backward/update on ``batch_scenes`` (prompts sampled here); returns the loss terms.

    ``negative_pool``: per scene, preferred (hard) negative label ids for up to half the negatives.
    """
    model.train()
    low = rng.random() < cfg.low_prob
    size = cfg.low_size if low else cfg.size
    with_extra = (not low) and rng.random() < cfg.extra_prob
    pb: PromptBatch = sample_prompts(
        batch_scenes, num_classes, (cfg.low_prompts or cfg.prompts_per_image) if low else cfg.prompts_per_image,
        rng, classes=classes, negative_pool=negative_pool,
    )

    pixels = images_to_pixels([s.image for s in batch_scenes], size)
    feats, mask = bank.encode(model, with_extra, cfg.extra_drop, rng)
    out = forward_prompts(model, pixels, feats[pb.class_id], mask[pb.class_id], pb.image_index)
    hw = tuple(out.semantic_seg.shape[-2:])
    sem_t, valid, inst_t = make_targets(batch_scenes, pb, hw)

    l_pres = presence_loss(out.presence_logits, pb.present)
    all_pres = hook.value  # [layers, N, 1]
    l_aux = presence_loss(all_pres[:-1], pb.present) if all_pres is not None and all_pres.shape[0] > 1 else l_pres * 0
    l_sem = semantic_loss(out.semantic_seg[:, 0], sem_t, pb.present, valid=valid)
    loss = l_pres + cfg.aux_presence_weight * l_aux + cfg.semantic_weight * l_sem
    l_rank = torch.zeros(())
    if cfg.rank_weight > 0:
        l_rank = prompt_softmax_loss(out.semantic_seg[:, 0], out.presence_logits, sem_t, pb.image_index)
        loss = loss + cfg.rank_weight * l_rank
    stats = {}
    if cfg.instance_weight > 0:
        l_inst, stats = instance_loss(out.pred_masks, out.pred_logits, inst_t)
        loss = loss + cfg.instance_weight * l_inst
    else:
        l_inst = torch.zeros(())
    gn = apply_gradients(model, optimizer, loss)
    with torch.no_grad():
        p = out.presence_logits[:, 0] > 0
        acc = (p == pb.present).float().mean().item()
    return {
        "loss": float(loss.detach()),
        "presence": float(l_pres.detach()),
        "presence_aux": float(l_aux.detach()),
        "semantic": float(l_sem.detach()),
        "rank": float(l_rank.detach()),
        "instance": float(l_inst.detach()),
        "presence_acc": acc,
        "grad_norm": float(gn),
        "size": size,
        "extra": int(with_extra),
        "prompts": int(pb.class_id.numel()),
        **{k: v for k, v in stats.items()},
    }


def predict_scene(backend: Sam3Backend, scene: Scene, text: TextFeatures, size: int, conf: float = 0.5,
                  chunk: int = 64) -> dict[str, torch.Tensor]:
    """Every prompt of ``text`` on one scene, decoded by ``backend`` at input side ``size``.

    Returns presence [V], semantic probability [V, h, w] and instance probability [V, h, w]: per pixel
    the largest mask probability x score over the queries scoring above ``conf``.
    """
    dec = backend.decode(backend.encode_image(scene.image, size), text, range(len(text)), bucket_size=chunk)
    kept = dec.scores * (dec.scores > conf).float()
    instance = (dec.mask_logits.sigmoid() * kept[..., None, None]).amax(1)
    return {"presence": dec.presence, "semantic": dec.semantic_logits.sigmoid(), "instance": instance}


@torch.no_grad()
def evaluate(
    model,
    bank: TextBank,
    scenes: Sequence[Scene],
    num_classes: int,
    size: int = 336,
    preview_size: int = 224,
    conf: float = 0.5,
    classes: Sequence[int] | None = None,
) -> dict:
    """Quick metrics on held-out scenes with every vocabulary prompt.

    - presence recall / precision at 0.5 and active-set recall (ActiveSAM's rule,
      ``methods.activesam.select_active``, on the presence at ``preview_size``, no appended tokens);
    - mIoU of three fusions, argmax over the vocabulary: semantic x presence, SegEarth-style
      max(instance, semantic) x presence, and with the ground-truth presence (mask quality alone).
    """
    # the sam3 backend around the model being trained, computing as the model was trained
    backend = Sam3Backend.from_model(model, bank.tokenizer, geometry_cls=TRAINED_WITH[GEOMETRY_CLS_CONFIG_KEY],
                                     numerics=TRAINED_WITH[NUMERICS_CONFIG_KEY])
    text = backend.encode_text(bank.texts)
    conf_sem = np.zeros((num_classes, num_classes), np.int64)
    conf_fuse = np.zeros_like(conf_sem)
    conf_oracle = np.zeros_like(conf_sem)
    tp = fp = fn = 0
    act_hit = act_tot = 0
    act_size = []
    for s in scenes:
        r = predict_scene(backend, s, text, size, conf)
        present = torch.zeros(num_classes, dtype=torch.bool)
        present[[c for c in s.present() if c < num_classes]] = True
        p = r["presence"] > 0.5
        tp += int((p & present).sum())
        fp += int((p & ~present).sum())
        fn += int((~p & present).sum())
        if preview_size:
            preview = backend.encode_image(s.image, preview_size, presence_only=True)
            act = select_active(backend.presence(preview, text, range(len(text)), bucket_size=64))
            act_size.append(int(act.numel()))
            act_hit += int(present[act].sum())
            act_tot += int(present.sum())
        h, w = s.label.shape
        lab = torch.as_tensor(s.label.astype(np.int64))

        def seg(prob):
            up = F.interpolate(prob[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            if classes is not None:
                full = torch.zeros(num_classes, h, w)
                full[list(classes)] = up
                up = full
            return up.argmax(0)

        pr = r["presence"][:, None, None]
        conf_sem += np.asarray(confusion_matrix(seg(r["semantic"] * pr), lab, num_classes))
        conf_fuse += np.asarray(confusion_matrix(seg(torch.maximum(r["semantic"], r["instance"]) * pr), lab, num_classes))
        gt = present if classes is None else present[list(classes)]
        conf_oracle += np.asarray(confusion_matrix(seg(r["semantic"] * gt[:, None, None].float()), lab, num_classes))
    return {
        "presence_recall": tp / max(1, tp + fn),
        "presence_precision": tp / max(1, tp + fp),
        "false_pos_per_image": fp / max(1, len(scenes)),
        "active_recall": act_hit / max(1, act_tot) if preview_size else float("nan"),
        "active_size": float(np.mean(act_size)) if act_size else float("nan"),
        "miou_semantic": summarize(conf_sem)["miou"],
        "miou_fused": summarize(conf_fuse)["miou"],
        "miou_oracle_presence": summarize(conf_oracle)["miou"],
    }
