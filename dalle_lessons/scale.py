"""The arithmetic of scale: parameters, FLOPs, memory and time to train, for any preset (lesson 12).

Every figure here is computed from a preset's config with closed-form counts, not measured, so the
12-billion-parameter `paper` preset costs nothing to describe. The tests check each formula against
the real thing: parameter counts against `sum(p.numel())` of the models (the paper's built on the
`meta` device), FLOPs against `torch.utils.flop_counter.FlopCounterMode` on the `tiny` model.

Where the formulas come from:
- FLOPs: a matrix product [m, k] @ [k, n] costs 2·m·k·n (one multiply and one add per term). So a
  linear layer with P weights costs 2·P FLOPs per token it reads; over a model's weight matrices that
  is the familiar ~2·N FLOPs per token forward (Kaplan et al. 2020, "Scaling Laws for Neural Language
  Models", table 1). Attention adds the context-dependent term: scores Q·Kᵀ and the weighted sum
  A·V cost 2·d each per (query, key) pair, 4·d per pair in all. Embedding lookups cost nothing;
  LayerNorm, softmax and GELU (elementwise) are left out, a few per cent at most.
- Training: the backward pass computes two products per forward product (the gradient with respect
  to the input and to the weight), so a training step is 3 forward passes: 6·N FLOPs per token, the
  "6·N·D" rule. Activation checkpointing recomputes the forward during the backward: 4 forward passes.
- Memory (Rajbhandari et al. 2020, "ZeRO", section 3.1): Adam keeps two fp32 moments, 8 bytes per
  parameter. fp32 training: 4 (weights) + 4 (gradients) + 8 = 16 bytes per parameter. Mixed
  precision (Micikevicius et al. 2018) keeps fp16 weights and gradients (2 + 2) *and* an fp32 master
  copy of the weights (4) that the optimizer updates, plus Adam (8): 16 bytes again. Mixed precision
  saves activation memory and time, not optimizer-state memory.
- Activations (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
  Models", section 4.1, without dropout masks since the presets use no dropout): a pre-LayerNorm block
  keeps 16·d values per token for its backward (the two LayerNorm inputs and outputs, Q, K, V, the
  attention output, the 4·d GELU input and output) plus the attention probabilities, heads × keys per
  query when a dense kernel materialises them (a fused kernel such as FlashAttention keeps none).
  The logits are kept in fp32 for the loss, with their log-softmax. Checkpointing each block keeps
  only its input (d values per token) and recomputes one block at a time during the backward.
- Sharding (ZeRO stage 3, PyTorch FSDP): weights, gradients and optimizer state are split evenly over
  the GPUs, so each holds 1/n of them; activations are not sharded (each GPU keeps its own batch's).
- Time = FLOPs / (GPUs × peak × utilisation). Utilisation (model FLOPs utilisation, MFU) is what a
  good large run reaches on real hardware; 30-50 % is the range assumed here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .config import PRESETS, Preset, TransformerConfig, get_preset


# ----------------------------------------------------------------------------- published facts

@dataclass(frozen=True)
class Fact:
    """One figure of the paper, how far it could be checked, and where."""

    what: str
    value: str
    status: str  # "verified" (the paper's own sentence read), "secondary" (a summary of the paper), "unverified"
    source: str


#: Ramesh et al. 2021, "Zero-Shot Text-to-Image Generation" (ICML; arXiv:2102.12092). The excerpts of the
#: paper reachable from this project's search tool were read for each; what they did not show is marked.
PAPER_FACTS: tuple[Fact, ...] = (
    Fact("transformer GPUs", "1024 NVIDIA V100, 16 GB each", "verified",
         "the sentence 'We trained the model using 1024, 16 GB NVIDIA V100 GPUs and a total batch "
         "size of 1024, for a total of 430,000 updates' (quoted by aiportalx.com/openai/dall-e)"),
    Fact("batch size", "1024 text-image pairs per update", "verified", "the same sentence"),
    Fact("updates", "430,000", "verified", "the same sentence"),
    Fact("sequence", "up to 256 BPE text tokens + 32 x 32 = 1024 image tokens", "verified",
         "'We concatenate up to 256 BPE-encoded text tokens with the 32 x 32 = 1024 image tokens' (same page)"),
    Fact("size in 16-bit", "about 24 GB, more than a 16 GB V100", "verified",
         "'Our 12-billion parameter model consumes about 24 GB of memory when stored in 16-bit precision, "
         "which exceeds the memory of a 16 GB NVIDIA V100 GPU' (the paper's text, via ri.k117.org)"),
    Fact("fp16 range", "the V100's fp16 exponent has 5 bits", "verified",
         "'On NVIDIA V100 GPUs, this exponent range is specified by five bits' (the same page)"),
    Fact("data", "250 million text-image pairs", "verified", "the paper's text (the same page)"),
    Fact("dVAE training", "64 V100 GPUs, batch 512, 3,000,000 updates", "verified",
         "the paper's sentence on the dVAE, quoted by aiportalx.com/openai/dall-e"),
    Fact("shape", "64 layers, 62 heads of 64, d_model 3968", "secondary",
         "appendix B.1 as summarised by ai-papers.xuzou.cn/papers/dalle_2021 (the appendix itself was not reached)"),
    Fact("mixed precision", "16-bit training past 1 B parameters was the hardest part; gradients underflow "
         "in later resblocks, hence per-resblock gradient scaling", "secondary",
         "ai-papers.xuzou.cn/papers/dalle_2021 summarises the underflow across resblocks; the name "
         "'per-resblock gradient scaling' (appendix D) was not read in the paper's own words"),
    Fact("parameter sharding", "parameters sharded across the GPUs of each machine", "secondary",
         "ai-papers.xuzou.cn/papers/dalle_2021 ('parameters must be sharded within each machine')"),
    Fact("gradient compression", "PowerSGD between machines", "unverified",
         "the paper's distributed-optimization section was not reachable here; taken from the course brief"),
)

PAPER_GPUS, PAPER_BATCH, PAPER_UPDATES = 1024, 1024, 430_000
GPUS_PER_MACHINE = 8  # a DGX-style V100 machine


# ----------------------------------------------------------------------------- hardware

@dataclass(frozen=True)
class Hardware:
    """An accelerator's dense peak for training matmuls (16-bit inputs, fp32 accumulation) and its memory."""

    name: str
    peak_tflops: float
    dtype: str
    memory_gb: float
    source: str


HARDWARE: tuple[Hardware, ...] = (
    Hardware("V100 SXM2 16 GB (the paper's)", 125.0, "fp16 tensor cores", 16,
             "NVIDIA, 'Programming Tensor Cores in CUDA 9': up to 125 tensor TFLOPS"),
    Hardware("T4 (Colab free)", 65.0, "fp16 tensor cores", 16, "NVIDIA T4 datasheet: 65 TFLOPS mixed fp16/fp32"),
    Hardware("L4 (Colab)", 121.0, "bf16 tensor cores, dense", 24,
             "NVIDIA L4 datasheet: 242 TFLOPS with 2:4 sparsity, half that dense"),
    Hardware("A100 SXM 80 GB", 312.0, "bf16 tensor cores, dense", 80, "NVIDIA A100 datasheet: 312 TFLOPS bf16 dense"),
    Hardware("H100 SXM 80 GB", 989.0, "bf16 tensor cores, dense", 80,
             "NVIDIA H100 datasheet: 1,979 TFLOPS bf16 with sparsity, half that dense"),
    Hardware("the course's 2-core CPU", 0.346, "fp32, measured", 24,
             "benchmarks/bench_transformer.py: 345.9 GFLOP/s fp32 matmul peak on 2 threads"),
)
UTILISATIONS = (0.3, 0.5)


# ----------------------------------------------------------------------------- parameters

def transformer_parameters(config: TransformerConfig) -> dict[str, int]:
    """The DALL·E transformer's parameters by component, in closed form (see transformer.py)."""
    d, L, T, g = config.d_model, config.n_layers, config.text_seq_len, config.image_grid
    return {
        "text embeddings (tokens, pads, positions, start)": (config.text_vocab_size + T + (T + 1) + 1) * d,
        "image embeddings (tokens, rows, columns)": (config.image_vocab_size + 2 * g) * d,
        "attention (qkv, output projection)": L * (4 * d * d + 4 * d),
        "MLP (d -> 4d -> d)": L * (8 * d * d + 5 * d),
        "LayerNorms": L * 4 * d + 2 * d,
        "text head": d * config.text_vocab_size,
        "image head": d * config.image_vocab_size,
    }


def other_stage_parameters(preset: Preset) -> dict[str, int]:
    """The other stages of the pipeline, counted on the meta device (no memory, no time).

    The paper's stage 1 is OpenAI's published dVAE (`openai_dvae`); the smaller presets use this
    package's dVAE and CLIP at their sizes. The paper's reranker is OpenAI's CLIP, not sized here.
    """
    from .clip import ClipModel
    from .dvae import DiscreteVAE
    with torch.device("meta"):
        if preset.name == "paper":
            try:
                from .openai_dvae import OpenAIDecoder, OpenAIEncoder
            except ImportError:  # pragma: no cover - the module ships with the package
                return {}
            return {"dVAE encoder (OpenAI's)": _count(OpenAIEncoder()), "dVAE decoder (OpenAI's)": _count(OpenAIDecoder())}
        return {"dVAE (this package's)": _count(DiscreteVAE(preset.dvae)), "CLIP reranker": _count(ClipModel(preset.clip))}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- FLOPs

def attention_pairs(config: TransformerConfig) -> list[int]:
    """Per layer, how many (query, key) pairs its mask allows over the T + N stream positions.

    Dense causal attention allows L·(L + 1)/2; the paper's row, column and convolutional masks far
    fewer. A kernel that is given the mask still computes all L² scores; a block-sparse one (the
    paper's) only the allowed ones.
    """
    from .attention import dalle_mask
    from .transformer import layer_kinds
    L = config.text_seq_len + config.image_seq_len
    counts = {}
    for kind in set(layer_kinds(config.n_layers, config.attention_pattern)):
        if kind == "full":
            counts[kind] = L * (L + 1) // 2
        else:
            mask = dalle_mask(config.text_seq_len + 1, config.image_grid, kind, config.conv_kernel)[:L, :L]
            counts[kind] = int(mask.sum())
    return [counts[kind] for kind in layer_kinds(config.n_layers, config.attention_pattern)]


@dataclass(frozen=True)
class Flops:
    """FLOPs of one forward pass over one sequence (one text-image pair), by part."""

    matmuls: int  # qkv, attention output, MLP: 2 FLOPs per weight per position
    heads: int  # text head at the T text positions, image head at the N image positions
    attention_dense: int  # 4·d per (query, key) pair for all L² pairs: what a masked dense kernel computes
    attention_allowed: int  # 4·d per pair the masks allow: what a (block-)sparse or causal kernel needs
    positions: int  # T + N

    @property
    def total_dense(self) -> int:
        """As this package computes it (a dense kernel with a mask; also what FlopCounterMode counts)."""
        return self.matmuls + self.heads + self.attention_dense

    @property
    def total(self) -> int:
        """What the model needs: only the allowed attention pairs (the figure used for time to train)."""
        return self.matmuls + self.heads + self.attention_allowed

    @property
    def per_token(self) -> float:
        return self.total / self.positions


def forward_flops(config: TransformerConfig) -> Flops:
    """FLOPs of a teacher-forced forward pass over one sequence of T + N positions."""
    d, L_layers, T, N = config.d_model, config.n_layers, config.text_seq_len, config.image_seq_len
    L = T + N
    return Flops(matmuls=2 * 12 * d * d * L_layers * L,
                 heads=2 * d * (T * config.text_vocab_size + N * config.image_vocab_size),
                 attention_dense=4 * d * L * L * L_layers,
                 attention_allowed=4 * d * sum(attention_pairs(config)),
                 positions=L)


def training_flops_per_image(config: TransformerConfig, checkpointing: bool = False) -> int:
    """One training step's FLOPs per text-image pair: forward + backward (2x forward), + 1 forward recomputed if checkpointing."""
    return (4 if checkpointing else 3) * forward_flops(config).total


def sampling_flops_per_image(config: TransformerConfig, kv_cache: bool = True) -> int:
    """FLOPs to sample one image's N tokens after its caption (the text head is never needed).

    With a KV cache (`sampling.py`): every one of the T + N stream positions goes through the stack
    once, and each new query reads all cached keys (p + 1 of them at position p; the prompt's T + 1
    positions are one causal pass). Without one, each of the N tokens reruns the whole prefix.
    """
    d, layers, T, N = config.d_model, config.n_layers, config.text_seq_len, config.image_seq_len
    head = 2 * d * config.image_vocab_size * N
    if kv_cache:
        prompt = T + 1
        keys = prompt * prompt + sum(p + 1 for p in range(prompt, T + N))  # the prompt's pass is one dense kernel call
        return 2 * 12 * d * d * layers * (T + N) + 4 * d * layers * keys + head
    prefixes = [T + 1 + n for n in range(N)]  # positions read to predict image token n
    return sum(2 * 12 * d * d * layers * p + 4 * d * layers * p * p for p in prefixes) + head


# ----------------------------------------------------------------------------- memory

@dataclass(frozen=True)
class Memory:
    """Training memory per GPU, in bytes."""

    weights: float
    gradients: float
    master_weights: float  # mixed precision's fp32 copy
    adam: float  # two fp32 moments
    activations: float  # kept for the backward by one GPU's micro-batch (logits included)

    @property
    def model_state(self) -> float:
        return self.weights + self.gradients + self.master_weights + self.adam

    @property
    def total(self) -> float:
        return self.model_state + self.activations


PRECISIONS = ("fp32", "fp16")


def activation_bytes(config: TransformerConfig, precision: str = "fp16", checkpointing: bool = False,
                     micro_batch: int = 1) -> float:
    """What the forward keeps for the backward, for `micro_batch` sequences (see the module docstring)."""
    width = 4 if precision == "fp32" else 2
    d, layers, heads = config.d_model, config.n_layers, config.n_heads
    L = config.text_seq_len + config.image_seq_len
    block = width * (16 * L * d + heads * L * L)  # 16·d values per token + dense attention probabilities
    logits = 4 * 2 * (config.text_seq_len * config.text_vocab_size + config.image_seq_len * config.image_vocab_size)
    kept = layers * width * L * d + block if checkpointing else layers * block
    return micro_batch * (kept + logits)


def training_memory(config: TransformerConfig, precision: str = "fp16", checkpointing: bool = False,
                    shards: int = 1, micro_batch: int = 1) -> Memory:
    """Per-GPU training memory with Adam. precision 'fp32', or 'fp16' (mixed: fp16 weights,
    gradients and activations, an fp32 master copy); `shards` GPUs share the model state (ZeRO-3)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose 'fp32' or 'fp16' (mixed)")
    if shards < 1 or micro_batch < 1:
        raise ValueError(f"shards and micro_batch must be at least 1, got {shards} and {micro_batch}")
    n = sum(transformer_parameters(config).values())
    width = 4 if precision == "fp32" else 2
    return Memory(weights=n * width / shards, gradients=n * width / shards,
                  master_weights=(0 if precision == "fp32" else 4 * n) / shards, adam=8 * n / shards,
                  activations=activation_bytes(config, precision, checkpointing, micro_batch))


#: The memory table's columns: (label, precision, checkpointing, shards).
MEMORY_SETUPS = (("fp32", "fp32", False, 1), ("mixed fp16", "fp16", False, 1),
                 ("fp16 + ckpt", "fp16", True, 1),
                 (f"fp16 + ckpt + shard {GPUS_PER_MACHINE}", "fp16", True, GPUS_PER_MACHINE),
                 (f"fp16 + ckpt + shard {PAPER_GPUS}", "fp16", True, PAPER_GPUS))


# ----------------------------------------------------------------------------- time

def train_seconds(total_flops: float, hardware: Hardware, gpus: int, utilisation: float) -> float:
    """Wall-clock seconds for `total_flops` on `gpus` accelerators at `utilisation` of their peak."""
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1], got {utilisation}")
    return total_flops / (gpus * hardware.peak_tflops * 1e12 * utilisation)


def paper_budget_flops(config: TransformerConfig, checkpointing: bool = False) -> float:
    """The paper's training compute: FLOPs per pair x batch 1024 x 430,000 updates."""
    return training_flops_per_image(config, checkpointing) * PAPER_BATCH * PAPER_UPDATES


# ----------------------------------------------------------------------------- the report

def course_recipe() -> tuple[int, int]:
    """(steps, batch size) of the course's default transformer recipe (`train_dalle.DalleTrainConfig`)."""
    from .train_dalle import DalleTrainConfig
    recipe = DalleTrainConfig()
    return recipe.steps, recipe.batch_size


def report(preset: str | Preset) -> dict:
    """Everything `python -m dalle_lessons scale` prints for one preset, as plain JSON-able values."""
    preset = get_preset(preset)
    config = preset.transformer
    parameters = transformer_parameters(config)
    flops = forward_flops(config)
    steps, batch = course_recipe()
    out = {
        "preset": preset.name,
        "shape": {"layers": config.n_layers, "heads": config.n_heads, "head_dim": config.head_dim,
                  "d_model": config.d_model, "text_tokens": config.text_seq_len, "image_tokens": config.image_seq_len,
                  "text_vocab": config.text_vocab_size, "image_vocab": config.image_vocab_size,
                  "attention": config.attention_pattern},
        "parameters": {**parameters, "total": sum(parameters.values())},
        "other_stages": other_stage_parameters(preset),
        "flops": {"forward_per_sequence": {**asdict(flops), "total": flops.total, "total_dense": flops.total_dense},
                  "forward_per_token": flops.per_token,
                  "training_per_image": training_flops_per_image(config),
                  "training_per_image_checkpointed": training_flops_per_image(config, checkpointing=True),
                  "sampling_per_image_kv_cache": sampling_flops_per_image(config, kv_cache=True),
                  "sampling_per_image_no_cache": sampling_flops_per_image(config, kv_cache=False),
                  "six_n_per_image": 6 * sum(parameters.values()) * flops.positions},
        "memory": {label: {**asdict(m), "model_state": m.model_state, "total": m.total}
                   for label, precision, ckpt, shards in MEMORY_SETUPS
                   for m in [training_memory(config, precision, ckpt, shards)]},
        "course_recipe": {"steps": steps, "batch_size": batch,
                          "training_flops": training_flops_per_image(config) * steps * batch},
    }
    if preset.name == "paper":
        total = paper_budget_flops(config)
        out["paper_budget"] = {
            "gpus": PAPER_GPUS, "batch_size": PAPER_BATCH, "updates": PAPER_UPDATES,
            "images_seen": PAPER_BATCH * PAPER_UPDATES, "training_flops": total,
            "training_flops_checkpointed": paper_budget_flops(config, checkpointing=True),
            "six_n_d": 6 * sum(parameters.values()) * flops.positions * PAPER_BATCH * PAPER_UPDATES,
            "time": [{"hardware": asdict(hw),
                      **{f"days_on_{PAPER_GPUS}_at_{round(u * 100)}pct": train_seconds(total, hw, PAPER_GPUS, u) / 86400
                         for u in UTILISATIONS},
                      **{f"gpu_years_at_{round(u * 100)}pct": train_seconds(total, hw, 1, u) / (365.25 * 86400)
                         for u in UTILISATIONS}}
                     for hw in HARDWARE],
        }
        out["paper_facts"] = [asdict(f) for f in PAPER_FACTS]
    return out


def _si(value: float, unit: str) -> str:
    """3 significant figures with an SI prefix: 1.23 TFLOP, 24.6 GB."""
    if value == 0:
        return f"0 {unit}"
    for scale, prefix in ((1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def format_report(r: dict) -> str:
    """One preset's report as the tables the CLI prints."""
    s = r["shape"]
    parts = [f"== preset {r['preset']}: {s['layers']} layers x {s['heads']} heads of {s['head_dim']} "
             f"(d_model {s['d_model']}), {s['text_tokens']} text + {s['image_tokens']} image tokens, "
             f"vocabularies {s['text_vocab']} + {s['image_vocab']}, attention '{s['attention']}'"]
    total = r["parameters"]["total"]
    rows = [[k, f"{v:,}", f"{100 * v / total:.1f} %"] for k, v in r["parameters"].items() if k != "total"]
    rows.append(["transformer, total", f"{total:,}", "100.0 %"])
    rows += [[k, f"{v:,}", ""] for k, v in r["other_stages"].items()]
    parts += ["", "Parameters (closed form; equal to sum(p.numel()) of the built models)",
              _table(["component", "parameters", "share"], rows)]

    f = r["flops"]
    fw = f["forward_per_sequence"]
    rows = [["forward: weight matmuls (qkv, projections, MLP)", _si(fw["matmuls"], "FLOP")],
            ["forward: output heads (text at T, image at N positions)", _si(fw["heads"], "FLOP")],
            ["forward: attention, allowed (query, key) pairs", _si(fw["attention_allowed"], "FLOP")],
            ["forward: attention, all L^2 pairs (a dense masked kernel)", _si(fw["attention_dense"], "FLOP")],
            ["forward per sequence (allowed pairs)", _si(fw["total"], "FLOP")],
            ["forward per token", _si(f["forward_per_token"], "FLOP")],
            ["training per image (3 x forward)", _si(f["training_per_image"], "FLOP")],
            ["training per image, checkpointed (4 x forward)", _si(f["training_per_image_checkpointed"], "FLOP")],
            ["  cross-check: 6 x parameters x (T + N)", _si(f["six_n_per_image"], "FLOP")],
            ["sampling per image, KV cache", _si(f["sampling_per_image_kv_cache"], "FLOP")],
            ["sampling per image, no cache (prefix recomputed per token)", _si(f["sampling_per_image_no_cache"], "FLOP")]]
    parts += ["", "FLOPs (2 per multiply-add; elementwise work left out)", _table(["what", "FLOPs"], rows)]

    labels = list(r["memory"])
    fields = [("weights", "weights"), ("gradients", "gradients"), ("fp32 master weights", "master_weights"),
              ("Adam moments (fp32)", "adam"), ("model state", "model_state"),
              ("activations, 1 sequence", "activations"), ("total per GPU", "total")]
    rows = [[name] + [_si(r["memory"][label][key], "B") for label in labels] for name, key in fields]
    parts += ["", "Training memory per GPU with Adam (1 sequence per GPU, as the paper's batch 1024 on 1024 GPUs; "
              "dense attention probabilities kept)", _table(["", *labels], rows)]

    recipe = r["course_recipe"]
    parts += ["", f"The course's recipe ({recipe['steps']} steps x batch {recipe['batch_size']}) at this size: "
              f"{_si(recipe['training_flops'], 'FLOP')} to train."]
    if "paper_budget" in r:
        parts += ["", _format_budget(r)]
    return "\n".join(parts)


def _format_budget(r: dict) -> str:
    b = r["paper_budget"]
    total = b["training_flops"]
    header = ["accelerator", "peak TFLOP/s", "memory", *[f"days on {b['gpus']} @ {round(u * 100)}%" for u in UTILISATIONS],
              *[f"device-years @ {round(u * 100)}%" for u in UTILISATIONS]]
    rows = []
    for t in b["time"]:
        hw = t["hardware"]
        rows.append([hw["name"], f"{hw['peak_tflops']:g} ({hw['dtype']})", f"{hw['memory_gb']:g} GB",
                     *[_days(t[f"days_on_{b['gpus']}_at_{round(u * 100)}pct"]) for u in UTILISATIONS],
                     *[f"{t[f'gpu_years_at_{round(u * 100)}pct']:,.0f}" for u in UTILISATIONS]])
    v100 = next(t for t in b["time"] if t["hardware"]["name"].startswith("V100"))
    cpu = next(t for t in b["time"] if "CPU" in t["hardware"]["name"])
    steps, batch = r["course_recipe"]["steps"], r["course_recipe"]["batch_size"]
    course = training_flops_per_image(PRESETS["cpu"].transformer) * steps * batch
    lines = [f"The paper's budget: {b['batch_size']} pairs x {b['updates']:,} updates = {b['images_seen']:,} images "
             f"({b['images_seen'] / 250e6:.2f} passes over its 250 M pairs), {_si(total, 'FLOP')} "
             f"({_si(b['training_flops_checkpointed'], 'FLOP')} with activation checkpointing; 6·N·D gives "
             f"{_si(b['six_n_d'], 'FLOP')}).",
             "", "Time to train it (FLOPs / (GPUs x peak x utilisation); peaks are the vendors' dense figures)",
             _table(header, rows),
             "",
             f"'Relatively little computational overhead'? On its own 1024 V100s the paper's run takes "
             f"{_days(v100[f'days_on_{PAPER_GPUS}_at_30pct'])} at 30 % utilisation "
             f"({_days(v100[f'days_on_{PAPER_GPUS}_at_50pct'])} at 50 %): {v100['gpu_years_at_30pct']:,.0f} "
             f"V100-years of compute, {_times(total / course)} the course's whole cpu-preset transformer run "
             f"({_si(course, 'FLOP')}), which the course's 2-core CPU would need "
             f"{cpu['gpu_years_at_50pct']:,.0f} years for at 50 % of its peak. It also needed mixed precision, "
             f"parameter sharding and gradient compression to fit and to scale at all."]
    facts = [f"  [{f['status']}] {f['what']}: {f['value']} ({f['source']})" for f in r["paper_facts"]]
    return "\n".join(lines + ["", "The paper's figures used here, and how far each was checked:", *facts])


def _days(days: float) -> str:
    if days >= 365.25:
        return f"{days / 365.25:,.1f} years"
    return f"{days:,.1f} days" if days < 100 else f"{days:,.0f} days"


def _times(ratio: float) -> str:
    """55183555 -> '55 million times'."""
    for scale, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million"), (1e3, "thousand")):
        if ratio >= scale:
            return f"{ratio / scale:.3g} {word} times"
    return f"{ratio:.3g} times"


def preset_names(name: str) -> list[str]:
    """'all' or one preset name -> the presets to report; anything else is a one-line error listing the choices."""
    if name == "all":
        return list(PRESETS)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(map(repr, PRESETS))} or 'all'")
    return [name]


__all__ = ["Fact", "PAPER_FACTS", "Hardware", "HARDWARE", "transformer_parameters", "other_stage_parameters",
           "attention_pairs", "Flops", "forward_flops", "training_flops_per_image", "sampling_flops_per_image",
           "Memory", "activation_bytes", "training_memory", "train_seconds", "paper_budget_flops", "report",
           "format_report", "preset_names"]
