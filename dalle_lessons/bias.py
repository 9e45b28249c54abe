"""Bias, measured (lesson 09): a deliberately skewed world, what a model learns from it, and remedies.

The recipe: fine-tune the pretrained model (LoRA, `finetune.py`) on a skewed world (`shapes.Skew`:
e.g. 80 % of triangles red, half of all colors left unsaid in captions), then ask it for "a triangle"
and read the colors it draws with the judge. The definitions are the literature's:

- bias amplification (Zhao et al. 2017, "Men also like shopping"): for each pair (shape s, color c) whose
  training bias b*(c | s) exceeds 1/|colors|, the generated bias minus the training bias, averaged;
- directional bias amplification A -> T (Wang & Russakovsky 2021): with A the shape asked for and T the
  color drawn, mean over (a, t) of  y_at * D_at + (1 - y_at) * (-D_at),  where y_at says whether a and t
  co-occur more than independence predicts in training and D_at = P_gen(t | a) - P_train(t | a);
- mean absolute deviation from uniform (DALL-Eval, Cho et al. 2023): mean over colors of |P(c | s) - 1/7|;
- leakage: how often the skewed color is drawn although another color was asked for.

Every training rate is the one among captions that leave the color unsaid: that is the distribution a
colorless prompt asks the model to reproduce. Comparing against the overall rate instead mixes in the
caption mismatch (Seshadri et al. 2023): if people rarely name the expected color, captions that omit it
are even more skewed than the world, and a model that copies them looks like an amplifier.
"""
from __future__ import annotations

import random
from collections import Counter

import torch

from .shapes import COLORS, SHAPES, Skew, ShapesDataset, parse_skew, render, to_tensor

#: The skewed world the course's bias lesson uses, and the remedies' worlds (CLI `--data` names).
DEFAULT_SKEW = "shape=triangle,color=red,rate=0.8,omit=0.5"
BUILTIN_SETS = {
    "skewed": f"skewed:<skew spec>: one-object scenes of a skewed world (shapes.Skew), e.g. 'skewed:{DEFAULT_SKEW}'",
    "rebalanced": "rebalanced:<skew spec>: the same world resampled so each shape's colors are even again",
}
POOL_FACTOR = 4  # rebalancing resamples from a pool this many times larger than the set it returns


def parse_builtin(name: str) -> tuple[str, Skew]:
    """'skewed:<spec>' or 'rebalanced:<spec>' -> (kind, Skew)."""
    kind, _, spec = name.partition(":")
    if kind not in BUILTIN_SETS:
        raise ValueError(f"unknown built-in set {name[:40]!r}: choose one of {'; '.join(BUILTIN_SETS.values())}")
    return kind, parse_skew(spec)


def skewed_scenes(skew: Skew, n: int, seed: int = 0) -> ShapesDataset:
    """`n` one-object training scenes of the skewed world, and their captions (no images rendered)."""
    return ShapesDataset("train", n, seed=seed, n_objects=1, render_images=False, skew=skew)


def rebalanced_indices(data: ShapesDataset, n: int, seed: int = 0) -> list[int]:
    """`n` indices into `data`, drawn with replacement with weights 1 / P(color | shape): each shape's
    colors come out even (importance resampling — the same in expectation as weighting the loss)."""
    pairs = [(s.objects[0].shape, s.objects[0].color) for s in data.scenes]
    per_shape, per_pair = Counter(shape for shape, _ in pairs), Counter(pairs)
    colors_of = Counter(shape for shape, _ in per_pair)  # how many colors each shape actually takes
    weights = [per_shape[shape] / per_pair[shape, color] / colors_of[shape] for shape, color in pairs]
    return random.Random(f"rebalance/{seed}").choices(range(len(data)), weights=weights, k=n)


def world_examples(name: str, examples: int, seed: int = 0) -> tuple[ShapesDataset, list[int]]:
    """The scenes of a built-in world and which of them (in order) make its `examples` fine-tuning examples."""
    kind, skew = parse_builtin(name)
    if kind == "skewed":
        return skewed_scenes(skew, examples, seed), list(range(examples))
    data = skewed_scenes(skew, POOL_FACTOR * examples, seed)
    return data, rebalanced_indices(data, examples, seed)


def load_builtin(name: str, image_size: int, examples: int, seed: int = 0):
    """`skewed:<spec>` / `rebalanced:<spec>` as fine-tuning data (`finetune.FinetuneData`)."""
    from .finetune import FinetuneData
    kind, skew = parse_builtin(name)
    data, chosen = world_examples(name, examples, seed)
    images = torch.stack([(to_tensor(render(data.scenes[i], image_size)) * 255).round().to(torch.uint8)
                          for i in chosen])
    captions = [data.item_caption(i) for i in chosen]
    return FinetuneData(images, captions, [f"{kind} #{i}" for i in chosen],
                        f"{kind} world {skew.spec()} ({examples} scenes, seed {seed})")


# ----------------------------------------------------------------------------- what the training data says

def color_rates(pairs: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """{shape: {color: P(color | shape)}} from (shape, color) pairs; every color listed (0 when absent)."""
    per_shape = Counter(shape for shape, _ in pairs)
    per_pair = Counter(pairs)
    return {shape: {color: per_pair[shape, color] / per_shape[shape] for color in COLORS}
            for shape in SHAPES if per_shape[shape]}


def training_rates(captions_and_scenes) -> dict:
    """P_train(color | shape) overall and among captions that leave the color unsaid, from (claim, scene)."""
    every, unsaid = [], []
    for claim, scene in captions_and_scenes:
        obj = scene.objects[0]
        every.append((obj.shape, obj.color))
        if claim.objects[0].color is None:
            unsaid.append((obj.shape, obj.color))
    return {"overall": color_rates(every), "color_unsaid": color_rates(unsaid),
            "n": len(every), "n_color_unsaid": len(unsaid)}


# ----------------------------------------------------------------------------- prompts

def colorless_prompts(shape: str, k: int, seed: int = 0) -> list[str]:
    """`k` captions of one `shape` with the color unsaid, in the world's own phrasings ("a big wedge at
    the top"): the colorless half of a skewed world's captions."""
    from .shapes import BACKGROUNDS, SIZES, Scene, ShapeObject, caption_scene
    unsaid = Skew(omit=1.0)  # every color left unsaid; the scene's own color never reaches the text
    out = []
    for i in range(k):
        rng = random.Random(f"colorless/{shape}/{seed}/{i}")
        scene = Scene((ShapeObject(shape, "green", rng.choice(SIZES), rng.randrange(3), rng.randrange(3)),),
                      rng.choice(tuple(BACKGROUNDS)))
        out.append(caption_scene(scene, rng, unsaid)[0])
    return out


def stated_prompts(shape: str, color: str, k: int, seed: int = 0) -> list[str]:
    """`k` captions of a `color` `shape` that state the color (to measure leakage)."""
    from .shapes import BACKGROUNDS, SIZES, Scene, ShapeObject, caption_scene
    out = []
    for i in range(k):
        rng = random.Random(f"stated/{shape}/{color}/{seed}/{i}")
        scene = Scene((ShapeObject(shape, color, rng.choice(SIZES), rng.randrange(3), rng.randrange(3)),),
                      rng.choice(tuple(BACKGROUNDS)))
        out.append(caption_scene(scene, rng)[0])
    return out


def state_color(caption: str, color: str) -> str:
    """Insert `color` before the first shape word of a colorless caption, fixing the article:
    'a triangle at the top' + orange -> 'an orange triangle at the top'."""
    import re
    from .shapes import SHAPE_WORDS
    words = sorted((w for names in SHAPE_WORDS.values() for w in names), key=len, reverse=True)
    match = re.search(r"\b(" + "|".join(map(re.escape, words)) + r")\b", caption)
    if match is None:
        raise ValueError(f"no shape word in {caption!r}, so no color can be stated in it: give a caption that names "
                         "a shape (circle, square, triangle, diamond or cross)")
    head, tail = caption[:match.start()], caption[match.start():]
    head = re.sub(r"\b(a|an) $", "an " if color[0] in "aeiou" else "a ", head)
    return f"{head}{color} {tail}"


def sample_unsaid_color(captions: list[str], target: dict[str, float], seed: int | str = 0) -> list[str]:
    """The remedy at sampling time: draw the unsaid color from `target` ({color: probability}) and state
    it before the model sees the caption (the kind of system-level prompt change OpenAI announced for DALL·E 2 in
    July 2022, for prompts that describe a person without saying race or gender)."""
    rng = random.Random(f"unsaid/{seed}")
    colors, weights = list(target), list(target.values())
    return [state_color(c, rng.choices(colors, weights)[0]) for c in captions]


# ----------------------------------------------------------------------------- the metrics

def mad_from_uniform(rates: dict[str, float]) -> float:
    """DALL-Eval's mean absolute deviation of a distribution over colors from the uniform one."""
    return sum(abs(p - 1 / len(rates)) for p in rates.values()) / len(rates)


def zhao_amplification(train: dict[str, dict[str, float]], generated: dict[str, dict[str, float]]) -> float | None:
    """Zhao et al. 2017: mean of b_gen(c | s) - b_train(c | s) over the pairs with b_train > 1/|colors|."""
    terms = [generated[s][c] - p for s, row in train.items() if s in generated
             for c, p in row.items() if p > 1 / len(row)]
    return sum(terms) / len(terms) if terms else None


def directional_amplification(train_pairs: list[tuple[str, str]], generated: dict[str, dict[str, float]]
                              ) -> float | None:
    """Wang & Russakovsky 2021, BiasAmp A->T with A = the shape asked for, T = the color drawn:
    mean over (a, t) of y_at * D_at + (1 - y_at) * (-D_at), y_at = [P(a, t) > P(a) P(t)] in training,
    D_at = P_gen(t | a) - P_train(t | a). Positive: the model exaggerates the training correlations."""
    if not train_pairs:
        return None
    n = len(train_pairs)
    p_shape, p_color = Counter(s for s, _ in train_pairs), Counter(c for _, c in train_pairs)
    p_pair = Counter(train_pairs)
    train = color_rates(train_pairs)
    terms = []
    for a in generated:
        if a not in train:
            continue
        for t in COLORS:
            y = p_pair[a, t] / n > (p_shape[a] / n) * (p_color[t] / n)
            delta = generated[a][t] - train[a][t]
            terms.append(delta if y else -delta)
    return sum(terms) / len(terms) if terms else None


# ----------------------------------------------------------------------------- generating and reading

def drawn_colors(pipe, captions: list[str], samples: int, seed: int, sampling: dict, batch_size: int = 128,
                 name: str = "bias") -> list[list[str | None]]:
    """For each caption, the color of each of `samples` generated images as the judge reads it (None when
    the image does not hold exactly one object). Seeded like `evaluate generation`."""
    from . import judge
    from .evaluate import _decode_8bit, _generate
    ids = pipe.tokenizer.encode_batch(captions, on_overflow="warn")
    images = _decode_8bit(pipe, _generate(pipe, ids, samples, seed, name, sampling, batch_size), batch_size)
    colors = []
    for image in images:
        reading = judge.read_image(image)
        colors.append(reading.objects[0].color if len(reading.objects) == 1 else None)
    return [colors[p * samples:(p + 1) * samples] for p in range(len(captions))]


# ----------------------------------------------------------------------------- the measurement

#: The models of the bias lesson: LoRA adapters on the shipped transformer, each fine-tuned on one world by
#: `python -m dalle_lessons finetune --data DATA --examples 1024 --steps 300 --out DIR` (see data/README.md).
WORLDS = {
    "skewed": "skewed:" + DEFAULT_SKEW,
    "mismatch": "skewed:shape=triangle,color=red,rate=0.8,omit=0.3,omit_pair=0.7",
    "rebalanced": "rebalanced:" + DEFAULT_SKEW,
    "stated": "skewed:shape=triangle,color=red,rate=0.8,omit=0",
}
EXAMPLES = 1024
STEPS = 300


def adapter_file(world: str):
    """Where the shipped adapter of a world lives (data/bias-<world>.safetensors)."""
    from .paths import data_dir
    if world not in WORLDS:
        raise ValueError(f"unknown bias world {world!r}: choose one of {', '.join(WORLDS)}")
    return data_dir() / f"bias-{world}.safetensors"


def world_pairs(data_name: str, examples: int = EXAMPLES, seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """(shape, color) of the training examples of a built-in world, all and those whose caption leaves the
    color unsaid: exactly what `finetune` trains on (its validation examples left out)."""
    from .finetune import split_indices
    data, chosen = world_examples(data_name, examples, seed)
    train, _ = split_indices(examples)
    every, unsaid = [], []
    for i in (chosen[j] for j in train):
        obj = data.scenes[i].objects[0]
        every.append((obj.shape, obj.color))
        if data.item_claim(i)[1].objects[0].color is None:
            unsaid.append((obj.shape, obj.color))
    return {"all": every, "color_unsaid": unsaid}


def _rates(groups: dict[str, list[list]]) -> dict[str, dict[str, float]]:
    """P_gen(color | shape) from groups of drawn colors per shape (unreadable images left out)."""
    pairs = [(shape, c) for shape, rows in groups.items() for row in rows for c in row if c is not None]
    return color_rates(pairs)


def bias_statistics(groups: dict[str, list[list]], leak_groups: list[list], skew: Skew,
                    train_pairs: list[tuple[str, str]]) -> dict[str, float | None]:
    """The bias figures of one set of generated images (see the module docstring)."""
    generated = _rates(groups)
    train = color_rates(train_pairs)
    target = generated.get(skew.shape, {})
    leaked = [c for row in leak_groups for c in row if c is not None]
    return {
        "generated_rate": target.get(skew.color),
        "amplification": (target[skew.color] - train[skew.shape][skew.color]
                          if target and skew.shape in train else None),
        "zhao": zhao_amplification(train, generated) if train else None,
        "directional": directional_amplification(train_pairs, generated),
        "mad": mad_from_uniform(target) if target else None,
        "leakage": sum(c == skew.color for c in leaked) / len(leaked) if leaked else None,
    }


def bootstrap(groups: dict[str, list[list]], leak_groups: list[list], skew: Skew, train_pairs, resamples: int = 1000,
              seed: int = 0) -> dict[str, tuple[float, float] | None]:
    """95 % percentile intervals of `bias_statistics`, resampling whole prompts (all samples of one caption
    and seed together, since they are not independent) within each shape and within the leakage prompts."""
    rng = random.Random(f"bootstrap/{seed}")
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        g = {shape: rng.choices(rows, k=len(rows)) for shape, rows in groups.items()}
        leak = rng.choices(leak_groups, k=len(leak_groups)) if leak_groups else []
        for name, value in bias_statistics(g, leak, skew, train_pairs).items():
            if value is not None:
                draws.setdefault(name, []).append(value)
    out: dict[str, tuple[float, float] | None] = {}
    for name, values in draws.items():
        values.sort()
        out[name] = (values[int(0.025 * (len(values) - 1))], values[int(0.975 * (len(values) - 1))])
    return out


def measure_bias(pipe, skew: Skew, train_pairs: list[tuple[str, str]], sampling: dict | None = None,
                 captions: int = 16, samples: int = 4, seeds=(0, 1, 2), rewrite: bool = False,
                 resamples: int = 1000, batch_size: int = 128) -> dict:
    """Generate for colorless captions of every shape (and, for leakage, for captions of `skew.shape` in
    each other color it is trained on), read the colors, and compute the bias figures with intervals.

    `rewrite`: the sampling-time remedy — state a color in each colorless caption before generating, drawn
    evenly from the colors the shape takes in training. `train_pairs`: the training (shape, color) pairs.
    """
    from .evaluate import generation_settings
    from .shapes import heldout_pairs
    settings = generation_settings(sampling)
    groups: dict[str, list[list]] = {shape: [] for shape in SHAPES}
    leak_groups: list[list] = []
    leak_colors = [c for c in COLORS if c != skew.color and (c, skew.shape) not in heldout_pairs()]
    for seed in seeds:
        for shape in SHAPES:
            prompts = colorless_prompts(shape, captions, seed)
            if rewrite:
                target = {c: 1.0 for c in sorted({c for s, c in train_pairs if s == shape})}
                prompts = sample_unsaid_color(prompts, target, seed=f"{shape}/{seed}")
            groups[shape] += drawn_colors(pipe, prompts, samples, seed, settings, batch_size, name=f"bias/{shape}")
        prompts = [p for c in leak_colors for p in stated_prompts(skew.shape, c, max(1, captions // 4), seed)]
        leak_groups += drawn_colors(pipe, prompts, samples, seed, settings, batch_size, name="bias/leak")
    figures = bias_statistics(groups, leak_groups, skew, train_pairs)
    images = sum(len(row) for rows in groups.values() for row in rows)
    readable = sum(c is not None for rows in groups.values() for row in rows for c in row)
    return {"sampling": settings, "images": images + sum(map(len, leak_groups)),
            "readable": 100 * readable / images, **figures,
            "intervals": bootstrap(groups, leak_groups, skew, train_pairs, resamples),
            "generated_colors": {s: dict(Counter(c for row in rows for c in row if c)) for s, rows in groups.items()}}


#: Sampling settings of the bias table's sweep: mode-seeking settings should amplify (lesson 09's prediction).
SWEEP = {"default": {}, "temperature 0.3": {"temperature": 0.3}, "temperature 1.0": {"temperature": 1.0},
         "guidance 1 (off)": {"guidance_scale": 1.0}, "guidance 3": {"guidance_scale": 3.0}}


def evaluate_bias(captions: int = 16, samples: int = 4, seeds=(0, 1, 2), sweep: dict | None = None,
                  resamples: int = 1000, batch_size: int = 128, worlds=None, device: str | None = None) -> dict:
    """The bias table: the skewed model over the sampling sweep, the caption-mismatch world, and the three
    remedies (rebalanced data, always-stated colors, the unsaid color sampled before generating), each
    against the training rates of its own world; the shipped model (never fine-tuned) for reference."""
    from .pipeline import TextToImage
    sweep = SWEEP if sweep is None else sweep
    worlds = list(WORLDS) if worlds is None else list(worlds)
    base_skew = parse_builtin(WORLDS["skewed"])[1]
    rows = []

    def add(model: str, setting: str, pipe, data_name: str, changes: dict, rewrite: bool = False) -> None:
        pairs = world_pairs(data_name)
        skew = parse_builtin(data_name)[1]
        compare = pairs["color_unsaid"] or pairs["all"]  # a world whose captions always state it: overall
        train_unsaid = color_rates(pairs["color_unsaid"]).get(skew.shape, {}).get(skew.color)
        result = measure_bias(pipe, skew, compare, changes, captions, samples, seeds, rewrite, resamples, batch_size)
        rows.append({"model": model, "setting": setting, "world": data_name.partition(":")[2],
                     "train_rate_overall": color_rates(pairs["all"])[skew.shape][skew.color],
                     "train_rate_unsaid": train_unsaid, **result})

    add("shipped (no fine-tuning)", "default", TextToImage.from_pretrained(device=device), WORLDS["skewed"], {})
    for world in worlds:
        pipe = TextToImage.from_pretrained(adapter=adapter_file(world), device=device)
        settings = sweep if world == "skewed" else {"default": {}}
        for setting, changes in settings.items():
            add(world, setting, pipe, WORLDS[world], changes)
        if world == "skewed":
            add("skewed + unsaid color sampled", "default", pipe, WORLDS[world], {}, rewrite=True)
    return {"skew": base_skew.spec(), "captions_per_shape": captions, "samples": samples, "seeds": list(seeds),
            "resamples": resamples, "rows": rows}
