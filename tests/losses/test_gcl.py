"""L_GCL against loop-based references: G2L's form against its formula, and the authors' released
form against both its formula and a line-by-line port of their code. (The options the ablation
retired are tested at git tag ablation-2026-12.)"""

import math

import pytest
import torch
import torch.nn.functional as F

from g2l.losses.gcl import GeodesicContrastLoss
from g2l.losses.gcl_authors import AuthorsGeodesicContrastLoss
from g2l.ops.geodesic import geodesic_closeness_batch


def case(seed=0, b=3, cells=12, d=6):
    g = torch.Generator().manual_seed(seed)
    cell = F.normalize(torch.randn(b, cells, d, generator=g), dim=-1)
    sv = torch.tensor([0, 0, 1, 2, 2])
    sent = F.normalize(torch.randn(len(sv), d, generator=g), dim=-1)
    ious = torch.rand(len(sv), cells, generator=g)
    closeness = torch.rand(len(sv), cells, generator=g) * (torch.rand(len(sv), cells, generator=g) > 0.4)
    best = ious.argmax(dim=1)
    closeness[torch.arange(len(sv)), best] = 1.0
    return cell, sent, sv, ious, closeness, best[:, None]


def dot(a, b):
    return float(a.double() @ b.double())


def slow_gcl(cell, sent, sv, ious, closeness, gt, *, margin, tau, num_pos):
    total = 0.0
    for j in range(len(sv)):
        v, g, gj = int(sv[j]), closeness[j].tolist(), int(gt[j, 0])
        others = [c for c in range(len(g)) if c != gj and g[c] > 0]
        pos = [gj] + sorted(others, key=lambda c: -g[c])[: num_pos - 1]
        z = {p: (dot(sent[j], cell[v, p]) - margin) / tau for p in pos}
        negatives = 0.0
        for c in range(cell.shape[1]):
            if c not in pos and ious[j, c] < 0.5:
                gp = 0.0 if g[c] >= 1 else g[c]
                negatives += (1 + gp) * math.exp(dot(sent[j], cell[v, c]) / tau)
        for b in range(cell.shape[0]):
            if b != v:
                negatives += sum(math.exp(dot(sent[j], cell[b, c]) / tau) for c in range(cell.shape[1]))
        wsum = sum(g[p] for p in pos)
        denominator = sum(math.exp(z[p]) for p in pos) + negatives
        total += -sum(g[p] / wsum * (z[p] - math.log(denominator)) for p in pos)
    return total / len(sv)


@pytest.mark.parametrize("num_pos", [1, 3, 5])  # 1: G2L as configured; 5: the paper's
@pytest.mark.parametrize("seed", [0, 1])
def test_gcl_matches_its_formula(num_pos, seed):
    cell, sent, sv, ious, closeness, gt = case(seed)
    ours = GeodesicContrastLoss(margin=0.4, tau=0.1, num_positives=num_pos)(cell, sent, sv, gt, ious, closeness)
    slow = slow_gcl(cell, sent, sv, ious, closeness, gt, margin=0.4, tau=0.1, num_pos=num_pos)
    assert float(ours) == pytest.approx(slow, rel=1e-5)


def slow_authors(cell, sent, sv, ious, closeness, gt, *, num_pos, tau, negative_iou=0.5):
    """The issue's statement of the authors' loss, one sentence and one cell at a time."""
    terms, count = 0.0, 0
    num_videos, num_cells = cell.shape[0], cell.shape[1]
    # Per video: q and u of all its sentences against all other-video cells, and their means.
    q, u, bars = {}, {}, {}
    for v in range(num_videos):
        rows = [j for j in range(len(sv)) if int(sv[j]) == v]
        for j in rows:
            cos = [dot(sent[j], cell[b, c]) for b in range(num_videos) if b != v for c in range(num_cells)]
            top = max(cos)
            norm = sum(math.exp(x - top) for x in cos)
            q[j] = [1000 * math.exp(x - top) / norm for x in cos]
            u[j] = [dot(cell[v, int(gt[j, 0])], cell[b, c]) for b in range(num_videos) if b != v for c in range(num_cells)]
        if rows:
            bars[v] = (sum(sum(q[j]) for j in rows) / sum(len(q[j]) for j in rows),
                       sum(sum(u[j]) for j in rows) / sum(len(u[j]) for j in rows))
    for j in range(len(sv)):
        v, g, gj = int(sv[j]), closeness[j].tolist(), int(gt[j, 0])
        pos = sorted(range(num_cells), key=lambda c: -g[c])[:num_pos]
        lpos = [g[p] * math.exp(dot(sent[j], cell[v, p])) / tau for p in pos]
        logits = list(lpos) + [math.log(1e-6)]
        for c in range(num_cells):
            if ious[j, c] < negative_iou:
                gp = 0.0 if g[c] >= 1 else g[c]
                logits.append(math.exp(dot(sent[j], cell[v, c])) * (1 + gp) * math.exp(dot(cell[v, gj], cell[v, c])) / tau)
            else:
                logits.append(0.0)
        cos = [dot(sent[j], cell[b, c]) for b in range(num_videos) if b != v for c in range(num_cells)]
        q_bar, u_bar = bars[v]
        for x, qn, un in zip(cos, q[j], u[j]):
            w = (qn > q_bar) * un + (un > u_bar) * qn
            logits.append(x * w / tau)
        top = max(logits)
        log_total = top + math.log(sum(math.exp(x - top) for x in logits))
        for x in lpos:
            terms += x - log_total
            count += 1
    return -terms / count


def port_of_authors_code(cell, sent, sv, ious, closeness, *, geo_topk, tau, neg_iou=0.5, eps=1e-6, dtype=torch.float64):
    """The authors' ``loss_hard_sent`` (g2l/modeling/g2l/loss.py, ContrastiveLoss.__call__), line for
    line in float64 with one positive proposal per sentence (top_k = 1, their Charades and
    ActivityNet setting) and the geodesic closeness given instead of computed."""
    cell, sent = cell.to(dtype), sent.to(dtype)
    B = cell.shape[0]
    feat1ds_norm = cell.permute(0, 2, 1)  # B x C x N
    C = feat1ds_norm.shape[1]
    hard_sent_pos_list, hard_sent_neg_list = [], []
    for i in range(B):
        rows = torch.nonzero(sv == i).flatten()
        if len(rows) == 0:
            continue
        sent_feat, iou1d, geo_dis_intra = sent[rows], ious[rows].to(dtype), closeness[rows].to(dtype).clone()
        feat1d = feat1ds_norm[i]
        num_sent_this_batch = sent_feat.size(0)
        topk_index = torch.topk(iou1d, 1, dim=-1)[1]
        selected_feat = feat1d.index_select(dim=1, index=topk_index.reshape(-1)).reshape(C, -1, 1).permute(1, 2, 0)
        sent_same_video_feat = torch.exp(torch.mm(sent_feat, feat1d))
        pos_geo_topk = torch.topk(geo_dis_intra, geo_topk, -1)
        pos_same_video = torch.zeros(num_sent_this_batch, geo_topk, dtype=dtype)
        for j in range(num_sent_this_batch):
            pos_same_video[j] = sent_same_video_feat[j].index_select(dim=0, index=pos_geo_topk[1][j]) * pos_geo_topk[0][j]
        iou_neg_mask = (iou1d < neg_iou).to(dtype)
        feat1d_other_video = feat1ds_norm.index_select(dim=0, index=torch.arange(B)[torch.arange(B) != i])
        feat1d_other_video = feat1d_other_video.transpose(1, 0).reshape(C, -1)
        sent_neg_other_video = torch.mm(sent_feat, feat1d_other_video)
        intra_v2v = torch.exp(torch.mm(selected_feat.view(-1, C), feat1d))
        hard_sent_pos_list.append(pos_same_video.clone())
        geo_dis_intra[geo_dis_intra == 1.0] = 0.0
        hard_same_video = sent_same_video_feat * (geo_dis_intra + 1.0) * intra_v2v * iou_neg_mask
        hard_other_sent2video = F.softmax(sent_neg_other_video, dim=1) * 1000
        inter_v2v = torch.mm(selected_feat.view(-1, C), feat1d_other_video)
        inter_v2v_mask = (hard_other_sent2video > hard_other_sent2video.mean()).to(dtype) * inter_v2v + \
            (inter_v2v > inter_v2v.mean()).to(dtype) * hard_other_sent2video
        hard_other_neg = sent_neg_other_video * inter_v2v_mask
        hard_sent_neg_all = [pos_same_video.clone().unsqueeze(1), hard_same_video.clone().unsqueeze(1),
                             hard_other_neg.clone().unsqueeze(1)]
        hard_sent_neg_list.append(torch.cat(hard_sent_neg_all, dim=2))
    hard_sent_pos = torch.cat(hard_sent_pos_list, dim=0) / tau
    hard_sent_neg = torch.cat(hard_sent_neg_list, dim=0) / tau
    hard_sent_neg_exp = torch.exp(hard_sent_neg)
    return float(-(hard_sent_pos - torch.log(hard_sent_neg_exp.sum(dim=2, keepdim=False) + eps)).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_authors_form_matches_their_formula_and_their_code(seed):
    cell, sent, sv, ious, closeness, gt = case(seed, cells=60)  # enough cells that their exp stays finite
    ours = AuthorsGeodesicContrastLoss(tau=0.1, num_positives=5)(cell, sent, sv, gt, ious, closeness)
    # Their code orders sentences video by video; so does case() (sv is sorted).
    assert float(ours) == pytest.approx(slow_authors(cell, sent, sv, ious, closeness, gt, num_pos=5, tau=0.1), rel=1e-4)
    assert float(ours) == pytest.approx(port_of_authors_code(cell, sent, sv, ious, closeness, geo_topk=5, tau=0.1), rel=1e-4)


def test_authors_form_does_not_overflow_where_their_code_does():
    # exp(cos) (1 + G') exp(cos) / tau reaches 2 e^2 / 0.05 = 296 > 88.7: exp overflows float32.
    cell, sent, sv, ious, closeness, gt = case(3, cells=60)
    sent = cell[sv, gt[:, 0]]  # sentences equal to their ground-truth cells: cosines of 1
    loss = AuthorsGeodesicContrastLoss(tau=0.05, num_positives=5)(cell, sent, sv, gt, ious, closeness)
    assert torch.isfinite(loss)
    assert not math.isfinite(port_of_authors_code(cell, sent, sv, ious, closeness, geo_topk=5, tau=0.05, dtype=torch.float32))
    port = port_of_authors_code(cell, sent, sv, ious, closeness, geo_topk=5, tau=0.05)
    assert float(loss) == pytest.approx(port, rel=1e-4)  # the float64 port still agrees


def cos_gradients(options):
    """Hand-set geometry of one sentence: cells 0 (ground truth, IoU 1), 1-2 (IoU 0.6), 3-4 (IoU 0.1,
    but closest on the manifold). Returns d loss / d cos(s, m_c) for the five cells, via features."""
    d = 8
    sent = F.normalize(torch.randn(1, d, generator=torch.Generator().manual_seed(0)), dim=-1)
    target_cos = torch.tensor([0.5, 0.4, 0.4, 0.45, 0.45, -0.2, 0.0, 0.1])
    basis = torch.linalg.qr(torch.cat([sent.T, torch.randn(d, d - 1, generator=torch.Generator().manual_seed(1))], 1))[0]
    direction, orth = sent[0], basis[:, 1:].T  # orthonormal to the sentence
    cos_leaf = target_cos.clone().requires_grad_(True)
    cells = cos_leaf[:, None] * direction + torch.sqrt(1 - target_cos[:, None] ** 2) * orth[torch.arange(8) % (d - 1)]
    other = F.normalize(torch.randn(8, d, generator=torch.Generator().manual_seed(2)), dim=-1)
    cell = torch.stack([cells, other])  # (2 8 d): video 0 and one other video
    ious = torch.tensor([[1.0, 0.6, 0.6, 0.1, 0.1, 0.0, 0.0, 0.0]])
    closeness = torch.tensor([[1.0, 0.7, 0.7, 0.95, 0.95, 0.0, 0.0, 0.0]])
    loss = GeodesicContrastLoss(margin=0.4, tau=0.1, **options)(cell, sent, torch.tensor([0]), torch.tensor([[0]]), ious, closeness)
    loss.backward()
    return cos_leaf.grad[:5]


def test_five_geodesic_positives_pull_feature_near_wrong_cells_and_one_pushes_them():
    # The paper's five geodesic positives: the feature-near cells of IoU 0.1 are positives, pulled
    # (negative gradient on their cosine); with g_j alone they are near-miss negatives, pushed.
    grad = cos_gradients(dict(num_positives=5))
    assert grad[3] < 0 and grad[4] < 0
    grad = cos_gradients(dict(num_positives=1))
    assert grad[3] > 0 and grad[4] > 0 and grad[0] < 0


def test_gcl_gradients_reach_features_not_closeness():
    cell, sent, sv, ious, closeness, gt = case(1)
    cell.requires_grad_(True), sent.requires_grad_(True)
    closeness.requires_grad_(True)
    GeodesicContrastLoss(margin=0.4, tau=0.1, num_positives=5)(cell, sent, sv, gt, ious, closeness).backward()
    assert cell.grad.abs().sum() > 0 and sent.grad.abs().sum() > 0
    assert closeness.grad is None


def test_gcl_hard_near_misses_weigh_more():
    # Raising the closeness of a same-video negative (IoU < 0.5) raises the loss.
    cell, sent, sv, ious, closeness, gt = case(2)
    loss = GeodesicContrastLoss(margin=0.4, tau=0.1, num_positives=1)
    j = 0
    c = int(torch.nonzero((ious[j] < 0.5) & (closeness[j] < 0.5)).flatten()[0])
    before = loss(cell, sent, sv, gt, ious, closeness)
    closer = closeness.clone()
    closer[j, c] = 0.9
    assert loss(cell, sent, sv, gt, ious, closer) > before


@pytest.mark.parametrize("loss", [GeodesicContrastLoss(margin=0.4, tau=0.1, num_positives=5),
                                  AuthorsGeodesicContrastLoss(tau=0.1, num_positives=5)], ids=["gcl", "gcl_authors"])
def test_gcl_with_real_closeness_is_finite(loss):
    cell, sent, sv, ious, _, _ = case(3, cells=40)
    sources = [ious[sv == v].argmax(dim=1) for v in range(3)]
    closeness = geodesic_closeness_batch(cell, sources, k=5, cutoff=0.5)
    assert closeness.shape == (5, 40) and torch.all(closeness[torch.arange(5), torch.cat(sources)] == 1)
    gt = torch.cat(sources)[:, None]
    assert torch.isfinite(loss(cell, sent, sv, gt, ious, closeness))


def test_positive_selection_keeps_the_ground_truth_first_and_skips_unreachable_cells():
    closeness = torch.tensor([[0.9, 1.0, 0.95, 0.0, 0.0]])
    idx, valid = GeodesicContrastLoss(margin=0.4, tau=0.1, num_positives=4).select_positives(closeness, torch.tensor([1]))
    # g_j = 1 first, then by closeness; one of the unreachable cells 3 and 4 (G = 0) fills the fourth slot, not counted.
    assert idx[0, :3].tolist() == [1, 2, 0] and valid.tolist() == [[True, True, True, False]]
    # The authors' form counts every pick, reachable or not.
    idx, valid = AuthorsGeodesicContrastLoss(tau=0.1, num_positives=4).select_positives(closeness)
    assert idx[0, :3].tolist() == [1, 2, 0] and bool(valid.all())
