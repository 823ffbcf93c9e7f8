r"""MAP by gradient descent: any optax optimiser inside ``lax.scan``.

Which point (``objective``)
---------------------------
A mode is a property of a density, and a density depends on the measure it
is taken against, so "the" posterior mode needs a choice of coordinates;
and a mixture's mode, whatever the coordinates, pays nothing for the
components it uses. The three objectives, measured on the galaxies (82
points), Old Faithful and iris (150 points in 4-D) in ``docs/mle-collapse.md``:

``"constrained"``: the log joint density of the constrained values
(``log_joint_fn``: ``alpha``, the simplex ``weights``, ``loc``, ``scale``),
the target of NumPyro's ``AutoDelta``. Kept for comparison, it is not a
sensible point estimate of this model: the stick-breaking density of the
weights on the simplex carries the Jacobian ``1 / prod_k r_k`` (``r_k`` the
stick left before component ``k``), which grows without bound as the weights
of unused components go to zero. The optimiser empties every component it
can (on the galaxies 7 of 8 restarts kept one) and the tail weights run down
to float32's smallest normal number, ``tiny``. The sum of ``log(1 - v_k)``
over the sticks then telescopes to ``log w_K = log(tiny)``, and the
concentration's optimum is ``alpha = (K + a - 2) / (b - log(tiny))`` under a
Gamma(a, b) prior: 0.27169 for K = 25 and Gamma(1, 1), whatever the data.

``"unconstrained"``: the density of the unconstrained position, log-Jacobian
of the transforms included, which is minus the shared ``potential_fn`` that
NUTS and SVI evaluate (in the non-centred chart of the sticks by default,
``parameterization``). This is what Stan's optimiser computes with
``jacobian=True``, the centre of a Laplace approximation. Every coordinate has
a finite optimum and ``lp`` stays finite, but a spare stick's coordinate sits
at the mode of its prior, which gives the spare a share of the weight, and
the only use of that weight is to split or duplicate a cluster: four
separated clusters in 5-D came out as eight components above 3% weight at K = 25.

``"occam"`` (the default): the ``"unconstrained"`` objective plus, for every
component, its Occam factor ``-(p / 2) log(1 + N w_k)``, where ``p`` is the
number of free parameters of a component (weight, location, scales,
correlations) and ``N w_k`` its share of the ``N`` points. This is the
log-volume that a Laplace approximation gives to the posterior mass around
a component the data pin down (``N w_k`` points shrink each of its ``p``
directions by about ``sqrt(N w_k)``), and it is zero for an empty one; the
same term, with counts, is the message length of Figueiredo and Jain
(2002) for finite mixtures. A component must now explain its points better
than its parameters cost, so MAP keeps the clusters the data support: the
four clusters above came out as four at K = 6 and 25. How narrow a
component on a handful of points may become is the scale prior's business
(``Priors(scale_rate=...)``; ``docs/mle-collapse.md`` measures the default
on iris, whose values are rounded to 0.1 cm).

Every ``history_every`` steps a restart is offered its components sorted by
weight (:func:`_weight_order_step`). The restart's best value of the
objective is ``sample_stats["objective"]``, which :attr:`Fit.best_chain
<dpgmm_ppl.Fit.best_chain>` compares.

The component scales cannot collapse under any objective: their
inverse-gamma prior bounds the log joint (see :class:`~dpgmm_ppl.priors.Priors`).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dpgmm_ppl._frame import UNITS_PER_SPREAD
from dpgmm_ppl._validation import check_parameterization, check_positive_int
from dpgmm_ppl.infer._common import (
    cached_program,
    chains_program,
    check_optimizer_options,
    compile_and_run,
    guarded_update,
    history_steps,
    resolve_optimizer_chain_method,
    tree_all_finite,
)
from dpgmm_ppl.infer._progress import StepBar, check_progress_bar
from dpgmm_ppl.infer.base import Backend, BackendOutput, check_chart

__all__ = ["MAP", "OBJECTIVES", "run_map"]

#: The notebook's optimiser, one object for every fit, so that fits share its program.
DEFAULT_OPTIMIZER = optax.adam(0.05)

#: A scale below this fraction of the data's spread counts as collapsed.
COLLAPSE_RATIO = 1e-4

#: The objectives MAP can maximise (see the module notes); the first is the default.
OBJECTIVES = ("occam", "unconstrained", "constrained")

#: A component "kept" by a fit has more than this weight; :func:`run_map`
#: warns when a restart keeps more than half of its components.
KEPT_WEIGHT = 0.01


def objective_fn(density, objective):
    """The loss MAP minimises, a function of ``(position, data)``: minus the
    ``objective`` (see the module notes)."""
    if objective == "constrained":
        return lambda position, data: -density.log_joint_fn(position, data)
    if objective == "unconstrained":
        return density.potential_fn
    half_parameters = 0.5 * parameters_per_component(density)
    num_data = density.num_data

    def occam_loss(position, data):
        weights = density.standard_constrain_fn(position)["weights"]
        occam = half_parameters * jnp.sum(jnp.log1p(num_data * weights))
        return density.potential_fn(position, data) + occam

    return occam_loss


def parameters_per_component(density):
    """Free parameters of one component of ``density``'s model: its weight,
    location, scales and correlations.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl.density import build_log_density
    >>> x = np.random.default_rng(0).normal(size=(20, 4))
    >>> [parameters_per_component(build_log_density(x, num_components=3, covariance=c))
    ...  for c in ("diag", "spherical", "full")]
    [9, 6, 15]
    """
    loc = density.model_kwargs["priors"].loc_mean
    dim = int(np.size(loc)) if np.ndim(loc) else 1
    if density.priors.fixed_scale is not None:
        scales = 0
    elif density.covariance == "spherical":
        scales = 1
    else:
        scales = dim
    correlations = dim * (dim - 1) // 2 if density.covariance == "full" else 0
    return 1 + dim + scales + correlations


def _warn_if_crowded(weights, objective_values, num_components):
    """Warn when the best restart keeps more than half of its K > 1 components.

    A component is kept above :data:`KEPT_WEIGHT` weight.
    The best restart is the fit's answer (:attr:`Fit.best_chain
    <dpgmm_ppl.Fit.best_chain>`): the highest value of the objective.
    """
    best = int(np.nanargmax(np.asarray(objective_values)))
    kept = int(np.sum(np.asarray(weights)[best] > KEPT_WEIGHT))
    # A single component is always kept: nothing to warn about.
    if num_components > 1 and 2 * kept > num_components:
        warnings.warn(
            f"MAP kept {kept} of {num_components} components above "
            f"{KEPT_WEIGHT:g} weight (best restart, {best}). Either the "
            "fit is overfitting the data (give the scales a stronger prior, "
            "Priors(scale_rate=...), or use a posterior backend, 'svi' or 'nuts') "
            "or num_components is too small for them (raise it).",
            UserWarning,
            stacklevel=4,
        )


def _weight_order_step(density, optimizer, loss_fn):
    """``(position, opt_state, data) -> (position, opt_state)``: components put in
    the order of their weights, largest first, where that lowers the loss.

    The stick-breaking prior is not exchangeable: it favours the components
    in decreasing order of weight, and a component left before a heavier one
    keeps the weight its stick's prior mode gives it, which it can only use
    by duplicating a cluster. Gradient steps cannot swap two components, so
    every history frame the restart is offered its components sorted by
    weight (the sticks recomputed in log space, the other sites permuted) and
    takes that position when its loss is lower, with a fresh optimiser state.
    On the galaxies (``objective="unconstrained"``) this raised ``lp`` by 4
    nats and cut the components above 1% weight from 11 to 6.
    """
    num_components = density.num_components

    def reorder(position, opt_state, data):
        values = density.standard_constrain_fn(position)
        log_weights = jnp.log(values["weights"])
        order = jnp.argsort(-log_weights)
        permuted = {
            name: value[order] if jnp.ndim(value) and value.shape[0] == num_components else value
            for name, value in values.items()
        }
        permuted["log_weights"] = log_weights[order]
        candidate = density.standard_unconstrain_fn(permuted)
        better = loss_fn(candidate, data) < loss_fn(position, data)
        better &= jnp.any(order != jnp.arange(num_components)) & tree_all_finite(candidate)
        pick = lambda new, old: jax.tree_util.tree_map(
            lambda a, b: jnp.where(better, a, b), new, old
        )
        return pick(candidate, position), pick(optimizer.init(candidate), opt_state)

    return reorder


def _make_chain_runner(density, optimizer, num_steps, history_every, bar, objective, loss_fn):
    value_and_grad = jax.value_and_grad(loss_fn)
    num_frames, remainder = divmod(num_steps, history_every)
    reorder = None if objective == "constrained" else _weight_order_step(density, optimizer, loss_fn)

    def run_chain(position, data):
        def step(carry, _):
            position, opt_state = carry
            loss, grad = value_and_grad(position, data)
            position, opt_state, _ = guarded_update(optimizer, loss, grad, position, opt_state)
            return (position, opt_state), loss

        def block(carry, _):
            carry, losses = jax.lax.scan(step, carry, None, length=history_every)
            bar.report(history_every, losses[-1])
            if reorder is not None:
                carry = reorder(*carry, data)
            return carry, (losses, carry[0])

        carry = (position, optimizer.init(position))
        carry, (losses, frames) = jax.lax.scan(block, carry, None, length=num_frames)
        losses = losses.reshape(-1)
        if remainder:
            carry, tail_losses = jax.lax.scan(step, carry, None, length=remainder)
            bar.report(remainder, tail_losses[-1])
            losses = jnp.concatenate([losses, tail_losses])
            frames = jax.tree_util.tree_map(
                lambda f, last: jnp.concatenate([f, last[None]]), frames, carry[0]
            )
        return carry[0], losses, frames

    return run_chain


def _make_restart(template, optimizer, num_steps, history_every, bar, objective):
    """``restart(key, data, params)``: one restart, seeded, descended and evaluated.

    Seeding, optimisation and the final evaluations form one compiled
    program: every separate jit would cost its own XLA compilation.
    ``template`` gives the density's shape and chart; its data and priors
    come in as ``data`` and ``params``.
    """

    def restart(key, data, params):
        density = template.bind(params)
        loss = objective_fn(density, objective)
        run_chain = _make_chain_runner(
            density, optimizer, num_steps, history_every, bar, objective, loss
        )
        # The seeding skips the padding rows.
        start = density.seed_position(key, data)
        position, losses, frames = run_chain(start, data)
        stats = {
            "objective": -loss(position, data),
            "lp": -density.potential_fn(position, data),
            "log_joint": density.log_joint_fn(position, data),
        }
        return position, losses, jax.vmap(density.constrain_fn)(frames), stats

    return restart


def _spread_ratio(history, data_spread):
    """Each component's narrowest spread over the data's, per frame: (chain, frame, K).

    For full covariances the diagonal of ``scale_tril``: the standard
    deviation of each dimension given the ones before it, which vanishes
    when the component flattens onto fewer dimensions.
    """
    data_spread = np.asarray(data_spread)
    if "scale_tril" in history:
        spread = np.diagonal(np.asarray(history["scale_tril"]), axis1=-2, axis2=-1)
    else:
        spread = np.asarray(history["scale"])
    loc_ndim = np.ndim(history["loc"])
    if spread.ndim < loc_ndim:  # spherical: compare with the data's mean spread
        return spread / np.exp(np.mean(np.log(data_spread)))
    ratio = spread / data_spread
    return ratio.min(axis=-1) if ratio.ndim == 4 else ratio


def _warn_on_failure(losses, history, history_steps, data_spread):
    losses = np.asarray(losses)
    for chain, chain_losses in enumerate(losses):
        bad = np.flatnonzero(~np.isfinite(chain_losses))
        if bad.size:
            warnings.warn(
                f"MAP restart {chain}: the objective became non-finite at step "
                f"{bad[0] + 1}; the parameters were kept at the last finite point. "
                "This usually means a component's scale collapsed (an improper or "
                "too weak prior on `scale`).",
                RuntimeWarning,
                stacklevel=4,
            )
    ratio = _spread_ratio(history, data_spread)
    collapsed = ratio < COLLAPSE_RATIO  # (chain, frame, component)
    for chain in range(collapsed.shape[0]):
        frames, components = np.nonzero(collapsed[chain])
        if frames.size:
            first = np.argmin(frames)
            warnings.warn(
                f"MAP restart {chain}: component {components[first]} collapsed "
                f"(scale < {COLLAPSE_RATIO:g} x the data's spread) by step "
                f"{history_steps[frames[first]]}.",
                RuntimeWarning,
                stacklevel=4,
            )


def run_map(
    rng_key,
    density,
    *,
    num_chains,
    optimizer,
    num_steps,
    history_every,
    chain_method,
    objective="occam",
    parameterization="noncentered",
    progress_bar=False,
):
    """Run ``num_chains`` vmapped MAP restarts on the shared log-density.

    Parameters
    ----------
    rng_key : PRNGKey
        Seeds the k-means++ initialisation of each restart.
    density : LogDensity
        The shared log-density.
    num_chains : int
        Independent restarts.
    optimizer : optax.GradientTransformation
        Any optax transformation; ``optax.adam(0.05)`` by default, as in the notebook.
    num_steps : int
        Gradient steps per restart.
    history_every : int
        Record the parameters every this many steps (and at the last step).
    chain_method : {"vectorized", "sequential", None}
        ``"vectorized"`` runs the restarts under ``vmap``; ``"sequential"``
        under ``lax.map``, one after another in the same compiled program.
        ``None`` picks ``"sequential"`` on the CPU, where XLA's reductions over
        a batched (chain, data, component) array measured 1.5-5x slower per
        restart than over one restart at a time, and ``"vectorized"`` on
        accelerators. Both give the same result for the same key.
    objective : {"occam", "unconstrained", "constrained"}
        ``"occam"``: the density of the unconstrained position with each
        component's Occam factor. ``"unconstrained"``: that density alone
        (minus ``potential_fn``). ``"constrained"``: the log joint of the
        constrained values (``log_joint_fn``), which empties components.
        See the module notes.
    parameterization : {"noncentered", "centered"}
        The chart of the sticks in which the optimiser moves; with
        ``"occam"`` and ``"unconstrained"`` it also sets which density is
        maximised. Must be the chart ``density`` was built in.
    progress_bar : bool
        Show a tqdm bar of the steps of every restart on stderr. It is
        advanced by a ``jax.debug.callback`` once every ``history_every``
        steps, so the step loop runs as fast, and gives the same result, as
        without it.

    Returns
    -------
    BackendOutput
        One draw per chain; ``losses`` of shape ``(num_chains, num_steps)``.
    """
    check_chart(density, parameterization)
    optimizer = DEFAULT_OPTIMIZER if optimizer is None else optimizer
    bar = StepBar("MAP", num_chains * num_steps, enabled=progress_bar)
    # Everything that shapes the program; the data, priors, frame and keys
    # are its arguments, so a later fit with the same key runs it as it is.
    program_key = (
        "map", density.program.key, optimizer, num_steps, history_every, objective,
        resolve_optimizer_chain_method(chain_method), bool(progress_bar),
    )
    template = density._replace(data=None)
    program = cached_program(
        program_key,
        lambda: chains_program(
            _make_restart(template, optimizer, num_steps, history_every, bar, objective),
            chain_method,
        ),
    )
    keys = jax.random.split(rng_key, num_chains)
    (positions, losses, history, stats), timing = compile_and_run(
        program, (keys, density.data, density.params), bar
    )

    steps = history_steps(num_steps, history_every)
    # The data's spread as the frame records it (a constant column's
    # magnitude, or 1, stands in for its zero spread): no pass over the data.
    data_spread = density.frame.unit * UNITS_PER_SPREAD
    _warn_on_failure(losses, history, steps, data_spread)
    _warn_if_crowded(history["weights"][:, -1], stats["objective"], density.num_components)
    add_draw_axis = lambda tree: jax.tree_util.tree_map(lambda leaf: leaf[:, None], tree)
    return BackendOutput(
        positions=add_draw_axis(positions),
        sample_stats={**add_draw_axis(stats), "loss": losses[:, -1:]},
        losses=losses,
        history=history,
        history_steps=steps,
        timing=timing,
    )


def _validate(options):
    check_optimizer_options(options, example="optax.adam(0.05)")
    check_positive_int("num_steps", options["num_steps"])
    check_positive_int("history_every", options["history_every"])
    if not isinstance(options["objective"], str) or options["objective"] not in OBJECTIVES:
        raise ValueError(
            f"objective must be one of {OBJECTIVES}, got {options['objective']!r}"
        )
    check_parameterization(options["parameterization"])
    check_progress_bar(options["progress_bar"])


MAP = Backend(
    name="map",
    defaults={
        "optimizer": None,
        "num_steps": 10_000,
        "history_every": 50,
        "chain_method": None,
        "objective": "occam",
        "parameterization": "noncentered",
        "progress_bar": False,
    },
    run=run_map,
    validate=_validate,
)
