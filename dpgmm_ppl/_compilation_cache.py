"""JAX's persistent compilation cache, on by default for :func:`dpgmm_ppl.fit`.

A fit spends seconds compiling its programs; with JAX's persistent cache a
second process (the CLI run again, a restarted notebook, a test worker)
reads the compiled programs from disk instead. :func:`dpgmm_ppl.fit` turns
the cache on for the whole process, in the first of these places:

1. the ``compilation_cache`` argument: a directory, or ``False`` for none;
2. ``DPGMM_PPL_CACHE=0`` (or ``off``, ``false``, ``no``) in the environment:
   no cache;
3. ``DPGMM_PPL_CACHE_DIR``: that directory, or no cache when it is empty;
4. the user's cache directory: ``$XDG_CACHE_HOME/dpgmm_ppl/jax``, else
   ``~/.cache/dpgmm_ppl/jax`` (``~/Library/Caches/dpgmm_ppl/jax`` on macOS,
   ``%LOCALAPPDATA%\\dpgmm_ppl\\Cache\\jax`` on Windows).

JAX's own setting, ``jax_compilation_cache_dir``, wins over all four: if the
user, another library or a test harness has set it, it is left as it is.
Whichever directory JAX uses, the backends keep their main programs traced
and lowered in its ``dpgmm_ppl-programs`` folder
(:mod:`dpgmm_ppl.infer._stored_programs`), which JAX's cache cannot do.

How JAX initialises the cache (read in jax 0.10.2 and 0.12.0, identical
there): on every compilation it looks for a cache; as long as
``jax_compilation_cache_dir`` is unset it finds none and tries again next
time, so a directory set after JAX has already compiled something is still
used from the next compilation on. Once it has opened a directory, JAX keeps
it: a later change of ``jax_compilation_cache_dir`` alone is ignored until
``jax._src.compilation_cache.reset_cache()``, which is why a fit that moves
the cache this module set earlier calls it. If JAX cannot create the
directory it warns once and compiles without a cache; this module checks the
directory first, so that the warning is its own and names the way out.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Literal, Union

import jax

__all__ = [
    "check_compilation_cache",
    "default_cache_directory",
    "enable_compilation_cache",
    "resolve_cache_directory",
]

#: The environment variable that moves the cache; empty turns it off.
CACHE_DIR_VARIABLE = "DPGMM_PPL_CACHE_DIR"

#: The environment variable that turns the cache off with one of :data:`OFF_VALUES`.
CACHE_SWITCH_VARIABLE = "DPGMM_PPL_CACHE"

#: Values of :data:`CACHE_SWITCH_VARIABLE` that turn the cache off (any case).
OFF_VALUES = frozenset({"0", "off", "false", "no"})

#: Programs that took at least this long to compile are written to the cache:
#: all of them. Besides its main program, a fit compiles some fifty small
#: ones (argument handling, constraining the draws), each under 0.3 s but
#: about 3 s together; with JAX's default threshold, 1 s, none of them was
#: cached, and a second process compiled for 4.5 s where it loaded the main
#: program in 1 s (``benchmarks/compile_reuse.py``). JAX's other threshold,
#: the entry size (``jax_persistent_cache_min_entry_size_bytes``, 0: none),
#: is left alone.
MIN_COMPILE_SECONDS = 0.0

#: ``jax_persistent_cache_min_compile_time_secs`` as JAX ships it (1 s in the
#: versions read, 0.10 and 0.12); any other value was chosen by someone and is kept.
_JAX_DEFAULT_MIN_COMPILE_SECONDS = 1.0

_lock = threading.Lock()
#: The directory this module gave JAX, as the string it set; None until then.
_directory_set_here: str | None = None
#: Whether the one warning about a directory that cannot be written was given.
_warned_unwritable = False
#: Whether the one warning about an explicit directory overruled by JAX's setting was given.
_warned_kept_elsewhere = False

#: What ``compilation_cache`` takes: ``None`` (the default location), ``False``
#: (no cache) or a directory.
CacheOption = Union[None, Literal[False], str, os.PathLike[str]]


def check_compilation_cache(option: object) -> CacheOption:
    """Return ``option`` if it is a valid ``compilation_cache`` argument, else raise.

    Parameters
    ----------
    option : None, False, str or os.PathLike
        ``None`` (the default location), ``False`` (no cache) or a directory.

    Returns
    -------
    None, False, str or os.PathLike
        ``option`` itself.

    Raises
    ------
    TypeError
        For any other type (``True`` included).
    ValueError
        For an empty path.

    Examples
    --------
    >>> check_compilation_cache(False)
    False
    >>> check_compilation_cache(3)
    Traceback (most recent call last):
    ...
    TypeError: compilation_cache must be None (the default location), ... got 3 of type int
    """
    if option is None or option is False:
        return option
    if not isinstance(option, (str, os.PathLike)):
        raise TypeError(
            "compilation_cache must be None (the default location), False (no cache) "
            "or a directory path (str or os.PathLike), "
            f"got {option!r:.60} of type {type(option).__name__}"
        )
    if not os.fspath(option):
        raise ValueError(
            "compilation_cache must be a non-empty directory path; "
            "use compilation_cache=False for no cache"
        )
    return option


def default_cache_directory() -> Path:
    """The platform's per-user cache directory for ``dpgmm_ppl``'s compiled programs.

    Returns
    -------
    pathlib.Path
        ``<user cache directory>/dpgmm_ppl/jax`` (see the module's docstring).
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
        return Path(base) / "dpgmm_ppl" / "Cache" / "jax"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "dpgmm_ppl" / "jax"
    # The XDG base directory rule: a relative $XDG_CACHE_HOME is ignored.
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "dpgmm_ppl" / "jax"


def resolve_cache_directory(option: CacheOption) -> Path | None:
    """The absolute directory that ``option`` and the environment ask for; None for no cache.

    Parameters
    ----------
    option : None, False, str or os.PathLike
        As :func:`check_compilation_cache` takes it. An explicit directory
        wins over the environment; ``None`` reads ``DPGMM_PPL_CACHE`` and
        ``DPGMM_PPL_CACHE_DIR``, then falls back on
        :func:`default_cache_directory`.

    Returns
    -------
    pathlib.Path or None

    Examples
    --------
    >>> resolve_cache_directory(False) is None
    True
    >>> resolve_cache_directory("/tmp/dpgmm-cache")
    PosixPath('/tmp/dpgmm-cache')
    """
    option = check_compilation_cache(option)
    if option is False:
        return None
    if option is None:
        return _directory_from_environment()
    # Absolute now, so that a later change of the working directory does not move it.
    return Path(option).expanduser().absolute()


def _directory_from_environment() -> Path | None:
    """The directory the environment asks for when ``fit`` is given none; None for no cache."""
    if os.environ.get(CACHE_SWITCH_VARIABLE, "").strip().lower() in OFF_VALUES:
        return None
    if CACHE_DIR_VARIABLE not in os.environ:
        return default_cache_directory()
    directory = os.environ[CACHE_DIR_VARIABLE]
    return Path(directory).expanduser().absolute() if directory else None


def _unwritable_reason(directory: Path) -> str | None:
    """Why ``directory`` cannot hold cache entries (created if missing), or None if it can."""
    try:
        # Only its owner may write it: JAX runs what it finds there.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".dpgmm-ppl-probe-", dir=directory)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        return f"{type(error).__name__}: {error.strerror or error}"
    return None


def _warn_once(flag: str, message: str) -> None:
    """One ``UserWarning`` per process for each ``flag`` (a module global's name)."""
    if globals()[flag]:
        return
    globals()[flag] = True
    warnings.warn(message, UserWarning, stacklevel=5)  # the caller of dpgmm_ppl.fit


def _warn_unwritable(directory: Path, reason: str) -> None:
    _warn_once(
        "_warned_unwritable",
        f"dpgmm_ppl cannot write its JAX compilation cache in {str(directory)!r} "
        f"({reason}); fitting without it, so every new process compiles again. "
        "To move the cache: fit(..., compilation_cache='other/directory') or "
        "DPGMM_PPL_CACHE_DIR=other/directory; to turn it off: "
        "fit(..., compilation_cache=False) or DPGMM_PPL_CACHE=0.",
    )


def _warn_kept_elsewhere(directory: Path, current: str) -> None:
    _warn_once(
        "_warned_kept_elsewhere",
        f"compilation_cache={str(directory)!r} is not used: JAX's compilation cache "
        f"is already in {current!r} (jax_compilation_cache_dir, set outside "
        "dpgmm_ppl), and dpgmm_ppl does not override it.",
    )


def _jax_setting(name: str) -> Any:
    """The current value of JAX's configuration option ``name``.

    ``jax.config.<name>`` reads the same value, but JAX adds those attributes at
    run time, where a type checker cannot see them.
    """
    return jax.config.values[name]


def _lower_compile_time_threshold() -> None:
    """Cache programs from :data:`MIN_COMPILE_SECONDS` on, unless the threshold was chosen."""
    threshold = _jax_setting("jax_persistent_cache_min_compile_time_secs")
    if threshold == _JAX_DEFAULT_MIN_COMPILE_SECONDS:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)


def _reopen_jax_cache() -> None:
    """Make JAX drop the directory it opened, so that it opens the one set now."""
    from jax._src import compilation_cache  # internal, hence the guard below

    reset_cache = getattr(compilation_cache, "reset_cache", None)
    if reset_cache is not None:
        reset_cache()


def _point_jax_at(directory: str) -> None:
    """Set JAX's cache directory to ``directory`` and record that this module set it."""
    global _directory_set_here
    jax.config.update("jax_compilation_cache_dir", directory)
    if _directory_set_here is None:
        _lower_compile_time_threshold()
    else:  # JAX may still hold the directory set before
        _reopen_jax_cache()
    _directory_set_here = directory


def enable_compilation_cache(option: CacheOption = None) -> Path | None:
    """Turn on JAX's persistent compilation cache where ``option`` asks; never fail on the disk.

    Called by :func:`dpgmm_ppl.fit` before anything is traced. The cache is
    a process-wide JAX setting, so:

    - if ``jax_compilation_cache_dir`` was set by anything else, it is kept
      and returned (an explicit ``option`` naming another directory gets
      one warning per process saying so); if JAX's cache is switched off
      (``jax_enable_compilation_cache=False``), nothing is done;
    - ``option=False`` (or the environment's off switch) sets nothing; a
      cache that an earlier call of this process turned on stays on;
    - a directory that differs from the one an earlier call set moves the
      cache there.

    A directory that cannot be created or written is skipped, with one
    ``UserWarning`` per process.

    Parameters
    ----------
    option : None, False, str or os.PathLike
        See :func:`resolve_cache_directory`.

    Returns
    -------
    pathlib.Path or None
        The directory JAX caches programs in after the call, or None.

    Raises
    ------
    TypeError, ValueError
        For an ``option`` that :func:`check_compilation_cache` refuses.
    """
    directory = resolve_cache_directory(option)
    with _lock:
        current = _jax_setting("jax_compilation_cache_dir")
        in_use = None if current is None else Path(current)
        if not _jax_setting("jax_enable_compilation_cache"):
            return None
        if current is not None and current != _directory_set_here:
            # An explicit directory (never None) that JAX's setting overrules.
            if option not in (None, False) and directory is not None and directory != in_use:
                _warn_kept_elsewhere(directory, current)
            return in_use
        if directory is None or str(directory) == current:
            return in_use
        reason = _unwritable_reason(directory)
        if reason is not None:
            _warn_unwritable(directory, reason)
            return in_use
        _point_jax_at(str(directory))
        return directory
