"""Control, measured (lesson 09): what a caption can pin down, and what the model does with what it leaves out.

Two measurements. First, per attribute, how often the drawn value is the asked one and what is drawn
instead (the confusion matrices that `evaluate generation` records: color, shape, size, cell, count and
relation). Second, under-specified captions: for an attribute a caption leaves unsaid, the model should
draw what the training data shows for captions that leave it unsaid — here a fair coin for size and
background and an even spread over the nine cells, since the world draws them evenly and the captions
omit them at random. A caption form the model never saw ("a circle": the course's captions always name
the color) shows what it does off its training distribution.
"""
from __future__ import annotations

from collections import Counter

from . import judge
from .shapes import BACKGROUNDS, COLORS, POSITION_NAMES, SHAPES, SIZES, ShapesDataset

TRAINING_SAMPLE = 20_000  # one-object training captions read to find the distribution of unsaid attributes


#: What the last column of each confusion matrix counts (the attribute could not be read as asked).
OTHER = {"count": "another count", "relation": "objects not both drawn"}
NOT_ONE_OBJECT = "not one object"


def attribute_accuracy(confusion: dict, attribute: str = "") -> dict:
    """{"accuracy": % drawn as asked, "images", "top_confusion": (asked, drawn, % of that asked value) the most
    common mistake} from a confusion matrix {"labels", "counts"} of `attribute` (count, color, relation...)."""
    labels, counts = confusion["labels"], confusion["counts"]
    columns = list(labels) + [OTHER.get(attribute, NOT_ONE_OBJECT)]
    total = sum(map(sum, counts))
    hits = sum(counts[i][i] for i in range(len(labels)))
    mistakes = [(counts[i][j], labels[i], columns[j]) for i in range(len(labels))
                for j in range(len(columns)) if i != j and counts[i][j]]
    top = max(mistakes, key=lambda m: m[0], default=None)
    return {"accuracy": 100 * hits / total if total else None, "images": total,
            "top_confusion": (top[1], top[2], 100 * top[0] / sum(counts[labels.index(top[1])])) if top else None}


def training_unsaid_distribution(n: int = TRAINING_SAMPLE) -> dict[str, dict[str, float]]:
    """Among one-object training captions that leave size / position / background unsaid, how those are
    distributed in the pictures (what a faithful model draws when they are unsaid)."""
    data = ShapesDataset("train", n, n_objects=1, render_images=False)
    tallies: dict[str, Counter] = {"size": Counter(), "position": Counter(), "background": Counter()}
    for i in range(n):
        claim, scene = data.item_claim(i)[1], data.scenes[i]
        said, obj = claim.objects[0], scene.objects[0]
        if said.size is None:
            tallies["size"][obj.size] += 1
        if said.row is None:
            tallies["position"][POSITION_NAMES[(obj.row, obj.col)]] += 1
        if claim.background is None:
            tallies["background"][scene.background] += 1
    return {name: _shares(counter, _values(name)) for name, counter in tallies.items()}


def _values(attribute: str) -> list[str]:
    return {"size": list(SIZES), "position": list(POSITION_NAMES.values()), "background": list(BACKGROUNDS),
            "color": list(COLORS), "shape": list(SHAPES)}[attribute]


def _shares(counter: Counter, values: list[str]) -> dict[str, float]:
    total = sum(counter[v] for v in values)
    return {v: counter[v] / total if total else 0.0 for v in values}


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """Half the L1 distance between two distributions over the same values: 0 same, 1 disjoint."""
    keys = sorted(set(p) | set(q), key=str)  # a fixed order: a set's order (string hashing) varies between runs
    return sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys) / 2


def underspecified_prompts() -> dict[str, dict]:
    """The prompt families: each with its captions, the attributes they leave unsaid, and what each states."""
    from .shapes import _article, heldout_pairs
    seen = [(c, s) for s in SHAPES for c in COLORS if (c, s) not in heldout_pairs()]
    cells = ("top", "bottom left", "center")
    return {
        "color and shape only": {"captions": [f"{_article(c)} {c} {s}" for c, s in seen],
                                 "unsaid": ["size", "position", "background"],
                                 "said": [{"color": c, "shape": s} for c, s in seen]},
        "shape only (color never unsaid in training)": {"captions": [f"a {s}" for s in SHAPES],
                                                        "unsaid": ["color", "size", "position", "background"],
                                                        "said": [{"shape": s} for s in SHAPES]},
        "position only (no shape, no color)": {"captions": [f"something at the {p}" for p in cells],
                                               "unsaid": ["shape", "color", "size", "background"],
                                               "said": [{"position": p} for p in cells]},
    }


def _reading_values(reading: judge.Reading) -> dict[str, str] | None:
    if len(reading.objects) != 1:
        return None
    obj = reading.objects[0]
    return {"color": obj.color, "shape": obj.shape, "size": obj.size, "background": reading.background,
            "position": POSITION_NAMES[(obj.row, obj.col)]}


def evaluate_underspecified(pipe, samples: int = 16, seed: int = 0, sampling: dict | None = None,
                            batch_size: int = 128, training: dict | None = None) -> list[dict]:
    """Per prompt family and unsaid attribute: the drawn distribution (images holding one object), its total
    variation distance from the training distribution for captions that leave it unsaid (None where the
    training captions never leave it unsaid), and how often exactly one object with what is stated is drawn."""
    from .evaluate import _decode_8bit, _generate, generation_settings
    settings = generation_settings(sampling)
    training = training_unsaid_distribution() if training is None else training
    rows = []
    for family, spec in underspecified_prompts().items():
        ids = pipe.tokenizer.encode_batch(spec["captions"], on_overflow="warn")
        tokens = _generate(pipe, ids, samples, seed, f"control/{family}", settings, batch_size)
        readings = [judge.read_image(image) for image in _decode_8bit(pipe, tokens, batch_size)]
        values = [_reading_values(r) for r in readings]
        one = [v for v in values if v is not None]
        said = [spec["said"][k // samples] for k in range(len(readings))]
        stated_ok = [v is not None and all(v[k] == value for k, value in stated.items())
                     for v, stated in zip(values, said)]
        row = {"prompts": family, "captions": len(spec["captions"]), "images": len(readings),
               "one_object": 100 * len(one) / len(readings), "stated_drawn": 100 * sum(stated_ok) / len(readings)}
        for attribute in spec["unsaid"]:
            drawn = _shares(Counter(v[attribute] for v in one), _values(attribute))
            row[attribute] = {"drawn": drawn, "training": training.get(attribute),
                              "tv": total_variation(drawn, training[attribute]) if attribute in training else None,
                              "mode": max(drawn, key=drawn.get) if one else None}
        rows.append(row)
    return rows


def evaluate_control(pipeline_or_path=None, n_captions: int = 100, samples: int = 4, seed: int = 0,
                     sampling: dict | None = None, batch_size: int = 128, underspecified_samples: int = 16,
                     device: str | None = None) -> dict:
    """Confusion matrices per attribute (via `evaluate_generation`) with their headline numbers, and the
    under-specified prompts. Every number comes with the images it was measured on."""
    from .evaluate import _load_pipeline, evaluate_generation
    pipe, shown = _load_pipeline(pipeline_or_path, device)
    report = evaluate_generation(pipe, n_captions=n_captions, samples=samples, seed=seed, sampling=sampling,
                                 batch_size=batch_size)
    matrices = {f"{name} (set {row['set']})": confusion for row in report["rows"]
                for name, confusion in row["confusion"].items()}
    headline = {name: attribute_accuracy(m, name.split(" (")[0]) for name, m in matrices.items()}
    return {"checkpoint": shown, "sampling": report["sampling"], "n_captions": n_captions, "samples": samples,
            "seed": seed, "confusion": matrices, "headline": headline,
            "underspecified": evaluate_underspecified(pipe, underspecified_samples, seed, sampling, batch_size)}
