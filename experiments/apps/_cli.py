"""Shared console-script plumbing: one-line errors (exit 2) around a Hydra app.

Before Hydra runs the app, the command line's overrides are composed once with the compose
API and checked by the app's validator, so an unknown option, a misspelt key, a wrongly
typed or out-of-range value is ONE line naming the key (``error: design.prompt_machines:
must be >= 1, got -3``) and exit status 2, not a Hydra traceback. Multirun (``-m``) and
Hydra's own flags (``--help``, ``--cfg``, ...) skip the pre-check; errors inside each job are
still one line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence

from omegaconf import DictConfig

from common.errors import error_line
from experiments.errors import ExperimentError
from experiments.schemas import CONF_DIR, register

#: library error classes whose message is already a one-line user error
_USER_ERRORS: tuple[type[BaseException], ...] = (ExperimentError,)


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
        known = re.findall(r"^\t(\S+)$", text.split("Config search path")[0], re.M)
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


def _is_hydra_arg(a: str) -> bool:
    return a.startswith(("hydra.", "hydra/", "+hydra", "~hydra", "++hydra"))


def precheck(
    config_name: str,
    overrides: list[str],
    validator: Callable[[DictConfig], object],
    registers: Sequence[Callable[[], None]] = (register,),
):
    """Compose ``config_name`` with ``overrides`` and validate it; ExperimentError on failure."""
    from hydra import compose, initialize_config_dir

    for reg in registers:
        reg()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        try:
            cfg = compose(config_name, overrides=overrides)
        except Exception as e:  # noqa: BLE001 - Hydra raises several classes; all are user errors
            raise ExperimentError(compose_error_line(e)) from None
        try:
            validator(cfg)
        except ExperimentError:
            raise
        except Exception as e:  # noqa: BLE001
            if isinstance(e, user_errors()):
                raise ExperimentError(error_line(e)) from None
            raise
    return cfg


def fail(msg: str) -> None:
    """Print ``error: msg`` to stderr and exit with status 2."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def guarded(task: Callable[[DictConfig], object]) -> Callable[[DictConfig], object]:
    """Wrap an app task so user errors (and file errors naming a path) become one line and exit
    status 2."""

    def wrapper(cfg: DictConfig):
        try:
            return task(cfg)
        except Exception as e:  # noqa: BLE001
            if isinstance(e, user_errors()) or (isinstance(e, OSError) and e.filename):
                fail(error_line(e))
            raise

    return wrapper


def launch(
    config_name: str,
    task: Callable[[DictConfig], object],
    validator: Callable[[DictConfig], object],
    argv: list[str] | None = None,
    registers: Sequence[Callable[[], None]] = (register,),
) -> None:
    """Run ``task`` as a Hydra app on ``argv`` (default sys.argv[1:]), errors as one line.

    ``registers``: the ConfigStore registrations the app's config needs."""
    import hydra

    for reg in registers:
        reg()
    args = list(sys.argv[1:] if argv is None else argv)
    flags = [a for a in args if a.startswith("-")]
    if not flags:
        try:
            overrides = [a for a in args if not _is_hydra_arg(a)]
            precheck(config_name, overrides, validator, registers)
        except ExperimentError as e:
            fail(str(e))
    if argv is not None:
        sys.argv = [sys.argv[0], *args]
    app = hydra.main(config_path=CONF_DIR, config_name=config_name, version_base="1.3")(
        guarded(task)
    )
    app()
