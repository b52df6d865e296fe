# lifecycled's container image.
#
#   docker build -t lifecycled:0.1.0 .
#
# Two stages: `build` installs the package and its dependencies into a virtualenv; the final
# stage is the same slim Python base with only that virtualenv copied in (no pip, no
# compilers, no source tree). Every dependency ships manylinux wheels for amd64 and arm64,
# so neither stage needs a compiler. Pin the base by digest in your own builds
# (--build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python -m venv /opt/lifecycled
COPY pyproject.toml README.md ./
COPY lifecycled ./lifecycled
# A non-editable install compiles the bytecode now: the final image runs with a read-only
# root filesystem, where Python could not write it. pip and setuptools leave the venv last.
RUN /opt/lifecycled/bin/pip install --no-compile . \
    && /opt/lifecycled/bin/python -m compileall -q /opt/lifecycled/lib \
    && /opt/lifecycled/bin/pip uninstall --yes pip setuptools \
    && /opt/lifecycled/bin/lifecycled --help > /dev/null

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="lifecycled" \
      org.opencontainers.image.description="Drains Kubernetes nodes and ECS container instances before AWS takes the machine away." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric UID/GID, so `runAsNonRoot` can be verified without reading /etc/passwd.
RUN groupadd --system --gid 65532 lifecycled \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin lifecycled
COPY --from=build /opt/lifecycled /opt/lifecycled
ENV PATH=/opt/lifecycled/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
# /metrics, /healthz and /readyz (LIFECYCLED_METRICS_ADDRESS, default 0.0.0.0:9090).
EXPOSE 9090
# No HEALTHCHECK: Kubernetes ignores it (the kubelet runs the chart's liveness and readiness
# probes on /healthz and /readyz), and on ECS a task definition's own healthCheck wins; the
# image carries no curl for one anyway. See docs/deploy.md.
ENTRYPOINT ["lifecycled"]
CMD ["run"]
