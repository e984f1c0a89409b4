"""Composing an app's Hydra config from the command line, before Hydra runs the app.

The overrides are composed once with Hydra's compose API and checked by the app's checks, so
an unknown option, a misspelt key, a wrongly typed or out-of-range value is ONE line naming the
key (``design.prompt_machines: must be >= 1, got -3``), raised as :class:`ExperimentError`
(the doors in ``experiments/apps/`` print it and exit 2). :func:`compose_error_line` turns
Hydra's and omegaconf's composition errors into that line (also for each job of a multirun:
:mod:`experiments.sweep`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig

from common.errors import error_line
from experiments.config.schemas import CONF_DIR, register
from experiments.errors import ExperimentError


def user_errors() -> tuple[type[BaseException], ...]:
    """ExperimentError plus the one-line error classes of traces, replay and characterize
    (those of modules already imported: looking them up imports nothing, e.g. no torch)."""
    errs: list[type[BaseException]] = [ExperimentError]
    for mod, name in [
        ("traces.errors", "TraceError"),
        ("replay.errors", "ReplayError"),
        ("characterize.modeling.specs", "SpecError"),
        ("characterize.modeling.profiles", "ProfileError"),
        ("characterize.modeling.network", "NetworkError"),
        ("characterize.measure.profiler", "ProfilerError"),
        ("characterize.measure.power", "PowerCapError"),
        ("characterize.measure.power", "PowerUnavailableError"),
    ]:
        m = sys.modules.get(mod)
        if m is not None and hasattr(m, name):
            errs.append(getattr(m, name))
    return tuple(errs)


def compose_error_line(e: BaseException) -> str:
    """A Hydra/omegaconf composition error as one line naming the key or group."""
    text = str(e)
    m = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if m:
        group, option = m.group(1), m.group(2)
        known = [
            k
            for k in re.findall(r"^\t(\S+)$", text.split("Config search path")[0], re.M)
            if k != "schema"  # the group's typed schema, not an option (as in _options)
        ]
        tail = f" (known: {', '.join(known)})" if known else ""
        return f"{group}: unknown option '{option}'{tail}"
    cause = e.__cause__ or e.__context__
    key = getattr(cause, "full_key", None) or getattr(e, "full_key", None)
    m = re.search(r"Could not override '([^']+)'", text) or re.search(
        r"Error merging override ([^=\s]+)=", text
    )
    if m and key is None:
        key = m.group(1)
    elif m and not str(key).startswith(m.group(1)):  # a field inside a list item: name both
        key = f"{m.group(1)}: {key}"
    detail = str(cause).splitlines()[0] if cause is not None and str(cause) else ""
    if "not in struct" in detail or re.match(r"Key '[^']+' (is )?not in ", detail):
        detail = "unknown key"
    if not detail:
        detail = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return f"{key}: {detail}" if key else detail


def is_hydra_arg(a: str) -> bool:
    return a.startswith(("hydra.", "hydra/", "+hydra", "~hydra", "++hydra"))


def precheck(
    config_name: str,
    overrides: list[str],
    check: Callable[[DictConfig], object],
    registers: Sequence[Callable[[], None]] = (register,),
):
    """Compose ``config_name`` with ``overrides`` and ``check`` it; ExperimentError on failure."""
    from hydra import compose, initialize_config_dir

    for reg in registers:
        reg()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        try:
            cfg = compose(config_name, overrides=overrides)
        except Exception as e:  # noqa: BLE001 - Hydra raises several classes; all are user errors
            raise ExperimentError(compose_error_line(e)) from None
        try:
            check(cfg)
        except ExperimentError:
            raise
        except Exception as e:  # noqa: BLE001
            if isinstance(e, user_errors()):
                raise ExperimentError(error_line(e)) from None
            raise
    return cfg


def precheck_base(
    config_name: str, overrides: list[str], registers: Sequence[Callable[[], None]] = (register,)
) -> None:
    """ExperimentError (one line) when a multirun's base config cannot be composed: Hydra
    composes it from the overrides that do not sweep (a value list, ``range(...)``, ...) before
    any job starts, and fails there with a traceback. The sweep overrides are left to the jobs
    (a bad value in a list fails only its own jobs, recorded in the sweep table)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in overrides if not is_hydra_arg(a)]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception as e:  # noqa: BLE001 - Hydra's OverrideParseException and friends
        raise ExperimentError(str(e).strip().splitlines()[0]) from None
    base = [a for a, o in zip(args, parsed, strict=True) if not o.is_sweep_override()]
    precheck(config_name, base, lambda cfg: None, registers)


def check_run_dir(config_name: str, overrides: list[str]) -> None:
    """ExperimentError when Hydra's run folder (``hydra.run.dir``) cannot be written (Hydra's
    own failure there is a logging traceback). Creates nothing."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        try:
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
            run_dir = str(cfg.hydra.run.dir)
        except Exception:  # noqa: BLE001 - unresolvable here: Hydra reports it itself
            return
    path = Path(run_dir).absolute()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return
        probe = probe.parent
    reason = None
    if not probe.is_dir():
        reason = f"'{probe}' is not a folder"
    else:
        import tempfile

        try:
            with tempfile.TemporaryFile(dir=probe):
                pass
        except OSError as e:
            reason = f"cannot write in '{probe}': {e.strerror or e}"
    if reason:
        raise ExperimentError(f"hydra.run.dir: {reason}")
