"""CLI command: image (registered on the group in __init__)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .._image import DEFAULT_BASE, RUNTIMES, ImageContext, Resolution, choose_base, image, resolve_requirements
from . import cli
from ._options import json_option
from ._output import finish, warn


@cli.command("image")
@click.argument("layout", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="The build context folder to write (new, empty, or an earlier one of `mar-build image`).")
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), default="torchserve", show_default=True,
              help="torchserve: TorchServe behind mar-build's wrapper, for KServe's TorchServe runtime arguments; "
              "python: mar-build's own runtime (no Java).")
@click.option("--base", metavar="IMAGE", help=f"The image to build FROM (default {DEFAULT_BASE}); Debian-based, "
              "Python >= 3.10.")
@click.option("--base-python", metavar="X.Y", help="The base's Python, when its name does not say (python:3.12-slim "
              "does).")
@click.option("--gpu", is_flag=True, help="torch with CUDA (PyPI's build) instead of its CPU build.")
@click.option("--bake-layout", is_flag=True, help="Copy the layout into the image at /mnt/models (an "
              "InferenceService without a storageUri serves it).")
@click.option("--resolve", "resolve", is_flag=True, help="Also resolve every pin for the base's Python and "
              "platform against the package index (pip --dry-run; needs the network).")
@json_option()
def image_command(layout: Path, output: Path, runtime: str, base: str | None, base_python: str | None, gpu: bool,
                  bake_layout: bool, resolve: bool, as_json: bool) -> None:
    """Write the build context of the image that runs LAYOUT: Dockerfile, pinned requirements.txt, mar-build.

    The image runs as user 1000 (the runtime's securityContext). The layout's install_py_dep_per_model goes
    off: the image carries what its archives packaged. Build and push it with docker or podman, then give it
    to render (--image, with --serving-runtime for TorchServe).

    \b
    Examples:
      mar-build image build/bert -o build/bert-image
      docker build -t ghcr.io/team/bert-torchserve:1.0 build/bert-image && docker push ghcr.io/team/bert-torchserve:1.0
      mar-build image build/bert -o build/py-image --runtime python --bake-layout
    """
    context = image(layout, output, runtime=runtime, base=base, base_python=base_python, gpu=gpu,
                    bake_layout=bake_layout)
    resolution = None
    if resolve:
        resolution = resolve_requirements(context.requirements_file, choose_base(base, base_python=base_python))
    finish(_Result(context, resolution), as_json=as_json, show=_show)


class _Result:
    def __init__(self, context: ImageContext, resolution: Resolution | None) -> None:
        self.context, self.resolution = context, resolution

    def to_dict(self) -> dict[str, Any]:
        data = self.context.to_dict()
        if self.resolution is not None:
            data["resolution"] = self.resolution.to_dict()
        return data


def _show(result: _Result) -> None:
    ctx = result.context
    for warning in ctx.warnings:
        warn(warning)
    click.echo(f"wrote {ctx.dockerfile} ({ctx.runtime} runtime, FROM {ctx.base}, Python {ctx.python}"
               f"{', CUDA' if ctx.gpu else ''}{', layout baked in' if ctx.bake_layout else ''})")
    click.echo(f"  {len(ctx.requirements)} pins in {ctx.requirements_file}")
    if ctx.layout_changes:
        keys = ", ".join(f"{k}={v}" for k, v in ctx.layout_changes.items())
        click.echo(f"  set in the layout's config.properties: {keys}")
    if result.resolution is not None:
        click.echo(f"  every pin resolves for Python {ctx.python}: {len(result.resolution.packages)} packages "
                   f"({result.resolution.seconds:.0f} s)")
    click.echo(f"build: docker build -t REGISTRY/REPOSITORY:TAG {ctx.path}  (or podman build), then docker push")
