"""``dpgmm_ppl.fit``: validate, build the shared log-density once, run a backend."""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from dpgmm_ppl._compilation_cache import check_compilation_cache, enable_compilation_cache
from dpgmm_ppl._validation import check_training_data, column_names
from dpgmm_ppl.density import bucket_size, build_log_density
from dpgmm_ppl.infer import get_backend
from dpgmm_ppl.infer._common import CompileTimer
from dpgmm_ppl.options import FitArguments, check_fit_arguments, resolve_options
from dpgmm_ppl.result import Fit
from dpgmm_ppl.sharding import (
    check_mesh,
    is_multiprocess_array,
    process_rows,
    spans_processes,
    spread_rows,
)

if TYPE_CHECKING:
    from jax.sharding import Mesh
    from jax.typing import ArrayLike

    from dpgmm_ppl._compilation_cache import CacheOption
    from dpgmm_ppl.priors import Priors

__all__ = ["fit"]


@functools.lru_cache(maxsize=64)
def _constrain_all(constrain):
    """``constrain(position, params)`` over the (chain, draw) axes, compiled once per chart."""
    return jax.jit(jax.vmap(jax.vmap(constrain, in_axes=(0, None)), in_axes=(0, None)))


def _checked_data(data, mesh):
    """``(names, data, rows)``: the column names, the data as the fit keeps them, and the
    rows this process fits (all of them, unless a global array spreads them over processes)."""
    if is_multiprocess_array(data):
        # Rows spread over processes: each process reads its own, checked here.
        return None, data, process_rows(data, mesh)
    names = column_names(data)
    # Float32 unless x64 is on; converted once, here, and kept as the fit's data.
    data = check_training_data(data)
    return names, data, data


def _check_mesh(mesh, data, batch_size):
    """A mesh for data this process holds whole: its own devices only, and no minibatches."""
    check_mesh(mesh)
    if spans_processes(mesh):
        raise ValueError(
            "data must be a global jax.Array of every process's rows when mesh spans "
            f"the devices of several processes; got {type(data).__name__} of shape "
            f"{data.shape} held whole by this process (build the global array with "
            "dpgmm_ppl.sharding.process_local_data(rows, mesh))"
        )
    if batch_size is not None:
        raise ValueError(
            "mesh and batch_size exclude each other: minibatch SVI streams batches "
            "from the host; fit on a mesh with batch_size=None"
        )


def _assemble(algorithm, arguments: FitArguments, options, output, density, samples, *,
              data, rows, names, compile_seconds) -> Fit:
    """The :class:`Fit` of a backend's output, in NumPy arrays."""
    return Fit(
        backend=algorithm.name,
        kind=algorithm.kind,
        samples=samples,
        sample_stats={k: np.asarray(v) for k, v in output.sample_stats.items()},
        # Rows spread over processes stay there: the fit keeps their shape.
        data=np.asarray(data) if rows is data else spread_rows(rows.shape, rows.dtype),
        num_components=arguments.num_components,
        priors=density.priors,
        covariance=density.covariance,
        losses=None if output.losses is None else np.asarray(output.losses),
        history=None
        if output.history is None
        else {k: np.asarray(v) for k, v in output.history.items()},
        history_steps=output.history_steps,
        timing={**output.timing, "compile_seconds": compile_seconds},
        options=options,
        rng_key=np.asarray(arguments.rng_key),
        names=names,
    )


def fit(
    data: ArrayLike,
    *,
    backend: str = "map",
    rng_key: jax.Array | int = 0,
    num_components: int = 25,
    num_chains: int = 1,
    priors: Priors | None = None,
    covariance: str = "diag",
    mesh: Mesh | None = None,
    compilation_cache: CacheOption = None,
    **backend_options: Any,
) -> Fit:
    """Fit the DP-GMM to ``data`` with one of the backends.

    All arguments are checked before anything is traced; then the model's
    log-density is built once (:func:`~dpgmm_ppl.density.build_log_density`)
    and handed to the backend.

    Parameters
    ----------
    data : array of shape (N,) or (N, D)
        Observations. Integers are converted to floats (float32 unless JAX's
        x64 mode is on). Points that are all identical are allowed: the
        scale priors keep every scale positive and one component takes the
        weight. Values whose squares overflow the float type (beyond about
        1e18 in float32) are refused: centre and rescale them first.
        A pandas DataFrame's column names become ``Fit.names``, which the
        figures of :mod:`dpgmm_ppl.plots` put on their axes.
        With several processes (``jax.distributed``): a global
        :class:`jax.Array` of which each process holds its own rows
        (:func:`dpgmm_ppl.sharding.process_local_data` builds one). Every
        process calls ``fit`` with it and gets the same :class:`Fit`, whose
        ``data`` keep the shape of the real rows and no values
        (:class:`~dpgmm_ppl.sharding.SpreadRows`; see ``docs/scaling.md``).
    backend : str
        ``"map"``: gradient descent to the mode of the log joint
        (:mod:`dpgmm_ppl.infer.map`); ``"svi"``: a Gaussian variational
        family on the unconstrained space (:mod:`dpgmm_ppl.infer.svi`);
        ``"nuts"``: NUTS (NumPyro's warmup adaptation, the package's trees)
        on the same log-density
        (:mod:`dpgmm_ppl.infer.nuts`).
    rng_key : int or PRNGKey
        Seeds the initialisation and any sampling; the same key gives the same fit.
    num_components : int
        Truncation level K of the stick-breaking prior.
    num_chains : int
        Independent restarts (MAP) or chains.
    priors : Priors, optional
        Hyperparameters; defaults are scaled from the data.
    covariance : {"diag", "spherical", "full"}
        The covariance structure of the components (:func:`~dpgmm_ppl.dpgmm`):
        one scale per dimension (the default), one scale per component, or
        a full covariance (an LKJ prior on the correlations times the
        scales; site ``scale_tril``). For 1-d data the three are the same
        model, fitted as ``"diag"``.
    mesh : jax.sharding.Mesh, optional
        Split the data's rows across the devices of the mesh's ``"data"``
        axis (:mod:`dpgmm_ppl.sharding`; ``dpgmm_ppl.sharding.data_mesh()``
        makes one over every device). The log-density is then partitioned
        by XLA and the parameters replicated; the result is the same fit.
        Not with ``backend="svi"`` and ``batch_size``, which streams batches
        from the host instead. For a global ``data`` array, its own mesh
        (``mesh``, if given, must be that one), and ``batch_size`` is allowed:
        each process gathers its batch's rows from its own rows.
    compilation_cache : None, False, str or os.PathLike
        Where JAX's persistent compilation cache keeps the compiled
        programs, so that another process fitting data of the same shape
        loads them instead of compiling them (the first fit of a process
        turns the cache on for the whole process). ``None``, the default:
        ``$DPGMM_PPL_CACHE_DIR`` if set, else the user's cache directory
        (``~/.cache/dpgmm_ppl/jax`` on Linux, under ``$XDG_CACHE_HOME`` if
        set); ``DPGMM_PPL_CACHE=0`` or an empty ``DPGMM_PPL_CACHE_DIR``
        turns it off. ``False``: this call turns no cache on (one that an
        earlier fit turned on stays on). A path: that directory. JAX's own
        ``jax_compilation_cache_dir``, once set by anyone else, is never
        overridden. A directory that cannot be written gives one warning
        and the fit goes on without the cache.
    **backend_options
        MAP: ``optimizer`` (an ``optax.GradientTransformation``, default
        ``optax.adam(0.05)``), ``num_steps`` (10,000), ``history_every`` (50),
        ``chain_method`` (``"vectorized"`` or ``"sequential"``; by default
        sequential on the CPU, vectorized on accelerators), ``objective``
        (``"occam"``, the default: the density of the unconstrained
        position, log-Jacobian included, with each component's Occam
        factor; ``"unconstrained"``: that density alone; ``"constrained"``:
        the log joint of the constrained values, which empties components;
        see :mod:`dpgmm_ppl.infer.map`), ``parameterization``
        (``"noncentered"``, the default, or ``"centered"``).
        SVI: ``guide`` (``"diagonal"``, ``"lowrank"``, ``"full"``), ``rank``,
        ``optimizer``, ``num_steps``, ``num_particles``, ``num_samples``,
        ``history_every``, ``chain_method``, ``parameterization``
        (``"centered"``, the default, or ``"noncentered"``), ``batch_size``
        (``None``, the default, uses every point in every step; an int
        streams minibatches of that many points from the host, the
        likelihood scaled up to the whole data set).
        NUTS: ``num_warmup``, ``num_samples``, ``target_accept_prob``,
        ``dense_mass``, ``max_tree_depth``, ``max_warmup_tree_depth``,
        ``init_inverse_mass`` (``"identity"``, the default, or
        ``"hessian"``), ``chain_method``, ``num_init_steps``
        (Adam steps that descend each chain's k-means++ starts; 0 for none),
        ``parameterization`` (``"noncentered"``, the default, or
        ``"centered"``), ``centered_sticks`` (0: every stick non-centred;
        ``"auto"``: the sticks of the components the data occupy keep
        NumPyro's centred chart, chosen after the first half of the warmup;
        or how many of the first sticks to centre), ``split_merge``
        (split-merge proposals after each transition, which move a small
        component into its neighbour or the reverse; 0, the default, for
        none; diagonal or 1-d covariances), ``energy_tolerance`` (100 by
        default: a step of the tree over which the Hamiltonian changes by
        more than this is taken as 2 to 32 shorter leapfrog steps, kept only
        if the rule agrees backwards; ``None`` for plain leapfrog steps).
        ``target_accept_prob``,
        ``dense_mass``, ``max_warmup_tree_depth`` and ``centered_sticks``
        left at their defaults are set by the number of points: 0.9, a
        dense mass matrix where the warmup can estimate it, full-depth
        warmup trees and 0 below 2,000 points; 0.85, diagonal, depth 8 and
        ``"auto"`` from there on (:func:`dpgmm_ppl.infer.nuts.size_defaults`).
        ``parameterization`` picks the chart of the unconstrained space in
        which SVI's Gaussian family lives and NUTS moves
        (:mod:`dpgmm_ppl.reparam`); the model and its log joint density are
        the same in both; for MAP's default objective it also picks the
        density whose mode is found.
        Every backend: ``progress_bar`` (``False``, the default; ``True``
        draws a tqdm bar on stderr, advanced from inside the compiled loop
        (for MAP and SVI once every ``history_every`` steps, for NUTS once
        per iteration), with the same result as without it; its callbacks
        keep the program out of the compilation caches, so it is compiled
        in every process. A MAP or SVI fit under 1e9 rows x components x
        steps instead shows its steps when its program is done, and runs
        the program of a fit without a bar).
        An option the backend does not take raises ``TypeError``.

    Returns
    -------
    Fit

    Examples
    --------
    >>> import numpy as np
    >>> x = np.concatenate([np.linspace(-6, -4, 50), np.linspace(4, 6, 50)])
    >>> result = fit(x, num_components=5, num_steps=500)
    >>> w, loc = result.samples["weights"][0, 0], result.samples["loc"][0, 0]
    >>> [round(float(np.sum(w * loc * side) / np.sum(w * side)), 1) for side in (loc < 0, loc > 0)]
    [-5.0, 5.0]
    >>> labels = result.predict(x)  # no component spans both groups
    >>> set(labels[:50].tolist()) & set(labels[50:].tolist())
    set()
    """
    algorithm = get_backend(backend)
    names, data, rows = _checked_data(data, mesh)
    arguments = check_fit_arguments(
        rows, num_components=num_components, num_chains=num_chains, rng_key=rng_key,
        priors=priors, covariance=covariance,
    )
    options = resolve_options(algorithm, backend_options, num_points=rows.shape[0])
    batch_size = options.get("batch_size")
    if mesh is not None and rows is data:
        _check_mesh(mesh, data, batch_size)
    check_compilation_cache(compilation_cache)
    if arguments.num_components > rows.shape[0]:
        warnings.warn(
            f"num_components={arguments.num_components} exceeds the number of points "
            f"({rows.shape[0]}); the extra components can only follow the prior.",
            UserWarning,
            stacklevel=2,
        )
    enable_compilation_cache(compilation_cache)
    # Every trace and compilation of the call is counted, not only the backend's program.
    with CompileTimer() as timer:
        # The chart of the unconstrained space is fixed when the density is built.
        density = build_log_density(
            rows, num_components=arguments.num_components, priors=arguments.priors,
            covariance=arguments.covariance,
            parameterization=options.get("parameterization", "centered"),
            mesh=mesh if rows is data else None,
            keep_data_on_host=batch_size is not None,
            # Padded to a bucket of rows: data sets of nearby sizes share programs.
            num_rows=None if batch_size is not None else bucket_size(len(rows)),
        )
        output = algorithm.run(arguments.rng_key, density, num_chains=arguments.num_chains,
                               **options)
        chart = density if output.density is None else output.density
        samples = _constrain_all(chart.program.constrain)(output.positions, chart.params)
        samples = jax.tree_util.tree_map(np.asarray, samples)
    return _assemble(algorithm, arguments, options, output, density, samples, data=data,
                     rows=rows, names=names, compile_seconds=timer.seconds)
