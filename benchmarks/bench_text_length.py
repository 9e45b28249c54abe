"""What more text positions would buy and cost: prompts in other scripts against the `cpu` preset's 24.

    python benchmarks/bench_text_length.py            # 2 threads; about a minute on the 2-core CPU

The tokenizer is byte-level BPE trained on English shape captions, so a letter outside ASCII costs
its UTF-8 bytes (2 for é, ü or я, 3 for a Chinese or Devanagari character) unless a merge happens to
cover it. The first table counts the tokens of short prompts in several scripts and says which fit in
24, 32 or 48 positions (longer ones are truncated with a warning, or refused with `--on-overflow error`).
The second table gives what the course's own captions use, and the third what each length costs:
parameters, one training step (batch 32) and one caption's image (64 tokens, KV cache), with a
randomly initialised `cpu`-preset transformer (the cost does not depend on the weights).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_seconds, header  # noqa: E402
from dalle_lessons.config import get_preset  # noqa: E402
from dalle_lessons.sampling import generate_image_tokens  # noqa: E402
from dalle_lessons.shapes import caption_corpus  # noqa: E402
from dalle_lessons.tokenizer import CaptionTokenizer  # noqa: E402
from dalle_lessons.transformer import DalleTransformer  # noqa: E402

LENGTHS = (24, 32, 48)

#: Short prompts a learner might type, by script: one object, then one with a place or a second object.
PROMPTS = {
    "English": ["a red circle", "a small red circle to the left of a large blue triangle"],
    "French": ["un cercle rouge", "un petit cercle rouge à gauche d'un grand triangle bleu"],
    "German": ["ein roter Kreis", "ein kleiner roter Kreis links von einem großen blauen Dreieck"],
    "Spanish": ["un círculo rojo", "un pequeño círculo rojo a la izquierda de un triángulo azul"],
    "Vietnamese": ["một hình tròn đỏ", "một hình tròn đỏ nhỏ bên trái một tam giác xanh lớn"],
    "Russian": ["красный круг", "маленький красный круг слева от большого синего треугольника"],
    "Greek": ["ένας κόκκινος κύκλος", "ένας μικρός κόκκινος κύκλος αριστερά από ένα μπλε τρίγωνο"],
    "Chinese": ["红色的圆", "一个小红圆在一个大蓝三角形的左边"],
    "Japanese": ["赤い丸", "大きな青い三角形の左に小さな赤い丸"],
    "Hindi": ["लाल वृत्त", "एक बड़े नीले त्रिभुज के बाईं ओर एक छोटा लाल वृत्त"],
    "emoji": ["a red circle 🔴", "🔴 left of 🔺"],
}


def prompt_rows(tokenizer: CaptionTokenizer) -> list[dict]:
    rows = []
    for script, prompts in PROMPTS.items():
        for prompt in prompts:
            n = tokenizer.count_tokens(prompt)
            row = {"script": script, "chars": len(prompt), "tokens": n,
                   "tokens/char": f"{n / len(prompt):.2f}"}
            row.update({f"fits {t}": "yes" if n <= t else "no" for t in LENGTHS})
            rows.append(row)
    return rows


def corpus_row(tokenizer: CaptionTokenizer, n: int = 20_000) -> dict:
    lengths = sorted(tokenizer.count_tokens(c) for c in caption_corpus(n, "train", seed=0))
    at = lambda q: lengths[min(len(lengths) - 1, int(q * len(lengths)))]  # noqa: E731
    return {"captions": n, "median": at(0.5), "99th pct": at(0.99), "longest": lengths[-1]}


def cost_row(text_seq_len: int, repeats: int) -> dict:
    config = replace(get_preset("cpu").transformer, text_seq_len=text_seq_len)
    model = DalleTransformer(config, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    text = torch.randint(1, config.text_vocab_size, (32, text_seq_len), generator=g)
    image = torch.randint(0, config.image_vocab_size, (32, config.image_seq_len), generator=g)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step() -> None:
        loss = model(text, image).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    step = best_seconds(train_step, repeats=repeats, warmup=2)
    model.eval()
    with torch.no_grad():
        sample = best_seconds(lambda: generate_image_tokens(model, text[:16], generator=torch.Generator()
                                                            .manual_seed(0)), repeats=repeats)
    return {"text positions": text_seq_len, "stream": text_seq_len + config.image_seq_len,
            "parameters": model.num_parameters(), "train step (ms)": round(1000 * step, 1),
            "16 images (ms)": round(1000 * sample, 1)}


def main() -> None:
    from dalle_lessons.evaluate import format_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(2)
    tokenizer = CaptionTokenizer.load()
    print(header("Text positions: what prompts in other scripts need, and what more positions cost"))
    print("Tokens of short prompts (byte-level BPE trained on English shape captions):")
    print(format_table(prompt_rows(tokenizer)))
    print("\nTokens of the course's own training captions:")
    print(format_table([corpus_row(tokenizer)]))
    print(f"\nCost of the text length, `cpu` preset transformer (random weights), best of {args.repeats}:")
    rows = [cost_row(t, args.repeats) for t in LENGTHS]
    base = rows[0]
    for row in rows:
        row["step vs 24"] = f"{row['train step (ms)'] / base['train step (ms)']:.2f}x"
        row["images vs 24"] = f"{row['16 images (ms)'] / base['16 images (ms)']:.2f}x"
    print(format_table(rows))


if __name__ == "__main__":
    main()
