"""Hugging Face directories in and out: tlean's save_pretrained loads in transformers with the same
logits; hub layouts (bare base-model keys, attn.bias buffers, tied key absent or present, pickled
pytorch_model.bin, sharded safetensors) load; param_dtype; the errors name what is wrong."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from tests.models.test_gpt2 import TINY, assert_close_to_scale, ids_and_mask
from tests.torch_utils import n
from tlean import nn
from tlean.models import from_pretrained, gpt2, save_pretrained

forward = jax.jit(lambda m, x: m(x))


@pytest.fixture(scope="module")
def hf_gpt2(hf_dir_factory):
    import transformers

    return hf_dir_factory(transformers.GPT2Config, transformers.GPT2LMHeadModel, **TINY)


def hf_logits(hf, ids):
    with torch.no_grad():
        return n(hf(torch.from_numpy(np.asarray(ids))).logits)


def write_dir(path, config: dict, tensors: dict, name="model.safetensors"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    if name.endswith(".bin"):
        torch.save(tensors, path / name)
    else:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path / name), metadata={"format": "pt"})
    return path


def test_tlean_save_pretrained_loads_in_transformers_with_the_same_logits(tmp_path):
    import transformers
    from safetensors import safe_open

    model = nn.run(3, gpt2(**dict(TINY, activation_function="gelu_pytorch_tanh")))
    save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["model_type"], config["architectures"], config["dtype"]) == ("gpt2", ["GPT2LMHeadModel"], "float32")
    with safe_open(str(tmp_path / "model.safetensors"), framework="np") as f:
        keys = set(f.keys())
    assert "transformer.h.1.attn.c_attn.weight" in keys and "lm_head.weight" not in keys  # a tied array once
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert hf.config.tie_word_embeddings and hf.config.activation_function == "gelu_pytorch_tanh"
    ids = ids_and_mask()[0]
    assert_close_to_scale(forward(model, ids), hf_logits(hf, ids))
    back = from_pretrained(tmp_path)  # and back: the same arrays, the same config
    assert back.layer == model.layer
    jax.tree.map(np.testing.assert_array_equal, back.params, model.params)


def test_a_hub_layout_state_dict_loads(tmp_path, hf_gpt2):
    path, hf = hf_gpt2
    config = json.loads((path / "config.json").read_text())
    # the original hub files: GPT2Model's keys (no "transformer."), the causal-mask buffers, no lm_head
    tensors = {k: n(v) for k, v in hf.transformer.state_dict().items()}
    for i in range(TINY["n_layer"]):
        tensors[f"h.{i}.attn.bias"] = np.tril(np.ones((1, 1, TINY["n_positions"], TINY["n_positions"]), np.float32))
        tensors[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    model = from_pretrained(write_dir(tmp_path / "hub", config, tensors))
    ids = ids_and_mask()[0]
    want = hf_logits(hf, ids)
    assert_close_to_scale(forward(model, ids), want)
    # a pickled pytorch_model.bin with every key (the tied lm_head.weight too, equal to wte)
    model = from_pretrained(write_dir(tmp_path / "bin", config, dict(hf.state_dict()), "pytorch_model.bin"))
    assert_close_to_scale(forward(model, ids), want)
    # a sharded checkpoint: an index and two files
    shards = tmp_path / "sharded"
    keys = sorted(tensors)
    parts = {"model-00001-of-00002.safetensors": keys[:10], "model-00002-of-00002.safetensors": keys[10:]}
    for file, part in parts.items():
        write_dir(shards, config, {k: tensors[k] for k in part}, file)
    index = {"metadata": {}, "weight_map": {k: file for file, part in parts.items() for k in part}}
    (shards / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_close_to_scale(forward(from_pretrained(shards), ids), want)


def test_param_dtype_stores_the_params_in_that_dtype(tmp_path, hf_gpt2):
    path, hf = hf_gpt2
    model = from_pretrained(path, param_dtype=jnp.bfloat16)
    assert {a.dtype for a in jax.tree.leaves(model.params)} == {jnp.dtype(jnp.bfloat16)}
    ids = ids_and_mask()[0]
    got, want = forward(model, ids), hf_logits(hf, ids)
    assert got.dtype == jnp.bfloat16
    assert_close_to_scale(got, want, rel=0.05)
    # saved in bfloat16, it loads in bfloat16 by default (transformers' dtype="auto") and in transformers
    save_pretrained(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    again = from_pretrained(tmp_path)
    assert {a.dtype for a in jax.tree.leaves(again.params)} == {jnp.dtype(jnp.bfloat16)}
    jax.tree.map(np.testing.assert_array_equal, again.params, model.params)
    assert from_pretrained(tmp_path, param_dtype="float32").params["transformer"]["wte"]["weight"].dtype == jnp.float32


def test_errors_name_what_is_wrong(tmp_path, hf_gpt2):
    path, _ = hf_gpt2
    config = json.loads((path / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"model_type 't5' is not supported by tlean.models; supported: \[.*'gpt2'"):
        from_pretrained(write_dir(tmp_path / "t5", {"model_type": "t5"}, {}))
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match=r"holds none of \['model.safetensors'.*'pytorch_model.bin'"):
        from_pretrained(tmp_path / "noweights")
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), framework="np") as f:
        full = {k: f.get_tensor(k) for k in f.keys()}
    tensors = dict(full)
    del tensors["transformer.h.1.mlp.c_fc.bias"], tensors["transformer.ln_f.weight"]
    tensors["transformer.h.0.attn.c_proj.weight"] = np.zeros((3, 3), np.float32)
    tensors["transformer.h.0.attn.extra"] = np.zeros(2, np.float32)
    with pytest.raises(ValueError) as err:
        from_pretrained(write_dir(tmp_path / "broken", config, tensors))
    message = str(err.value)
    for part in (
        "model.safetensors",
        "missing keys",
        "transformer.h.1.mlp.c_fc.bias",
        "transformer.ln_f.weight",
        "mis-shaped keys: transformer.h.0.attn.c_proj.weight: expected shape (16, 16), got (3, 3)",
        "unexpected keys: ['transformer.h.0.attn.extra']",
    ):
        assert part in message, part
    untied = dict(config, tie_word_embeddings=False)  # then lm_head.weight is required
    with pytest.raises(ValueError, match=r"missing keys: \['lm_head.weight'\]"):
        from_pretrained(write_dir(tmp_path / "untied", untied, full))
    with pytest.raises(TypeError, match="save_pretrained needs a Model of a tlean.models family"):
        save_pretrained(nn.run(0, nn.Linear(2, 2)), tmp_path / "out")
    with pytest.raises(TypeError, match="torch dtype"):
        from_pretrained(path, param_dtype=torch.float16)
