"""L_SSI: the semantic Shapley interaction loss of G2L (docs/method.md section 3).

Per video v, a cooperative game whose players are its sentences and, for each sentence j, the K
cells with the largest geodesic closeness G_j and the K cells most similar to s^c_j
(de-duplicated: M_v moment players). With ``sim (S_v M_v)`` the detached cosine of sentence and
moment features, the pairwise Shapley interaction ``I_ji`` of sentence j and moment i is
estimated by Monte Carlo (``g2l.ops.shapley.pairwise_interaction_batch``: true removal of absent
players, the textbook sign). Each sentence's interactions become a target distribution over the
moment players,

    t_j = softmax_i( I_ji / (tau * (max_i |I_ji| + 1e-8)) )

(interactions rescaled to [-1, 1], then sharpened by the contrastive temperature), and the model's
alignment distribution, with gradient, is

    A_j = softmax_i( cos(s^c_j, m^c_i) / tau )     over the same moment players,

    L_SSI = mean over sentences j of the batch of  - sum_i t_ji log A_ji.

Moments that cooperate with a sentence (their presence together raises the bidirectional alignment
more than apart) are pulled into alignment with it. The targets carry no gradient. Draws are seeded
by ``(seed, step)``, so a run and its resumption see the same targets.
"""

from __future__ import annotations

import torch
from torch import nn

from g2l.ops.shapley import pairwise_interaction_batch


def select_moment_players(closeness: torch.Tensor, similarity: torch.Tensor, num_players: int) -> torch.Tensor:
    """``(s C)`` closeness and similarity of one video's sentences -> sorted unique cell indices:
    the union over sentences of the top-K by closeness and the top-K by similarity."""
    k = min(num_players, closeness.shape[1])
    chosen = torch.cat([torch.topk(closeness, k, dim=1).indices.flatten(), torch.topk(similarity, k, dim=1).indices.flatten()])
    return torch.unique(chosen)


class ShapleyInteractionLoss(nn.Module):
    def __init__(self, *, num_players: int, num_samples: int, tau: float, seed: int = 0):
        super().__init__()
        self.num_players, self.num_samples, self.tau, self.seed = num_players, num_samples, tau, seed

    def forward(
        self,
        cell_contrast: torch.Tensor,  # (b C d), normalised
        sentence_contrast: torch.Tensor,  # (q d), normalised
        sentence_video: torch.Tensor,  # (q,)
        closeness: torch.Tensor,  # (q C), no gradient
        step: int = 0,
    ) -> torch.Tensor:
        games, players = [], []
        for v in torch.unique(sentence_video).tolist():
            rows = torch.nonzero(sentence_video == v).flatten()
            sims = sentence_contrast[rows] @ cell_contrast[v].T  # (s C), with gradient
            chosen = select_moment_players(closeness[rows], sims.detach(), self.num_players)  # (m,)
            games.append((rows, sims[:, chosen]))
            players.append(sims[:, chosen].detach().float().cpu().numpy())
        interactions = pairwise_interaction_batch(players, self.num_samples, seed=self.seed * 1_000_003 + step,
                                                  tau=self.tau)
        losses = []
        for (rows, sims), inter in zip(games, interactions):
            inter = torch.as_tensor(inter, dtype=sims.dtype, device=sims.device)  # (s m)
            scale = self.tau * (inter.abs().amax(dim=1, keepdim=True) + 1e-8)
            target = torch.softmax(inter / scale, dim=1)
            log_alignment = torch.log_softmax(sims / self.tau, dim=1)
            losses.append(-(target * log_alignment).sum(dim=1))
        return torch.cat(losses).mean()
