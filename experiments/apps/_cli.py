"""Shared console-script plumbing: one-line errors (exit 2) around a Hydra app.

Before Hydra runs the app, the command line's overrides are composed once with the compose
API and checked by the app's validator, so an unknown option, a misspelt key, a wrongly
typed or out-of-range value is ONE line naming the key (``error: design.prompt_machines:
must be >= 1, got -3``) and exit status 2, not a Hydra traceback. Multirun (``-m``) and
Hydra's own flags (``--help``, ``--cfg``, ...) skip the pre-check; errors inside each job are
still one line.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig

from common.errors import error_line
from experiments.config.schemas import CONF_DIR, register
from experiments.errors import ExperimentError

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


def precheck_base(
    config_name: str, overrides: list[str], registers: Sequence[Callable[[], None]] = (register,)
) -> None:
    """ExperimentError (one line) when a multirun's base config cannot be composed: Hydra
    composes it from the overrides that do not sweep (a value list, ``range(...)``, ...) before
    any job starts, and fails there with a traceback. The sweep overrides are left to the jobs
    (a bad value in a list fails only its own jobs, recorded in the sweep table)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in overrides if not _is_hydra_arg(a)]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception as e:  # noqa: BLE001 - Hydra's OverrideParseException and friends
        raise ExperimentError(str(e).strip().splitlines()[0]) from None
    base = [a for a, o in zip(args, parsed, strict=True) if not o.is_sweep_override()]
    precheck(config_name, base, lambda cfg: None, registers)


def fail(msg: str) -> None:
    """Print ``error: msg`` to stderr and exit with status 2."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


class Interrupted(Exception):  # noqa: N818 - it is a stop, not an error
    """Raised by an app on Ctrl-C with the one line to print (``N points cached, ...``)."""


class FailedJob:
    """What a multirun job that failed returns to Hydra (instead of raising, which would abort
    the sweep): its one-line error."""

    def __init__(self, error: str) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"FailedJob({self.error!r})"


def _user_error_line(e: BaseException) -> str | None:
    if isinstance(e, user_errors()) or (isinstance(e, OSError) and e.filename):
        return error_line(e)
    return None


def guarded(
    task: Callable[[DictConfig], object], interrupted: str = "interrupted"
) -> Callable[[DictConfig], object]:
    """Wrap an app task so user errors (and file errors naming a path) become one line and exit
    status 2, and Ctrl-C one line and exit status 130 (``interrupted``: the line to print unless
    the task raises :class:`Interrupted` with its own). Ctrl-C before and after the task
    (start-up, Hydra's bookkeeping) is :mod:`common.entry`'s: ``interrupted``, exit 130 at once.

    Inside a multirun job a failure is printed as one line, recorded in the job folder
    (``job.json``, :mod:`experiments.sweep`) and RETURNED as a :class:`FailedJob`, so the other
    jobs of the sweep still run; a job that succeeds records its headline metrics."""
    from common.entry import interruptible
    from experiments import sweep

    def wrapper(cfg: DictConfig):
        job = sweep.hydra_job()
        try:
            with interruptible():  # the task's work: Ctrl-C is a KeyboardInterrupt for it
                ret = task(cfg)
        except (KeyboardInterrupt, Interrupted) as e:
            msg = str(e) if isinstance(e, Interrupted) else interrupted
            print(
                f"interrupted: {msg}" if not msg.startswith("interrupted") else msg,
                file=sys.stderr,
                flush=True,
            )
            sys.exit(130)
        except Exception as e:  # noqa: BLE001
            line = _user_error_line(e)
            if job is None:
                if line is not None:
                    fail(line)
                raise
            if line is None:  # a crash: its type and message, the traceback in the job folder
                import traceback

                line = f"{type(e).__name__}: {error_line(e)}"
                try:
                    from common.atomic import write_text_atomic

                    write_text_atomic(Path(job["dir"]) / "error.txt", traceback.format_exc())
                except OSError:
                    pass
            print(
                f"error: job {job['num']} ({' '.join(job['overrides'])}): {line}",
                file=sys.stderr,
                flush=True,
            )
            _record(job, "failed", line, {})
            return FailedJob(line)
        if job is not None:
            status, error, metrics = sweep.headline(ret)
            _record(job, status, error, metrics)
        return ret

    return wrapper


def _record(job: dict, status: str, error: str | None, metrics: dict) -> None:
    from experiments import sweep

    try:
        sweep.write_job_record(job, status, error, metrics)
    except OSError as e:  # the job folder is Hydra's: report, do not mask the job's outcome
        print(f"error: {error_line(e)}", file=sys.stderr)


#: what each app's ``--help`` says (the config groups are listed from its config)
APP_HELP = {
    "replay": "Replay one trace through one cluster design (simulated; no GPU).",
    "study": "The paper's design comparisons (iso-power, iso-cost, ...) over cached simulated "
    "points, then the report.",
    "report": "Write report.md and figures from run and study folders.",
    "characterize": "Profile prefill and decode of one model shard on one GPU.",
}


def _app_groups(config_name: str) -> list[str]:
    """The config groups the app's primary config takes (its defaults list, ``group@pkg``
    entries under their group), in order."""
    import yaml

    with open(os.path.join(CONF_DIR, f"{config_name}.yaml")) as f:
        doc = yaml.safe_load(f) or {}
    groups: list[str] = []
    for entry in doc.get("defaults") or []:
        if not isinstance(entry, dict):
            continue
        for k in entry:
            k = k.replace("override ", "").strip().lstrip("/")
            g, _, pkg = k.partition("@")
            if pkg:  # e.g. design@designs.baseline-a100: set as design@designs.<key>=OPTION
                g = f"{g}@{pkg.rsplit('.', 1)[0]}.<key>" if "." in pkg else f"{g}@{pkg}"
            if g.startswith("hydra") or g in groups:
                continue
            if os.path.isdir(os.path.join(CONF_DIR, g.split("@", 1)[0])):
                groups.append(g)
    return groups


def _options(group: str) -> list[str]:
    d = os.path.join(CONF_DIR, group)
    return sorted(n[:-5] for n in os.listdir(d) if n.endswith(".yaml") and n != "schema.yaml")


def app_help(config_name: str, prog: str) -> str:
    """``--help`` text: what the app does, the groups it takes with their options, the flags."""
    import textwrap

    lines = [
        *textwrap.wrap(f"{prog}: {APP_HELP.get(config_name, '')}".rstrip(), 100),
        "",
        f"usage: {prog} [GROUP=OPTION ...] [KEY=VALUE ...]   (-m: one job per value of a,b,c)",
        "",
        "config groups (GROUP=OPTION):",
    ]
    groups = _app_groups(config_name)
    width = max([len(g) for g in groups] + [10]) + 2
    for g in groups:
        opts = ", ".join(_options(g.split("@", 1)[0]))
        lines += textwrap.wrap(
            opts, 98, initial_indent=f"  {g:<{width}}", subsequent_indent=" " * (width + 2)
        )
    lines += [
        "",
        "any key of the composed config can be set (KEY=VALUE); see them all with",
        f"  {prog} --cfg job",
        "flags: --cfg job|hydra|all, --info, -m/--multirun, --hydra-help",
    ]
    return "\n".join(lines)


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


def launch(
    config_name: str,
    task: Callable[[DictConfig], object],
    validator: Callable[[DictConfig], object],
    argv: list[str] | None = None,
    registers: Sequence[Callable[[], None]] = (register,),
    interrupted: str = "interrupted",
) -> None:
    """Run ``task`` as a Hydra app on ``argv`` (default sys.argv[1:]), errors as one line.

    ``registers``: the ConfigStore registrations the app's config needs; ``interrupted``: the
    line printed on Ctrl-C (exit 130) unless the task raises :class:`Interrupted`.
    A multirun in which every job failed exits with status 2."""
    import hydra

    from experiments import sweep

    for reg in registers:
        reg()
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        print(app_help(config_name, os.path.basename(sys.argv[0]) or config_name))
        sys.exit(0)
    flags = [a for a in args if a.startswith("-")]
    if not flags:
        try:
            overrides = [a for a in args if not _is_hydra_arg(a)]
            precheck(config_name, overrides, validator, registers)
            check_run_dir(config_name, args)
        except ExperimentError as e:
            fail(str(e))
    multirun = "-m" in args or "--multirun" in args
    if multirun:
        try:
            precheck_base(config_name, [a for a in args if not a.startswith("-")], registers)
        except ExperimentError as e:
            fail(str(e))
    if multirun and not any(a.lstrip("+~").startswith("hydra/callbacks") for a in args):
        args.append("hydra/callbacks=sweep_table")  # the sweep table at the end
    if argv is not None or multirun:
        sys.argv = [sys.argv[0], *args]
    app = hydra.main(config_path=CONF_DIR, config_name=config_name, version_base="1.3")(
        guarded(task, interrupted)
    )
    sweep.LAST_SWEEP = None
    app()
    outcome = sweep.LAST_SWEEP
    if outcome is not None and outcome["jobs"] and outcome["failed"] == outcome["jobs"]:
        sys.exit(2)
