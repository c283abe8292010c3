"""A randomly initialised model with SmolLM2-135M's shape, for timing the pipeline without the
real weights (no download): 134.5M parameters, bf16, LlamaForCausalLM, tied embeddings. It
borrows the tiny fixture tokenizer (a 320-token byte-level BPE with a ChatML template), and
that spends about one token per character on the task prompts, where SmolLM2's own 49k-token
vocabulary needs fewer: timings taken with it overstate the real model's.

    python scripts/make-random-smollm2.py /tmp/smol-random   # torch + transformers from PyPI
"""

import shutil
import sys
from pathlib import Path

import torch
import transformers

out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/smol-random")
fixture = Path(__file__).resolve().parent.parent / "models/tests/fixtures/hf/llama"
config = transformers.LlamaConfig(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    vocab_size=49152,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    tie_word_embeddings=True,
)
torch.manual_seed(0)
model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
model.save_pretrained(out)
for name in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
    shutil.copy(fixture / name, out / name)
print(f"{sum(p.numel() for p in model.parameters())} parameters in {out}")
