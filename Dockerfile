# salescoach: `salescoach serve` (Slack, Telegram, /healthz, /metrics) on port 8080.
# Without DATABASE_URL it keeps a SQLite file in /data; docker-compose.yml wires PostgreSQL.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group salescoach \
 && mkdir /data \
 && chown salescoach:salescoach /data

WORKDIR /src
# README.md is the package's long description (pyproject `readme`), so the build needs it.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY dialogs ./dialogs
COPY handlers ./handlers
COPY store ./store
# Installed as root into the system site-packages; the process runs unprivileged below.
RUN pip install . && rm -rf /src

WORKDIR /data
VOLUME ["/data"]
USER salescoach

ENV HOST=0.0.0.0 \
    PORT=8080
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]

CMD ["salescoach", "serve"]
