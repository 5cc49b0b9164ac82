"""CLI command: render (registered on the group in __init__)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .._render import (
    ACCESS_MODES,
    DEPLOYMENT_MODES,
    MONITORS,
    RUNTIMES,
    SCALE_METRICS,
    Manifests,
    PvcRequest,
    S3Credentials,
    render,
)
from . import cli
from ._options import json_option, key_value_pairs, option, runtime_options, s3_endpoint_option, s3_region_option
from ._output import finish


@cli.command("render")
@click.argument("layout", type=click.Path(path_type=Path))
@click.option("--name", help="InferenceService name (a DNS-1035 label); default: mar.yaml's kserve.name.")
@click.option("--storage-uri", help="Where the layout was staged: pvc://CLAIM/PATH or s3://BUCKET/PREFIX.")
@click.option("-n", "--namespace", help="Kubernetes namespace (Kubeflow: your profile's namespace).")
@click.option("--protocol", type=click.Choice(["v1", "v2", "grpc-v2"]),
              help="KServe protocol version (default v1; grpc-v2: KServe's gRPC v2, with --runtime python).")
@runtime_options(RUNTIMES)
@click.option("--runtime-version",
              help="pytorch/torchserve-kfs image tag, e.g. 0.12.0 (0.12.0-gpu with --gpu); the preflight checks the "
              "layout against what that image ships.")
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
@option("--predictor-timeout", type=click.IntRange(min=1), old=["--timeout"],
        help="The predictor's request timeout in seconds (the InferenceService's spec.predictor.timeout).")
@click.option("--deployment-mode", type=click.Choice(DEPLOYMENT_MODES), help="serving.kserve.io/deploymentMode.")
@click.option("--canary-traffic-percent", type=click.IntRange(0, 100), help="Traffic share of the new revision.")
@click.option("--service-account", help="ServiceAccount the predictor runs as (with S3 options: the one created).")
@click.option("--label", "labels", multiple=True, callback=key_value_pairs, metavar="KEY=VALUE",
              help="Label (repeatable).")
@click.option("--annotation", "annotations", multiple=True, callback=key_value_pairs, metavar="KEY=VALUE",
              help="Annotation (repeatable).")
@click.option("--monitor", type=click.Choice(MONITORS),
              help="How Prometheus finds the pods: annotations (KServe's scraping annotation), podmonitor or "
              "servicemonitor (monitoring.coreos.com/v1, for the Prometheus Operator / kube-prometheus-stack).")
@click.option("--prometheus", is_flag=True, help="Same as --monitor annotations.")
@click.option("--monitor-release", metavar="RELEASE",
              help="The release label on the PodMonitor/ServiceMonitor/PrometheusRule: kube-prometheus-stack's "
              "Helm release name, which its Prometheus selects them by.")
@click.option("--dashboard", is_flag=True,
              help="Also render the Grafana dashboard, a ConfigMap labelled grafana_dashboard: \"1\".")
@click.option("--alerts", is_flag=True, help="Also render the alerting rules, a PrometheusRule.")
@s3_endpoint_option("S3-compatible endpoint as the pod reaches it, e.g. http://minio-service.kubeflow:9000.")
@s3_region_option("S3 region, e.g. us-east-1.")
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
@json_option("the manifests and the model URLs (never the Secret with keys)")
def render_command(
    layout: Path, output: Path | None, s3_secret_file: Path | None, as_json: bool, **options: Any
) -> None:
    """Render the InferenceService (and S3 Secret, ServiceAccount, PVC, ServingRuntime when asked) that serves LAYOUT.

    \b
    mar-build render build/bert --name torchserve -n kubeflow-user-example-com \\
        --storage-uri pvc://leeway/bert --cpu-request 0.5 --memory-request 0.5Gi \\
        --cpu-limit 2 --memory-limit 2Gi -o isvc.yaml
    mar-build render build/bert --name bert --storage-uri pvc://leeway/bert \\
        --runtime python --image ghcr.io/team/mar-build-runtime:1.0 --protocol v2
    mar-build render build/bert --name bert --storage-uri pvc://leeway/bert -n team \\
        --monitor podmonitor --monitor-release kube-prometheus-stack --dashboard --alerts
    """
    if s3_secret_file is not None and output is not None and s3_secret_file.resolve() == output.resolve():
        raise click.UsageError("--s3-secret-file must be another file than -o: keys never go into the manifests")
    if options["pvc_storage_class"] is not None and options["pvc_size"] is None:
        raise click.UsageError("--pvc-storage-class needs --pvc-size")
    if options["prometheus"] and options["monitor"] not in (None, "annotations"):
        raise click.UsageError(
            f"--prometheus means --monitor annotations; it contradicts --monitor {options['monitor']}")
    manifests = render(layout, **_render_arguments(options, keys_from_env=s3_secret_file is not None))
    # render keeps a Secret apart only when it holds keys, which it only reads for --s3-secret-file.
    if manifests.secret is not None and s3_secret_file is not None:
        manifests.secret.write(s3_secret_file)
        click.echo(f"wrote the S3 Secret with your keys to {s3_secret_file} (mode 600): kubectl apply -f it, "
                   "never commit it", err=True)
    if output is not None:
        manifests.write(output)
        click.echo(f"wrote {_kinds(manifests)} to {output}", err=True)
    finish(manifests, as_json=as_json, show=lambda m: _show_manifests(m, on_stdout=output is None))


def _render_arguments(options: dict[str, Any], *, keys_from_env: bool) -> dict[str, Any]:
    """render()'s keyword arguments from the command's options (the others have render's names already)."""
    o = dict(options)
    cpu, memory = o.pop("cpu"), o.pop("memory")
    requests = _table(cpu=o.pop("cpu_request") or cpu, memory=o.pop("memory_request") or memory)
    limits = _table(cpu=o.pop("cpu_limit") or cpu, memory=o.pop("memory_limit") or memory)
    s3 = S3Credentials.from_options(
        endpoint=o.pop("s3_endpoint"), region=o.pop("s3_region"),
        verify_ssl=False if o.pop("s3_no_verify_ssl") else None, anonymous=o.pop("s3_anonymous"),
        keys_from_env=keys_from_env,
    )
    size, storage_class, access_mode = o.pop("pvc_size"), o.pop("pvc_storage_class"), o.pop("pvc_access_mode")
    pvc = PvcRequest(size, storage_class, access_mode) if size is not None else None
    timeout = o.pop("predictor_timeout")
    return {**o, "timeout": timeout, "requests": requests, "limits": limits, "s3": s3, "pvc": pvc}


def _table(**values: str | None) -> dict[str, str]:
    return {k.replace("_", "-"): v for k, v in values.items() if v is not None}


def _kinds(manifests: Manifests) -> str:
    return ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in manifests.documents)


def _show_manifests(manifests: Manifests, *, on_stdout: bool) -> None:
    if on_stdout:
        click.echo(manifests.text, nl=False)
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
