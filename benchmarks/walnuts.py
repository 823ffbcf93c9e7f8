"""NUTS whose leapfrog steps shorten themselves within a trajectory: a prototype, measured.

The seed data's divergences come from one place (``docs/backends.md``): a
spare component passing the neck between empty and pinned, where the step
size adapted for the rest of the posterior is several times too long. This
script tries a within-orbit adaptive leapfrog in the spirit of WALNUTS
(Bou-Rabee, Carpenter, Kleppe and Liu, 2025) inside NumPyro's own NUTS, its
warmup and multinomial trees unchanged:

* each step of the tree, of size ``h``, is taken as ``2**k`` leapfrog steps
  of ``h / 2**k``, ``k`` the smallest of ``0 .. max_halvings`` for which the
  Hamiltonian varies by at most ``delta`` over the ``2**k + 1`` points;
* the step is kept only if, started from its end with the time reversed,
  the same rule picks the same ``k``. Otherwise the step is not reversible:
  it ends the tree as a divergence does (the subtree being built is
  dropped), but is not counted as one. Both tests depend on the two ends of
  the step only, so every state of the kept tree builds the same tree, and
  the chain keeps its target exactly.

It is installed for the duration of :func:`adaptive_leapfrog` by replacing
three private functions of ``numpyro.infer.hmc_util`` (the tree's leaf, the
subtree loop, and ``build_tree``, whose states carry each leaf's potential so
that the test needs no extra evaluation). That is why it is a benchmark and
not an option of the package: it depends on NumPyro's internals, and any
program traced inside the context uses it.

``exactness``
    NUTS at a fixed step size of 0.6 on ``U(x, y) = x**2 / 2 + y**4`` (the
    quartic's curvature grows with ``|y|``, so only some steps shorten):
    4,000 independent chains of 100 transitions, started near the target,
    the last 80 kept. Prints the second and fourth moments of both
    coordinates against their exact values (``y``: Gamma(3/4) / Gamma(1/4)
    and 1/4) in standard errors over the chains, with and without the
    reversibility test. Stock NUTS at that step is printed too.
``seed``
    The seed data, K = 25, one chain of 500 + 500 per key: the hand-written
    model under stock NUTS (``baseline``), ``dpgmm_ppl.fit`` at its defaults,
    and the same call with the adaptive leapfrog, one after another in this
    process, with the compilation cache and stored programs off
    (``DPGMM_PPL_CACHE=0``) so that every row compiles its own program.
    Prints the rows of ``nuts_ess.py`` and, over the keys, the medians of
    the ESS/s ratios against the baseline and the runs without a divergence.
    ``--num-chains 4`` runs the four-chain check instead and prints
    ``Fit.diagnostics()``.

Run ``python benchmarks/walnuts.py exactness`` (about a minute) or
``python benchmarks/walnuts.py seed --rng-keys 0 1 2 3`` (about 35 minutes
on two cores).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import hmc as numpyro_hmc
from numpyro.infer import hmc_util

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_ORIGINALS = {
    "leaf": hmc_util._build_basetree,
    "subtree": hmc_util._iterative_build_subtree,
    "tree": hmc_util.build_tree,
}


def _hamiltonian(kinetic_fn, inverse_mass, state):
    energy = state.potential_energy + kinetic_fn(inverse_mass, state.r)
    return jnp.where(jnp.isnan(energy), jnp.inf, energy)


def _fine_steps(vv_update, kinetic_fn, inverse_mass, state, energy, step_size, halvings, delta):
    """``2**halvings`` steps of ``step_size / 2**halvings``: the end and whether the
    Hamiltonian stayed within ``delta`` over all the points."""
    count = 2**halvings

    def one(_, carry):
        state, high, low = carry
        state = vv_update(step_size / count, inverse_mass, state)
        energy = _hamiltonian(kinetic_fn, inverse_mass, state)
        return state, jnp.maximum(high, energy), jnp.minimum(low, energy)

    state, high, low = jax.lax.fori_loop(0, count, one, (state, energy, energy))
    return state, high - low <= delta


def _make_leaf(delta, max_halvings, check_reverse):
    def leaf(vv_update, kinetic_fn, z, r, carried_grad, inverse_mass, step_size, going_right,
             energy_current, max_delta_energy):
        z_grad, potential = carried_grad
        step = jnp.where(going_right, step_size, -step_size)
        start = hmc_util.IntegratorState(z, r, potential, z_grad)
        energy = potential + kinetic_fn(inverse_mass, r)

        def coarser_failed(carry):
            halvings, _, within = carry
            return ~within & (halvings < max_halvings)

        def halve(carry):
            halvings = carry[0] + 1
            end, within = _fine_steps(vv_update, kinetic_fn, inverse_mass, start, energy, step,
                                      halvings, delta)
            return halvings, end, within

        first = _fine_steps(vv_update, kinetic_fn, inverse_mass, start, energy, step, 0, delta)
        halvings, end, _ = jax.lax.while_loop(coarser_failed, halve, (0, *first))
        end_energy = _hamiltonian(kinetic_fn, inverse_mass, end)

        def reverse_untried(carry):
            tried, passed = carry
            return ~passed & (tried < halvings)

        def reverse_try(carry):
            tried, _ = carry
            _, within = _fine_steps(vv_update, kinetic_fn, inverse_mass, end, end_energy, -step,
                                    tried, delta)
            return tried + 1, within

        _, coarser_back = jax.lax.while_loop(reverse_untried, reverse_try, (0, False))
        irreversible = coarser_back & jnp.isfinite(end_energy) & check_reverse

        delta_energy = end_energy - energy_current
        diverging = delta_energy > max_delta_energy
        accept_prob = jnp.where(irreversible, 0.0, jnp.minimum(jnp.exp(-delta_energy), 1.0))
        grad = (end.z_grad, end.potential_energy)
        return hmc_util.TreeInfo(
            end.z, end.r, grad, end.z, end.r, grad, end.z, end.potential_energy, grad,
            end_energy, depth=0, weight=jnp.where(irreversible, -jnp.inf, -delta_energy),
            r_sum=end.r, turning=irreversible, diverging=diverging,
            sum_accept_probs=accept_prob, num_proposals=1,
        )

    return leaf


def _subtree_stopping_at_irreversible_steps(namespace):
    """NumPyro's subtree loop, with a leaf's ``turning`` (an irreversible step) ending it."""
    source = inspect.getsource(_ORIGINALS["subtree"])
    anchor = "        return new_tree, turning, r_ckpts"
    if anchor not in source:
        raise RuntimeError("this NumPyro's subtree loop is not the one the prototype patches")
    source = source.replace(anchor, "        turning = turning | new_leaf.turning\n" + anchor)
    exec(source, namespace)  # noqa: S102 - NumPyro's own source, one line added
    return namespace["_iterative_build_subtree"]


def _tree_carrying_potentials(verlet_update, kinetic_fn, verlet_state, inverse_mass_matrix,
                              step_size, rng_key, max_delta_energy=1000.0, max_tree_depth=10):
    z, r, potential, z_grad = verlet_state
    carried = hmc_util.IntegratorState(z, r, potential, (z_grad, potential))
    tree = _ORIGINALS["tree"](verlet_update, kinetic_fn, carried, inverse_mass_matrix, step_size,
                              rng_key, max_delta_energy=max_delta_energy,
                              max_tree_depth=max_tree_depth)
    return tree._replace(z_left_grad=tree.z_left_grad[0], z_right_grad=tree.z_right_grad[0],
                         z_proposal_grad=tree.z_proposal_grad[0])


@contextlib.contextmanager
def adaptive_leapfrog(delta=20.0, max_halvings=5, check_reverse=True):
    """NumPyro's NUTS with the adaptive leapfrog, for programs traced in the context."""
    hmc_util._build_basetree = _make_leaf(delta, max_halvings, check_reverse)
    hmc_util._iterative_build_subtree = _subtree_stopping_at_irreversible_steps(dict(vars(hmc_util)))
    numpyro_hmc.build_tree = _tree_carrying_potentials
    try:
        yield
    finally:
        hmc_util._build_basetree = _ORIGINALS["leaf"]
        hmc_util._iterative_build_subtree = _ORIGINALS["subtree"]
        numpyro_hmc.build_tree = _ORIGINALS["tree"]


def quartic_moments(num_chains=4000, num_steps=100, step_size=0.6, seed=0):
    """Second and fourth moments of both coordinates over the chains' last 80 %, with
    their standard errors and the number of divergent transitions."""
    def potential(position):
        return 0.5 * position[0] ** 2 + position[1] ** 4

    def chain(key):
        init_kernel, sample_kernel = numpyro_hmc.hmc(potential_fn=potential, algo="NUTS")
        start_key, kernel_key = jax.random.split(key)
        start = jax.random.normal(start_key, (2,)) * jnp.array([1.0, 0.55])
        state = init_kernel(start, num_warmup=0, step_size=step_size, adapt_step_size=False,
                            adapt_mass_matrix=False, max_tree_depth=8, rng_key=kernel_key)

        def transition(state, _):
            state = sample_kernel(state)
            return state, (state.z, state.diverging)

        return jax.lax.scan(transition, state, None, length=num_steps)[1]

    keys = jax.random.split(jax.random.PRNGKey(seed), num_chains)
    draws, diverging = jax.jit(jax.vmap(chain))(keys)
    draws = np.asarray(draws, dtype=np.float64)[:, num_steps // 5:]
    moments = {}
    for power in (2, 4):
        per_chain = (draws**power).mean(axis=1)
        moments[power] = (per_chain.mean(axis=0), per_chain.std(axis=0) / np.sqrt(num_chains))
    return moments, int(np.sum(diverging))


#: E[x^2], E[y^2] and E[x^4], E[y^4] under exp(-x^2 / 2 - y^4).
QUARTIC_TRUTH = {2: np.array([1.0, 0.3379891200336423]), 4: np.array([3.0, 0.25])}


def exactness():
    runs = (("stock NUTS", None), ("adaptive leapfrog", True),
            ("adaptive leapfrog, no reversibility test", False))
    for name, check in runs:
        context = contextlib.nullcontext() if check is None else adaptive_leapfrog(
            delta=1.0, check_reverse=check)
        with context:
            moments, divergent = quartic_moments()
        scores = [(moments[p][0] - QUARTIC_TRUTH[p]) / moments[p][1] for p in (2, 4)]
        print(f"{name:<42} divergent {divergent:>6}; standard errors off, E[x^2] E[y^2] "
              f"E[x^4] E[y^4]: " + " ".join(f"{s:+.1f}" for s in np.concatenate(scores)))


def _clear_programs():
    from dpgmm_ppl.infer import _common

    _common._PROGRAMS.clear()


def seed(args):
    from nuts_ess import ess, print_rows, run_baseline, run_ours

    from dpgmm_ppl.datasets import seed_mixture

    data = seed_mixture().data
    results = {}
    for key in args.rng_keys:
        keyed = argparse.Namespace(num_components=25, num_chains=1, num_warmup=500,
                                   num_samples=500, rng_key=key)
        sides = {"baseline": run_baseline(data, keyed)}
        _clear_programs()
        sides["defaults"] = run_ours(data, keyed, {})
        _clear_programs()
        with adaptive_leapfrog(delta=args.delta):
            sides["adaptive"] = run_ours(data, keyed, {})
        _clear_programs()
        for side in sides.values():
            side["ess_alpha"], side["ess_lp"] = ess(side["alpha"]), ess(side["lp"])
            side["run_only"] = side["wall"] - side["compile"]
        print_rows(key, sides)
        results[key] = sides
    for row in ("defaults", "adaptive"):
        ratios = {name: np.median([
            (r[row][f"ess_{name}"] / r[row]["wall"]) / (r["baseline"][f"ess_{name}"] / r["baseline"]["wall"])
            for r in results.values()]) for name in ("alpha", "lp")}
        clean = sum(r[row]["diverging"] == 0 for r in results.values())
        print(f"  {row}: median ESS/s ratio against the baseline over {len(results)} key(s): "
              f"alpha {ratios['alpha']:.2f}, lp {ratios['lp']:.2f}; runs without a divergence: "
              f"{clean} of {len(results)}")


def four_chains(args):
    import dpgmm_ppl
    from dpgmm_ppl.datasets import seed_mixture

    data = seed_mixture().data
    for key in args.rng_keys:
        for name, context in (("defaults", contextlib.nullcontext()),
                              ("adaptive", adaptive_leapfrog(delta=args.delta))):
            if name not in args.rows:
                continue
            _clear_programs()
            with context, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                fit = dpgmm_ppl.fit(data, backend="nuts", num_components=25, num_chains=4,
                                    num_warmup=500, num_samples=500, rng_key=key)
                wall = time.perf_counter() - start
            stats = fit.sample_stats
            print(f"key {key} {name}: {wall:.0f} s; {fit.diagnostics()!r}; divergent per chain "
                  f"{np.sum(stats['diverging'], axis=1).tolist()}; steps a draw per chain "
                  f"{np.round(np.mean(stats['n_steps'], axis=1)).astype(int).tolist()}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("exactness", "seed"))
    parser.add_argument("--rng-keys", type=int, nargs="+", default=[0])
    parser.add_argument("--delta", type=float, default=20.0,
                        help="largest rise of the Hamiltonian over one step before it is halved")
    parser.add_argument("--num-chains", type=int, choices=(1, 4), default=1)
    parser.add_argument("--rows", nargs="+", choices=("defaults", "adaptive"),
                        default=["defaults", "adaptive"], help="four chains: the rows to run")
    args = parser.parse_args(argv)
    os.environ["DPGMM_PPL_CACHE"] = "0"  # before dpgmm_ppl is imported: every row compiles
    if args.command == "exactness":
        exactness()
    elif args.num_chains == 4:
        four_chains(args)
    else:
        seed(args)


if __name__ == "__main__":
    main()
