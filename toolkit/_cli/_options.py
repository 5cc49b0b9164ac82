"""Options shared by several commands, and the one way an option keeps an old name.

One meaning per flag: the same name means the same thing in every command. ``--timeout`` used to mean five things
(deploy's and delete's wait on the cluster, render's predictor timeout in the InferenceService, serve's startup
wait, predict's per-request timeout), so each meaning has its own name now: --wait-timeout, --predictor-timeout,
--startup-timeout, --request-timeout. ``--timeout`` lives on, hidden, where it existed, as an old name that warns
with the new one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from ._output import warn

F = TypeVar("F", bound=Callable[..., Any])

_EXPLICIT = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def option(*decls: str, old: Sequence[str] = (), **attrs: Any) -> Callable[[F], F]:
    """``click.option(*decls, **attrs)`` that also accepts each name in ``old``, hidden from --help.

    A value given under an old name goes to the same parameter, and stderr says which name to use instead. The new
    and an old name together are a usage error (which one would win is a guess).
    """
    dest = click.Option(list(decls), **attrs).name  # the parameter name click derives from the declarations
    assert dest is not None
    new = max((d for d in decls if d.startswith("--")), key=len)  # the spelling the warning tells people to use

    def decorate(fn: F) -> F:
        aliases = {f"old_{name.lstrip('-').replace('-', '_')}": name for name in old}

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            for alias_dest, name in aliases.items():
                value = kwargs.pop(alias_dest)
                if value is not None:
                    kwargs[dest] = _from_old_name(name, new, dest, value)
            return fn(*args, **kwargs)

        decorated: Any = click.option(*decls, **attrs)(command)
        for alias_dest, name in aliases.items():
            decorated = click.option(name, alias_dest, type=attrs.get("type"), default=None, hidden=True)(decorated)
        return decorated

    return decorate


def _from_old_name(old: str, new: str, dest: str, value: Any) -> Any:
    ctx = click.get_current_context()
    if ctx.get_parameter_source(dest) in _EXPLICIT:
        raise click.UsageError(f"{old} is the old name of {new}: give only {new}", ctx=ctx)
    warn(f"`{ctx.command_path}`: {old} is deprecated, use {new}")
    return value


def json_option(what: str = "the result") -> Callable[[F], F]:
    """``--json``: print the command's result as JSON (its library type's to_dict()) instead of for a person."""
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON.")


def wait_timeout_option(default: float) -> Callable[[F], F]:
    """``--wait-timeout``: how long a command waits on the cluster (the meaning kubectl gives its --timeout)."""
    return option(
        "--wait-timeout", type=click.FloatRange(min=0), default=default, show_default=True, old=["--timeout"],
        help="Seconds to wait on the cluster.",
    )


# The S3 endpoint and region are spelled --s3-endpoint and --s3-region in both stage and render: render has a family
# of --s3-* options (the Secret KServe reads), stage also takes pvc:// URIs where an unprefixed --endpoint-url or
# --region would mean nothing, and stage's S3 note already tells users to pass `render --s3-endpoint`. Stage's former
# --endpoint-url/--region keep working as old names.
def s3_endpoint_option(text: str, old: Sequence[str] = ()) -> Callable[[F], F]:
    return option("--s3-endpoint", old=old, metavar="URL", help=text)


def s3_region_option(text: str, old: Sequence[str] = ()) -> Callable[[F], F]:
    return option("--s3-region", old=old, metavar="REGION", help=text)


_CLUSTER_OPTIONS = (
    click.option("-n", "--namespace", help="Namespace (default: the kubeconfig context's, else default)."),
    click.option("--context", help="kubeconfig context to use (default: the current one)."),
    click.option(
        "--kubeconfig",
        type=click.Path(dir_okay=False, path_type=Path),
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else the pod's service account).",
    ),
)


def cluster_options(fn: F) -> F:
    """-n/--namespace, --context, --kubeconfig: which cluster and namespace a command talks to."""
    for decorate in reversed(_CLUSTER_OPTIONS):
        fn = decorate(fn)
    return fn


def runtime_options(runtimes: Sequence[str]) -> Callable[[F], F]:
    """--runtime, --image, --serving-runtime: which runtime serves a rendered layout, and the ServingRuntime render
    brings for it (render and deploy LAYOUT). ``runtimes``: the library's names (``toolkit._render.RUNTIMES``)."""
    decorators = (
        click.option(
            "--runtime", type=click.Choice(list(runtimes)),
            help="The runtime that serves the layout: torchserve (KServe's TorchServe runtime; the default) or "
            "python (mar-build's own, with its own ServingRuntime; needs --image).",
        ),
        click.option(
            "--image", metavar="IMAGE",
            help="The runtime's image, REGISTRY/REPOSITORY:TAG (required with --runtime python; for TorchServe "
            "it replaces pytorch/torchserve-kfs, e.g. one `mar-build image` built).",
        ),
        click.option(
            "--serving-runtime", is_flag=True,
            help="TorchServe: also render a pinned namespaced ServingRuntime (pytorch/torchserve-kfs, "
            "--runtime-version or 0.9.0) for clusters without KServe's kserve-torchserve.",
        ),
    )

    def decorate(fn: F) -> F:
        for option_decorator in reversed(decorators):
            fn = option_decorator(fn)
        return fn

    return decorate


def key_value_pairs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """A click callback: repeated KEY=VALUE options as a dict (the last value of a key wins)."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", ctx=ctx, param=param)
        out[key] = value
    return out
