"""BERT against transformers' BertModel (the oracle): the checkpoint's names, hidden states and pooler
output with and without an attention mask and token types, gradients of every parameter,
from_pretrained / save_pretrained both ways, the config, the initialisers, dropout and bad input."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.torch_utils import n
from tlean import Model, ShapeError, nn
from tlean.interop import load_torch_state_dict, to_torch_state_dict
from tlean.models import BertConfig, bert, from_pretrained, save_pretrained
from tlean.models._bert import ACTIVATIONS, BertModel

V, P, T, E, NL, NH, FF = 40, 16, 3, 16, 2, 2, 32
TINY = dict(
    vocab_size=V,
    max_position_embeddings=P,
    type_vocab_size=T,
    hidden_size=E,
    num_hidden_layers=NL,
    num_attention_heads=NH,
    intermediate_size=FF,
)


@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory):
    """``(directory, transformers BertModel)``: random init, every array perturbed (so zero biases and
    unit LayerNorm weights cannot hide a mix-up), saved with transformers' ``save_pretrained``."""
    import transformers

    torch.manual_seed(0)
    hf = transformers.BertModel(transformers.BertConfig(**TINY)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("bert")
    hf.save_pretrained(path)
    return path, hf


@pytest.fixture(scope="module")
def model(hf_bert):
    """transformers' arrays in a tlean Model built with ``jax.eval_shape`` (shapes only: no init to compile)."""
    return load_torch_state_dict(jax.eval_shape(lambda: nn.run(0, bert(**TINY))), hf_bert[1].state_dict())


def inputs(batch=3, seq=7, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, V, (batch, seq))
    mask = np.ones((batch, seq), np.int64)
    mask[1, 4:] = 0  # right padding of different lengths
    mask[2, 2:] = 0
    token_types = rng.integers(0, T, (batch, seq))
    return ids, mask, token_types


forward = jax.jit(lambda m, ids, mask, tt: m(ids, attention_mask=mask, token_type_ids=tt))


def torch_forward(hf, ids, mask, tt):
    as_t = lambda a: None if a is None else torch.from_numpy(a)
    out = hf(input_ids=as_t(ids), attention_mask=as_t(mask), token_type_ids=as_t(tt))
    return out.last_hidden_state, out.pooler_output


def assert_close_to_scale(got, want, rel=1e-5):
    """max |got - want| <= rel * max |want| (the issue's parity criterion)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err, scale = np.abs(got - want).max(), np.abs(want).max()
    assert err <= rel * scale, f"max abs diff {err:.3g} > {rel} * output scale {scale:.3g}"


def test_names_are_the_checkpoint_keys(model, hf_bert):
    assert set(to_torch_state_dict(model)) == set(hf_bert[1].state_dict())
    assert "encoder.layer.*.attention.self.query.weight" in model.named_parameters()


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "padding-mask"])
@pytest.mark.parametrize("typed", [False, True], ids=["no-token-types", "token-types"])
def test_hidden_states_and_pooler_equal_transformers(model, hf_bert, masked, typed):
    ids, mask, tt = inputs()
    mask, tt = (mask if masked else None), (tt if typed else None)
    with torch.no_grad():
        want_h, want_p = torch_forward(hf_bert[1], ids, mask, tt)
    got_h, got_p = forward(model, ids, mask, tt)
    assert_close_to_scale(got_h, n(want_h))
    assert_close_to_scale(got_p, n(want_p))
    if masked:  # the mask matters: the padded rows differ from an unmasked run
        assert np.abs(np.asarray(got_h) - np.asarray(forward(model, ids, None, tt)[0])).max() > 1e-3


def test_gradients_of_every_parameter_equal_transformers(model, hf_bert):
    hf = hf_bert[1]
    ids, mask, tt = inputs(seed=1)
    rng = np.random.default_rng(2)
    w_h, w_p = rng.standard_normal((3, 7, E)).astype(np.float32), rng.standard_normal((3, E)).astype(np.float32)
    hf.zero_grad()
    h, p = torch_forward(hf, ids, mask, tt)
    ((h * torch.from_numpy(w_h)).sum() + (p * torch.from_numpy(w_p)).sum()).backward()
    want = {name: n(param.grad) for name, param in hf.named_parameters()}

    def loss(params):
        h, p = model.layer.apply(params, model.state, ids, attention_mask=mask, token_type_ids=tt)[0]
        return jnp.sum(h * w_h) + jnp.sum(p * w_p)

    grads = to_torch_state_dict(model.replace(params=jax.jit(jax.grad(loss))(model.params)))
    assert set(grads) == set(want)
    overall = max(np.abs(g).max() for g in want.values())
    for name, g in want.items():  # relative to the leaf's scale (the key bias's is rounding noise: floor it)
        scale = max(np.abs(g).max(), 1e-2 * overall)
        assert np.abs(grads[name] - g).max() <= 1e-5 * scale, name
    assert np.abs(want["embeddings.word_embeddings.weight"][0]).max() == 0  # pad row: no gradient in either


def test_from_pretrained_reads_transformers_directory(model, hf_bert):
    loaded = from_pretrained(hf_bert[0])
    assert loaded.layer.config == model.layer.config
    jax.tree.map(np.testing.assert_array_equal, loaded.params, model.params)


def test_save_pretrained_loads_back_into_transformers(model, tmp_path):
    import transformers

    save_pretrained(model, tmp_path)
    hf = transformers.BertModel.from_pretrained(tmp_path).eval()
    ids, mask, tt = inputs(seed=3)
    with torch.no_grad():
        want_h, want_p = torch_forward(hf, ids, mask, tt)
    got_h, got_p = forward(model, ids, mask, tt)
    assert_close_to_scale(got_h, n(want_h))
    assert_close_to_scale(got_p, n(want_p))


@pytest.mark.parametrize("head", ["BertForSequenceClassification", "BertForMaskedLM"])
def test_a_head_checkpoint_loads_its_base(head, tmp_path):
    """The base under ``bert.``, a head beside it (left out); BertForMaskedLM has no pooler."""
    import transformers
    from safetensors.numpy import load_file, save_file

    torch.manual_seed(1)
    hf = getattr(transformers, head)(transformers.BertConfig(**TINY))
    hf.save_pretrained(tmp_path)
    if head == "BertForMaskedLM":  # older checkpoints also hold the non-persistent position_ids buffer
        file = str(tmp_path / "model.safetensors")
        old = {**load_file(file), "bert.embeddings.position_ids": np.arange(P)[None]}
        save_file(old, file, metadata={"format": "pt"})
    loaded = from_pretrained(tmp_path)
    assert loaded.layer.config.add_pooling_layer == (head != "BertForMaskedLM")
    want = hf.bert.state_dict()
    got = to_torch_state_dict(loaded)
    assert set(got) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], n(v), err_msg=k)


def test_activations_equal_transformers():
    from transformers.activations import ACT2FN

    x = np.linspace(-6, 6, 101, dtype=np.float32)
    for name, fn in ACTIVATIONS.items():
        np.testing.assert_allclose(
            fn(jnp.asarray(x)), n(ACT2FN[name](torch.from_numpy(x))), rtol=1e-6, atol=1e-6, err_msg=name
        )


def test_train_mode_dropout(model):
    """transformers' BertConfig has dropout 0.1: off unless train=True, which needs a key (the masks
    themselves are tested on ViT, whose layers are the same)."""
    m, config = model, model.layer.config
    ids, mask, tt = inputs()
    with pytest.raises(ValueError, match="Dropout.*needs a dropout key"):
        abstract_call(m, ids, mask, tt, train=True)
    assert abstract_call(m, ids, mask, tt, key=jax.random.key(1), train=True)[0].shape == (3, 7, E)
    # without dropout probabilities train mode needs no key and computes the eval function
    quiet = Model(
        BertModel(dataclasses.replace(config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)),
        m.params,
        m.state,
    )
    train = jax.jit(lambda m: m(ids, mask, tt, train=True)[0])
    np.testing.assert_allclose(train(quiet), forward(m, ids, mask, tt)[0], rtol=0, atol=1e-6)


def test_reference_initialisers():
    params = nn.run(1, bert(**TINY)).named_parameters()
    word = np.asarray(params["embeddings.word_embeddings.weight"])  # pad_token_id 0
    assert np.all(word[0] == 0) and abs(word.std() - 0.02) < 0.003
    assert abs(np.asarray(params["encoder.layer.*.intermediate.dense.weight"]).std() - 0.02) < 0.003
    for name, value in params.items():
        if name.endswith("bias"):
            assert np.all(np.asarray(value) == 0), name
        elif "LayerNorm" in name:
            assert np.all(np.asarray(value) == 1), name


def test_config_round_trips_through_transformers(hf_bert):
    import transformers

    config = BertConfig.from_hf(hf_bert[1].config.to_dict())
    assert config == BertConfig(**TINY)
    again = transformers.BertConfig(**config.to_hf())
    assert BertConfig.from_hf(again.to_dict()) == config
    assert not BertConfig.from_hf({**config.to_hf(), "architectures": ["BertForMaskedLM"]}).add_pooling_layer


def test_bad_config():
    with pytest.raises(ValueError, match="BertConfig: hidden_act='gelu_fast' is not supported"):
        BertConfig(hidden_act="gelu_fast")
    with pytest.raises(ValueError, match="hidden_size=10 must be a multiple of num_attention_heads=4"):
        BertConfig(hidden_size=10, num_attention_heads=4)
    with pytest.raises(ValueError, match="is_decoder=True is not supported"):
        BertConfig.from_hf({"model_type": "bert", "is_decoder": True})
    with pytest.raises(ValueError, match="model_type must be 'bert', got 'gpt2'"):
        BertConfig.from_hf({"model_type": "gpt2"})
    with pytest.raises(TypeError, match=r"bert: unknown argument\(s\) \['n_embd'\]"):
        bert(n_embd=8)


def abstract_call(model, *args, **kwargs):
    """``model(*args, **kwargs)`` under ``jax.eval_shape``: traced, never run."""
    return jax.eval_shape(lambda m, *a: m(*a, **kwargs), model, *args)


def test_bad_input(model):
    """Refused at trace time (``jax.eval_shape``: nothing runs)."""
    ids, mask, tt = inputs()
    model = functools.partial(abstract_call, model)
    with pytest.raises(ShapeError, match=r"BertModel\(.*expected input_ids \[batch, seq\].*got shape \(7,\)"):
        model(ids[0])
    with pytest.raises(ShapeError, match=r"seq <= max_position_embeddings=16.*got shape \(1, 17\)"):
        model(np.ones((1, P + 1), np.int32))
    with pytest.raises(TypeError, match="input_ids must be integers, got float32"):
        model(ids.astype(np.float32))
    with pytest.raises(ShapeError, match=r"token_type_ids \[batch, seq\] = \(3, 7\).*got shape \(3, 6\)"):
        model(ids, token_type_ids=tt[:, :6])
    with pytest.raises(ShapeError, match=r"attention_mask \[batch, seq\] = \(3, 7\).*got shape \(7,\)"):
        model(ids, attention_mask=mask[0])
