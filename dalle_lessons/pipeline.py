"""Text to image in one object: `TextToImage` = tokenizer + transformer + dVAE.

    pipe = TextToImage.from_pretrained()          # the shipped `cpu` model in data/
    images = pipe.generate("a small red circle above a blue square", n=4, seed=0, size="256x256")

The prompt becomes caption ids (tokenizer), the transformer samples image tokens one at a time
(`sampling.generate_image_tokens`, with the KV cache), and the dVAE decodes them to pixels. The same
seed gives the same images; `seed=None` draws fresh randomness. `save_pretrained(dir)` writes the
three parts into one folder that `from_pretrained(dir)` reads back.
"""
from __future__ import annotations

import json
import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import checkpoints
from .dvae import DiscreteVAE
from .environment import resolve_device
from .paths import data_dir
from .sampling import MAX_SEED, check_seed, generate_image_tokens, iter_image_tokens, row_generators
from .clip import ClipModel
from .clip_eval import load_clip
from .clip_eval import tokenizer_fingerprint as tokenizer_fingerprint_of
from .rerank import check_rerank, clip_mismatches, rerank_candidates
from .tokenizer import CaptionTokenizer
from .transformer import DalleTransformer

#: The sampling settings `generate` uses unless told otherwise, measured on the shipped `cpu` model with
#: `python -m dalle_lessons evaluate generation [--sweep]` (100 captions x 4 samples per set, all-correct %
#: on sets a / b / c, float16 weights): temperature 1.0 gives 83.5 / 4.8 / 58.8, temperature 0.7 89.5 / 5.8 /
#: 72.5, adding top-p 0.9 and guidance 1.5 91.2 / 9.5 / 78.5 (91.2 / 10.0 / 77.2 with other sampling seeds). The price:
#: a little diversity (2.6 instead of 2.9 distinct scenes of 4) and a doubled batch for guidance. Guidance
#: of 2 or more breaks this small model's pictures; greedy draws one picture per caption.
DEFAULT_SAMPLING: dict = {"temperature": 0.7, "top_k": None, "top_p": 0.9, "guidance_scale": 1.5}

#: Output sizes on offer: the native resolution upsampled by a whole factor (see `TextToImage.sizes`).
SIZES = ("32x32", "64x64", "128x128", "256x256", "512x512")
RESAMPLING = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
              "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
MAX_IMAGES_PER_PROMPT = 64  # a grid of 64 is already more than a person looks at; ask again with another seed
MAX_BATCH = 64  # rows sampled together; more are sampled in chunks of this many (memory stays bounded)
MAX_IMAGES_PER_CALL = 256  # prompts x n in one call: about a minute on a laptop CPU; more is a loop of calls
PROMPT_QUOTE = 80  # characters of a prompt quoted in a message (a 100 kB prompt is not echoed)

FORMAT = "dalle_lessons-pipeline-v1"
PARTS = {"tokenizer": "tokenizer.json", "dvae": "dvae.safetensors", "transformer": "transformer.safetensors"}
SHIPPED_CLIP = ("clip-cpu.safetensors", "python -m dalle_lessons train clip --preset cpu --seed 0")
SHIPPED = {  # the default pipeline's files in data/, and the command that writes each one
    "tokenizer": ("tokenizer.json", "python -m dalle_lessons train tokenizer --preset cpu"),
    "dvae": ("dvae-cpu.safetensors", "python -m dalle_lessons train dvae --preset cpu --seed 0"),
    "transformer": ("dalle-cpu.safetensors", "python -m dalle_lessons train dalle --preset cpu --seed 0"),
}


@dataclass
class RankedImages:
    """What `generate_ranked` returns: the chosen token grids and how CLIP scored every candidate."""

    ids: torch.Tensor  # [P * n, N] the chosen image tokens, prompt-major
    scores: torch.Tensor  # [P * n] CLIP's cosine similarity of each chosen image to its prompt
    candidate_scores: torch.Tensor  # [P * n, rerank] every candidate's score
    chosen: torch.Tensor  # [P * n] which candidate won
    candidates: torch.Tensor  # [P * n * rerank, N] every candidate's tokens


def part_mismatches(tokenizer: CaptionTokenizer, dvae: DiscreteVAE, transformer: DalleTransformer) -> list[str]:
    """What keeps three parts from working together (empty when they fit)."""
    d, t = dvae.config, transformer.config
    problems = []
    if d.codebook_size != t.image_vocab_size:
        problems.append(f"the dVAE has {d.codebook_size} codes but the transformer predicts "
                        f"{t.image_vocab_size} image tokens")
    if d.grid_size != t.image_grid:
        problems.append(f"the dVAE's token grid is {d.grid_size}x{d.grid_size} but the transformer "
                        f"samples {t.image_grid}x{t.image_grid}")
    if tokenizer.vocab_size > t.text_vocab_size:
        problems.append(f"the tokenizer has {tokenizer.vocab_size} text tokens but the transformer "
                        f"reads only {t.text_vocab_size}")
    if tokenizer.text_seq_len != t.text_seq_len:
        problems.append(f"the tokenizer pads captions to {tokenizer.text_seq_len} tokens but the "
                        f"transformer reads {t.text_seq_len} (a tokenizer for it: "
                        f"CaptionTokenizer(..., text_seq_len={t.text_seq_len}))")
    if tokenizer.pad_id != t.pad_id:
        problems.append(f"the tokenizer pads with id {tokenizer.pad_id} but the transformer's pad_id is {t.pad_id}")
    return problems


def sampling_settings(overrides: dict) -> dict:
    """DEFAULT_SAMPLING with `overrides` applied; an unknown name is an error that lists the known ones."""
    unknown = sorted(set(overrides) - set(DEFAULT_SAMPLING))
    if unknown:
        raise TypeError(f"unknown sampling setting(s) {', '.join(unknown)}: choose from "
                        f"{', '.join(DEFAULT_SAMPLING)}")
    return {**DEFAULT_SAMPLING, **overrides}


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _check_count(n: int) -> int:
    """n images per prompt, as an int: at least 1, at most MAX_IMAGES_PER_PROMPT."""
    if not _is_int(n):
        raise TypeError(f"n must be an int (images per prompt), got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n={n}: ask for at least 1 image per prompt")
    if n > MAX_IMAGES_PER_PROMPT:
        raise ValueError(f"n={n} images per prompt is too many: the most is {MAX_IMAGES_PER_PROMPT}; "
                         "for more, call again with another seed")
    return int(n)


def _check_total(prompts: int, n: int) -> None:
    """At most MAX_IMAGES_PER_CALL images in one call, refused before any work."""
    if prompts * n > MAX_IMAGES_PER_CALL:
        raise ValueError(f"{prompts} prompt(s) x n={n} = {prompts * n} images in one call is too many: the most is "
                         f"{MAX_IMAGES_PER_CALL}; split the prompts over several calls (same seed, same images)")


def quote(prompt: str, limit: int = PROMPT_QUOTE) -> str:
    """A prompt for a message: repr'd, cut to `limit` characters with the total length said."""
    if len(prompt) <= limit:
        return repr(prompt)
    return f"{prompt[:limit]!r}... ({len(prompt):,} characters)"


def _check_file(path: Path, what: str, fix: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (the {what}): {fix}")
    return path


def _load_model(path: Path, kind: type, device: str) -> tuple[torch.nn.Module, dict]:
    """A checkpoint of class `kind`, on `device`, and the free-form metadata saved with it."""
    model = checkpoints.load(path, map_location=device)
    if not isinstance(model, kind):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a {kind.__name__}: "
                         "check which file goes where")
    return model, checkpoints.read_metadata(path).get("extra", {})


class TextToImage:
    """Prompt in, images out: a CaptionTokenizer, a DiscreteVAE and a DalleTransformer that fit together."""

    def __init__(self, tokenizer: CaptionTokenizer, dvae: DiscreteVAE, transformer: DalleTransformer,
                 provenance: dict | None = None):
        problems = part_mismatches(tokenizer, dvae, transformer)
        if problems:
            raise ValueError("the pipeline's parts do not fit together (" + "; ".join(problems)
                             + "): use a tokenizer, dVAE and transformer made for the same preset "
                               "(train each with the same --preset)")
        self.tokenizer, self.dvae, self.transformer = tokenizer, dvae.eval(), transformer.eval()
        self.dvae.to(self.device)
        self.provenance = provenance or {}  # what each checkpoint recorded about its training
        self._clip, self._clip_path = None, None  # the reranker: set_reranker, or loaded on first use


    # --- loading and saving --------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, device: str | None = None,
                        adapter: str | os.PathLike | None = None, merge_adapter: bool = True) -> TextToImage:
        """Load the shipped `cpu` pipeline from data/ (path None) or a folder written by `save_pretrained`.

        `device` defaults to the GPU when there is one, else the CPU. `adapter`: a LoRA adapter written by
        `finetune --method lora` (its .safetensors file, or its folder), trained on exactly this pipeline's
        transformer (checked); merged into the weights, or kept as LoRA modules with `merge_adapter=False`.
        """
        device = resolve_device(device)  # an unknown device, or cuda without a GPU, fails before any loading
        if adapter is not None:
            from .lora import load_adapter, read_adapter_metadata
            read_adapter_metadata(adapter)  # a missing or foreign adapter fails before the model loads
            pipe = cls.from_pretrained(path, device)
            load_adapter(pipe.transformer, adapter, merge=merge_adapter)
            pipe.transformer.eval()
            pipe.provenance["adapter"] = str(adapter)
            return pipe
        if path is None:
            return cls._from_data_dir(device)
        if not isinstance(path, (str, os.PathLike)):
            shown = repr(path) if len(repr(path)) <= 60 else f"a {type(path).__name__}"
            raise TypeError(f"from_pretrained takes a folder written by save_pretrained (a str or path), or None "
                            f"for the shipped cpu model; got {shown}")
        folder = Path(path)
        if not folder.exists():
            raise FileNotFoundError(f"no pipeline at {folder}: save one there with "
                                    "TextToImage.save_pretrained(path), or call from_pretrained() "
                                    "without a path for the shipped cpu model")
        if not folder.is_dir():
            raise ValueError(f"{folder} is a file; from_pretrained expects the folder written by "
                             "save_pretrained (or no path at all, for the shipped cpu model)")
        index = _check_file(folder / "pipeline.json", "pipeline index",
                            "this folder was not written by TextToImage.save_pretrained (or the save "
                            "was interrupted): save the pipeline there again")
        meta = checkpoints._read_json(index)  # an LFS pointer, an empty file or a non-dict: one line
        if meta.get("format") != FORMAT:
            raise ValueError(f"{index} is not a {FORMAT} file (format {meta.get('format')!r}): "
                             "save the pipeline again with this version's save_pretrained")
        again = "the save is incomplete: save the pipeline there again with save_pretrained"
        files = {part: _check_file(folder / meta.get(part, name), part, again) for part, name in PARTS.items()}
        pipe = cls._from_files(files, device)
        if meta.get("clip") and (folder / meta["clip"]).is_file():
            pipe._clip_path = folder / meta["clip"]
        return pipe

    @classmethod
    def _from_data_dir(cls, device: str) -> TextToImage:
        """The course's shipped parts: data/tokenizer.json, dvae-cpu and dalle-cpu."""
        folder = data_dir()
        files = {part: _check_file(folder / name, part, f"restore it from git, or create it with `{command}`")
                 for part, (name, command) in SHIPPED.items()}
        pipe = cls._from_files(files, device)
        pipe._clip_path = folder / SHIPPED_CLIP[0]  # loaded only when a caller reranks
        return pipe

    @classmethod
    def _from_files(cls, files: dict[str, Path], device: str) -> TextToImage:
        tokenizer = CaptionTokenizer.load(files["tokenizer"])
        dvae, dvae_extra = _load_model(files["dvae"], DiscreteVAE, device)
        transformer, transformer_extra = _load_model(files["transformer"], DalleTransformer, device)
        return cls(tokenizer, dvae, transformer, {"dvae": dvae_extra, "transformer": transformer_extra})

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write pipeline.json, tokenizer.json, dvae.* and transformer.* (safetensors + JSON) into `path`."""
        from .paths import check_output_dir
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{folder} is a file: save_pretrained writes a folder, give it a folder path")
        check_output_dir(folder)  # unwritable (under a file, /proc, read-only): one line, before any writing
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(folder / PARTS["tokenizer"])
        checkpoints.save(self.dvae, self.dvae.config, folder / PARTS["dvae"], extra=self.provenance.get("dvae"))
        checkpoints.save(self.transformer, self.transformer.config, folder / PARTS["transformer"],
                         extra=self.provenance.get("transformer"))
        index = {"format": FORMAT, **PARTS, "image_size": self.native_size,
                 "image_tokens": self.transformer.config.image_seq_len}
        if self._clip is not None or (self._clip_path is not None and self._clip_path.is_file()):
            clip = self.reranker
            checkpoints.save(clip, clip.config, folder / "clip.safetensors", extra=self.provenance.get("clip"),
                             dtype=torch.float16)
            index["clip"] = "clip.safetensors"
        tmp = folder / f".pipeline.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(index, indent=1) + "\n")
        os.replace(tmp, folder / "pipeline.json")  # written last: its presence marks a complete save
        return folder

    def to(self, device: str | torch.device) -> TextToImage:
        device = resolve_device(str(device))  # "foo" or cuda without a GPU: one line, nothing moved
        self.dvae.to(device)
        self.transformer.to(device)
        if self._clip is not None:
            self._clip.to(device)
        return self

    # --- the reranker (lesson 08) ----------------------------------------------------------------------

    def set_reranker(self, clip: ClipModel, tokenizer_fingerprint: str | None = None) -> TextToImage:
        """Use `clip` to rerank; it must read this pipeline's image size and tokenizer (checked).

        `tokenizer_fingerprint`: the one recorded when `clip` was trained (its checkpoint's JSON);
        None skips that part of the check.
        """
        if not isinstance(clip, ClipModel):
            raise TypeError(f"the reranker must be a ClipModel, got {type(clip).__name__}")
        problems = clip_mismatches(clip, tokenizer_fingerprint, tokenizer_fingerprint_of(self.tokenizer),
                                   self.tokenizer.text_seq_len, self.native_size)
        if problems:
            raise ValueError("this CLIP cannot rerank this pipeline's images (" + "; ".join(problems)
                             + "): train CLIP for the same preset and tokenizer "
                               "(`python -m dalle_lessons train clip --preset PRESET`)")
        self._clip = clip.eval().to(self.device)
        return self

    @property
    def reranker(self) -> ClipModel:
        """The CLIP that `generate(..., rerank=N)` uses (the shipped one is loaded on first use)."""
        if self._clip is None:
            path = self._clip_path
            if path is None or not path.is_file():
                where = f" ({path} is missing: restore it from git, or create it with `{SHIPPED_CLIP[1]}`)" if path else ""
                raise FileNotFoundError(f"this pipeline has no CLIP reranker{where}; give it one with "
                                        "pipe.set_reranker(clip)")
            clip, meta = load_clip(path, device=str(self.device))
            self.set_reranker(clip, meta.get("extra", {}).get("tokenizer"))
            self.provenance["clip"] = {k: v for k, v in meta.get("extra", {}).items() if k != "history"}
        return self._clip

    # --- sizes -----------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.transformer.image_head.weight.device

    @property
    def native_size(self) -> int:
        """Pixels per side of the images the dVAE draws (32 for the `cpu` model)."""
        return self.dvae.config.image_size

    @property
    def grid(self) -> int:
        """Image tokens per side (8 for the `cpu` model)."""
        return self.dvae.config.grid_size

    def sizes(self) -> list[str]:
        """The sizes `generate` accepts: the native one and every size in SIZES that is a whole multiple of it."""
        native = self.native_size
        sides = {native} | {int(s.split("x")[0]) for s in SIZES if int(s.split("x")[0]) % native == 0}
        return [f"{side}x{side}" for side in sorted(sides)]

    def _output_side(self, size: str | None) -> int:
        if size is None:
            return self.native_size
        if size not in self.sizes():
            raise ValueError(f"unknown size {size!r}: choose one of {', '.join(self.sizes())} (the model draws "
                             f"{self.native_size}x{self.native_size}; larger sizes are upsampled)")
        return int(size.split("x")[0])

    # --- prompts ---------------------------------------------------------------------------------------

    def encode_prompts(self, prompts: str | Sequence[str], on_overflow: str = "warn") -> torch.Tensor:
        """One prompt or a list -> caption ids [P, T]; an empty prompt is an error.

        A prompt longer than the model's T text tokens keeps its first T tokens with a warning
        (`on_overflow="warn"`, the default, as in training) or is an error (`on_overflow="error"`).
        """
        if on_overflow not in ("warn", "error"):
            raise ValueError(f"on_overflow={str(on_overflow)[:20]!r} is not valid: choose 'warn' or 'error'")
        if isinstance(prompts, str):
            prompts = [prompts]
        elif isinstance(prompts, (list, tuple)):
            prompts = list(prompts)
        else:
            raise TypeError(f"a prompt must be a str (or a list of str), got {type(prompts).__name__}")
        if not prompts:
            raise ValueError("no prompt given: pass a caption, or a list of captions")
        if len(prompts) > MAX_IMAGES_PER_CALL:
            raise ValueError(f"{len(prompts)} prompts in one call is too many: the most is {MAX_IMAGES_PER_CALL}; "
                             "split them over several calls")
        T = self.tokenizer.text_seq_len
        long = []
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise TypeError(f"prompt {i + 1} must be a str, got {type(prompt).__name__}")
            if not prompt.strip():
                raise ValueError(f"empty prompt {quote(prompt)}: describe the picture, e.g. "
                                 "'a small red circle above a blue square'")
            if "\x00" in prompt:
                raise ValueError(f"prompt {quote(prompt)} contains a NUL character (\\x00): remove it")
            n_tokens = self.tokenizer.count_tokens(prompt)
            if n_tokens > T:
                long.append((prompt, n_tokens))
        if long:
            prompt, n_tokens = long[0]
            message = (f"the prompt {quote(prompt)} is too long: {n_tokens} tokens, and the model reads at most {T}"
                       + (f" ({len(long)} prompts are too long)" if len(long) > 1 else ""))
            if on_overflow == "error":
                raise ValueError(message + "; shorten it")
            warnings.warn(message + f"; keeping the first {T} tokens (shorten it, or pass on_overflow='error' to "
                          "make this an error)", stacklevel=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # warned about above, once, with the prompt quoted
            return self.tokenizer.encode_batch(prompts, on_overflow="warn")

    # --- sampling --------------------------------------------------------------------------------------

    def _generator(self, seed: int | None) -> torch.Generator:
        """A generator on the model's device: seeded, or (seed None) freshly seeded from the OS."""
        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
            return generator
        return generator.manual_seed(check_seed(seed))

    def _row_generators(self, seed: int | None, prompts: int, n: int) -> list[torch.Generator]:
        """One random stream per image, prompt-major: image k of every prompt draws from `row_seed(seed, k)`,
        so image k is the same whether n is 1 or 64, and whether its prompt comes alone or in a list."""
        seed = int.from_bytes(os.urandom(8), "big") & MAX_SEED if seed is None else check_seed(seed)
        return [g for _ in range(prompts) for g in row_generators(seed, n, self.device)]

    def _sample(self, text_ids: torch.Tensor, generator: torch.Generator | list[torch.Generator], settings: dict,
                prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Image tokens for each caption row, MAX_BATCH rows at a time, from one generator or one per row."""
        text_ids = text_ids.to(self.device)
        prefix = prefix.to(self.device) if prefix is not None else None
        per_row = isinstance(generator, list)
        chunks = []
        for start in range(0, len(text_ids), MAX_BATCH):
            rows = slice(start, start + MAX_BATCH)
            streams = dict(generators=generator[rows]) if per_row else dict(generator=generator)
            chunks.append(generate_image_tokens(self.transformer, text_ids[rows], **streams,
                                                prefix=prefix[rows] if prefix is not None else None, **settings))
        return torch.cat(chunks)

    def generate_tokens(self, prompt: str | Sequence[str], n: int = 1, seed: int | None = None,
                        on_overflow: str = "warn", **sampling) -> torch.Tensor:
        """Image token ids [P * n, N], prompt-major: the n images of prompt 0, then of prompt 1, ...

        `sampling`: temperature, top_k, top_p, guidance_scale (defaults: DEFAULT_SAMPLING). Each image has
        its own random stream (`_row_generators`): image k of seed s does not depend on n or the other prompts.
        """
        settings = sampling_settings(sampling)
        n = _check_count(n)
        text = self.encode_prompts(prompt, on_overflow)
        _check_total(len(text), n)
        return self._sample(text.repeat_interleave(n, dim=0), self._row_generators(seed, len(text), n), settings)

    # --- pixels ----------------------------------------------------------------------------------------

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Image token ids [B, N] -> images [B, 3, H, W], floats in [0, 1] (native size)."""
        N, g = self.transformer.config.image_seq_len, self.grid
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.shape[1] != N:
            shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"decode expects image token ids [batch, {N}] ({g}x{g} in raster order), got {shape}")
        with torch.no_grad():
            return self.dvae.decode(ids.to(self.device).view(-1, g, g))

    def encode_image(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        """A native-size image (PIL, or a [3, H, W] float tensor in [0, 1]) -> its N image token ids."""
        side = self.native_size
        if isinstance(image, Image.Image):
            if image.size != (side, side):
                raise ValueError(f"the image is {image.size[0]}x{image.size[1]} but the model reads "
                                 f"{side}x{side}: resize it first (image.resize(({side}, {side})))")
            image = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255
        if not isinstance(image, torch.Tensor) or tuple(image.shape) != (3, side, side):
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"expected a PIL image or a [3, {side}, {side}] tensor in [0, 1], got {shape}")
        image = image.float()
        if not torch.isfinite(image).all():
            raise ValueError(f"the image has {int((~torch.isfinite(image)).sum())} NaN or infinite values: "
                             "give pixel values in [0, 1]")
        if image.min() < 0 or image.max() > 1:
            raise ValueError(f"image values must lie in [0, 1], got [{image.min():.3g}, {image.max():.3g}]: "
                             "divide 8-bit pixel values by 255")
        return self.dvae.encode(image[None].to(self.device)).flatten()

    def to_pil(self, images: torch.Tensor, size: str | None = None, resample: str = "nearest") -> list[Image.Image]:
        """Images [B, 3, H, W] in [0, 1] -> PIL images, upsampled to `size` (nearest-neighbour by default)."""
        side = self._output_side(size)
        if resample not in RESAMPLING:
            raise ValueError(f"unknown resample {resample!r}: choose one of {', '.join(RESAMPLING)}")
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"to_pil expects images [batch, 3, H, W] in [0, 1], got {shape}")
        if not torch.isfinite(images).all():  # clamp would turn NaN into black without a word
            raise ValueError(f"the images hold {int((~torch.isfinite(images)).sum())} NaN or infinite values: "
                             "a model or a computation upstream has diverged; reload the model "
                             "(from_pretrained) or pass finite values in [0, 1]")
        array = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        pictures = [Image.fromarray(a, "RGB") for a in array]
        if side == images.shape[-1]:
            return pictures
        return [p.resize((side, side), RESAMPLING[resample]) for p in pictures]

    # --- the three ways to make images -----------------------------------------------------------------

    def generate(self, prompt: str | Sequence[str], n: int = 1, size: str | None = None,
                 seed: int | None = None, resample: str = "nearest", rerank: int = 1,
                 **sampling) -> list[Image.Image]:
        """n images per prompt as PIL images (prompt-major), at `size` (default: native).

        `sampling`: temperature, top_k, top_p, guidance_scale (defaults: DEFAULT_SAMPLING). The same
        seed gives the same images. `rerank=N` samples N candidates per image and keeps the one CLIP
        scores highest (DALL·E's reranking; `generate_ranked` also returns the scores).
        """
        self._output_side(size)  # a bad size fails before any sampling
        if check_rerank(rerank) > 1:
            ids = self.generate_ranked(prompt, n=n, rerank=rerank, seed=seed, **sampling).ids
        else:
            ids = self.generate_tokens(prompt, n=n, seed=seed, **sampling)
        return self.to_pil(self.decode(ids), size, resample)

    def generate_ranked(self, prompt: str | Sequence[str], n: int = 1, rerank: int = 16,
                        seed: int | None = None, on_overflow: str = "warn", **sampling) -> RankedImages:
        """n images per prompt, each the best by CLIP score of `rerank` candidates, with every score.

        The n * rerank candidates of a prompt are sampled in one batch and scored in one CLIP pass.
        Candidate j of image k draws from stream k * rerank + j: the candidates of `n=1, rerank=N` are
        exactly the images of `generate_tokens(prompt, n=N)` with the same seed.
        """
        settings = sampling_settings(sampling)
        n = _check_count(n)
        text = self.encode_prompts(prompt, on_overflow)
        rerank = check_rerank(rerank, len(text) * n)
        clip = self.reranker
        rows = text.repeat_interleave(n * rerank, dim=0)
        candidates = self._sample(rows, self._row_generators(seed, len(text), n * rerank), settings)
        pixels = torch.cat([self.decode(candidates[i:i + MAX_BATCH]) for i in range(0, len(candidates), MAX_BATCH)])
        ranked = rerank_candidates(clip, pixels, rows, per_group=rerank)
        return RankedImages(ranked.chosen(candidates), ranked.best_scores, ranked.scores, ranked.best, candidates)

    def complete_tokens(self, prompt: str, image: Image.Image | torch.Tensor, rows: int, n: int = 1,
                        seed: int | None = None, on_overflow: str = "warn", **sampling) -> torch.Tensor:
        """Image token ids [n, N] whose top `rows` token rows are `image`'s and the rest drawn from `prompt`."""
        if not isinstance(prompt, str):
            raise TypeError("complete takes one prompt (a str); call it once per prompt")
        g = self.grid
        if not _is_int(rows) or not 0 <= rows <= g:
            raise ValueError(f"rows must be an int from 0 to {g} (the image has {g} token rows), got {rows!r}")
        settings = sampling_settings(sampling)
        n = _check_count(n)
        text = self.encode_prompts(prompt, on_overflow).repeat_interleave(n, dim=0)
        prefix = self.encode_image(image)[: int(rows) * g].expand(n, -1)
        return self._sample(text, self._row_generators(seed, 1, n), settings, prefix=prefix)

    def complete(self, prompt: str, image: Image.Image | torch.Tensor, rows: int, n: int = 1,
                 seed: int | None = None, size: str | None = None, resample: str = "nearest",
                 **sampling) -> list[Image.Image]:
        """Keep the top `rows` token rows of `image` (native size) and draw the rest from `prompt`:
        DALL·E's image completion. Returns n PIL images at `size`."""
        self._output_side(size)
        ids = self.complete_tokens(prompt, image, rows, n=n, seed=seed, **sampling)
        return self.to_pil(self.decode(ids), size, resample)

    def progressive(self, prompt: str, n: int = 1, seed: int | None = None, every: int = 1,
                    on_overflow: str = "warn", **sampling) -> Iterator[torch.Tensor]:
        """Partial images [n, 3, H, W] as the tokens arrive: one every `every` tokens, and the finished one last.

        Cells not generated yet are a neutral grey. The last picture equals
        `decode(generate_tokens(prompt, n, seed, ...))`.
        """
        if not _is_int(every) or every < 1:
            raise ValueError(f"every must be an int >= 1 (a picture every that many tokens), got {every!r}")
        if not isinstance(prompt, str):
            raise TypeError("progressive takes one prompt (a str); call it once per prompt")
        settings = sampling_settings(sampling)
        n = _check_count(n)
        text = self.encode_prompts(prompt, on_overflow).repeat_interleave(n, dim=0).to(self.device)
        steps = iter_image_tokens(self.transformer, text, generators=self._row_generators(seed, 1, n), **settings)
        N = self.transformer.config.image_seq_len
        return (self._partial_image(t) for t in steps if t.shape[1] % every == 0 or t.shape[1] == N)

    def _partial_image(self, tokens: torch.Tensor) -> torch.Tensor:
        """Decode the first k tokens of each row; paint the cells not generated yet grey."""
        B, k = tokens.shape
        N, g = self.transformer.config.image_seq_len, self.grid
        if k == N:
            return self.decode(tokens)
        full = torch.zeros(B, N, dtype=torch.long, device=tokens.device)
        full[:, :k] = tokens
        pixels = self.decode(full)
        cell = self.native_size // g
        known = (torch.arange(N, device=pixels.device) < k).view(1, 1, g, g).float()
        known = F.interpolate(known, scale_factor=cell, mode="nearest").bool()
        return torch.where(known, pixels, torch.full_like(pixels, 0.5))

    def __repr__(self) -> str:
        t = self.transformer.config
        return (f"TextToImage({self.native_size}x{self.native_size} images from {t.image_grid}x{t.image_grid} "
                f"tokens, transformer {self.transformer.num_parameters() / 1e6:.1f}M parameters, "
                f"device {self.device})")
