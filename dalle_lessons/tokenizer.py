"""The caption tokenizer: byte-level BPE on Hugging Face `tokenizers`, with fixed-length padding.

DALL·E lowercases its captions, encodes them with BPE (vocabulary 16,384) and gives the
transformer at most 256 text tokens, padded, in front of the image tokens. We do the same at
course scale (vocabulary 512, `text_seq_len` 24 for the `cpu` preset). The merges are exactly
those of the from-scratch `dalle_lessons.bpe` trained on the same normalized captions.

Special tokens: only `<pad>` (id 0). Byte-level BPE has no unknown words, so no `<unk>`; text
always sits at positions 0.. and the image starts at the fixed position `text_seq_len`, so no
`<bos>`/`<eos>` is needed either: the pads tell the model where the caption ends.

Regenerate `data/tokenizer.json` with `python -m dalle_lessons train tokenizer --preset cpu --seed 0`.
"""
from __future__ import annotations

import json
import os
import unicodedata
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from dalle_lessons.config import get_preset
from dalle_lessons.paths import check_output_file, data_dir

PAD = "<pad>"
PAD_ID = 0
SPECIAL_TOKENS = (PAD,)
DROPOUT_RATE = 0.1  # the paper's BPE-dropout rate (Provilkov et al., 2019)
OVERFLOW_MODES = ("warn", "error")


def default_path() -> Path:
    """Where the course's trained tokenizer lives: data/tokenizer.json."""
    return data_dir() / "tokenizer.json"


def normalize_caption(text: str) -> str:
    """What the tokenizer sees: NFC, lowercase, single spaces, and one leading space so the first
    word is spelled like every other word (' red', not 'red'). Mirrors the tokenizer's normalizer."""
    text = " ".join(unicodedata.normalize("NFC", text).lower().split())
    return " " + text if text else ""


def _normalizer() -> normalizers.Normalizer:
    return normalizers.Sequence([
        normalizers.NFC(), normalizers.Lowercase(), normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip(), normalizers.Prepend(" "),
    ])


def _new_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE pipeline: normalize, split into GPT-2 words, BPE, bytes back."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = _normalizer()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def check_text(text: str) -> str:
    """`text` if it is valid Unicode; a lone surrogate (e.g. undecodable bytes on a command line, which Python
    keeps as '\\udcff') is a one-line ValueError instead of the `tokenizers` library's 'must be str'."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"the caption {text[:40]!r}{'...' if len(text) > 40 else ''} holds {text[error.start]!r} at "
                         f"position {error.start}, which is not valid Unicode text (undecodable bytes?): remove it, "
                         "or decode the bytes with errors='replace'") from None
    return text


def _check_mode(on_overflow: str) -> None:
    if on_overflow not in OVERFLOW_MODES:
        valid = ", ".join(repr(m) for m in OVERFLOW_MODES)
        raise ValueError(f"on_overflow={on_overflow!r} is not valid: choose one of {valid}")


class CaptionTokenizer:
    """Captions -> fixed-length rows of token ids (right-padded with `<pad>` = 0), and back."""

    def __init__(self, tokenizer: Tokenizer, text_seq_len: int, dropout_rate: float = DROPOUT_RATE):
        if tokenizer.token_to_id(PAD) != PAD_ID:
            raise ValueError(f"the tokenizer must have {PAD!r} at id {PAD_ID}")
        if text_seq_len < 1:
            raise ValueError(f"text_seq_len must be at least 1, got {text_seq_len}")
        self._tok = tokenizer
        self._tok.no_padding()  # we pad and truncate ourselves, to warn about long captions
        self._tok.no_truncation()
        self._tok.encode_special_tokens = True  # a caption typing "<pad>" gets text, not id 0
        self.text_seq_len = text_seq_len
        self.dropout_rate = dropout_rate
        self._dropout_tok: tuple[float, Tokenizer] | None = None  # (rate, tokenizer), made on demand

    # -- training, saving, loading ------------------------------------------------------------

    @classmethod
    def train(cls, captions: Iterable[str], vocab_size: int = 512,
              text_seq_len: int = 24) -> CaptionTokenizer:
        """Learn BPE merges from `captions` (deterministic: same captions, same file).

        `vocab_size` counts everything: `<pad>`, the 256 bytes and the merges. Training stops
        early when every word in the corpus has become one token.
        """
        minimum = len(SPECIAL_TOKENS) + 256
        if vocab_size < minimum:
            raise ValueError(f"vocab_size={vocab_size} is too small: it needs {minimum} ids for "
                             f"{len(SPECIAL_TOKENS)} special token(s) and the 256 bytes")
        captions = list(captions)
        if not any(c.strip() for c in captions):
            raise ValueError("cannot train a tokenizer on no captions: pass a non-empty list")
        tok = _new_tokenizer()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: no unknowns
        )
        tok.train_from_iterator(captions, trainer=trainer, length=len(captions))
        return cls(tok, text_seq_len)

    def to_json(self) -> str:
        """The tokenizer as one `tokenizers` JSON document. Padding and truncation to
        `text_seq_len` are stored in it, so plain `Tokenizer.from_file` gives the same ids."""
        tok = Tokenizer.from_str(self._tok.to_str())
        tok.enable_padding(pad_id=PAD_ID, pad_token=PAD, length=self.text_seq_len)
        tok.enable_truncation(max_length=self.text_seq_len)
        return tok.to_str(pretty=True) + "\n"

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the JSON atomically (temp file + rename): an interrupted save never leaves half a file."""
        path = Path(path) if path is not None else default_path()
        check_output_file(path, suffixes=None)  # an unwritable folder is one line, before any write
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(self.to_json(), encoding="utf-8", newline="\n")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> CaptionTokenizer:
        """Read a tokenizer written by `save` (by default data/tokenizer.json)."""
        path = Path(path) if path is not None else default_path()
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer at {path}: train one with `python -m dalle_lessons "
                                    "train tokenizer --preset cpu` (or CaptionTokenizer.train)")
        from .manifest import sniff, verify_shipped
        verify_shipped(path)  # the shipped data/tokenizer.json must be the one in MANIFEST.json
        what = sniff(path)
        if what:
            raise ValueError(f"{path} {what}")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as error:  # `tokenizers` raises a bare Exception with a serde message
            raise ValueError(f"{path} is not a tokenizer file ({str(error).splitlines()[0][:80]}): restore it "
                             "from git, or retrain it with `python -m dalle_lessons train tokenizer`") from None
        if tok.token_to_id(PAD) != PAD_ID:
            raise ValueError(f"{path} has no {PAD!r} token at id {PAD_ID}, so it was not written by "
                             "CaptionTokenizer.save: retrain it with `python -m dalle_lessons train tokenizer`")
        if not tok.padding or not tok.padding.get("length"):
            raise ValueError(f"{path} has no fixed padding length, so it was not written by "
                             "CaptionTokenizer.save: retrain it with `python -m dalle_lessons train tokenizer`")
        return cls(tok, text_seq_len=tok.padding["length"])

    def with_text_seq_len(self, text_seq_len: int) -> CaptionTokenizer:
        """The same merges, padding/truncating to another length (e.g. the `tiny` preset's 16)."""
        return CaptionTokenizer(Tokenizer.from_str(self._tok.to_str()), text_seq_len, self.dropout_rate)

    # -- encoding -----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    @property
    def pad_id(self) -> int:
        return PAD_ID

    def _backend(self, dropout: bool) -> Tokenizer:
        """The plain tokenizer, or a copy whose BPE skips each merge with probability
        `dropout_rate`. `tokenizers` draws those coin flips from an unseeded thread-local RNG,
        so dropout output cannot be made reproducible: it is off unless asked for."""
        if not dropout or self.dropout_rate == 0:
            return self._tok
        if self._dropout_tok is None or self._dropout_tok[0] != self.dropout_rate:
            tok = Tokenizer.from_str(self._tok.to_str())
            tok.model.dropout = self.dropout_rate
            tok.encode_special_tokens = True
            self._dropout_tok = (self.dropout_rate, tok)
        return self._dropout_tok[1]

    @staticmethod
    def _is_empty(text: str, allow_empty: bool) -> bool:
        if not isinstance(text, str):
            raise TypeError(f"a caption must be a str, got {type(text).__name__}")
        if text.strip():
            return False
        if allow_empty:
            return True
        raise ValueError(f"empty caption {text!r}: give some text to draw, or pass allow_empty=True "
                         "for the deliberately empty caption (used by classifier-free guidance)")

    def _fit(self, ids: list[int]) -> list[int]:
        """Truncate to `text_seq_len`, then right-pad with `<pad>`."""
        ids = ids[: self.text_seq_len]
        return ids + [PAD_ID] * (self.text_seq_len - len(ids))

    def _overflow_message(self, n_tokens: int) -> str:
        return (f"the caption has {n_tokens} tokens but text_seq_len is {self.text_seq_len}; "
                "shorten the caption or use a tokenizer with a longer text_seq_len")

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` needs, before truncation and padding."""
        return len(self._tok.encode(check_text(text)).ids)

    def encode(self, text: str, *, on_overflow: str = "warn", allow_empty: bool = False,
               dropout: bool = False) -> list[int]:
        """One caption -> exactly `text_seq_len` ids, right-padded with `pad_id`.

        Too many tokens: `on_overflow="warn"` keeps the first `text_seq_len` with a warning,
        `"error"` raises. `dropout=True` applies BPE dropout (training only; not reproducible).
        """
        _check_mode(on_overflow)
        if self._is_empty(text, allow_empty):
            return [PAD_ID] * self.text_seq_len
        ids = self._backend(dropout).encode(check_text(text)).ids
        if len(ids) > self.text_seq_len:
            if on_overflow == "error":
                raise ValueError(self._overflow_message(len(ids)))
            warnings.warn(self._overflow_message(len(ids)) + f" (keeping the first "
                          f"{self.text_seq_len}; pass on_overflow='error' to raise instead)",
                          stacklevel=2)
        return self._fit(ids)

    def encode_batch(self, texts: Sequence[str], *, on_overflow: str = "warn",
                     allow_empty: bool = False, dropout: bool = False) -> torch.Tensor:
        """Many captions -> a LongTensor [len(texts), text_seq_len]; one warning for all long ones."""
        _check_mode(on_overflow)
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of captions; use encode for a single one")
        texts = list(texts)
        empty = [self._is_empty(t, allow_empty) for t in texts]
        encoded = iter(self._backend(dropout).encode_batch([check_text(t) for t, e in zip(texts, empty) if not e]))
        rows = [[] if e else next(encoded).ids for e in empty]
        long = [(i, len(r)) for i, r in enumerate(rows) if len(r) > self.text_seq_len]
        if long:
            i, n = max(long, key=lambda item: item[1])
            if on_overflow == "error":
                raise ValueError(f"caption {i} of the batch: " + self._overflow_message(n)
                                 + f" ({len(long)} of {len(texts)} captions are too long)")
            warnings.warn(f"{len(long)} of {len(texts)} captions have more than {self.text_seq_len} "
                          f"tokens (the longest, caption {i}, has {n}); keeping the first "
                          f"{self.text_seq_len} tokens of each. Shorten them, or pass "
                          "on_overflow='error' to raise instead", stacklevel=2)
        return torch.tensor([self._fit(r) for r in rows], dtype=torch.long).reshape(len(rows), self.text_seq_len)

    # -- decoding and inspection ----------------------------------------------------------------

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Ids -> caption text (normalized: lowercase, single spaces); `<pad>` is dropped."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self._tok.decode(list(ids), skip_special_tokens=True).strip()

    def tokens(self, text: str) -> list[str]:
        """The subword pieces of `text` as `tokenizers` prints them ('Ġ' is the space before a word)."""
        return self._tok.encode(text).tokens

    def merges(self) -> list[tuple[str, str]]:
        """The learned merges, in order, as pairs of token strings."""
        return [tuple(m) for m in json.loads(self._tok.to_str())["model"]["merges"]]

    def vocab(self) -> dict[str, int]:
        """Token string -> id, for every token including `<pad>`."""
        return self._tok.get_vocab()

    def __repr__(self) -> str:
        return f"CaptionTokenizer(vocab_size={self.vocab_size}, text_seq_len={self.text_seq_len})"


def train_default(preset: str = "cpu", n_captions: int = 20000, seed: int = 0,
                  path: str | os.PathLike | None = None, overwrite_shipped: bool = False) -> Path:
    """Train on the Shapes training captions with the preset's sizes and save (data/tokenizer.json).

    The shipped data/tokenizer.json (listed in data/MANIFEST.json) is replaced only with
    `overwrite_shipped=True`; otherwise give another `path`."""
    from dalle_lessons.manifest import shipped_entry
    from dalle_lessons.shapes import caption_corpus  # imported here: shapes is heavier

    target = Path(path) if path is not None else default_path()
    if target.exists() and shipped_entry(target) is not None and not overwrite_shipped:
        raise ValueError(f"{target} is a shipped file (listed in data/MANIFEST.json) and training would replace it: "
                         "pass another path= (CLI: --out DIR), or overwrite_shipped=True (--overwrite-shipped) "
                         "to replace it on purpose")

    sizes = get_preset(preset).transformer
    captions = caption_corpus(n_captions, split="train", seed=seed)
    tok = CaptionTokenizer.train(captions, vocab_size=sizes.text_vocab_size,
                                 text_seq_len=sizes.text_seq_len)
    return tok.save(path)
