"""The noise that L_SSI's reliability rho_j reads, against the noise that is there (g2l/losses/ssi.py,
``estimate_reliability``; docs/method.md section 3).

A batch of games shaped like the public settings' (map-like cell features, bench/common.py; each
sentence near one cell of its video; the moment players of ``moment_games``) is estimated with
``--repeats`` seeds, by each estimator (``--kernels``: the Numba one, and the batched torch one,
which pads the games of a batch into one tensor). Over the seeds, the mean estimate stands in for
the exact interactions, and the empirical noise across moments, ``var_i (I_ji - mean over seeds)``,
is compared with what each formula predicts: the former ``mean_i se_ji^2`` (errors taken as independent) and the new
``m / (m - 1) (mean_i se_ji^2 - se(mean_i I_ji)^2)`` (the row's common error removed). Ratios near 1
are right. Then the reliability and the target's sharpness (the largest target probability) that
each formula gives, averaged over the sentences.

    python bench/ssi_reliability.py [--configs charades,activitynet] [--kernels numba,torch] [--videos 48] [--repeats 64]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PUBLIC, map_like_cells  # noqa: E402

SETTINGS = {"charades": (16, 5), "activitynet": (64, 7)}  # map side N, loss.ssi_num_players (configs/g2l_*.yaml)


def games_like(name: str, num_videos: int, seed: int = 0) -> list[np.ndarray]:
    """``(s_v m_v)`` cosines of each video's sentences with its moment players."""
    from g2l.losses.ssi import moment_games
    from g2l.models.grounding import per_video_cosine

    side, players = SETTINGS[name]
    start_idx, end_idx = torch.triu_indices(side, side)
    cells = map_like_cells(num_videos, start_idx, end_idx, 64, seed=seed)  # (b C d)
    g = torch.Generator().manual_seed(seed)
    mean_sentences = PUBLIC[name][2]
    counts = torch.clamp(torch.poisson(torch.full((num_videos,), mean_sentences - 1), generator=g) + 1, max=8).long()
    sentence_video = torch.repeat_interleave(torch.arange(num_videos), counts)  # (q,)
    anchors = torch.randint(0, cells.shape[1], (sentence_video.numel(),), generator=g)
    sentences = torch.nn.functional.normalize(cells[sentence_video, anchors]
                                              + 0.05 * torch.randn(sentence_video.numel(), 64, generator=g), dim=-1)
    closeness = torch.rand(sentence_video.numel(), cells.shape[1], generator=g)
    return [s.detach().numpy() for s in moment_games(per_video_cosine(sentences, cells, sentence_video), sentence_video,
                                                                closeness, players, num_videos)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="charades,activitynet")
    parser.add_argument("--kernels", default="numba,torch", help="estimators: numba, torch (g2l/losses/kernels.py)")
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=64, help="estimator seeds per game")
    parser.add_argument("--samples", type=int, default=512, help="draws per sentence (loss.ssi_num_samples)")
    parser.add_argument("--tau", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from g2l.losses.kernels import interaction_estimator
    from g2l.losses.ssi import estimate_reliability, interaction_target

    print(f"{args.repeats} seeds of each estimator, {args.samples} draws, tau {args.tau}; sums over sentences")
    print(f"{'setting':<12} {'kernel':<6} {'games':>5} {'rows':>5} {'m':>5} {'empirical/former':>17} {'empirical/new':>14} "
          f"{'rho former':>11} {'rho new':>8} {'max t former':>13} {'max t new':>10}")
    for name, kernel in ((n, k) for n in args.configs.split(",") for k in args.kernels.split(",")):
        games = [g for g in games_like(name, args.videos) if g.shape[1] >= 2]
        estimator = interaction_estimator(kernel)
        runs = [estimator(games, args.samples, seed=r, tau=args.tau, return_mean_stderr=True)
                for r in range(args.repeats)]
        empirical = former = new = 0.0
        rho_former, rho_new, top_former, top_new = [], [], [], []
        for g, game in enumerate(games):
            m = game.shape[1]
            est = np.stack([run[0][g] for run in runs])  # (R s m)
            se = np.stack([run[1][g] for run in runs])
            se_mean = np.stack([run[2][g] for run in runs])  # (R s)
            errors = est - est.mean(0)
            empirical += errors.var(axis=2, ddof=1).mean(0).sum() * args.repeats / (args.repeats - 1)
            former += (se**2).mean(2).mean(0).sum()
            new += (m / (m - 1) * np.clip((se**2).mean(2) - se_mean**2, 0, None)).mean(0).sum()
            for r in range(args.repeats):
                inter, err, err_mean = (torch.as_tensor(a[g]) for a in runs[r])
                rho_former.append(estimate_reliability(inter, err).flatten())
                rho_new.append(estimate_reliability(inter, err, err_mean).flatten())
                top_former.append(interaction_target(inter, err, args.tau).amax(1))
                top_new.append(interaction_target(inter, err, args.tau, err_mean).amax(1))
        mean = lambda parts: float(torch.cat(parts).double().mean())  # noqa: E731
        rows = sum(g.shape[0] for g in games)
        width = np.mean([g.shape[1] for g in games])
        print(f"{name:<12} {kernel:<6} {len(games):>5} {rows:>5} {width:>5.1f} {empirical / former:>17.3f} {empirical / new:>14.3f} "
              f"{mean(rho_former):>11.3f} {mean(rho_new):>8.3f} {mean(top_former):>13.3f} {mean(top_new):>10.3f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
