"""Backend programs kept on disk, traced and lowered, beside JAX's compilation cache.

JAX's persistent cache (:mod:`dpgmm_ppl._compilation_cache`) lets a second
process skip XLA's compilation, but not the tracing and lowering that come
before it: for a fit of the galaxies, 0.4 of the 0.65 s a second CLI process
spent compiling (``benchmarks/compile_reuse.py``). ``jax.export`` writes a
traced and lowered program to bytes; a later process reads it and goes
straight to the (cached) compilation.

A program is stored when the caller could describe it by a key of plain
values (strings, numbers, booleans, ``None`` and tuples of them): that key,
the shapes and dtypes of the arguments, the platform, JAX's numerical
settings, the versions of the libraries that trace it and a hash of this
package's sources name the file, so an edit of the package or an upgrade
never reads a stale program. Programs with a progress bar (host callbacks,
which ``jax.export`` cannot write) and programs spread over several devices
are never stored, and from jax 0.12.1 on nothing is
(:func:`exports_as_jit_compiles`). Anything that goes wrong on the disk or
in ``jax.export`` falls back to compiling the program as it is, with no
warning: the store only ever saves time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

__all__ = ["STORE_FOLDER", "compile_stored", "exports_as_jit_compiles", "stable_key",
           "store_directory"]

#: The folder, inside JAX's cache directory, that holds the stored programs.
STORE_FOLDER = "dpgmm_ppl-programs"

#: Bumped when the layout of a stored file changes.
_FORMAT = 1

#: Libraries whose versions change what a program traces to.
_LIBRARIES = ("jax", "jaxlib", "numpyro", "optax")

#: JAX settings that change what a program traces or lowers to.
_SETTINGS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_numpy_dtype_promotion")

#: JAX's debugging switches: with any of them on, programs are traced as usual.
_DEBUG_SETTINGS = ("jax_debug_nans", "jax_debug_infs", "jax_disable_jit")

_PLAIN = (str, bytes, bool, int, float, type(None))


def stable_key(key: Any) -> str | None:
    """``repr(key)`` when ``key`` is plain values and tuples of them, else ``None``.

    The repr of such a key is the same in every process, which the key of a
    program holding a user's object (an optimiser, a guide) is not.
    """
    def is_plain(value: Any) -> bool:
        if isinstance(value, tuple):
            return all(is_plain(part) for part in value)
        return isinstance(value, _PLAIN)

    return repr(key) if is_plain(key) else None


def store_directory() -> Path | None:
    """Where programs are stored: a folder of JAX's cache directory.

    ``None`` without a cache directory on the local disk, or with one of
    JAX's debugging switches on (``jax_debug_nans`` changes what a program
    does, not its key).
    """
    values = jax.config.values
    directory = values["jax_compilation_cache_dir"]
    if not values["jax_enable_compilation_cache"] or not directory or "://" in directory:
        return None
    if any(values.get(name) for name in _DEBUG_SETTINGS):
        return None
    return Path(directory) / STORE_FOLDER


@functools.cache
def _fingerprint() -> str:
    """The library versions and this package's sources, hashed."""
    digest = hashlib.sha256(repr(_FORMAT).encode())
    for name in _LIBRARIES:
        try:
            digest.update(f"{name}={importlib.metadata.version(name)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{name}=?".encode())
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _can_serialize() -> bool:
    """Whether ``jax.export`` can write programs: it needs the ``flatbuffers``
    package, and (:func:`exports_as_jit_compiles`) must give a plain ``jit``'s numbers."""
    return importlib.util.find_spec("flatbuffers") is not None and exports_as_jit_compiles()


def exports_as_jit_compiles() -> bool:
    """Whether an exported program rounds as the same program under ``jit`` does.

    Up to jax 0.12.0 it did. From 0.12.1 on, ``jax.jit`` on the CPU calls
    kernels for ``lgamma`` and ``digamma`` and fuses the multiply-adds of
    polynomials, while ``jax.export`` lowers them for older runtimes (as
    polynomials, unfused), which it must do to write them. A stored program
    would then round differently from the program without the store, and a
    fit's numbers would depend on whether the store was there: so there,
    nothing is stored, and each process traces its programs again.
    """
    return tuple(jax.__version_info__[:3]) < (0, 12, 1)


def _spec(leaf: Any) -> jax.ShapeDtypeStruct:
    """The shape, dtype and weak type of an argument: what a program is traced for."""
    return jax.ShapeDtypeStruct(jax.numpy.shape(leaf), jax.numpy.result_type(leaf),
                                weak_type=bool(getattr(leaf, "weak_type", False)))


def _file_name(key: str, specs: Sequence[jax.ShapeDtypeStruct], in_tree: Any) -> str:
    device = jax.devices()[0]
    parts = (
        _fingerprint(), key, str(in_tree),
        tuple((spec.shape, str(spec.dtype), spec.weak_type) for spec in specs),
        device.platform, device.device_kind,
        tuple(str(jax.config.values.get(name)) for name in _SETTINGS),
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:40] + ".jaxexport"


def _read(path: Path) -> dict[str, Any] | None:
    """What ``path`` holds, or ``None`` for a missing, partial or foreign file."""
    try:
        with open(path, "rb") as file:
            stored = pickle.load(file)
    except Exception:
        return None
    return stored if isinstance(stored, dict) and stored.get("format") == _FORMAT else None


def _write(path: Path, **stored: Any) -> None:
    """Write atomically (a reader sees the whole file or none); never raise."""
    temporary = None
    try:
        payload = pickle.dumps({"format": _FORMAT, **stored})
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".partial")
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
        os.replace(temporary, path)
    except Exception:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)


def _export(
    program: Callable[..., Any], specs: Sequence[jax.ShapeDtypeStruct], in_tree: Any
) -> tuple[Any, Any]:
    """``program`` exported as a function of the flat arguments, and its output tree."""
    out_trees = []

    def flat(*flat_args):
        outputs, out_tree = jax.tree_util.tree_flatten(
            program(*jax.tree_util.tree_unflatten(in_tree, flat_args)))
        out_trees.append(out_tree)
        return outputs

    exported = jax.export.export(jax.jit(flat))(*specs)
    return exported, out_trees[-1]


def compile_stored(
    program: Callable[..., Any], args: Sequence[Any], key: str | None
) -> tuple[Callable[..., Any], bool] | None:
    """The jitted ``program`` compiled for ``args`` through the store, or ``None``.

    ``None`` (compile ``program`` as it is) when there is no store, no
    ``key``, several devices, or ``jax.export`` cannot handle the program.
    Otherwise the stored program is read, or exported and written, and
    compiled.

    Returns
    -------
    (run, was_read) or None
        ``run`` is called like ``program``, with arguments of the shapes of
        ``args``; ``was_read`` says whether the program came from the disk.
    """
    directory = store_directory()
    # One device: a program spread over several is not exported.
    if directory is None or key is None or not _can_serialize() or jax.device_count() != 1:
        return None
    leaves, in_tree = jax.tree_util.tree_flatten(tuple(args))
    specs = [_spec(leaf) for leaf in leaves]
    path = directory / _file_name(key, specs, in_tree)
    stored = _read(path) if path.exists() else None
    if stored is not None and not stored.get("exported"):
        return None  # an earlier process found that jax.export refuses it
    try:
        if stored is None:
            exported, out_tree = _export(program, specs, in_tree)
            _write(path, exported=bytes(exported.serialize()), out_tree=out_tree)
        else:
            exported = jax.export.deserialize(bytearray(stored["exported"]))
            out_tree = stored["out_tree"]
        compiled = jax.jit(exported.call).lower(*leaves).compile()
    except Exception:  # what jax.export refuses (host callbacks, custom calls)
        if stored is None:
            _write(path, exported=None)
        else:  # unreadable after all: the next process exports it again
            path.unlink(missing_ok=True)
        return None

    def run(*call_args: Any) -> Any:
        outputs = compiled(*jax.tree_util.tree_leaves(tuple(call_args)))
        return jax.tree_util.tree_unflatten(out_tree, outputs)

    return run, stored is not None
