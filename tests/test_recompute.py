"""Differentiable on demand: attributions computed without a graph, recomputed with it in backward.

A model in eval mode (or a plain function, or any chunked path method) takes the on-demand
path; a model in training mode keeps the graph at once. Both must give the same gradients.
References keep the graph the plain way (``torch.autograd.grad(create_graph=True)`` in a
loop over steps, written here, never fattr itself), and everything runs in float64 so
agreement is exact to rounding.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fattr
from fattr._src import recompute

TOL = dict(rtol=1e-10, atol=1e-12)


def mlp(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Dropout(dropout), nn.Linear(6, 2)).double()


def reference_ig(f, x, n_steps, target, args=()):
    """IG with Gauss-Legendre nodes, one step at a time, keeping every graph."""
    alphas, weights = fattr.quadrature("gausslegendre", n_steps)
    total = torch.zeros_like(x)
    for a, w in zip(alphas.tolist(), weights.tolist()):
        point = a * x
        if not point.requires_grad:
            point = point.detach().requires_grad_()
        out = f(point, *args)[:, target].sum()
        (g,) = torch.autograd.grad(out, point, create_graph=True, allow_unused=True, materialize_grads=True)
        total = total + w * g
    return total * x


MODES = pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])


@MODES
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_gradient_wrt_parameters_matches_the_kept_graph(training, chunk_size):
    model, x = mlp().train(training), torch.randn(4, 3, dtype=torch.float64)
    loss = fattr.integrated_gradients(model, x, n_steps=5, target=1, chunk_size=chunk_size).pow(2).sum()
    got = torch.autograd.grad(loss, list(model.parameters()), materialize_grads=True)
    want = torch.autograd.grad(reference_ig(model, x, 5, 1).pow(2).sum(), list(model.parameters()),
                               materialize_grads=True)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL)


@MODES
def test_second_derivative_wrt_inputs(training):
    model = mlp().train(training)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    got = torch.autograd.grad(fattr.saliency(model, x, target=0, abs=False).pow(2).sum(), x)[0]

    def saliency_squared(x):
        return torch.func.grad(lambda x: model(x)[:, 0].sum())(x).pow(2).sum()

    torch.testing.assert_close(got, torch.func.grad(saliency_squared)(x.detach()), **TOL)


@pytest.mark.parametrize("graph_before_the_call", [False, True])
def test_closed_over_tensors_get_gradients(graph_before_the_call):
    """A closure over leaves, or over a tensor computed with a graph before the call (kept-graph path)."""
    torch.manual_seed(1)
    w = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    scaled = w * scale if graph_before_the_call else None

    def f(x):
        return torch.tanh(x @ (scaled if graph_before_the_call else w * scale))

    x = torch.randn(4, 3, dtype=torch.float64)
    attr = fattr.integrated_gradients(f, x, n_steps=4, target=1)
    wrt = (w, scale, scaled) if graph_before_the_call else (w, scale)
    got = torch.autograd.grad(attr.sum(), wrt, retain_graph=True)
    want = torch.autograd.grad(reference_ig(f, x, 4, 1).sum(), wrt)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, **TOL)


def test_tensors_in_args_get_gradients():
    model = mlp()
    bias = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)

    def f(x, b):
        return torch.sigmoid(model(x) * b)

    x = torch.randn(4, 3, dtype=torch.float64)
    got = torch.autograd.grad(fattr.integrated_gradients(f, x, n_steps=3, target=0, args=(bias,)).sum(), bias)
    want = torch.autograd.grad(reference_ig(f, x, 3, 0, args=(bias,)).sum(), bias)
    torch.testing.assert_close(got[0], want[0], **TOL)


@MODES
def test_higher_order_derivatives_through_the_recomputation(training):
    model, x = mlp().train(training), torch.randn(4, 3, dtype=torch.float64)
    weight = model[0].weight

    def hessian_vector(attr):
        (g,) = torch.autograd.grad(attr.pow(2).sum(), weight, create_graph=True)
        return torch.autograd.grad(g.sum(), weight)[0]

    got = hessian_vector(fattr.integrated_gradients(model, x, n_steps=3, target=1))
    torch.testing.assert_close(got, hessian_vector(reference_ig(model, x, 3, 1)), **TOL)


def _functional_loss(model, x, **kwargs):
    """``params -> sum(attributions)`` through the traced path (``torch.func.grad`` inside fattr)."""
    def loss(p):
        f = lambda z: torch.func.functional_call(model, p, (z,))  # noqa: E731
        return fattr.integrated_gradients(f, x, **kwargs).sum()
    return loss


def test_dropout_masks_are_the_same_in_the_recomputation():
    """The backward differentiates the function the forward evaluated: same dropout masks."""
    model = mlp(dropout=0.5).train()
    x = torch.randn(8, 3, dtype=torch.float64)
    torch.manual_seed(7)
    attr = fattr.integrated_gradients(model, x, n_steps=4, target=0, chunk_size=4)  # chunked: on demand
    after_call = torch.get_rng_state()
    got = torch.autograd.grad(attr.sum(), model[0].weight)[0]
    assert torch.equal(torch.get_rng_state(), after_call), "the backward pass moved the global RNG"

    def reference(seed):  # the same arithmetic: one forward over the steps' points (step-major), one mask
        torch.manual_seed(seed)
        alphas, weights = fattr.quadrature("gausslegendre", 4)
        points = torch.cat([a * x for a in alphas.tolist()]).requires_grad_()
        (g,) = torch.autograd.grad(model(points)[:, 0].sum(), points, create_graph=True)
        ig = (weights.to(x.dtype)[:, None, None] * g.reshape(4, 8, 3)).sum(0) * x
        return torch.autograd.grad(ig.sum(), model[0].weight)[0]

    torch.testing.assert_close(got, reference(7), **TOL)
    assert not torch.allclose(reference(8), got), "the masks do not matter here: the test would prove nothing"


def _node_names(t):
    names, stack, seen = [], [t.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        stack.extend(child for child, _ in node.next_functions)
    return names


@pytest.mark.parametrize("training,chunk_size,on_demand", [(False, None, True), (False, 2, True), (True, 2, True),
                                                           (True, None, False)])
def test_which_calls_keep_their_graph(training, chunk_size, on_demand):
    """On demand, the result's graph is one recomputing node per chunk and no node of the model's own
    ops; a model in training mode, unchunked, keeps the graph of its gradient pass at once."""
    model, x = mlp().train(training), torch.randn(4, 3, dtype=torch.float64)
    names = _node_names(fattr.integrated_gradients(model, x, n_steps=6, target=0, chunk_size=chunk_size))
    model_ops = [n for n in names if n.startswith(("Tanh", "Addmm", "TBackward"))]
    recomputing = sum(n == "_RecomputedBackward" for n in names)
    if on_demand:
        assert not model_ops and recomputing == (3 if chunk_size else 1), names
    else:
        assert model_ops and not recomputing, names


LAYER_CALLS = {
    "layer_integrated_gradients": lambda m, x, **k: fattr.layer_integrated_gradients(m, "1", x, n_steps=6, **k),
    "layer_conductance": lambda m, x, **k: fattr.layer_conductance(m, "1", x, n_steps=6, **k),
    "layer_gradient_shap": lambda m, x, **k: fattr.layer_gradient_shap(m, "1", x, x * 0.5, n_samples=3,
                                                                       generator=torch.Generator().manual_seed(0), **k),
    "layer_gradient_x_activation": lambda m, x, **k: fattr.layer_gradient_x_activation(m, "1", x, **k),
    "layer_feature_ablation": lambda m, x, **k: fattr.layer_feature_ablation(m, "1", x, 0.5, **k),
}


@pytest.mark.parametrize("name,chunk_size", [(name, None) for name in sorted(LAYER_CALLS)]
                         + [("layer_integrated_gradients", 2), ("layer_conductance", 2)])
def test_a_layer_method_is_one_recomputing_node_per_chunk(name, chunk_size):
    """The head and the path (and the delta) of a layer method in one checkpoint: one node, or one per chunk
    (and one for the heads outside them, layer IG) when chunked; its parameters get their gradients."""
    model, x = mlp().eval(), torch.randn(4, 3, dtype=torch.float64)
    extra = {} if chunk_size is None else {"chunk_size": chunk_size}
    delta = {"return_delta": True} if name in ("layer_integrated_gradients", "layer_conductance",
                                                "layer_gradient_shap") else {}
    out = LAYER_CALLS[name](model, x, target=0, **extra, **delta)
    attr = out[0] if delta else out
    names = _node_names(attr)
    model_ops = [n for n in names if n.startswith(("Tanh", "Addmm", "TBackward"))]
    want = 1 if chunk_size is None else (4 if name == "layer_integrated_gradients" else 3)
    assert not model_ops and sum(n == "_RecomputedBackward" for n in names) == want, names
    grads = torch.autograd.grad(attr.pow(2).sum(), list(model.parameters()), materialize_grads=True)
    with recompute.keep_graph():
        kept = LAYER_CALLS[name](model, x, target=0, **extra, **delta)
    want_grads = torch.autograd.grad((kept[0] if delta else kept).pow(2).sum(), list(model.parameters()),
                                     materialize_grads=True)
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, **TOL)
    if delta:
        torch.testing.assert_close(out[1], kept[1], **TOL)
        assert out[1].requires_grad


def test_under_torch_func_grad():
    """fattr inside a torch.func transform: functional parameters, the traced gradient path."""
    model, x = mlp(), torch.randn(4, 3, dtype=torch.float64)
    params = {k: v.detach() for k, v in model.named_parameters()}
    got = torch.func.grad(_functional_loss(model, x, n_steps=3, target=1))(params)
    want = torch.autograd.grad(reference_ig(model, x, 3, 1).sum(), list(model.parameters()),
                               materialize_grads=True)
    for (name, _), w in zip(model.named_parameters(), want):
        torch.testing.assert_close(got[name], w, **TOL)


def test_under_vmap():
    model, x = mlp(), torch.randn(5, 3, dtype=torch.float64)
    per_example = torch.func.vmap(lambda xi: fattr.saliency(model, xi[None], target=1, abs=False)[0])(x)
    torch.testing.assert_close(per_example, fattr.saliency(model, x, target=1, abs=False), **TOL)


def _slope(model, before=None):
    """A checkpointed function: per-row gradients of ``model`` (times ``before`` if given), the way fattr's
    engine computes them: with their graph only when grad mode is on, declaring what they read."""
    def fn(ts):
        keep = torch.is_grad_enabled()
        with torch.enable_grad():
            leaf = ts[0].detach().requires_grad_()
            point = ts[0] + (leaf - leaf.detach()) if keep else leaf
            out = model(point).sum() * (1.0 if before is None else before)
            (g,) = torch.autograd.grad(out, leaf, create_graph=keep)
        recompute.reads(out, exclude=(leaf,))
        return (g,)
    return fn


def test_checkpoint_finds_the_parameters_it_read_and_skips_the_excluded_leaves():
    model = mlp()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    (got,) = recompute.checkpoint(_slope(model), (x,))
    assert got.grad_fn is not None and type(got.grad_fn).__name__ == "_RecomputedBackward"
    wrt = [x] + list(model.parameters())
    grads = torch.autograd.grad(got.pow(2).sum(), wrt, materialize_grads=True)
    (want,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    for g, w in zip(grads, torch.autograd.grad(want.pow(2).sum(), wrt, materialize_grads=True)):
        torch.testing.assert_close(g, w, **TOL)
    with torch.no_grad():
        (plain,) = recompute.checkpoint(_slope(model), (x,))
    assert plain.grad_fn is None and torch.equal(plain, got.detach())


@pytest.mark.parametrize("memory_first", [False, True])
def test_a_checkpoint_inside_a_recomputation_keeps_its_graph_at_once(memory_first):
    """Recomputed in backward, the inner checkpoint runs once with its graph (no node of its own, which
    backward would recompute again), unless memory comes first; the gradients are the same either way."""
    model = mlp().eval()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    runs = []

    def inner(ts):
        runs.append(torch.is_grad_enabled())
        return _slope(model)(ts)

    def outer(ts):
        (g,) = recompute.checkpoint(inner, ts, module=model, memory_first=memory_first)
        return (g * ts[0],)

    (got,) = recompute.checkpoint(outer, (x,), module=model)
    assert runs == [False]  # inside the outer graph-free pass: no node, the reads go to the outer one
    wrt = [x] + list(model.parameters())
    grads = torch.autograd.grad(got.pow(2).sum(), wrt, materialize_grads=True)
    # recomputed: once with its graph; with memory first, a graph-free pass and a recomputation of its own
    assert runs == ([False, True] if not memory_first else [False, False, True])
    (slope,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    for g, w in zip(grads, torch.autograd.grad((slope * x).pow(2).sum(), wrt, materialize_grads=True)):
        torch.testing.assert_close(g, w, **TOL)


def test_checkpoint_keeps_the_graph_when_it_read_an_intermediate_computed_before():
    model = mlp()
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    before = scale * 1.5  # computed with a graph before the call: cannot be an input of the node
    x = torch.randn(2, 3, dtype=torch.float64)
    (got,) = recompute.checkpoint(_slope(model, before), (x,))
    assert "_RecomputedBackward" not in _node_names(got)
    (g,) = torch.autograd.grad(got.sum(), before)
    want = torch.autograd.grad(model(x.requires_grad_()).sum(), x)[0].sum()
    torch.testing.assert_close(g, want, **TOL)


def test_keep_graph_switch():
    """``keep_graph()`` takes the traced policy: the model's own ops in the result's graph, same values."""
    model, x = mlp(), torch.randn(4, 3, dtype=torch.float64)
    with recompute.keep_graph():
        kept = fattr.integrated_gradients(model, x, n_steps=3, target=0)
    names = _node_names(kept)
    assert "_RecomputedBackward" not in names and any(n.startswith("Tanh") for n in names), names
    torch.testing.assert_close(kept, fattr.integrated_gradients(model, x, n_steps=3, target=0), **TOL)


@pytest.mark.parametrize("grad_mode", [True, False])
def test_no_node_when_nothing_requires_grad(grad_mode):
    model = mlp().requires_grad_(False)
    x = torch.randn(4, 3, dtype=torch.float64)
    with torch.set_grad_enabled(grad_mode):
        attr = fattr.integrated_gradients(model, x, n_steps=3, target=0)
    assert attr.grad_fn is None and not attr.requires_grad


class Tied(nn.Module):
    """The layer's activation and the part after it both use ``enc.weight`` (tied weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.act = nn.Linear(4, 6), nn.Tanh()

    def forward(self, x):
        return torch.tanh(self.act(self.enc(x)) @ self.enc.weight)


def _grad_at(tail, y):
    """``d tail(y).sum() / dy``, keeping its graph (``y`` may carry one)."""
    y = y if y.requires_grad else y.detach().requires_grad_()
    return torch.autograd.grad(tail(y).sum(), y, create_graph=True)[0]


def reference_layer(method, head, tail, x, base, n_steps):
    """Layer IG, internal influence or gradient x activation, one step at a time, keeping every graph."""
    if method == "layer_gradient_x_activation":
        y = head(x)
        return y * _grad_at(tail, y)
    alphas, weights = fattr.quadrature("gausslegendre", n_steps)
    b = torch.full_like(x, base)
    y_x, y_b = head(x), head(b)
    total = 0
    for a, w in zip(alphas.tolist(), weights.tolist()):
        y = y_b + a * (y_x - y_b) if method == "layer_integrated_gradients" else head(b + a * (x - b))
        total = total + w * _grad_at(tail, y)
    return total * (y_x - y_b) if method == "layer_integrated_gradients" else total


@MODES
@pytest.mark.parametrize("method", ["layer_integrated_gradients", "internal_influence",
                                    "layer_gradient_x_activation"])
def test_weights_used_before_and_after_the_layer(method, training):
    """First and second derivatives agree with the kept graph's, no double counting."""
    torch.manual_seed(0)
    model, x = Tied().double().train(training), torch.randn(3, 4, dtype=torch.float64)
    extra = {} if method == "layer_gradient_x_activation" else {"n_steps": 4, "baselines": 0.1}

    def derivatives(attr):
        (g,) = torch.autograd.grad(attr.pow(2).sum(), model.enc.weight, create_graph=True)
        (h,) = torch.autograd.grad(g.sin().sum(), model.enc.weight)
        return g.detach(), h

    got = derivatives(getattr(fattr, method)(model, "act", x, target=1, **extra))
    want = derivatives(reference_layer(method, lambda z: model.act(model.enc(z)),
                                       lambda y: torch.tanh(y @ model.enc.weight)[:, 1], x, 0.1, 4))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **TOL)


def test_autocast_is_replayed_in_the_recomputation():
    """Called under autocast and differentiated outside it: the same gradients as the kept graph."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    x = torch.randn(4, 8)

    def grads(training):
        model.train(training)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            attr = fattr.integrated_gradients(model, x, n_steps=4, target=1)
        return torch.autograd.grad(attr.float().pow(2).sum(), model[0].weight)[0]

    torch.testing.assert_close(grads(False), grads(True), rtol=1e-5, atol=1e-6)


class GradModeSpy(nn.Linear):
    """A linear layer that notes whether grad mode was on each time it ran."""

    def __init__(self) -> None:
        super().__init__(3, 6)
        self.seen: list = []

    def forward(self, x):
        self.seen.append(torch.is_grad_enabled())
        return super().forward(x)


@MODES
def test_the_head_runs_without_grad_unless_in_training_mode(training):
    """So that its modules keep their inference fast paths; the result stays differentiable."""
    torch.manual_seed(0)
    model = nn.Sequential(GradModeSpy(), nn.Tanh(), nn.Linear(6, 2)).double().train(training)
    x = torch.randn(4, 3, dtype=torch.float64)
    attr = fattr.layer_integrated_gradients(model, "1", x, n_steps=3, target=1)
    # eval: one head call over the inputs' and the baselines' rows; training: one call each
    assert model[0].seen == ([True, True] if training else [False])
    (grad,) = torch.autograd.grad(attr.sum(), model[0].weight)
    want = reference_layer("layer_integrated_gradients", model[:2], lambda y: model[2](y)[:, 1], x, 0.0, 3)
    torch.testing.assert_close(grad, torch.autograd.grad(want.sum(), model[0].weight)[0], **TOL)


def test_a_path_closing_over_a_parameter_of_the_model_counts_it_once():
    """The model's walk and the path's walk both reach ``w``: its gradient must not double."""
    torch.manual_seed(2)
    w = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 3, dtype=torch.float64)

    def f(z):
        return torch.tanh(z @ w).sum(1)

    attr = fattr.path_attribution(f, lambda a: a * (x @ w), n_steps=4)
    got = torch.autograd.grad(attr.sum(), w)[0]
    alphas, weights = fattr.quadrature("gausslegendre", 4)
    want = sum(wk * _grad_at(f, a * (x @ w)) * (x @ w) for a, wk in zip(alphas.tolist(), weights.tolist()))
    torch.testing.assert_close(got, torch.autograd.grad(want.sum(), w)[0], **TOL)


def test_threads_each_find_their_own_leaves():
    """Graph-free passes in several threads at once: each result recomputes with its own closure's weight."""
    import threading

    model, x = mlp(), torch.randn(4, 3, dtype=torch.float64)
    scales = [torch.tensor(1.0 + i, dtype=torch.float64, requires_grad=True) for i in range(4)]
    got, errors = [None] * 4, []

    def work(i):
        try:
            for _ in range(5):
                attr = fattr.integrated_gradients(lambda z: model(z) * scales[i], x, n_steps=3, target=1)
                got[i] = torch.autograd.grad(attr.sum(), (scales[i], model[0].weight))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, g in enumerate(got):
        want = torch.autograd.grad(reference_ig(lambda z: model(z) * scales[i], x, 3, 1).sum(),
                                   (scales[i], model[0].weight))
        for a, b in zip(g, want, strict=True):
            torch.testing.assert_close(a, b, **TOL)


def test_layer_feature_ablation_is_differentiable_in_its_layer_baselines():
    model, x = mlp().eval(), torch.randn(4, 3, dtype=torch.float64)
    base = torch.full((1, 6), 0.3, dtype=torch.float64, requires_grad=True)
    got = fattr.layer_feature_ablation(model, "1", x, base, target=1)
    assert sum(n == "_RecomputedBackward" for n in _node_names(got)) == 1
    with recompute.keep_graph():
        kept = fattr.layer_feature_ablation(model, "1", x, base, target=1)
    torch.testing.assert_close(torch.autograd.grad(got.pow(2).sum(), base)[0],
                               torch.autograd.grad(kept.pow(2).sum(), base)[0], **TOL)


def test_the_remembered_leaf_scan_follows_changes_to_the_model():
    """The leaves a layer method's node routes gradients to are remembered per model (:func:`recompute._leaves`):
    a new parameter, a replaced submodule, a frozen or unfrozen weight are each seen at the next call."""
    model = mlp().eval()
    x = torch.randn(4, 3, dtype=torch.float64)

    def gradients(model):
        attr = fattr.layer_gradient_x_activation(model, "1", x, target=0)
        wrt = [p for p in model.parameters() if p.requires_grad]
        act = model[1](model[0](x))
        (g,) = torch.autograd.grad(model[3](model[2](act))[:, 0].sum(), act, create_graph=True)
        want = torch.autograd.grad((g * act).pow(2).sum(), wrt, materialize_grads=True)
        return torch.autograd.grad(attr.pow(2).sum(), wrt, materialize_grads=True), want

    def check(model):
        got, want = gradients(model)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, **TOL)

    check(model)
    model[0].weight = nn.Parameter(model[0].weight.detach() * 2)  # the old weight would get the gradient
    check(model)
    model[3] = nn.Linear(6, 2).double()
    check(model)
    model[0].bias.requires_grad_(False)
    check(model)
    model[0].bias.requires_grad_(True)
    check(model)


def test_a_shared_split_follows_the_layer_its_name_names():
    """Layer methods share one split per model, layers and options: a dotted name whose module was replaced
    names the new module at the next call."""
    model = mlp().eval()
    x = torch.randn(4, 3, dtype=torch.float64)

    def want(model):
        act = model[1](model[0](x))
        (g,) = torch.autograd.grad(model[3](model[2](act))[:, 0].sum(), act)
        return g * act

    replaced = []  # (alive: a split referring to them weakly still could)
    for _ in range(2):
        torch.testing.assert_close(fattr.layer_gradient_x_activation(model, "1", x, target=0), want(model), **TOL)
        replaced.append(model[1])
        model[1] = nn.Sigmoid() if isinstance(model[1], nn.Tanh) else nn.Softplus()


@pytest.mark.parametrize("capture", ["fx", "fallback"])
@pytest.mark.parametrize("method", ["layer_gradient_x_activation", "layer_integrated_gradients"])
def test_a_tensor_the_head_reads_from_outside_the_model_gets_its_gradient(capture, method):
    """A tensor requiring grad that ``forward`` reads before the layer but that is not the model's own (a
    global, a closure): the head runs without a graph, so the recomputing node must still list it."""
    torch.manual_seed(3)
    w = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.act, self.b = nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2)

        def forward(self, x):
            h = self.a(x @ w)
            if capture == "fallback" and float(h.sum()) > -1e9:  # data-dependent: neither fx nor export
                h = h * 1.0
            return self.b(self.act(h))

    model = Net().double().eval()
    x = torch.randn(4, 3, dtype=torch.float64)
    options = {"n_steps": 3} if method == "layer_integrated_gradients" else {}
    attr = getattr(fattr, method)(model, "act", x, target=0, **options)
    want = reference_layer(method, lambda y: model.act(model.a(y @ w)), lambda y: model.b(y)[:, 0], x, 0.0, 3)
    got = torch.autograd.grad(attr.pow(2).sum(), w, allow_unused=True)[0]
    assert got is not None
    torch.testing.assert_close(got, torch.autograd.grad(want.pow(2).sum(), w)[0], **TOL)
