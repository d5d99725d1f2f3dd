import numpy as np
import pytest
import torch

from g2l.config import load_config
from g2l.models.grounding import build_model, per_video_cosine, score_cells
from g2l.models.moment_map import MapEncoder, SparseMaxPool, _mask_weights
from g2l.models.video_encoder import VideoEncoder
from g2l.ops.spans import pooling_mask


@pytest.mark.parametrize("num_clips,counts", [(16, [15]), (64, [15, 8, 8]), (32, [7, 4, 4])])
def test_sparse_max_pool_is_the_max_over_clips(num_clips, counts):
    torch.manual_seed(0)
    clips = torch.randn(2, 3, num_clips)
    map2d = SparseMaxPool(num_clips=num_clips, pooling_counts=counts)(clips)
    mask = pooling_mask(num_clips, counts)
    for i in range(num_clips):
        for j in range(num_clips):
            if mask[i, j]:
                torch.testing.assert_close(map2d[:, :, i, j], clips[:, :, i:j + 1].max(dim=-1).values)
            else:
                assert (map2d[:, :, i, j] == 0).all()


def test_mask_weights_count_valid_cells_under_the_kernel():
    mask = torch.from_numpy(pooling_mask(16, [15]))
    weights = _mask_weights(mask, kernel_size=3, num_layers=2)
    # Layer 1 pads 2 on an upper-triangular mask: output (18, 18); brute-force count by hand.
    padded = np.pad(mask.numpy().astype(int), 2)
    counts = np.array([[padded[a:a + 3, b:b + 3].sum() for b in range(18)] for a in range(18)])
    expected = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    np.testing.assert_allclose(weights[0].numpy(), expected, rtol=1e-6)
    assert weights[1].shape == (16, 16)


def test_map_encoder_keeps_the_map_size():
    mask = torch.from_numpy(pooling_mask(16, [15]))
    encoder = MapEncoder(hidden_dim=8, joint_dim=4, kernel_size=5, num_layers=4, mask2d=mask)
    contrast, iou = encoder(torch.randn(2, 8, 16, 16))
    assert contrast.shape == iou.shape == (2, 4, 16, 16)


def test_video_encoder_pools_pre_clips():
    encoder = VideoEncoder(feature_dim=6, hidden_dim=5, num_pre_clips=32, num_clips=16)
    assert encoder(torch.randn(3, 32, 6)).shape == (3, 5, 16)
    with pytest.raises(ValueError, match="multiple"):
        VideoEncoder(feature_dim=6, hidden_dim=5, num_pre_clips=30, num_clips=16)


def test_per_video_cosine_matches_a_loop():
    torch.manual_seed(1)
    sentences, cells = torch.randn(7, 4), torch.randn(3, 10, 4)
    sentence_video = torch.tensor([0, 0, 0, 1, 2, 2, 2])
    out = per_video_cosine(sentences, cells, sentence_video)
    for q in range(7):
        torch.testing.assert_close(out[q], cells[sentence_video[q]] @ sentences[q])


def test_score_formula():
    c, u = torch.tensor([1.0, 0.0, -0.5]), torch.tensor([0.2, -0.1, 0.0])
    expected = (0.5 * c + 0.5) ** 0.5 * torch.sigmoid(10 * u)
    torch.testing.assert_close(score_cells(c, u, 0.5), expected)
    assert score_cells(torch.tensor([0.3]), torch.tensor([0.3]), 0.3) > score_cells(torch.tensor([0.3]), torch.tensor([0.2]), 0.3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_score_of_a_cosine_just_below_minus_one_is_zero_not_nan(dtype):
    """Rounding puts a cosine of opposite vectors a hair below -1 (fp32: -1 - 2^-23; bf16: -1 - 2^-7), where
    0.5 c + 0.5 is negative and its fractional power NaN: the clamp makes the score 0 there."""
    below = -1.0 - torch.finfo(dtype).eps  # the next number below -1 in this dtype
    contrast = torch.tensor([below, -1.0078125, -1.5, -1.0, -0.5], dtype=torch.float32).to(dtype)
    iou = torch.full_like(contrast, 0.2)
    assert (0.5 * contrast[:3] + 0.5 < 0).all()  # the clamp is needed on these
    scores = score_cells(contrast, iou, 0.5)
    assert torch.isfinite(scores).all(), scores
    assert scores[:4].tolist() == [0.0, 0.0, 0.0, 0.0]
    torch.testing.assert_close(scores[4].float(), torch.tensor(0.25 ** 0.5 * torch.sigmoid(torch.tensor(2.0)).item()),
                               atol=1e-2 if dtype == torch.bfloat16 else 1e-6, rtol=0)


def test_model_outputs_and_to_map(tiny_text_encoder_dir):
    cfg = load_config(overrides=[f"model.text_encoder={tiny_text_encoder_dir}", "model.hidden_dim=16", "model.joint_dim=8",
                                 "data.feature_dim=12", "model.map_num_layers=2"])
    model = build_model(cfg)
    tokens = model.tokenizer(["a person opens the door", "one", "two"], padding=True, return_tensors="pt")
    out = model(torch.randn(2, 32, 12), tokens["input_ids"], tokens["attention_mask"], torch.tensor([0, 1, 1]))
    assert out.cell_contrast.shape == (2, 136, 8) and out.contrast_cos.shape == (3, 136)
    torch.testing.assert_close(out.sentence_iou.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(out.iou_cos[2], out.cell_iou[1] @ out.sentence_iou[2])
    full = model.to_map(out.iou_cos)
    assert full.shape == (3, 16, 16) and (full[:, ~model.mask2d] == 0).all()
    assert torch.equal(full[:, model.mask2d], out.iou_cos)


def test_text_layers_average(tiny_text_encoder_dir):
    cfg = load_config(overrides=[f"model.text_encoder={tiny_text_encoder_dir}", "model.text_num_layers=2", "model.joint_dim=8"])
    model = build_model(cfg).eval()
    tokens = model.tokenizer(["a person opens the door", "one"], padding=True, return_tensors="pt")
    hidden = model.text_encoder.backbone(**tokens, output_hidden_states=True).hidden_states
    mask = tokens["attention_mask"][..., None].float()
    pooled = ((hidden[-1] + hidden[-2]) / 2 * mask).sum(1) / mask.sum(1)
    expected = model.text_encoder.contrast_head(model.text_encoder.norm(pooled))
    torch.testing.assert_close(model.text_encoder(tokens["input_ids"], tokens["attention_mask"])[0], expected)
