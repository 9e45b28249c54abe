"""How good is the small CLIP? Retrieval among test pairs, and the binding probe.

    python -m dalle_lessons evaluate clip [--json]

- Retrieval: 1,000 test images and their captions; for each image, rank the 1,000 captions (and for
  each caption, the 1,000 images). R@k "pair" counts a hit when the item's own partner is in the
  top k; R@k "true" when any item in the top k is truly described (many captions fit many images
  in a toy world: "a red circle" fits every lone red circle).
- The binding probe: each image against its canonical caption and every caption one change away
  (`clip_data.probe_variants`). Accuracy per kind is the share of (image, variant) pairs where the
  true caption scores higher. Reported for seen color-shape pairs (test split) and held-out pairs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .clip import ClipModel
from .clip_data import PROBE_KINDS, encode_claims, encode_scenes, match_tensor, probe_variants
from .shapes import Scene, ShapesDataset
from .tokenizer import CaptionTokenizer


def tokenizer_fingerprint(tokenizer: CaptionTokenizer) -> str:
    """A digest of the tokenizer's vocabulary and merges (not its padding length): which ids mean what."""
    payload = json.dumps([sorted(tokenizer.vocab().items()), tokenizer.merges()])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@torch.no_grad()
def embed_texts(model: ClipModel, tokenizer: CaptionTokenizer, captions: list[str], batch_size: int = 1000) -> torch.Tensor:
    """Unit caption embeddings [n, embed_dim]."""
    device = next(model.parameters()).device
    ids = tokenizer.encode_batch(captions, on_overflow="warn")  # only `tiny` (16 positions) ever truncates
    return torch.cat([model.encode_text(ids[i:i + batch_size].to(device)) for i in range(0, len(ids), batch_size)])


@torch.no_grad()
def embed_images(model: ClipModel, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Unit image embeddings [n, embed_dim] from uint8 or float images [n, 3, H, W]."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        batch = images[i:i + batch_size].to(device)
        out.append(model.encode_image(batch.float() / 255 if batch.dtype == torch.uint8 else batch.float()))
    return torch.cat(out)


def retrieval(model: ClipModel, tokenizer: CaptionTokenizer, images: torch.Tensor, captions: list[str],
              claims: list, scenes: list[Scene], ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """R@k in both directions among n (image, caption) pairs, 'pair' and 'true' hits (percent)."""
    sims = embed_texts(model, tokenizer, captions) @ embed_images(model, images).T  # [caption, image]
    true = match_tensor(encode_claims(claims), encode_scenes(scenes)).to(sims.device)
    n = len(captions)
    out = {}
    for direction, s, t in (("image_to_text", sims.T, true.T), ("text_to_image", sims, true)):
        order = s.argsort(dim=1, descending=True)
        for k in ks:
            top = order[:, :k]
            pair = (top == torch.arange(n, device=s.device)[:, None]).any(1).float().mean().item()
            hit = t.gather(1, top).any(1).float().mean().item()
            out[f"{direction}_r{k}_pair"] = 100 * pair
            out[f"{direction}_r{k}_true"] = 100 * hit
    return out


def binding_probe(model: ClipModel, tokenizer: CaptionTokenizer, images: torch.Tensor,
                  scenes: list[Scene]) -> dict[str, dict[str, float]]:
    """Per kind: accuracy (percent) of the true caption over each one-change variant, and the number of pairs."""
    image_emb = embed_images(model, images)
    captions, owner, kinds = [], [], []  # every caption to embed; its image; its kind ("true" or a probe kind)
    for i, scene in enumerate(scenes):
        true, variants = probe_variants(scene)
        captions.append(true), owner.append(i), kinds.append("true")
        for kind, texts in variants.items():
            captions += texts
            owner += [i] * len(texts)
            kinds += [kind] * len(texts)
    text_emb = embed_texts(model, tokenizer, captions)
    owner_t = torch.tensor(owner, device=image_emb.device)
    scores = (text_emb * image_emb[owner_t]).sum(-1)
    true_score = torch.zeros(len(scenes), device=scores.device)
    is_true = torch.tensor([k == "true" for k in kinds], device=scores.device)
    true_score[owner_t[is_true]] = scores[is_true]
    report = {}
    for kind in PROBE_KINDS:
        rows = torch.tensor([k == kind for k in kinds], device=scores.device)
        if rows.any():
            wins = scores[rows] < true_score[owner_t[rows]]
            report[kind] = {"accuracy": 100 * wins.float().mean().item(), "pairs": int(rows.sum())}
    return report


def probe_summary(report: dict[str, dict[str, float]]) -> float:
    """The mean accuracy over probe kinds (each kind weighs the same)."""
    return sum(r["accuracy"] for r in report.values()) / len(report)


def evaluate_clip(model: ClipModel, tokenizer: CaptionTokenizer, n: int = 1000, probe_n: int = 1000,
                  preset: str = "cpu", seed: int = 0) -> dict:
    """Retrieval among `n` test pairs and the binding probe on `probe_n` seen and `probe_n` held-out scenes."""
    test = ShapesDataset("test", n, preset=preset, seed=seed, cache=True)
    claims = [test.item_claim(i) for i in range(n)]
    report = {"retrieval": retrieval(model, tokenizer, test.images_uint8(), [c for c, _ in claims],
                                     [c for _, c in claims], test.scenes), "probe": {}}
    for name, split in (("seen", "test"), ("heldout", "heldout")):
        rows = {}
        for objects in (1, 2):
            data = ShapesDataset(split, probe_n // 2, preset=preset, seed=seed, n_objects=objects, cache=True)
            for kind, r in binding_probe(model, tokenizer, data.images_uint8(), data.scenes).items():
                old = rows.get(kind, {"accuracy": 0.0, "pairs": 0})
                pairs = old["pairs"] + r["pairs"]
                rows[kind] = {"accuracy": (old["accuracy"] * old["pairs"] + r["accuracy"] * r["pairs"]) / pairs,
                              "pairs": pairs}
        report["probe"][name] = rows
    return report


def load_clip(path: str | Path | None = None, preset: str = "cpu", device: str = "cpu") -> tuple[ClipModel, dict]:
    """A CLIP checkpoint (default: the shipped data/clip-PRESET) and the metadata saved with it."""
    from . import checkpoints
    from .paths import data_dir
    path = Path(path) if path is not None else data_dir() / f"clip-{preset}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"no CLIP checkpoint at {path}: train one with "
                                f"`python -m dalle_lessons train clip --preset {preset}`, or pass its path")
    model = checkpoints.load(path, map_location=device)
    if not isinstance(model, ClipModel):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a ClipModel: pass a CLIP checkpoint")
    return model, checkpoints.read_metadata(path)
