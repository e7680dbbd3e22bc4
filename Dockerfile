FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# collectstatic only needs settings to import: a throw-away key is enough at build time.
RUN DJANGO_SECRET_KEY=build-only-secret-key-not-used-at-runtime-000 python manage.py collectstatic --noinput \
    && useradd --system --home /app mktx && chown -R mktx /app/var
USER mktx

EXPOSE 5000
CMD ["gunicorn", "mktx.wsgi:application", "--bind", "0.0.0.0:5000", "--workers", "3", "--threads", "4", "--keep-alive", "75", "--access-logfile", "-"]
