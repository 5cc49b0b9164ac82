"""CLI commands: stage (registered on the group in __init__)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from .._events import Progress
from .._stage import DEFAULT_CONCURRENCY, StageResult, human_size, stage
from . import cli
from ._options import json_option, s3_endpoint_option, s3_region_option
from ._output import finish, warn


@cli.command("stage")
@click.argument("layout", type=click.Path(path_type=Path))
@click.argument("uri")
@click.option("--mount", type=click.Path(path_type=Path),
              help="pvc:// only: the folder where the claim is mounted here, e.g. /home/jovyan/vol-1.")
@s3_endpoint_option("s3:// only: an S3-compatible endpoint as reached from here (MinIO...); default "
                    "$AWS_ENDPOINT_URL.", old=["--endpoint-url"])
@click.option("--profile", help="s3:// only: the AWS profile with the credentials.")
@s3_region_option("s3:// only: the bucket's region.", old=["--region"])
@click.option("--base", "oci_base", metavar="IMAGE",
              help="oci:// only: the image to stack the layout on; KServe's modelcar mode (plain oci://) needs "
              "sh, ln, sleep and mkdir in it, e.g. a busybox image.")
@click.option("--insecure-registry", is_flag=True,
              help="oci:// only: plain http to a registry that is not on this machine (loopback always uses it).")
@click.option("--dry-run", is_flag=True, help="Print the plan (upload/skip/delete) and write nothing.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=DEFAULT_CONCURRENCY, show_default=True,
              help="Parallel transfers (S3 parts, file copies).")
@json_option()
def stage_command(layout: Path, uri: str, mount: Path | None, s3_endpoint: str | None, profile: str | None,
                  s3_region: str | None, oci_base: str | None, insecure_registry: bool, dry_run: bool,
                  concurrency: int, as_json: bool) -> None:
    """Copy LAYOUT to URI, where the predictor pod reads it, and print the storageUri to use.

    URI is s3://BUCKET/PREFIX, pvc://CLAIM/PREFIX (with --mount) or oci://REGISTRY/REPOSITORY:TAG (an image
    holding the layout under /models, pushed without a Docker daemon). Archives go first and
    config/config.properties last; files whose SHA-256 already matches are skipped; archives an earlier
    stage put there that the new config no longer names are removed after it (an image's tag moves at once).

    \b
    Examples:
      mar-build stage build/bert pvc://leeway/bert --mount /home/jovyan/vol-1
      mar-build stage build/bert s3://models/bert --s3-endpoint http://minio-service.kubeflow:9000
      mar-build stage build/bert oci://ghcr.io/team/bert:v1 --base ghcr.io/team/busybox:1.36
    """
    with _progress_bar(enabled=not as_json and not dry_run and sys.stderr.isatty()) as progress:
        result = stage(layout, uri, mount=mount, endpoint_url=s3_endpoint, profile=profile, region=s3_region,
                       oci_base=oci_base, insecure_registry=insecure_registry, dry_run=dry_run,
                       concurrency=concurrency, progress=progress)
    finish(result, as_json=as_json, show=lambda r: _print_result(r, layout))


def _print_result(result: StageResult, layout: Path) -> None:
    for warning in result.warnings:
        warn(warning)
    verbs = {"upload": "would upload" if result.dry_run else "uploaded", "skip": "skip", "delete": "delete"}
    width = max((len(verbs[f.action]) for f in result.files), default=0)
    for f in result.files:
        click.echo(f"  {verbs[f.action]:<{width}}  {f.path}  {human_size(f.size)}  ({f.reason})")
    for key in result.aborted_uploads:
        click.echo(f"  {'would abort' if result.dry_run else 'aborted'} an unfinished multipart upload of {key}")
    counts = (
        f"{len(result.uploaded)} {'to upload' if result.dry_run else 'uploaded'} "
        f"({human_size(result.bytes_uploaded)}), {len(result.skipped)} unchanged "
        f"({human_size(result.bytes_skipped)}), {len(result.deleted)} {'to delete' if result.dry_run else 'deleted'}"
    )
    if result.dry_run:
        click.echo(f"plan for {result.destination} (dry run, nothing written): {counts}")
    else:
        click.echo(f"staged to {result.destination}: {counts} in {result.seconds:.1f} s")
    click.echo(f"storageUri: {result.storage_uri}")
    if result.is_s3:
        click.echo(_s3_note(result, layout))


def _s3_note(result: StageResult, layout: Path) -> str:
    """The render command that gives the pod this bucket: one that runs as printed, not a sketch to repair.

    The endpoint keeps its scheme: render reads a bare host[:port] as https, and an http MinIO named that way gets
    a Secret the storage-initializer cannot use. AWS itself (no endpoint) needs no --s3-endpoint; the keys come from
    the environment into their own file, as render requires.
    """
    endpoint = f" --s3-endpoint {result.endpoint_url}" if result.endpoint_url else ""
    return (
        "note: the InferenceService's service account needs an S3 Secret for this bucket: "
        f"mar-build render {layout} --name ISVC --storage-uri {result.storage_uri}{endpoint} "
        "--s3-secret-file s3-secret.yaml (the keys from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        + ("; the endpoint as the pod reaches it)" if endpoint else ")")
    )


@contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[Progress | None]:
    """A bytes progress bar on stderr (tqdm when installed, click's otherwise), fed by the library's callback."""
    if not enabled:
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        with click.progressbar(length=1, label="staging", file=sys.stderr) as bar:
            def click_progress(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(done - bar.pos)

            yield click_progress
        return
    with tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, desc="staging", file=sys.stderr,
              leave=False) as tbar:
        def tqdm_progress(done: int, total: int) -> None:
            tbar.total = total
            tbar.update(done - tbar.n)

        yield tqdm_progress
