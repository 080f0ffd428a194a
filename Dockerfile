# The Switchyard control plane: one image for web, Celery worker, Celery beat and the
# demo fleet (docker-compose.yml picks the command). Configuration comes from the
# environment only; see README.md "Configuration".
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# Hashed, compressed static files at build time; var/ is the one writable directory
# (SQLite and the filesystem broker when no DATABASE_URL/REDIS_URL is given).
RUN DEBUG=0 SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v 0 \
    && useradd --system --uid 1000 --home-dir /app --shell /usr/sbin/nologin switchyard \
    && mkdir -p /app/var && chown switchyard /app/var
USER switchyard
EXPOSE 8000
# The web command; the compose file runs the worker, beat and demo with other commands
# (and their own health checks).
CMD ["sh", "-c", "exec python -m controlplane.serve --host 0.0.0.0 --port 8000 --workers ${WEB_WORKERS:-4} --proxy-headers --forwarded-allow-ips '*'"]
# /healthz with a Host that ALLOWED_HOSTS accepts (its first entry, a wildcard's domain).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=4 \
    CMD ["python", "-c", "import os, urllib.request as u; h = os.environ.get('ALLOWED_HOSTS', '').split(',')[0].lstrip('*.') or 'localhost'; u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': h}), timeout=4)"]
