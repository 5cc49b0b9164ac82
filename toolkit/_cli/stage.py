"""CLI commands: stage (registered on the group in __init__)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import click

from .._stage import DEFAULT_CONCURRENCY, Progress, StageResult, human_size, stage
from . import cli


@cli.command("stage")
@click.argument("layout", type=click.Path(path_type=Path))
@click.argument("uri")
@click.option("--mount", type=click.Path(path_type=Path),
              help="pvc:// only: the folder where the claim is mounted here, e.g. /home/jovyan/vol-1.")
@click.option("--endpoint-url", help="s3:// only: an S3-compatible endpoint (MinIO...); default $AWS_ENDPOINT_URL.")
@click.option("--profile", help="s3:// only: the AWS profile with the credentials.")
@click.option("--region", help="s3:// only: the bucket's region.")
@click.option("--dry-run", is_flag=True, help="Print the plan (upload/skip/delete) and write nothing.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=DEFAULT_CONCURRENCY, show_default=True,
              help="Parallel transfers (S3 parts, file copies).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def stage_command(layout: Path, uri: str, mount: Path | None, endpoint_url: str | None, profile: str | None,
                  region: str | None, dry_run: bool, concurrency: int, as_json: bool) -> None:
    """Copy LAYOUT to URI, where the predictor pod reads it, and print the storageUri to use.

    URI is s3://BUCKET/PREFIX or pvc://CLAIM/PREFIX (with --mount). Archives go first and
    config/config.properties last; files whose SHA-256 already matches are skipped; archives an earlier
    stage put there that the new config no longer names are removed after it.

    \b
    Examples:
      mar-build stage build/bert pvc://leeway/bert --mount /home/jovyan/vol-1
      mar-build stage build/bert s3://models/bert --endpoint-url http://minio-service.kubeflow:9000
    """
    with _progress_bar(enabled=not as_json and not dry_run and sys.stderr.isatty()) as progress:
        result = stage(layout, uri, mount=mount, endpoint_url=endpoint_url, profile=profile, region=region,
                       dry_run=dry_run, concurrency=concurrency, progress=progress)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    _print_result(result, layout)


def _print_result(result: StageResult, layout: Path) -> None:
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
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
        endpoint = urlsplit(result.endpoint_url).netloc if result.endpoint_url else "HOST:PORT"
        click.echo(
            "note: the InferenceService's service account needs an S3 Secret for this bucket: "
            f"mar-build render {layout} --name ISVC --storage-uri {result.storage_uri} --s3-endpoint {endpoint} "
            "(the endpoint as the pod reaches it)"
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
