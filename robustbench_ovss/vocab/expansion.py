"""ActiveSAM's contextual prompt expansion: extra text tokens appended to each prompt (DESIGN §6.1).

Per prompt, ``num_neighbours`` semantic-neighbour tokens followed by ``num_hypernyms`` WordNet-hypernym
tokens, all in SAM 3's 256-d prompt space (after its 1024 -> 256 text projection). What the ActiveSAM
release does (``activesam/prompt_expansion/neighbor_tokens.py``, ``hypernym_tokens.py``,
``memory_bank.py``), and what is reproduced here:

- every text is first reduced to one 1024-d vector, the mean over its real (non-padding) tokens of
  the text encoder's embeddings before the 256-d projection (the backend's ``text_embeddings_1024``);
- neighbours: cosine similarity between the prompts' vectors, the prompt itself excluded; the
  ``num_neighbours`` most similar prompts; weights = softmax over those similarities (temperature
  1); token m = weight_m * vector of neighbour m (the vectors are *scaled*, not summed), then
  projected. Every neighbour token is attended to;
- hypernyms: the first noun synset's first ``num_hypernyms`` hypernyms (:mod:`.wordnet`), each
  encoded and pooled the same way, projected *without* weighting; slots with no hypernym are masked
  out (mask False) and hold zeros;
- the projection is SAM 3's text projection (a linear layer with bias), applied to the weighted
  vectors, so a weight scales only the linear part.

Deviation (tiny vocabularies only): with fewer than ``num_neighbours + 1`` prompts the missing
neighbour slots are masked; the release would pick the prompt itself with weight 0 (or fail).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["cosine_matrix", "neighbour_tokens", "hypernym_tokens", "ExpansionTokens"]


def cosine_matrix(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cosine similarity [P, P] of the rows of float ``x`` [P, D]."""
    xn = x / x.norm(dim=-1, keepdim=True).clamp_min(eps)
    return xn @ xn.T


def neighbour_tokens(
    emb: torch.Tensor, num_tokens: int = 2, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Similarity-weighted neighbour vectors, before the projection.

    Args:
        emb: float [P, D] pooled text vectors of the P prompts.
        num_tokens: neighbours per prompt (k).
        temperature: softmax temperature over the k cosine similarities.
    Returns:
        tokens float32 [P, k, D] (``softmax(sim / T)[m] * emb[neighbour m]``, zeros where invalid),
        valid bool [P, k], neighbour index int64 [P, k] (-1 where invalid). Ties in similarity go to
        the lower prompt index.
    """
    x = emb.float()
    p, d = x.shape
    k_eff = max(0, min(int(num_tokens), p - 1))
    tokens = torch.zeros((p, num_tokens, d), dtype=torch.float32, device=x.device)
    valid = torch.zeros((p, num_tokens), dtype=torch.bool, device=x.device)
    index = torch.full((p, num_tokens), -1, dtype=torch.long, device=x.device)
    if k_eff == 0:
        return tokens, valid, index
    sim = cosine_matrix(x)
    sim.fill_diagonal_(float("-inf"))
    vals, idx = torch.sort(sim, dim=1, descending=True, stable=True)
    vals, idx = vals[:, :k_eff], idx[:, :k_eff]
    weights = torch.softmax(vals / max(float(temperature), 1e-6), dim=1)
    tokens[:, :k_eff] = x[idx] * weights.unsqueeze(-1)
    valid[:, :k_eff] = True
    index[:, :k_eff] = idx
    return tokens, valid, index


def hypernym_tokens(
    hypernyms: Sequence[Sequence[str]],
    embed: Callable[[list[str]], torch.Tensor],
    num_tokens: int = 2,
    dim: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled hypernym vectors per prompt, before the projection.

    Args:
        hypernyms: per prompt, its hypernym phrases (already in the form the model encodes).
        embed: texts -> float [U, D] pooled vectors (called once, on the unique phrases).
        num_tokens: hypernym slots per prompt (k).
        dim: D, needed only when no prompt has a hypernym.
    Returns:
        tokens float32 [P, k, D] (zeros where masked) and valid bool [P, k].
    """
    unique: list[str] = []
    for hyps in hypernyms:
        for h in hyps[:num_tokens]:
            if h not in unique:
                unique.append(h)
    if unique:
        vecs = embed(unique).float()
        dim = vecs.shape[-1]
        device = vecs.device
    else:
        if dim is None:
            raise ValueError("dim is required when no prompt has a hypernym")
        vecs, device = None, torch.device("cpu")
    p = len(hypernyms)
    tokens = torch.zeros((p, num_tokens, int(dim)), dtype=torch.float32, device=device)
    valid = torch.zeros((p, num_tokens), dtype=torch.bool, device=device)
    pos = {h: i for i, h in enumerate(unique)}
    for i, hyps in enumerate(hypernyms):
        for m, h in enumerate(hyps[:num_tokens]):
            tokens[i, m] = vecs[pos[h]]
            valid[i, m] = True
    return tokens, valid


class ExpansionTokens:
    """The appended tokens of P prompts: features float [P, E, D_prompt] and mask bool [P, E] (True = real)."""

    def __init__(self, features: torch.Tensor, mask: torch.Tensor, neighbours: torch.Tensor, hypernyms: list[list[str]]):
        self.features = features
        self.mask = mask
        self.neighbours = neighbours  # int64 [P, k_n], -1 = none
        self.hypernyms = hypernyms  # per prompt, the phrases encoded

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        hypernyms: Sequence[Sequence[str]],
        embed: Callable[[list[str]], torch.Tensor],
        project: Callable[[torch.Tensor], torch.Tensor],
        num_neighbours: int = 2,
        num_hypernyms: int = 2,
        temperature: float = 1.0,
    ) -> ExpansionTokens:
        """Neighbour then hypernym tokens for ``texts`` (the prompts as encoded), projected to the prompt space."""
        emb = embed(list(texts)).float()
        n_tok, n_valid, n_idx = neighbour_tokens(emb, num_neighbours, temperature)
        h_tok, h_valid = hypernym_tokens(hypernyms, embed, num_hypernyms, dim=emb.shape[-1])
        raw = torch.cat([n_tok, h_tok.to(n_tok.device)], dim=1)  # [P, E, D_text]
        mask = torch.cat([n_valid, h_valid.to(n_valid.device)], dim=1)
        feats = project(raw).float()
        feats = feats * mask.unsqueeze(-1).to(feats.dtype)  # masked slots hold zeros, as in the release
        return cls(feats, mask, n_idx, [list(h[:num_hypernyms]) for h in hypernyms])
