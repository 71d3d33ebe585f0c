# persona-stream worker image.
#   docker build -t persona-stream .
#   docker run --rm persona-stream --help
# Configuration: mount a YAML file over /etc/persona-stream/config.yaml, or set
# PERSONA_STREAM_<SECTION>__<KEY> environment variables (docs/contracts.md section 5).

# The wheel is built where a C compiler is, so the per-event modules are compiled
# (setup.py, workers/compiled.py); the slim image has none and would install them as
# pure Python. Both stages are the same Debian and the same Python. The build is
# profile-guided (PERSONA_STREAM_PGO, make pgo): its training run imports the
# dependencies, so they are installed here first (nothing compiled) and the wheel is
# built beside them; the build fails unless it was profile-guided.
FROM python:3.11 AS build
WORKDIR /src
# Only what the package build needs (keeps .venv, .git and test data out of the
# layer). README.md* is optional in the build context.
COPY pyproject.toml setup.py README.md* ./
COPY workers ./workers
RUN PERSONA_STREAM_PURE=1 pip install . "setuptools>=68" wheel "Cython>=3.0,<4" \
    && PERSONA_STREAM_PGO=1 pip wheel -v --no-deps --no-build-isolation --wheel-dir /wheels . \
       > /tmp/wheel.log 2>&1 || { tail -n 30 /tmp/wheel.log; exit 1; }; \
    grep 'persona-stream:' /tmp/wheel.log; grep -q 'profile-guided build trained' /tmp/wheel.log

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl \
    && rm -rf /wheels

# Non-root runtime user; state (e.g. RocksDB tables) lives in its home.
RUN groupadd --system --gid 10001 persona \
    && useradd --system --uid 10001 --gid persona --create-home \
       --home-dir /var/lib/persona-stream --shell /usr/sbin/nologin persona \
    && mkdir -p /etc/persona-stream \
    && printf '%s\n' \
       '# persona-stream configuration: built-in defaults apply to every key not set' \
       '# here; any key can also be set with PERSONA_STREAM_<SECTION>__<KEY>.' \
       '{}' > /etc/persona-stream/config.yaml

USER 10001:10001
WORKDIR /var/lib/persona-stream

# Prometheus /metrics, /healthz, /readyz and /personas. The admin pages (9465, with
# identifiers) listen on the container's loopback by default and are not exposed.
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]

ENTRYPOINT ["persona-stream"]
CMD ["worker", "--config", "/etc/persona-stream/config.yaml"]
