import math

import pytest
import torch
import torch.nn.functional as F

from g2l.losses.bce import IoUBCELoss
from g2l.losses.positives import positive_cells, window_iou
from g2l.losses.sentence_contrast import SentenceToVideoLoss
from g2l.losses.video_contrast import VideoToSentenceLoss


def random_case(seed=0, b=3, cells=6, d=5):
    g = torch.Generator().manual_seed(seed)
    cell = F.normalize(torch.randn(b, cells, d, generator=g), dim=-1)
    sentence_video = torch.tensor([0, 0, 1, 2, 2, 2])
    sent = F.normalize(torch.randn(len(sentence_video), d, generator=g), dim=-1)
    ious = torch.rand(len(sentence_video), cells, generator=g)
    windows = torch.tensor([[0, 5.0], [1, 5.5], [2, 3], [0, 1], [10, 20], [0.5, 1.2]])
    return cell, sent, sentence_video, ious, windows


def slow_video_to_sentence(cell, sent, sv, positives, windows, margin, tau):
    losses = []
    wiou = window_iou(windows)
    for j in range(len(sv)):
        for p in positives[j]:
            m = cell[sv[j], p]
            logits = []
            for jj in range(len(sv)):
                if jj != j and sv[jj] == sv[j] and wiou[j, jj] >= 0.5:
                    continue
                z = (m @ sent[jj] - (margin if jj == j else 0)) / tau
                logits.append(z)
                if jj == j:
                    pos = z
            losses.append(-(pos - torch.logsumexp(torch.stack(logits), 0)))
    return torch.stack(losses).mean()


def slow_sentence_to_video(cell, sent, sv, positives, ious, margin, tau):
    losses = []
    for j in range(len(sv)):
        for p in positives[j]:
            zpos = (sent[j] @ cell[sv[j], p] - margin) / tau
            same = sum(math.exp(float(sent[j] @ cell[sv[j], c]) / tau) if ious[j, c] < 0.5 else 1.0
                       for c in range(cell.shape[1]))
            other = sum(math.exp(float(sent[j] @ cell[b, c]) / tau)
                        for b in range(cell.shape[0]) if b != sv[j] for c in range(cell.shape[1]))
            losses.append(-(float(zpos) - math.log(math.exp(float(zpos)) + same + other + 1e-6)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("num_positives", [1, 3])
def test_video_to_sentence_matches_definition(num_positives):
    cell, sent, sv, ious, windows = random_case()
    positives = positive_cells(ious, num_positives)
    ours = VideoToSentenceLoss(margin=0.3, tau=0.1)(cell, sent, sv, positives, windows)
    torch.testing.assert_close(ours, slow_video_to_sentence(cell, sent, sv, positives, windows, 0.3, 0.1))


def test_video_to_sentence_removes_same_moment_sentences():
    # Sentences 0 and 1 (same video) overlap with IoU 4/5.5 >= 0.5: neither is the other's negative.
    cell, sent, sv, ious, windows = random_case()
    assert window_iou(windows)[0, 1] >= 0.5
    positives = positive_cells(ious, 1)
    base = VideoToSentenceLoss(margin=0.3, tau=0.1)(cell, sent, sv, positives, windows)
    far = windows.clone()
    far[1] = torch.tensor([20.0, 30.0])
    far_loss = VideoToSentenceLoss(margin=0.3, tau=0.1)(cell, sent, sv, positives, far)
    # Moved apart, each becomes the other's negative: one more term in two softmax denominators.
    assert far_loss > base + 1e-3, (float(far_loss), float(base))
    # Without the exclusion (no IoU reaches 1.01) the overlapping pair counts as negatives too.
    never = VideoToSentenceLoss(margin=0.3, tau=0.1, same_moment_iou=1.01)(cell, sent, sv, positives, windows)
    torch.testing.assert_close(never, far_loss)
    torch.testing.assert_close(base, slow_video_to_sentence(cell, sent, sv, positives, windows, 0.3, 0.1))


@pytest.mark.parametrize("num_positives", [1, 3])
def test_sentence_to_video_matches_published_convention(num_positives):
    cell, sent, sv, ious, _ = random_case(seed=3)
    positives = positive_cells(ious, num_positives)
    ours = SentenceToVideoLoss(margin=0.4, tau=0.1)(cell, sent, sv, positives, ious)
    assert float(ours) == pytest.approx(slow_sentence_to_video(cell, sent, sv, positives, ious, 0.4, 0.1), rel=1e-5)


def test_bce_single_mean_over_all_cells():
    cos = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.05, -0.1]])
    target = torch.tensor([[1.0, 0.0, 0.5], [0.2, 0.0, 1.0]])
    p = torch.sigmoid(10 * cos)
    expected = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    torch.testing.assert_close(IoUBCELoss(iou_min=0.5, iou_max=1.0)(cos, target), expected)


def test_positive_cells_ties_take_the_first():
    ious = torch.tensor([[0.2, 0.9, 0.9, 0.1], [0.5, 0.5, 0.5, 0.5]])
    assert positive_cells(ious, 1).tolist() == [[1], [0]]
    assert positive_cells(ious, 3).tolist() == [[1, 2, 0], [0, 1, 2]]


def test_gradients_reach_only_what_they_should(tiny_text_encoder_dir):
    from g2l.config import load_config
    from g2l.losses.combine import build_loss
    from g2l.models.grounding import build_model
    from g2l.ops.spans import iou_map

    cfg = load_config(overrides=[f"model.text_encoder={tiny_text_encoder_dir}", "model.hidden_dim=8", "model.joint_dim=4",
                                 "data.feature_dim=6", "model.map_num_layers=2", "loss.contrast_weight=0",
                                 "loss.sentence_contrast=off", "loss.ssi_weight=0"])
    model = build_model(cfg)
    tokens = model.tokenizer(["a person opens the door", "one"], padding=True, return_tensors="pt")
    sv = torch.tensor([0, 1])
    out = model(torch.randn(2, 32, 6), tokens["input_ids"], tokens["attention_mask"], sv)

    class Batch:
        iou_maps = torch.from_numpy(__import__("numpy").stack([iou_map((0, 4), 10, 16), iou_map((2, 9), 12, 16)]))
        sentence_video = sv
        windows_s = torch.tensor([[0, 4.0], [2, 9.0]])

    terms = build_loss(cfg)(out, Batch, model.cell_start_idx, model.cell_end_idx, epoch=1)
    assert set(terms) == {"bce", "total", "raw_bce"}
    terms["total"].backward()
    # BCE alone trains the IoU branch; the contrastive heads get no gradient.
    assert model.map_encoder.iou_head.weight.grad.abs().sum() > 0
    assert model.map_encoder.contrast_head.weight.grad is None
    assert model.text_encoder.contrast_head.weight.grad is None
    assert model.video_encoder.proj.weight.grad.abs().sum() > 0
