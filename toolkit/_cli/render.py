"""CLI command: render (registered on the group in __init__)."""

from __future__ import annotations

from pathlib import Path

import click

from .._render import ACCESS_MODES, DEPLOYMENT_MODES, SCALE_METRICS, Manifests, PvcRequest, S3Credentials, render
from . import cli


def _pairs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", ctx=ctx, param=param)
        out[key] = value
    return out


def _table(**values: str | None) -> dict[str, str]:
    return {k.replace("_", "-"): v for k, v in values.items() if v is not None}


@cli.command("render")
@click.argument("layout", type=click.Path(path_type=Path))
@click.option("--name", help="InferenceService name (a DNS-1035 label); default: mar.yaml's kserve.name.")
@click.option("--storage-uri", help="Where the layout was staged: pvc://CLAIM/PATH or s3://BUCKET/PREFIX.")
@click.option("-n", "--namespace", help="Kubernetes namespace (Kubeflow: your profile's namespace).")
@click.option("--protocol", type=click.Choice(["v1", "v2"]), help="KServe protocol version (default v1).")
@click.option("--runtime-version", help="pytorch/torchserve-kfs image tag, e.g. 0.12.0 (0.12.0-gpu with --gpu).")
@click.option("--gpu", type=click.IntRange(min=0), help="GPUs (nvidia.com/gpu) per replica.")
@click.option("--cpu", help="CPU request and limit, e.g. 2 or 500m.")
@click.option("--memory", help="Memory request and limit, e.g. 2Gi.")
@click.option("--cpu-request", help="CPU request (wins over --cpu).")
@click.option("--cpu-limit", help="CPU limit (wins over --cpu).")
@click.option("--memory-request", help="Memory request (wins over --memory).")
@click.option("--memory-limit", help="Memory limit (wins over --memory).")
@click.option("--min-replicas", type=click.IntRange(min=0), help="Fewest replicas (0 scales to zero, Serverless).")
@click.option("--max-replicas", type=click.IntRange(min=0), help="Most replicas.")
@click.option("--scale-target", type=click.IntRange(min=1), help="Autoscaling target for --scale-metric.")
@click.option("--scale-metric", type=click.Choice(SCALE_METRICS), help="Autoscaling metric.")
@click.option("--timeout", type=click.IntRange(min=1), help="Predictor request timeout in seconds.")
@click.option("--deployment-mode", type=click.Choice(DEPLOYMENT_MODES), help="serving.kserve.io/deploymentMode.")
@click.option("--canary-traffic-percent", type=click.IntRange(0, 100), help="Traffic share of the new revision.")
@click.option("--service-account", help="ServiceAccount the predictor runs as (with S3 options: the one created).")
@click.option("--label", "labels", multiple=True, callback=_pairs, metavar="KEY=VALUE", help="Label (repeatable).")
@click.option("--annotation", "annotations", multiple=True, callback=_pairs, metavar="KEY=VALUE",
              help="Annotation (repeatable).")
@click.option("--prometheus", is_flag=True, help="Add KServe's Prometheus scraping annotation.")
@click.option("--s3-endpoint", help="S3-compatible endpoint, e.g. http://minio-service.kubeflow:9000.")
@click.option("--s3-region", help="S3 region, e.g. us-east-1.")
@click.option("--s3-no-verify-ssl", is_flag=True, help="Do not verify the endpoint's TLS certificate.")
@click.option("--s3-anonymous", is_flag=True, help="Read a public bucket without keys (no secret file needed).")
@click.option("--s3-secret-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the S3 Secret, with the keys from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, to this "
              "file (mode 600; never to -o or stdout).")
@click.option("--pvc-size", help="Also render the PVC named in pvc://CLAIM/..., this size (e.g. 10Gi).")
@click.option("--pvc-storage-class", help="The PVC's storage class (default: the cluster's).")
@click.option("--pvc-access-mode", type=click.Choice(ACCESS_MODES), default="ReadWriteOnce", show_default=True,
              help="The PVC's access mode.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the manifests here instead of stdout.")
def render_command(
    layout: Path,
    name: str | None,
    storage_uri: str | None,
    namespace: str | None,
    protocol: str | None,
    runtime_version: str | None,
    gpu: int | None,
    cpu: str | None,
    memory: str | None,
    cpu_request: str | None,
    cpu_limit: str | None,
    memory_request: str | None,
    memory_limit: str | None,
    min_replicas: int | None,
    max_replicas: int | None,
    scale_target: int | None,
    scale_metric: str | None,
    timeout: int | None,
    deployment_mode: str | None,
    canary_traffic_percent: int | None,
    service_account: str | None,
    labels: dict[str, str],
    annotations: dict[str, str],
    prometheus: bool,
    s3_endpoint: str | None,
    s3_region: str | None,
    s3_no_verify_ssl: bool,
    s3_anonymous: bool,
    s3_secret_file: Path | None,
    pvc_size: str | None,
    pvc_storage_class: str | None,
    pvc_access_mode: str,
    output: Path | None,
) -> None:
    """Render the InferenceService (and S3 Secret, ServiceAccount, PVC when asked) that serves LAYOUT.

    \b
    mar-build render build/bert --name torchserve -n kubeflow-user-example-com \\
        --storage-uri pvc://leeway/bert --cpu-request 0.5 --memory-request 0.5Gi \\
        --cpu-limit 2 --memory-limit 2Gi -o isvc.yaml
    """
    if s3_secret_file is not None and s3_anonymous:
        raise click.UsageError("--s3-anonymous needs no keys: leave out --s3-secret-file")
    if s3_secret_file is not None and output is not None and s3_secret_file.resolve() == output.resolve():
        raise click.UsageError("--s3-secret-file must be another file than -o: keys never go into the manifests")
    if pvc_storage_class is not None and pvc_size is None:
        raise click.UsageError("--pvc-storage-class needs --pvc-size")

    s3: S3Credentials | None = None
    verify = False if s3_no_verify_ssl else None
    if s3_secret_file is not None:
        s3 = S3Credentials.from_env(endpoint=s3_endpoint, region=s3_region, verify_ssl=verify)
    elif s3_anonymous or s3_endpoint is not None or s3_region is not None or verify is not None:
        s3 = S3Credentials(endpoint=s3_endpoint, region=s3_region, verify_ssl=verify, anonymous=s3_anonymous)
    pvc = PvcRequest(pvc_size, pvc_storage_class, pvc_access_mode) if pvc_size is not None else None

    manifests = render(
        layout, name=name, storage_uri=storage_uri, namespace=namespace, s3=s3, pvc=pvc, protocol=protocol,
        runtime_version=runtime_version, gpu=gpu,
        requests=_table(cpu=cpu_request or cpu, memory=memory_request or memory),
        limits=_table(cpu=cpu_limit or cpu, memory=memory_limit or memory),
        min_replicas=min_replicas, max_replicas=max_replicas, scale_target=scale_target, scale_metric=scale_metric,
        service_account=service_account, deployment_mode=deployment_mode, timeout=timeout,
        canary_traffic_percent=canary_traffic_percent, labels=labels, annotations=annotations, prometheus=prometheus,
    )

    # render keeps a Secret apart only when it holds keys, which this command only reads for --s3-secret-file.
    if manifests.secret is not None and s3_secret_file is not None:
        manifests.secret.write(s3_secret_file)
        click.echo(
            f"wrote the S3 Secret with your keys to {s3_secret_file} (mode 600): kubectl apply -f it, "
            "never commit it", err=True,
        )
    if output is not None:
        manifests.write(output)
        click.echo(f"wrote {_kinds(manifests)} to {output}", err=True)
    else:
        click.echo(manifests.text, nl=False)
    _print_endpoints(manifests)


def _kinds(manifests: Manifests) -> str:
    return ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in manifests.documents)


def _print_endpoints(manifests: Manifests) -> None:
    if not manifests.endpoints:
        return
    isvc = manifests.documents[-1]["metadata"]["name"]
    click.echo(
        f"Call it (the model name in the URL is the model_snapshot key, not the InferenceService name {isvc!r}):",
        err=True,
    )
    for e in manifests.endpoints:
        click.echo(f"  {e.model}: POST http://INGRESS{e.path}  with header  Host: {e.host}", err=True)
        click.echo(f"  {' ' * len(e.model)}  in the cluster: POST {e.cluster_url}", err=True)
    click.echo("  (the host's domain is the cluster's, example.com by default: after deploy read status.url)",
               err=True)
