"""Behaviour kept through the retirement of the decided loss variants: for each kept variant (MMN,
with one and three positives; G2L as configured; the paper's five geodesic positives; the authors'
form), the named loss terms, the diagnostics and the gradient norms of the total on a fixed random
batch equal those of the code before the change.

The reference numbers in data/reference_losses.json were produced by the code at git tag
``ablation-2026-12`` (commit a0f6492): ``git worktree add /tmp/old-loss ablation-2026-12`` and
``PYTHONPATH=/tmp/old-loss python tests/reference/losses_ablation_2026_12.py`` from the repository root
(the script's ``reference_batch`` builds the same batch here). The old configs are given in the old
keys (``loss.gcl_form=authors``...), so this also checks that they still read. L_SSI's Monte Carlo
estimator is replaced on both sides by the same deterministic stand-in (``estimator_stand_in``): the
estimator itself changed after the tag and is tested against exact enumeration in
tests/ops/test_shapley.py; here the loss around it is compared.
"""

import json
from pathlib import Path

import pytest
import torch

from g2l.config import load_config
from g2l.losses.combine import build_loss
from tests.reference.losses_ablation_2026_12 import COMMON, OUT, estimator_stand_in, loss_terms

REFERENCE = json.loads(Path(OUT).read_text())

# The defaults at the tag were MMN's (G2L became the default later): an old config meant them.
MMN = ["loss.sentence_contrast=mmn", "loss.ssi_weight=0"]
# The same variants in today's keys.
TODAY = {
    "mmn": MMN,
    "mmn_three_positives": MMN + ["loss.num_positives=3"],
    "g2l": ["loss.sentence_contrast=gcl", "loss.ssi_weight=5e-4"],
    "paper": ["loss.sentence_contrast=gcl", "loss.gcl_num_positives=5", "loss.ssi_weight=5e-4"],
    "authors": ["loss.sentence_contrast=gcl_authors", "loss.gcl_num_positives=5", "loss.ssi_weight=0"],
}


@pytest.mark.parametrize("keys", ["today", "old"])
@pytest.mark.parametrize("variant", sorted(REFERENCE["variants"]))
def test_kept_variants_give_the_losses_of_the_code_at_the_tag(variant, keys):
    torch.set_num_threads(1)
    reference = REFERENCE["variants"][variant]
    overrides = TODAY[variant] + COMMON if keys == "today" else MMN + reference["overrides"]
    loss_fn = build_loss(load_config(None, overrides))
    for epoch, expected in reference["epochs"].items():
        with estimator_stand_in():
            got = loss_terms(loss_fn, int(epoch))
        assert list(got) == list(expected), (variant, epoch)  # the same names, in the same order
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-9), (variant, epoch, name)
