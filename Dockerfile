# The control plane's one image: web (uvicorn's workers), RQ worker, ingester, and the devnet (profile "devnet").
# Configuration comes only from the environment at run time (see docker-compose.yml); nothing secret is baked in.

# npm dependencies (anvil binary for this platform, solc-js) from the lock file.
FROM node:20-bookworm-slim AS node_modules
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=controlplane.settings

# nodejs: to recompile the contracts (`node devnet/contracts/compile.mjs`); socat: exposes the devnet's anvil,
# which listens on 127.0.0.1 only, to the other containers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs socat \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system app && useradd --system --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml ./
COPY controlplane/__init__.py controlplane/__init__.py
COPY monitoring/__init__.py monitoring/__init__.py
COPY recovery/__init__.py recovery/__init__.py
COPY devnet/__init__.py devnet/__init__.py
RUN pip install --no-cache-dir .

COPY --from=node_modules /app/node_modules ./node_modules
COPY . .

# collectstatic needs settings but no secret and no database: DEBUG=1 only for this build step.
RUN DEBUG=1 python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p /app/.devnet \
    && chown -R app:app /app/.devnet

USER app
EXPOSE 8000
# uvicorn with WEB_WORKERS worker processes (default: one per core), serving HTTP and the live sockets.
CMD ["python", "-m", "controlplane.serve", "--host", "0.0.0.0", "--port", "8000"]
