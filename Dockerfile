# The ratiowatch image: one image for every ratiowatch service in docker-compose.yml (the roles
# engine, notify, web and source, and the one-shot topics job), each a different command. Alone,
# `docker run --rm ratiowatch` is the self-contained demo: an embedded broker, every role and the
# simulated market in one process (`ratiowatch run`).
#
# The base is pinned to a patch release so that a rebuild months later runs the same Python.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what `pip install` needs (pyproject names README.md as the long description); every
# dependency ships as a manylinux wheel, so no compiler is needed. Tests, docs, the deploy files
# and the history stay out of the image (.dockerignore).
COPY pyproject.toml README.md /src/
COPY ratiowatch/ /src/ratiowatch/
COPY streams/ /src/streams/
COPY agents/ /src/agents/
COPY notifiers/ /src/notifiers/
COPY configs/ /src/configs/
RUN pip install /src && rm -rf /src

# An unprivileged user, with faust's data dir (RATIOWATCH_DATADIR; by default a folder in the
# working directory) at a fixed path it owns, and matplotlib's cache in /tmp so that a read-only
# root filesystem (`read_only: true` in compose) still works.
RUN useradd --system --uid 10001 --create-home --home-dir /home/ratiowatch ratiowatch \
    && mkdir -p /var/lib/ratiowatch \
    && chown ratiowatch /var/lib/ratiowatch
ENV RATIOWATCH_DATADIR=/var/lib/ratiowatch \
    MPLCONFIGDIR=/tmp/matplotlib
USER ratiowatch
WORKDIR /home/ratiowatch

# The roles' --http ports (/metrics, /healthz, /readyz; the web role's page, /status and /ws):
# web 8765, engine 9470, notify 9471, source 9473. Health probes use Python (no curl in the image).
EXPOSE 8765 9470 9471 9473
ENTRYPOINT ["ratiowatch"]
CMD ["run"]
