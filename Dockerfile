# syntax=docker/dockerfile:1
# orb-learning: the CLI, the refresher, the MCP and OTLP servers, in one image that never
# downloads at run time: the package and its migrations, CPU torch, the embedding model's
# weights and its ONNX export are all installed at build time (docs/docker-compose.md).
#   docker build -t orb-learning:0.2.0 .
#   docker run --rm orb-learning:0.2.0 --help

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# 1. The wheel, built from the source (it carries the migrations as orb_learning/_alembic).
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY alembic ./alembic
COPY orb_learning ./orb_learning
RUN pip wheel --no-deps --wheel-dir /wheels .

# 2. A virtual environment: CPU torch first (sentence-transformers reuses it), then the wheel
#    and its dependencies (compiled to bytecode by pip: the venv is read-only at run time).
#    Only /opt/venv leaves this stage: no wheel, no pip cache.
FROM ${PYTHON_IMAGE} AS venv
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
    && pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY --from=wheel /wheels /wheels
RUN pip install /wheels/*.whl

# 3. The image: the environment, a user, and the model's export baked by deploy/image/bake.py
#    (the steps tests/test_container.py runs on the same wheel).
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="orb-learning" \
      org.opencontainers.image.description="Learning-analytics store for AI coding-agent orchestrators, on PostgreSQL + pgvector" \
      org.opencontainers.image.version="0.2.0" \
      org.opencontainers.image.licenses="MIT"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ORB_LEARNING_EMBEDDING_CACHE=/opt/orb-learning/onnx
COPY --from=venv /opt/venv /opt/venv
COPY deploy/image/bake.py deploy/image/healthcheck.py /opt/orb-learning/
RUN python /opt/orb-learning/bake.py \
    && groupadd --system --gid 10001 orb \
    && useradd --system --uid 10001 --gid orb --create-home --home-dir /home/orb orb \
    && install -d -o orb -g orb /var/lib/orb-learning /var/lib/orb-learning/data
# The export is root's and read-only to the user: a container loads it, never rewrites it.
# Numeric, so that runAsNonRoot-style checks can verify it: 10001 is orb, user and group.
USER 10001:10001
# Relative paths (the OTLP spool's data/otlp-spool/) land here: a volume keeps them.
WORKDIR /var/lib/orb-learning
EXPOSE 8000 4318
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/orb-learning/healthcheck.py"]
ENTRYPOINT ["orb-learning"]
CMD ["--help"]
