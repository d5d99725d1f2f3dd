"""Bounds on what a file handed to g2l (a checkpoint, a model folder's files) may make it read or
allocate, checked before anything is built: file sizes, zip members, and the tensors a state holds.

A checkpoint is untrusted data: ``model.map_num_layers: 200000`` or a text config of 3,000 layers
or a vocabulary of 10**9 would otherwise build modules until memory runs out, a 3 MB zip would
inflate to gigabytes, a tensor of NaN would ground nonsense. Every size that decides an
allocation is checked twice: against a sane bound below (far above any real model), and against
the tensors the state dict actually holds (a model needs a weight for each parameter it builds,
so sizes that agree with the weights cost no more memory than the file already did). The sizes of
g2l's own model are bounded in g2l/config/bounds.py and checked against the weights in
g2l/models/checkpoint.py, with the text backbone's.
"""

from __future__ import annotations

import zipfile
from typing import BinaryIO

from g2l.errors import G2LError

MiB = 2**20
GiB = 2**30

# Files ---------------------------------------------------------------------------------------
# A JSON or tokenizer file of a model folder (config.json, tokenizer.json, vocab.txt, ...): the
# largest common tokenizer.json (XLM-R's, 250k tokens) is about 17 MB.
MAX_TEXT_FILE_BYTES = 64 * MiB
# A data file of text records (annotations, predictions): the largest public release is tens of MB,
# a predictions file with every score map a few GB.
MAX_DATA_FILE_BYTES = 64 * GiB
# A checkpoint (.pt) or model.safetensors on disk: BERT-large with its Adam state is about 4 GB.
MAX_WEIGHTS_BYTES = 16 * GiB
# The pickled part of a .pt (config, metrics, tokenizer files as text; tensors are stored apart).
MAX_PICKLE_BYTES = 512 * MiB
# torch.save stores zip members uncompressed, so the members together are as big as the file; a
# zip that inflates to more than this many times its size (plus the slack) is a zip bomb.
MAX_INFLATION = 2
INFLATION_SLACK_BYTES = 64 * MiB

class SizeLimitError(G2LError):
    """A checkpoint or file whose sizes are out of bounds or disagree with its own weights."""


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Files -----------------------------------------------------------------------------------------


def check_zip_members(file: BinaryIO, file_bytes: int, source: str) -> None:
    """Before ``torch.load``: the zip's members, by the sizes its directory declares, inflate to
    no more than the bounds above. A file that is not a zip (truncated, or another format) is
    refused: g2l writes only torch's zip format."""
    try:
        members = zipfile.ZipFile(file).infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise SizeLimitError(f"{source} could not be read: it is truncated or corrupt, or not a checkpoint; "
                             "copy it again or use another") from None
    finally:
        file.seek(0)
    total = sum(m.file_size for m in members)
    pickled = sum(m.file_size for m in members if m.filename.endswith(".pkl"))
    if total > MAX_WEIGHTS_BYTES or total > MAX_INFLATION * file_bytes + INFLATION_SLACK_BYTES:
        raise SizeLimitError(
            f"{source} inflates from {file_bytes / MiB:,.1f} MB on disk to {total / MiB:,.1f} MB when read, which no "
            "checkpoint written by g2l does; do not use this file"
        )
    if pickled > MAX_PICKLE_BYTES:
        raise SizeLimitError(
            f"{source} holds {pickled / MiB:,.1f} MB of pickled data besides its tensors (at most "
            f"{MAX_PICKLE_BYTES / MiB:,.0f} MB); it is not a g2l checkpoint, do not use it"
        )


# Tensors ---------------------------------------------------------------------------------------


def check_state_tensors(state: dict, source: str) -> None:
    """Every weight is a plain dense tensor on the CPU, no bigger than its storage, and finite.
    Sparse, meta or quantised tensors, views that repeat a small storage to a huge shape, and
    NaN or infinite values are refused with the tensor's name."""
    import torch  # here, not at the top: the byte limits above are read by modules that need no torch

    total = 0
    for name, tensor in state.items():
        if tensor.layout != torch.strided or tensor.is_meta or tensor.is_quantized or tensor.device.type != "cpu":
            raise SizeLimitError(
                f"{source} holds the weight {name[:120]} as a {tensor.layout} {tensor.device.type} tensor; g2l loads "
                "only dense tensors, do not use this checkpoint"
            )
        stored = tensor.untyped_storage().nbytes() // max(tensor.element_size(), 1)
        if tensor.numel() > stored:
            raise SizeLimitError(
                f"{source} holds the weight {name[:120]} of shape {tuple(tensor.shape)} over a storage of {stored} "
                "values; it is crafted or corrupt, do not use it"
            )
        total += tensor.numel() * tensor.element_size()
        if total > MAX_WEIGHTS_BYTES:
            raise SizeLimitError(f"{source} holds more than {MAX_WEIGHTS_BYTES // GiB} GB of weights; do not use it")
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise SizeLimitError(
                f"{source} has NaN or infinite values in the weight {name[:120]}; the training that wrote it "
                "diverged or the file is corrupt, use another checkpoint"
            )
