"""A tiny llama-architecture GGUF written with llama.cpp's ``gguf`` package: one layer,
random weights from a fixed seed, a byte-level vocabulary and a ChatML template. It
answers gibberish, but it is a real model that llama.cpp loads and runs in a second."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

EMBED, HEADS, FEED_FORWARD, CONTEXT = 32, 2, 64, 512
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _vocabulary() -> tuple[list[bytes], list[float], list[int]]:
    tokens = [b"<unk>", b"<s>", b"</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    # Byte tokens: with them any text tokenizes, one byte at a time.
    tokens += [f"<0x{byte:02X}>".encode() for byte in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    for word in ("the", "a", "and", "to", "of", "is"):
        tokens.append(("\u2581" + word).encode())
        types.append(gguf.TokenType.NORMAL)
    scores = [0.0] * len(tokens)
    return tokens, scores, [int(kind) for kind in types]


def write_tiny_gguf(path: Path, seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocabulary()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-test-llama")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBED)
    writer.add_block_count(1)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(EMBED // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_chat_template(CHATML)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    vocab = len(tokens)
    writer.add_tensor("token_embd.weight", weights(vocab, EMBED))
    writer.add_tensor("output_norm.weight", np.ones(EMBED, dtype=np.float32))
    writer.add_tensor("output.weight", weights(vocab, EMBED))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(EMBED, dtype=np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        writer.add_tensor(f"blk.0.{name}.weight", weights(EMBED, EMBED))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(EMBED, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_gate.weight", weights(FEED_FORWARD, EMBED))
    writer.add_tensor("blk.0.ffn_up.weight", weights(FEED_FORWARD, EMBED))
    writer.add_tensor("blk.0.ffn_down.weight", weights(EMBED, FEED_FORWARD))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
