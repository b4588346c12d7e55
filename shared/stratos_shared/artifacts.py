"""Artifacts (datasets, checkpoints, adapters, reports) addressed by URI.

The default backend is the NATS Object Store (``nats-obj://<bucket>/<job_id>/<name>``),
so services on different machines share no disk; ``file://`` is the
alternative for a single host. Every artifact belongs to one job: names are
checked so that no input can escape its job's folder or the store.
Directories (model adapters, checkpoints) travel as tar.gz archives.

A store writes one bucket (the control plane's ``stratos-artifacts``, or a server's own ``stratos-srv-<id>``) and
reads what a URI names in any shared bucket (the control one and every server's), since a URI always carries its
bucket: a server resumes from the checkpoints another server wrote, a deployer serves a model trained elsewhere.
A server's key bucket (``stratos-key-<id>``) is read only by a store that writes it: no URI taken from an event or
a report can make a reader fetch an endpoint key.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import tarfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from stratos_shared.bus.names import ARTIFACTS_BUCKET, SERVER_ARTIFACTS_PREFIX
from stratos_shared.errors import ArtifactError

SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def artifact_key(job_id: str, name: str) -> str:
    """`<job_id>/<name>` after checking every segment: no '..', no absolute paths, no odd characters."""
    segments = [job_id, *name.split("/")]
    for segment in segments:
        if not SEGMENT.fullmatch(segment) or segment in (".", "..") or ".." in segment:
            raise ArtifactError(f"artifact name {name!r} for job {job_id!r} is not allowed (segment {segment!r})")
    return "/".join(segments)


class ArtifactStore(Protocol):
    """Where stages put and get artifacts; URIs are what events carry."""

    async def put_bytes(self, job_id: str, name: str, data: bytes) -> str: ...

    async def get_bytes(self, uri: str) -> bytes: ...

    async def exists(self, uri: str) -> bool: ...

    def uri_for(self, job_id: str, name: str) -> str:
        """The URI an artifact has, or will have once put (in the bucket this store writes)."""
        ...

    def in_bucket(self, bucket: str) -> ArtifactStore:
        """The same store writing (and naming URIs in) `bucket`: another server's, the control plane's, a key bucket."""
        ...


BUCKET = re.compile(r"^[A-Za-z0-9_-]{1,160}$")


def shared_bucket(bucket: str) -> bool:
    """Whether any reader may fetch from `bucket`: the control plane's, or a server's artifacts (not its keys)."""
    return bucket == ARTIFACTS_BUCKET or (
        bucket.startswith(SERVER_ARTIFACTS_PREFIX) and BUCKET.fullmatch(bucket) is not None
    )


def check_bucket(bucket: str) -> str:
    if not BUCKET.fullmatch(bucket):
        raise ArtifactError(f"{bucket!r} is not an artifact bucket name")
    return bucket


async def put_file(store: ArtifactStore, job_id: str, name: str, path: Path) -> str:
    return await store.put_bytes(job_id, name, await asyncio.to_thread(path.read_bytes))


async def get_file(store: ArtifactStore, uri: str, dest: Path) -> Path:
    data = await store.get_bytes(uri)
    await asyncio.to_thread(_write, dest, data)
    return dest


def _write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)


async def put_dir(store: ArtifactStore, job_id: str, name: str, directory: Path) -> str:
    """Store a directory (an adapter, a checkpoint) as one tar.gz artifact."""
    return await store.put_bytes(job_id, name, await asyncio.to_thread(_pack, directory))


def _pack(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(directory, arcname=".")
    return buffer.getvalue()


async def get_dir(store: ArtifactStore, uri: str, dest: Path) -> Path:
    """Unpack a directory artifact into `dest`, refusing members that would land outside it."""
    data = await store.get_bytes(uri)
    await asyncio.to_thread(_unpack, data, dest)
    return dest


def _unpack(data: bytes, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        archive.extractall(dest, filter="data")


class NatsArtifactStore:
    """Artifacts in JetStream Object Store buckets: writes to `bucket` (default ``stratos-artifacts``), reads from
    it and from every shared bucket."""

    scheme = "nats-obj"

    def __init__(self, js: JetStreamContext, bucket: str = ARTIFACTS_BUCKET) -> None:
        self.js = js
        self.bucket = check_bucket(bucket)

    def in_bucket(self, bucket: str) -> NatsArtifactStore:
        return NatsArtifactStore(self.js, bucket)

    def uri(self, key: str) -> str:
        return f"{self.scheme}://{self.bucket}/{key}"

    def uri_for(self, job_id: str, name: str) -> str:
        return self.uri(artifact_key(job_id, name))

    def _locate(self, uri: str) -> tuple[str, str]:
        """The bucket and key `uri` names, refused unless this store may read that bucket."""
        parsed = urlparse(uri)
        bucket = parsed.netloc
        if parsed.scheme != self.scheme or not (bucket == self.bucket or shared_bucket(bucket)):
            raise ArtifactError(f"{uri[:200]!r} is not a Stratos artifact this store may read")
        job_id, _, name = parsed.path.lstrip("/").partition("/")
        return bucket, artifact_key(job_id, name)

    async def _bucket(self, bucket: str) -> ObjectStore:
        try:
            return await self.js.object_store(bucket)
        except NotFoundError:
            raise ArtifactError(f"artifact bucket {bucket} does not exist") from None

    async def put_bytes(self, job_id: str, name: str, data: bytes) -> str:
        key = artifact_key(job_id, name)
        store = await self._bucket(self.bucket)
        await store.put(key, data)
        return self.uri(key)

    async def get_bytes(self, uri: str) -> bytes:
        bucket, key = self._locate(uri)
        store = await self._bucket(bucket)
        try:
            result = await store.get(key)
        except ObjectNotFoundError:
            raise ArtifactError(f"artifact {uri} does not exist") from None
        return bytes(result.data or b"")

    async def exists(self, uri: str) -> bool:
        bucket, key = self._locate(uri)
        try:
            store = await self._bucket(bucket)
            await store.get_info(key)
        except (ObjectNotFoundError, ArtifactError):
            return False
        return True


class FileArtifactStore:
    """Artifacts under a local directory (single-host deployments): one folder per bucket, read as NATS's are."""

    def __init__(self, root: Path, bucket: str = ARTIFACTS_BUCKET) -> None:
        self.root = root.resolve()
        self.bucket = check_bucket(bucket)

    def in_bucket(self, bucket: str) -> FileArtifactStore:
        return FileArtifactStore(self.root, bucket)

    def uri_for(self, job_id: str, name: str) -> str:
        return (self.root / self.bucket / artifact_key(job_id, name)).as_uri()

    def _path(self, uri: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ArtifactError(f"{uri!r} is not a file:// artifact")
        path = Path(parsed.path).resolve()
        if not path.is_relative_to(self.root):
            raise ArtifactError(f"{uri!r} is outside the artifact store {self.root}")
        bucket, _, key = str(path.relative_to(self.root)).partition("/")
        if not (bucket == self.bucket or shared_bucket(bucket)):
            raise ArtifactError(f"{uri!r} is not an artifact this store may read")
        job_id, _, name = key.partition("/")
        artifact_key(job_id, name)
        return path

    async def put_bytes(self, job_id: str, name: str, data: bytes) -> str:
        path = self.root / self.bucket / artifact_key(job_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_bytes(data)
        temporary.replace(path)
        return path.as_uri()

    async def get_bytes(self, uri: str) -> bytes:
        path = self._path(uri)
        if not path.exists():
            raise ArtifactError(f"artifact {uri} does not exist")
        return path.read_bytes()

    async def exists(self, uri: str) -> bool:
        return self._path(uri).exists()
