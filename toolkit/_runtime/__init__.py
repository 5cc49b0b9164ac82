"""The python runtime: mar-build's own KServe predictor, the same layouts and .mar archives served without Java.

Run as ``python -m toolkit._runtime --layout DIR --http-port N`` (``toolkit.serve(..., runtime="python")`` starts it):
kserve's ModelServer answers v1 and v2 REST (gRPC v2 with ``--grpc-port``), each archive is unpacked once and its
handler runs as TorchServe would run it (``loader.py``, ``context.py``), in process or in ``minWorkers`` worker
processes (``workers.py``), behind an adaptive batcher (``batcher.py``). No Java.

Nothing here imports kserve or torch at package import: the serve room only needs the module's name.
"""

MODULE = "toolkit._runtime"

__all__ = ["MODULE"]
