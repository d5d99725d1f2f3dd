"""Tiny BERT-style text encoders and tokenizers made locally, for tests (nothing is downloaded)."""

from pathlib import Path

WORDS = (
    "a the person someone is opens opening opened closes closing closed door fridge cup book phone "
    "laptop light window towel bag picks up puts down turns on off washes holds one two three four five"
).split()


def write_vocab(folder: Path, words=WORDS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + sorted(set(words))
    path = folder / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    return path


def make_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab_file=str(write_vocab(folder)), do_lower_case=True)


def make_text_encoder_dir(folder: Path, hidden_size: int = 32, num_layers: int = 2, seed: int = 0) -> Path:
    """A local folder holding a tiny random BERT and its tokenizer, loadable with from_pretrained."""
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = make_tokenizer(folder)
    config = BertConfig(
        vocab_size=len(tokenizer.vocab), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=2, intermediate_size=2 * hidden_size, max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
