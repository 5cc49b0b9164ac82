# mar-build's python runtime (the handlers in kserve's ModelServer, no Java), written by `mar-build image`.
# Python 3.11 on manylinux_2_36_x86_64; every pin in requirements.txt is resolved for it.
#   docker build -t REGISTRY/REPOSITORY:TAG . && docker push REGISTRY/REPOSITORY:TAG    (or podman build / push)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# torch's CPU build first, from PyTorch's index (PyPI's torch brings the CUDA libraries: gigabytes a CPU pod never
# uses); requirements.txt names the same version, which pip then finds installed. Another build:
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX}" torch==2.13.0

COPY requirements.txt /opt/mar-build/requirements.txt
RUN pip install -r /opt/mar-build/requirements.txt && pip check

# mar-build's own package (toolkit/, with its handlers and templates), as it was when the layout was built.
COPY mar-build/ /opt/mar-build/
ENV PYTHONPATH=/opt/mar-build
RUN python -c "import toolkit._runtime.server"

# The user the runtime's securityContext runs as (runAsUser: 1000, runAsNonRoot), with a writable home;
# /tmp stays writable for everyone (the archives are unpacked there: /mnt/models may be read-only).
RUN useradd --uid 1000 --user-group --create-home --home-dir /home/mar-build --shell /usr/sbin/nologin mar-build \
 && chmod 1777 /tmp
ENV HOME=/home/mar-build \
    HF_HUB_OFFLINE=1

USER 1000:1000
WORKDIR /home/mar-build
EXPOSE 8080
ENTRYPOINT ["python","-m","toolkit._runtime"]
CMD ["--layout","/mnt/models","--http-port","8080","--host","0.0.0.0"]
