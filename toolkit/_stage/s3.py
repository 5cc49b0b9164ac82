"""Staging to ``s3://BUCKET/PREFIX`` through boto3: parallel multipart uploads streamed from disk.

Checksums: each object carries ``x-amz-meta-sha256``, the SHA-256 of its content, because an ETag is not a
content hash once an upload is multipart (it is the MD5 of the parts' MD5s). An object is skipped when its size
and stored SHA-256 match the local file. The plan costs one ListObjectsV2 under PREFIX/ (sizes), one HEAD per
object of the same size as its local file (the metadata; ListObjectsV2 does not return it), one listing of
sibling prefixes and one ListMultipartUploads: a handful of requests however large the layout.

Order: archives (in parallel), then ``config/config.properties``, then deletions. An interrupted run leaves the
previous config in place, naming archives that are all still there; the next run skips what finished and
uploads the rest. Multipart uploads a killed run left open under our keys are aborted at the next run.

Deletions: an archive under PREFIX/model-store/ that the new config does not name is deleted after the config
is written when this layout put it there: the previous config named it, or its metadata says
``x-amz-meta-staged-by: mar-build``. Other objects are left alone (with a warning: the storage-initializer
downloads everything under the prefix).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from s3transfer.subscribers import BaseSubscriber

from .._errors import StagingError
from .._uri import StorageUri
from .base import (
    CONFIG_KEY,
    METRICS_KEY,
    LocalFile,
    Meter,
    Progress,
    StagedFile,
    StageResult,
    is_archive_key,
    referenced_archives,
)

log = logging.getLogger("toolkit.stage")

SHA256_META = "sha256"
MARKER_META = "staged-by"
MARKER = "mar-build"


def _plan(s3: S3Destination, files: list[LocalFile], listing: dict[str, int]) -> list[StagedFile]:
    same_size = [f for f in files if listing.get(f.relpath) == f.size]
    stored = dict(zip((f.relpath for f in same_size), s3.head_many([f.relpath for f in same_size]), strict=True))
    plan: list[StagedFile] = []
    for f in files:
        if f.relpath not in listing:
            action, reason = "upload", "new"
        elif f.relpath not in stored:
            action, reason = "upload", "changed"
        elif stored[f.relpath].get(SHA256_META) == f.sha256:
            action, reason = "skip", "unchanged"
        elif SHA256_META not in stored[f.relpath]:
            action, reason = "upload", "no checksum stored with it"
        else:
            action, reason = "upload", "changed"
        plan.append(StagedFile(f.relpath, action, f.size, reason, f.sha256))  # type: ignore[arg-type]
    return plan


def _deletions(
    s3: S3Destination, files: list[LocalFile], listing: dict[str, int], warnings: list[str]
) -> list[StagedFile]:
    wanted = {f.relpath for f in files}
    candidates = sorted(rel for rel in listing if is_archive_key(rel) and rel not in wanted)
    if not candidates:
        return []
    previous = referenced_archives(s3.get_text(CONFIG_KEY)) if CONFIG_KEY in listing else set()
    unnamed = [rel for rel in candidates if rel.split("/", 1)[1] not in previous]
    marked = {rel for rel, meta in zip(unnamed, s3.head_many(unnamed), strict=True) if meta.get(MARKER_META) == MARKER}
    out: list[StagedFile] = []
    left: list[str] = []
    for rel in candidates:
        if rel not in unnamed:
            out.append(StagedFile(rel, "delete", listing[rel], "no longer in config.properties"))
        elif rel in marked:
            out.append(StagedFile(rel, "delete", listing[rel], "staged by mar-build, not in the new config.properties"))
        else:
            left.append(rel)
    if left:
        warnings.append(
            f"left in place, not staged by mar-build and not named by the config: {', '.join(left)} "
            "(the storage-initializer still downloads them; remove them by hand if they are yours to remove)"
        )
    return out


class _Subscriber(BaseSubscriber):
    def __init__(self, meter: Meter) -> None:
        self._meter = meter

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._meter.add(bytes_transferred)

    def on_done(self, future: Any, **kwargs: Any) -> None:
        self._meter.poke()


class S3Destination:
    """One S3 client for one target prefix; keys are given relative to the prefix (``model-store/x.mar``).

    Constructing it sets up the client (no request yet); ``stage`` plans and uploads.
    """

    def __init__(self, target: StorageUri, *, endpoint_url: str | None, profile: str | None,
                 region: str | None, dry_run: bool, concurrency: int, part_size: int) -> None:
        self.target = target
        self.bucket = target.root
        self.dry_run = dry_run
        self.concurrency = concurrency
        self.part_size = part_size
        # boto3 reads AWS_ENDPOINT_URL itself, but resolving it here lets errors and hints name the endpoint.
        self.endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if self.endpoint and not self.endpoint.startswith(("http://", "https://")):
            raise StagingError(
                f"endpoint URL {self.endpoint!r} has no http:// or https://", uri=target.uri,
                hint="e.g. --s3-endpoint http://minio-service.kubeflow:9000",
            )
        config = Config(
            max_pool_connections=max(10, concurrency + 2),
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=10,
            read_timeout=120,
            user_agent_extra="mar-build",
            # S3-compatible stores (MinIO, Ceph) want path-style requests; so does an IP address.
            s3={"addressing_style": "path"} if self.endpoint else None,
        )
        try:
            core = botocore.session.get_session()
            core.register_component("data_loader", _shared_loader())
            session = boto3.session.Session(botocore_session=core, profile_name=profile, region_name=region)
            self.client = session.client("s3", endpoint_url=self.endpoint, config=config)
            credentials = session.get_credentials()
        except ProfileNotFound as exc:
            raise StagingError(f"AWS profile {profile!r} is not configured", uri=target.uri,
                               hint="list profiles with `aws configure list-profiles`, or drop --profile") from exc
        except (ValueError, BotoCoreError) as exc:
            raise StagingError(f"cannot set up an S3 client: {exc}", uri=target.uri) from exc
        if credentials is None:
            raise StagingError(
                "no S3 credentials found", uri=target.uri,
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile NAME",
            )

    def stage(self, files: list[LocalFile], *, progress: Progress | None) -> StageResult:
        """Plan and (unless a dry run) upload ``files`` under the prefix; see the module docstring."""
        target, dry_run = self.target, self.dry_run
        warnings: list[str] = []
        with self.translating("reading the bucket"):
            listing = self.list_prefix()
            warnings += self.sibling_warnings()
            plan = _plan(self, files, listing)
            deletions = _deletions(self, files, listing, warnings)
            open_uploads = self.open_uploads()
        strays = sorted(rel for rel in listing if rel not in (CONFIG_KEY, METRICS_KEY) and not is_archive_key(rel))
        if strays:
            shown = ", ".join(strays[:5]) + (f" and {len(strays) - 5} more" if len(strays) > 5 else "")
            warnings.append(
                f"{target.uri}/ also holds {shown}: not part of a layout, left alone; the storage-initializer "
                "downloads them into /mnt/models too"
            )
        result = StageResult(target.uri, target.uri, plan + deletions, dry_run=dry_run, warnings=warnings,
                             aborted_uploads=[key for key, _ in open_uploads], endpoint_url=self.endpoint)
        if dry_run:
            return result

        with self.translating("aborting unfinished uploads"):
            for key, upload_id in open_uploads:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                log.info("aborted an unfinished multipart upload of %s left by an interrupted run", key)
        by_rel = {f.relpath: f for f in files}
        uploads = [by_rel[f.path] for f in plan if f.action == "upload"]
        archives = sorted((f for f in uploads if f.relpath != CONFIG_KEY), key=lambda f: f.size, reverse=True)
        meter = Meter(sum(f.size for f in uploads), progress)
        with self.translating("uploading", interrupted=True):
            if archives:
                self.upload(archives, meter, self.part_size)
            if CONFIG_KEY in by_rel and by_rel[CONFIG_KEY] in uploads:
                self.put_small(by_rel[CONFIG_KEY])
                meter.add(by_rel[CONFIG_KEY].size)
                meter.report()
        with self.translating("deleting archives the new config no longer names"):
            self.delete([f.path for f in deletions])
        return result

    def key(self, rel: str) -> str:
        return self.target.key(rel)

    def _rel(self, key: str) -> str:
        return key[len(self.target.path) + 1:] if self.target.path else key

    def list_prefix(self) -> dict[str, int]:
        """Every object under PREFIX/: relative key -> size."""
        prefix = self.target.path + "/" if self.target.path else ""
        out: dict[str, int] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", ()):
                out[self._rel(obj["Key"])] = int(obj["Size"])
        return out

    def sibling_warnings(self) -> list[str]:
        # The storage-initializer lists with Prefix=PREFIX, without a trailing slash (kserve_storage
        # _download_s3), so s3://b/bert also fetches s3://b/bert-large/... into /mnt/models/-large/...
        prefix = self.target.path
        if not prefix:
            return []
        page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, Delimiter="/", MaxKeys=20)
        others = [p["Prefix"] for p in page.get("CommonPrefixes", ()) if p["Prefix"] != prefix + "/"]
        others += [o["Key"] for o in page.get("Contents", ())]
        if not others:
            return []
        shown = ", ".join(f"s3://{self.bucket}/{k}" for k in others[:3])
        return [
            f"KServe's storage-initializer downloads every key that starts with {prefix!r}, so it will also "
            f"fetch {shown} into /mnt/models (under their names minus {prefix!r}); "
            f"stage to a prefix no other key starts with"
        ]

    def head_many(self, rels: list[str]) -> list[dict[str, str]]:
        """The user metadata of each object, fetched in parallel (a HEAD each)."""
        if not rels:
            return []

        def head(rel: str) -> dict[str, str]:
            return dict(self.client.head_object(Bucket=self.bucket, Key=self.key(rel)).get("Metadata", {}))

        if len(rels) == 1:
            return [head(rels[0])]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(rels))) as pool:
            return list(pool.map(head, rels))

    def get_text(self, rel: str) -> str:
        body = self.client.get_object(Bucket=self.bucket, Key=self.key(rel))["Body"]
        return str(body.read().decode("utf-8", errors="replace"))

    def open_uploads(self) -> list[tuple[str, str]]:
        """Unfinished multipart uploads of layout keys under PREFIX/ (left by a killed run): (key, upload id)."""
        prefix = self.target.path + "/" if self.target.path else ""
        try:
            found: list[tuple[str, str]] = []
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket,
                                                                                     Prefix=prefix):
                for upload in page.get("Uploads", ()):
                    rel = self._rel(upload["Key"])
                    if rel == CONFIG_KEY or is_archive_key(rel):
                        found.append((upload["Key"], upload["UploadId"]))
            return found
        except ClientError as exc:
            # Some S3-compatible stores do not implement this listing; it only serves cleanup.
            log.debug("cannot list multipart uploads: %s", exc)
            return []

    def _extra(self, f: LocalFile) -> dict[str, Any]:
        return {"Metadata": {SHA256_META: f.sha256, MARKER_META: MARKER}}

    def upload(self, files: Iterable[LocalFile], meter: Meter, part_size: int) -> None:
        """Upload files in parallel (multipart above ``part_size``), streaming from disk; cancel all on failure."""
        config = TransferConfig(
            multipart_threshold=part_size, multipart_chunksize=part_size, max_concurrency=self.concurrency,
            use_threads=True, preferred_transfer_client="classic",
        )
        # Leaving the manager's block with an exception cancels every transfer and aborts open multipart uploads.
        with create_transfer_manager(self.client, config) as manager:
            futures = [
                manager.upload(str(f.path), self.bucket, self.key(f.relpath), extra_args=self._extra(f),
                               subscribers=[_Subscriber(meter)])
                for f in files
            ]
            meter.wait(futures)

    def put_small(self, f: LocalFile) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key(f.relpath), Body=f.path.read_bytes(),
                               **self._extra(f))

    def delete(self, rels: list[str]) -> None:
        for start in range(0, len(rels), 1000):
            batch = [{"Key": self.key(rel)} for rel in rels[start:start + 1000]]
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            errors = answer.get("Errors", [])
            if errors:
                first = errors[0]
                raise StagingError(
                    f"could not delete {len(errors)} stale archive(s), e.g. {first.get('Key')}: "
                    f"{first.get('Code')} {first.get('Message')}", uri=self.target.uri,
                    hint="the new config is in place and does not name them; delete them by hand",
                )
            for item in batch:
                log.info("deleted s3://%s/%s", self.bucket, item["Key"])

    def translating(self, doing: str, *, interrupted: bool = False) -> _Translate:
        return _Translate(self, doing, interrupted)


_LOADER: botocore.loaders.Loader | None = None


def _shared_loader() -> botocore.loaders.Loader:
    # Each new botocore session parses endpoints.json and the S3 model again (~0.2 s); one loader shared by
    # the sessions of this process parses them once (credentials stay per session, read at each stage()).
    global _LOADER
    if _LOADER is None:
        _LOADER = botocore.loaders.create_loader()
    return _LOADER


class _Translate:
    """Turns botocore errors into StagingError with the S3 error code and the fix (never the credentials)."""

    def __init__(self, s3: S3Destination, doing: str, interrupted: bool) -> None:
        self.s3 = s3
        self.doing = doing
        self.interrupted = interrupted

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None or not isinstance(exc, (ClientError, BotoCoreError)):
            return
        message, hint = describe_s3_error(exc, bucket=self.s3.bucket, endpoint=self.s3.endpoint)
        if self.interrupted:
            hint += (
                "; nothing stale is referenced: config.properties was not updated and nothing was deleted, "
                "so running stage again finishes the upload"
            )
        raise StagingError(f"staging to {self.s3.target.uri} failed while {self.doing}: {message}",
                           uri=self.s3.target.uri, hint=hint) from exc


def describe_s3_error(exc: BaseException, *, bucket: str, endpoint: str | None) -> tuple[str, str]:
    """(message, hint) for a botocore error: its S3 error code and what fixes it."""
    where = f" --endpoint-url {endpoint}" if endpoint else ""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # HEAD answers carry no body: only the status tells what went wrong.
        code = {"404": "NotFound", "403": "AccessDenied", "400": "BadRequest", "301": "PermanentRedirect"}.get(
            code, code)
        text = str(error.get("Message") or "").strip()[:300]
        message = f"{code}" + (f" ({text})" if text else "") + (f", HTTP {status}" if status else "")
        hints = {
            "NoSuchBucket": f"create it with `aws s3 mb s3://{bucket}{where}`, or check the bucket name",
            "AccessDenied": f"the credentials may not list, read, write or delete in s3://{bucket}: grant "
                            "s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject, "
                            "s3:AbortMultipartUpload and s3:ListBucketMultipartUploads on the prefix",
            "InvalidAccessKeyId": "the access key id is unknown to this endpoint: check AWS_ACCESS_KEY_ID or the "
                                  "profile, and that the endpoint is the store the key belongs to",
            "SignatureDoesNotMatch": "the secret key does not match the access key id: check "
                                     "AWS_SECRET_ACCESS_KEY or the profile",
            "ExpiredToken": "the session token has expired: refresh the credentials",
            "InvalidToken": "the session token is invalid: refresh the credentials",
            "PermanentRedirect": "the bucket lives in another region: pass --s3-region REGION",
            "AuthorizationHeaderMalformed": "the bucket lives in another region: pass --s3-region REGION",
            "InvalidBucketName": "bucket names are 3-63 characters of lowercase letters, digits, '.' and '-'",
            "NotFound": f"s3://{bucket} or an object in it was not found: check the bucket, or create it with "
                        f"`aws s3 mb s3://{bucket}{where}`",
        }
        return message, hints.get(code, "see the S3 error code above")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return "no usable credentials", "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile NAME"
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        target = endpoint or "the AWS S3 endpoint"
        return (
            f"cannot reach {target} ({type(exc).__name__})",
            "check --s3-endpoint (or AWS_ENDPOINT_URL): scheme, host and port of the S3 endpoint as seen from "
            "here, e.g. http://minio-service.kubeflow:9000",
        )
    return f"{type(exc).__name__}: {exc}", "see the error above"
