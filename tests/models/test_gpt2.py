"""GPT-2 against transformers' GPT2LMHeadModel (the oracle): logits with and without a padding mask,
position_ids, gradients of every parameter (the tied embedding included), KV-cache decoding, the
config, Conv1D, the activations, the reference initialisers, dropout and bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.torch_utils import n
from tlean import Model, ShapeError, nn
from tlean.models import Conv1D, GPT2Config, LlamaConfig, from_pretrained, gpt2
from tlean.models._gpt2 import ACTIVATIONS

V, P, E, NL, NH = 64, 16, 16, 2, 2
TINY = dict(
    vocab_size=V,
    n_positions=P,
    n_embd=E,
    n_layer=NL,
    n_head=NH,
    initializer_range=0.1,
    bos_token_id=V - 1,
    eos_token_id=V - 1,
)
VARIANT = dict(
    TINY,
    tie_word_embeddings=False,
    activation_function="gelu",
    n_inner=24,
    scale_attn_weights=False,
    reorder_and_upcast_attn=True,
    attn_implementation="eager",
)


def load_pair(hf_dir_factory, config):
    """``(tlean Model, transformers model)`` loaded from the same directory."""
    import transformers

    path, hf = hf_dir_factory(transformers.GPT2Config, transformers.GPT2LMHeadModel, **config)
    return from_pretrained(path), hf


@pytest.fixture(scope="module")
def pair(hf_dir_factory):
    return load_pair(hf_dir_factory, TINY)


@pytest.fixture(scope="module")
def tiny(pair):
    """A tlean GPT-2 (the loaded tiny one) for tests that need any."""
    return pair[0]


def ids_and_mask(batch=3, seq=7, seed=0):
    ids = np.random.default_rng(seed).integers(0, V, (batch, seq))
    mask = np.ones((batch, seq), np.int64)
    mask[1, :2] = 0  # left padding of different lengths
    mask[2, :5] = 0
    return ids, mask


forward = jax.jit(lambda m, x, mask, pos: m(x, attention_mask=mask, position_ids=pos))


def assert_close_to_scale(got, want, rel=1e-5):
    """max |got - want| <= rel * max |want| (the issue's parity criterion)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err, scale = np.abs(got - want).max(), np.abs(want).max()
    assert err <= rel * scale, f"max abs diff {err:.3g} > {rel} * logit scale {scale:.3g}"


def hf_logits(hf, ids, mask=None, positions=None):
    as_torch = lambda a: None if a is None else torch.from_numpy(np.asarray(a))
    with torch.no_grad():
        return n(hf(as_torch(ids), attention_mask=as_torch(mask), position_ids=as_torch(positions)).logits)


def test_logits_equal_transformers_with_and_without_left_padding(pair):
    model, hf = pair
    ids, mask = ids_and_mask()
    assert_close_to_scale(forward(model, ids, None, None), hf_logits(hf, ids))
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)  # what generate passes with left padding
    real = mask.astype(bool)
    got = np.asarray(forward(model, ids, mask, positions))
    assert_close_to_scale(got[real], hf_logits(hf, ids, mask, positions)[real])
    # the mask and positions matter: without them the padded sequences' real rows change
    assert np.abs(np.asarray(forward(model, ids, None, None))[real] - got[real]).max() > 1e-3


def test_logits_of_a_variant_config_equal_transformers(hf_dir_factory):
    """Untied head, exact GELU, n_inner, unscaled attention computed in float32 (reorder_and_upcast_attn)."""
    model, hf = load_pair(hf_dir_factory, VARIANT)
    assert "lm_head.weight" in model.named_parameters()
    ids, mask = ids_and_mask(seed=2)
    assert_close_to_scale(forward(model, ids, None, None), hf_logits(hf, ids))
    real = mask.astype(bool)
    assert_close_to_scale(np.asarray(forward(model, ids, mask, None))[real], hf_logits(hf, ids, mask)[real])


def test_gradients_of_every_parameter_equal_transformers(pair):
    model, hf = pair
    ids, _ = ids_and_mask(seed=1)

    def loss(params):
        logits = model.replace(params=params)(jnp.asarray(ids))[:, :-1]
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, jnp.asarray(ids)[:, 1:, None], axis=-1))

    value, grads = jax.jit(jax.value_and_grad(loss))(model.params)
    hf.zero_grad()
    logits = hf(torch.from_numpy(ids)).logits[:, :-1]
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.from_numpy(ids[:, 1:]).reshape(-1))
    ref.backward()
    np.testing.assert_allclose(value, ref.item(), rtol=1e-5)
    want = {name: n(p.grad) for name, p in hf.named_parameters()}  # the tied weight once, its grads summed
    got = {}
    for leaf in Model(model.layer, grads).named_leaves():
        for name, (_, g) in zip(leaf.torch_names(), leaf.unstack()):
            got[name] = np.asarray(g)
    assert sorted(got) == sorted(want)
    for name, g in want.items():
        np.testing.assert_allclose(got[name], g, rtol=1e-4, atol=1e-5 * np.abs(g).max() + 1e-9, err_msg=name)


def test_decoding_with_the_cache_equals_the_full_forward(pair):
    model, _ = pair
    layer = model.layer
    ids, mask = ids_and_mask()
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    full = np.asarray(forward(model, ids, mask, positions))
    max_len = 9
    slots = np.concatenate([mask, np.ones((3, max_len - mask.shape[1]), np.int64)], axis=1)
    decode = jax.jit(layer.decode)  # start_pos traced
    logits, cache = decode(
        model.params, layer.init_cache(3, max_len), ids[:, :4], 0, attention_mask=slots, position_ids=positions[:, :4]
    )
    steps = [logits]
    for t in range(4, ids.shape[1]):
        logits, cache = decode(
            model.params, cache, ids[:, t : t + 1], t, attention_mask=slots, position_ids=positions[:, t : t + 1]
        )
        steps.append(logits)
    got = np.concatenate(steps, axis=1)
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], full[real], rtol=1e-5, atol=1e-5 * np.abs(full).max())
    assert cache["key"].shape == (NL, 3, NH, max_len, E // NH)
    # without mask and position_ids: positions default to start_pos + arange(s); unrolled (scan=False) alike
    plain = np.asarray(forward(model, ids, None, None))
    first, cache = decode(model.params, layer.init_cache(3, P), ids[:, :5], 0)
    unrolled = dataclasses.replace(layer, scan=False)
    rest, _ = jax.jit(unrolled.decode, static_argnums=3)(model.params, cache, ids[:, 5:], 5)
    np.testing.assert_allclose(np.concatenate([first, rest], axis=1), plain, rtol=1e-5, atol=1e-5 * np.abs(plain).max())
    assert layer.context_length == P


def test_decode_refuses_bad_input(tiny):
    model = tiny
    layer = model.layer
    cache = layer.init_cache(2, 8)
    ids = jnp.zeros((2, 3), jnp.int32)
    with pytest.raises(ShapeError, match=r"attention_mask \[batch, max_len=8\]"):
        layer.decode(model.params, cache, ids, 0, attention_mask=jnp.ones((2, 3)))
    with pytest.raises(ShapeError, match="cache max_len=8"):
        layer.decode(model.params, cache, ids, 6)
    with pytest.raises(ShapeError, match=r"cache\['key'\] \[2, 2, 2, max_len, 8\]"):
        layer.decode(model.params, layer.init_cache(1, 8), ids, 0)
    with pytest.raises(TypeError, match="start_pos must be an integer"):
        layer.decode(model.params, cache, ids, 1.5)
    with pytest.raises(TypeError, match="integer token ids"):
        model(jnp.zeros((2, 3)))
    with pytest.raises(ShapeError, match="at most 16 positions"):
        model(jnp.zeros((1, P + 1), jnp.int32))
    with pytest.raises(ShapeError, match=r"position_ids \[2\|1, 3\]"):
        model(ids, position_ids=jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(TypeError, match="attention_mask"):
        layer.transformer.h.apply({}, {}, jnp.zeros((2, 3, E)), attention_mask=None)


def test_builder_init_follows_transformers_and_ties_the_head(tiny):
    assert "lm_head.weight" not in tiny.named_parameters()  # tied: one leaf, two names
    [wte] = [leaf for leaf in tiny.named_leaves() if leaf.name == "transformer.wte.weight"]
    assert wte.aliases == ("lm_head.weight",)
    model = nn.run(0, gpt2(vocab_size=256, n_positions=32, n_embd=32, n_layer=4, n_head=4, tie_word_embeddings=False))
    named = model.named_parameters()
    std = lambda name: float(np.std(np.asarray(named[name])))
    for name in (
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.*.attn.c_attn.weight",
        "transformer.h.*.mlp.c_fc.weight",
        "lm_head.weight",
    ):
        assert abs(std(name) - 0.02) < 0.0015, name
    for name in ("transformer.h.*.attn.c_proj.weight", "transformer.h.*.mlp.c_proj.weight"):
        assert abs(std(name) - 0.02 / np.sqrt(8)) < 0.0005, name
    assert not np.asarray(named["transformer.h.*.attn.c_attn.bias"]).any()
    assert (np.asarray(named["transformer.h.*.ln_1.weight"]) == 1).all()
    # GPT-2 small: transformers' GPT2LMHeadModel(GPT2Config()).num_parameters() is 124,439,808
    small = jax.eval_shape(lambda: nn.run(0, gpt2()))
    assert small.num_params() == 124_439_808


def test_dropout_is_active_in_training_only(tiny):
    ids = jnp.asarray(ids_and_mask()[0])
    eval_logits = forward(tiny, ids, None, None)
    train_logits = jax.jit(lambda m, k, x: m(x, key=k, train=True))(tiny, jax.random.key(1), ids)
    assert np.abs(np.asarray(train_logits - eval_logits)).max() > 1e-3
    with pytest.raises(ValueError, match="needs a dropout key"):
        jax.eval_shape(lambda m: m(ids, train=True), tiny)


def test_config_reads_and_writes_transformers_fields():
    import transformers

    hf = transformers.GPT2Config(**TINY).to_dict()
    config = GPT2Config.from_hf(hf)
    assert (config.n_embd, config.n_layer, config.initializer_range, config.inner_dim) == (E, NL, 0.1, 4 * E)
    assert GPT2Config.from_hf(config.to_hf()) == config
    assert GPT2Config.from_hf({"hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 3}).n_layer == 3
    assert hash(GPT2Config.from_hf({"eos_token_id": [1, 2]})) is not None
    for field, value in [
        ("activation_function", "prelu"),
        ("scale_attn_by_inverse_layer_idx", True),
        ("add_cross_attention", True),
        ("n_head", 5),
        ("attn_pdrop", 1.0),
    ]:
        with pytest.raises(ValueError, match=field):
            GPT2Config.from_hf({**hf, field: value})
    with pytest.raises(ValueError, match="model_type must be 'gpt2'"):
        GPT2Config.from_hf({"model_type": "llama"})
    with pytest.raises(TypeError, match=r"gpt2: unknown argument\(s\) \['hidden_size'\]; GPT2Config fields are"):
        gpt2(hidden_size=8)
    with pytest.raises(TypeError, match=r"gpt2: config must be a GPT2Config, got LlamaConfig"):
        gpt2(LlamaConfig())


def test_activations_equal_transformers_act2fn():
    from transformers.activations import ACT2FN

    x = np.linspace(-12, 12, 241, dtype=np.float32)
    for name, fn in ACTIVATIONS.items():
        want = n(ACT2FN[name](torch.from_numpy(x)))
        np.testing.assert_allclose(fn(jnp.asarray(x)), want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_conv1d_equals_transformers_conv1d():
    from transformers.pytorch_utils import Conv1D as TorchConv1D

    torch.manual_seed(0)
    ref = TorchConv1D(6, 4)
    with torch.no_grad():
        ref.bias.normal_()
    layer = Conv1D(6, 4)
    params = {k: jnp.asarray(n(v)) for k, v in ref.state_dict().items()}
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, layer.init(jax.random.key(0))[0])
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    y, vjp = jax.vjp(lambda p, x: layer.apply(p, {}, x)[0], params, jnp.asarray(x))
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = ref(tx)
    np.testing.assert_allclose(y, n(ty), rtol=1e-6, atol=1e-6)
    cot = np.random.default_rng(1).normal(size=y.shape).astype(np.float32)
    ty.backward(torch.from_numpy(cot))
    gp, gx = vjp(jnp.asarray(cot))
    np.testing.assert_allclose(gx, n(tx.grad), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gp["weight"], n(ref.weight.grad), rtol=1e-5, atol=1e-6)
    with pytest.raises(ShapeError, match=r"Conv1D\(nf=6, nx=4\): expected input \[\.\.\., 4\]"):
        layer.apply(params, {}, jnp.ones((2, 5)))
