"""What a torch file needs from the torch that loads it, read from the file (torch itself is not imported).

A file written by ``torch.save`` or ``torch.jit.save`` is a zip with a ``version`` (or ``.data/version``) record: the
file format version, which torch checks against the highest it reads (caffe2/serialize/versions.h,
kMaxSupportedFileFormatVersion: 0xA from torch 1.11 to today's, so every torch in the images reads up to 10).
Tensors of a dtype newer than the reading torch are pickled as ``torch <dtype>`` globals that it cannot resolve.
The image's torch 2.1 cannot be installed here cheaply (no wheel for this machine's Python 3.11 on its disk), so
these records are what decides; TorchScript code that calls operators newer than the image's torch is not seen.
"""

from __future__ import annotations

import pickletools
import zipfile
from dataclasses import dataclass

MAX_FILE_FORMAT = 10  # kMaxSupportedFileFormatVersion in torch 2.0 ... 2.13
# The torch release that introduced each dtype a state_dict may hold (torch/csrc/utils/tensor_dtypes.cpp history).
DTYPE_SINCE = {
    "float8_e4m3fn": "2.1", "float8_e5m2": "2.1", "float8_e4m3fnuz": "2.2", "float8_e5m2fnuz": "2.2",
    "uint16": "2.3", "uint32": "2.3", "uint64": "2.3", "float8_e8m0fnu": "2.7", "float4_e2m1fn_x2": "2.8",
}
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pt2", ".ts", ".torchscript")


@dataclass(frozen=True)
class TorchFile:
    """One torch file in an archive: its kind (torchscript, state, export, legacy) and what it needs."""

    name: str
    kind: str
    format_version: int | None
    dtypes: tuple[str, ...]

    def needs(self) -> str | None:
        """The lowest torch (major.minor) that reads it, from its dtypes; None when any torch 2 does."""
        wanted = [DTYPE_SINCE[d] for d in self.dtypes if d in DTYPE_SINCE]
        return max(wanted, key=lambda v: tuple(int(p) for p in v.split("."))) if wanted else None


def read_torch_file(zf: zipfile.ZipFile, member: str) -> TorchFile | None:
    """Read ``member`` of the open archive ``zf``; None when it is not a torch file."""
    with zf.open(member) as raw:
        head = raw.read(4)
    if head[:2] == b"\x80\x02" or head[:1] == b"\x80":
        return TorchFile(member, "legacy", None, ())  # torch.save before 1.6: a plain pickle, every torch reads it
    if head != b"PK\x03\x04":
        return None
    with zf.open(member) as raw, zipfile.ZipFile(raw) as inner:  # the member is seekable: nothing big is read
        return _read_zip(member, inner)


def _read_zip(member: str, inner: zipfile.ZipFile) -> TorchFile:
    names = inner.namelist()
    records = {n.split("/", 1)[1]: n for n in names if "/" in n}
    if "archive_format" in records or any(n.split("/", 1)[-1].startswith("models/") for n in names):
        return TorchFile(member, "export", None, ())
    version_name = records.get(".data/version") or records.get("version")
    version = int(inner.read(version_name).strip() or 0) if version_name else None
    kind = "torchscript" if any(r.startswith("code/") for r in records) else "state"
    dtypes: set[str] = set()
    if "data.pkl" in records:
        for op, arg, _ in pickletools.genops(inner.read(records["data.pkl"])):
            if op.name == "GLOBAL" and isinstance(arg, str) and arg.startswith("torch "):
                dtypes.add(arg.split(" ", 1)[1])
            elif op.name in ("SHORT_BINUNICODE", "BINUNICODE") and arg in DTYPE_SINCE:
                dtypes.add(str(arg))
    return TorchFile(member, kind, version, tuple(sorted(d for d in dtypes if d in DTYPE_SINCE)))
