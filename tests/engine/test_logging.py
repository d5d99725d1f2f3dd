"""RunLogger (g2l/engine/logging.py): what one training step sends to W&B."""

from g2l.engine.logging import RunLogger


class FakeWandbRun:
    def __init__(self):
        self.logged = []

    def log(self, data, step=None):
        self.logged.append((step, data))


def test_a_step_logs_weighted_terms_under_their_names_and_raw_ones_as_raw_terms():
    logger = RunLogger(None, config={}, mode="off")
    logger.wandb_run = FakeWandbRun()
    logger.log_step(7, {"bce": 0.5, "video_contrast": 0.002, "total": 0.502, "stat_x": 0.1, "raw_bce": 0.5,
                        "raw_video_contrast": 4.0, "grad_norm": 3.0}, {"base": 1e-3})
    assert logger.wandb_run.logged == [(7, {
        "loss/bce": 0.5, "loss/video_contrast": 0.002, "loss/total": 0.502, "loss/stat_x": 0.1, "loss/raw_bce": 0.5,
        "loss/raw_video_contrast": 4.0, "loss/grad_norm": 3.0, "lr/base": 1e-3})]
