"""Parity with a ``torch.nn`` module by state_dict: outputs, new state and gradients, in train and eval mode.

torch is imported only when a function here runs (it is a test dependency, not tlean's).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tlean._core import Layer
from tlean._model import Model
from tlean.interop import load_torch_state_dict, to_torch_state_dict
from tlean.seed import Builder, run
from tlean.testing._compare import difference, named


def to_numpy(x: Any) -> Any:
    """A NumPy array of a torch tensor or JAX array (a tree of them: each leaf); bfloat16 tensors as float32."""
    if isinstance(x, (tuple, list)):
        return type(x)(to_numpy(v) for v in x)
    if hasattr(x, "detach"):  # a torch.Tensor
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def to_torch(x: Any, *, requires_grad: bool = True) -> Any:
    """A torch tensor holding a copy of a NumPy or JAX array (gradients enabled for floating-point ones)."""
    import torch

    if isinstance(x, (tuple, list)):
        return type(x)(to_torch(v, requires_grad=requires_grad) for v in x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    tensor = torch.from_numpy(np.array(x))
    if requires_grad and tensor.is_floating_point():
        tensor.requires_grad_(True)
    return tensor


def from_torch(model: Any, module: Any) -> Model:
    """A Model of ``model`` (a Model, Layer or Builder) holding ``module``'s parameters and buffers.

    A Layer or Builder is never initialised: only its shapes are traced
    (``jax.eval_shape``), then every array comes from ``module.state_dict()`` by PyTorch's
    names. A state_dict that does not match raises ``ValueError`` listing the missing,
    unexpected and mis-shaped keys.
    """
    if isinstance(model, Layer):
        model = Model(model, *jax.eval_shape(model.init, jax.random.key(0)))
    elif isinstance(model, Builder):
        model = jax.eval_shape(lambda: run(0, model))
    elif not isinstance(model, Model):
        raise TypeError(f"from_torch: expected a tlean Model, Layer or Builder, got {type(model).__name__}")
    return load_torch_state_dict(model, module.state_dict())


def _floating(x: Any) -> bool:
    return x is not None and not isinstance(x, (bool, int, str)) and jnp.issubdtype(jnp.result_type(x), jnp.floating)


def _cotangents(outputs: Any, seed: int) -> list:
    """A random weighting of each floating-point output leaf (a random direction, not just ``sum()``);
    ``None`` for the others, one entry per leaf of ``outputs``."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=np.shape(y)).astype(np.float32) if _floating(y) else None for y in jax.tree.leaves(outputs)]


def _weighted_output(forward: Any, inputs: tuple, floats: tuple, weights: list, params: Any, xs: tuple) -> jax.Array:
    """``sum(y * weight)`` over the output leaves, with the floating-point inputs ``floats`` replaced by ``xs``."""
    full = list(inputs)
    for index, value in zip(floats, xs):
        full[index] = value
    total = jnp.zeros((), jnp.float32)
    for out, weight in zip(jax.tree.leaves(forward(params, tuple(full))[0]), weights):
        if weight is not None:
            total = total + jnp.sum(out * weight)
    return total


def assert_torch_parity(
    model: Any,
    torch_module: Any,
    inputs: Any,
    *,
    train: bool | tuple[bool, ...] = (False, True),
    grads: bool = True,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    grad_atol: float = 1e-4,
    grad_rtol: float = 1e-4,
    jit: bool = True,
    key: jax.Array | None = None,
    kwargs: Mapping[str, Any] | None = None,
    torch_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Assert that a tlean model computes what ``torch_module`` computes, given torch's weights.

    The tlean model takes ``torch_module.state_dict()`` by PyTorch's names (a Layer or
    Builder is not initialised: only its shapes are traced). Then, in each mode of ``train``
    (``torch_module.train(mode)`` on a fresh copy of the module), both run on the same
    inputs and this compares:

    - the outputs, leaf by leaf (a torch forward returning a tuple must be matched by a tuple:
      pass ``need_weights=True`` / ``return_final=True`` through ``kwargs``);
    - the new state with torch's buffers after the forward (BatchNorm's running statistics);
    - with ``grads``, the gradients of ``sum(y * g)`` (``g`` a seeded random weighting of each
      output) with respect to every parameter (by torch's name) and every floating-point input.

    Args:
      model: a tlean Model, Layer or Builder with the module's structure.
      torch_module: the ``torch.nn.Module`` (left unchanged: each mode runs on a copy).
      inputs: the input, or a tuple of inputs in torch's forward order (NumPy or JAX arrays).
      train: the mode, or the modes to check in turn (default eval then train). Stochastic
        layers (dropout) can only be compared in eval mode or with ``p=0``.
      grads: also compare gradients.
      atol, rtol: the tolerance for outputs and state.
      grad_atol, grad_rtol: the tolerance for gradients.
      jit: run the tlean side under ``jax.jit``.
      key: tlean's dropout key (default ``jax.random.key(0)``).
      kwargs: keywords for the tlean model (``need_weights``, masks as tlean spells them).
      torch_kwargs: keywords for the torch forward.
      seed: the seed of the random output weighting.

    Returns:
      ``{"eval/output": max abs error, "train/grad/weight": ..., ...}``: the largest
      absolute error of everything compared, for reports.

    Raises:
      AssertionError: listing every output, state leaf, parameter gradient or input gradient
        that differs (named as torch names it, with the largest error and where), or, for a
        state_dict that does not fit, the missing, unexpected and mis-shaped keys.
    """
    import torch

    kwargs, torch_kwargs = dict(kwargs or {}), dict(torch_kwargs or {})
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    key = jax.random.key(0) if key is None else key
    try:
        model = from_torch(model, torch_module)
    except ValueError as err:
        raise AssertionError(f"assert_torch_parity: the torch module's state_dict does not fit: {err}") from None
    errors: dict[str, float] = {}
    problems: list[str] = []

    def compare(label: str, actual: Any, expected: Any, tol: tuple[float, float]) -> None:
        diff = difference(actual, expected, atol=tol[0], rtol=tol[1])
        if np.shape(actual) == np.shape(expected) and np.size(actual):
            errors[label] = float(np.max(np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))))
        if diff is not None:
            problems.append(f"{label}: {diff}")

    for mode in (train,) if isinstance(train, bool) else tuple(train):
        where = "train" if mode else "eval"
        module = copy.deepcopy(torch_module).train(mode)
        module.zero_grad(set_to_none=True)
        xt = to_torch(inputs)
        yt = module(*xt, **torch_kwargs)
        expected = to_numpy(yt)

        def forward(params: Any, xs: tuple, mode: bool = mode) -> tuple[Any, Any]:
            y, new = model.replace(params=params).forward(*xs, key=key, train=mode, **kwargs)
            return y, new.state

        run_forward = jax.jit(forward) if jit else forward
        y, state = run_forward(model.params, inputs)
        y = jax.tree.map(np.asarray, y)
        if jax.tree.structure(y) != jax.tree.structure(expected):
            problems.append(
                f"{where}: output structure differs: tlean gives {jax.tree.structure(y)}, torch "
                f"{jax.tree.structure(expected)} (a torch forward returning a tuple needs need_weights=True "
                "or return_final=True)"
            )
            continue
        for name, value in named(y).items():
            compare(
                f"{where}/output" + ("" if name == "<root>" else f"[{name}]"),
                value,
                named(expected)[name],
                (atol, rtol),
            )
        buffers = {
            k: v
            for k, v in to_torch_state_dict(model.replace(state=state)).items()
            if k in dict(module.named_buffers())
        }
        for name, value in buffers.items():
            compare(f"{where}/state {name!r}", value, to_numpy(dict(module.named_buffers())[name]), (atol, rtol))
        if not grads:
            continue
        cotangent = _cotangents(y, seed)
        loss_t = sum(
            (t * torch.from_numpy(g)).sum()
            for t, g in zip(jax.tree.leaves(yt), cotangent)
            if g is not None and t.requires_grad
        )
        if not isinstance(loss_t, torch.Tensor):
            continue  # no output depends on anything differentiable
        loss_t.backward()
        floats = tuple(i for i, x in enumerate(inputs) if _floating(x))

        grad = jax.grad(functools.partial(_weighted_output, forward, inputs, floats, cotangent), argnums=(0, 1))
        gp, gx = (jax.jit(grad) if jit else grad)(model.params, tuple(jnp.asarray(inputs[i]) for i in floats))
        tlean_grads = to_torch_state_dict(model.replace(params=gp, state={}))
        for name, parameter in module.named_parameters():
            if not parameter.requires_grad:
                continue
            if name not in tlean_grads:
                problems.append(f"{where}/grad of parameter {name!r}: tlean has no such parameter")
                continue
            expected_grad = to_numpy(parameter.grad) if parameter.grad is not None else np.zeros(parameter.shape)
            compare(f"{where}/grad of parameter {name!r}", tlean_grads[name], expected_grad, (grad_atol, grad_rtol))
        for i, g in zip(floats, gx):
            tensor = xt[i] if isinstance(xt[i], torch.Tensor) else None
            if tensor is None or tensor.grad is None:
                continue
            compare(f"{where}/grad of input {i}", g, to_numpy(tensor.grad), (grad_atol, grad_rtol))
    if problems:
        raise AssertionError(
            f"assert_torch_parity: {model.layer!r} differs from {type(torch_module).__name__}:\n  "
            + "\n  ".join(problems)
        )
    return errors
