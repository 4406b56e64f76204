# One image for every iotjobs service; the command picks the service:
#
#   iotjobs-control      the `iot` REST API (port IOTJOBS_CONTROL_PORT, default 8080)
#   iotjobs-dataplane    the device API: MQTT ingress and iot-jobs-data (IOTJOBS_DATAPLANE_PORT, 8081)
#   iotjobs-projector    folds the event log into the Postgres read models
#   iotjobs-admin        migrate | topics | rebuild
#
# Configuration comes only from IOTJOBS_* environment variables (iotjobs/runtime/settings.py).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, read from pyproject.toml, so a source change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The source tree keeps the repository layout: iotjobs/runtime/pg.py finds the SQL files at
# Path(__file__).parents[2] / "migrations", i.e. /app/migrations. The editable install makes the
# console scripts import the packages from /app (a regular install would copy them into
# site-packages, where parents[2] has no migrations/ next to it).
COPY iotjobs/ /app/iotjobs/
COPY services/ /app/services/
COPY migrations/ /app/migrations/
RUN pip install --no-deps -e . \
    && cd / \
    && python -c "from iotjobs.runtime.pg import MIGRATIONS; assert sorted(MIGRATIONS.glob('*.sql')), MIGRATIONS; print('migrations at', MIGRATIONS)" \
    && printf '%s\n' \
        'iotjobs: one image, the command picks the service' \
        '' \
        '  iotjobs-control                 the iot REST API (IOTJOBS_CONTROL_PORT, default 8080)' \
        '  iotjobs-dataplane               the device API: MQTT + iot-jobs-data (IOTJOBS_DATAPLANE_PORT, default 8081)' \
        '  iotjobs-projector               events -> Postgres read models' \
        '  iotjobs-admin migrate|topics|rebuild' \
        '' \
        'Configuration: IOTJOBS_* environment variables, see iotjobs/runtime/settings.py.' \
        'Example: docker run --rm -e IOTJOBS_KAFKA_BOOTSTRAP=kafka:9092 <image> iotjobs-admin topics' \
        > /app/USAGE

# Non-root, by number so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 iotjobs \
    && useradd --system --uid 10001 --gid iotjobs --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin iotjobs
USER 10001:10001

EXPOSE 8080 8081

# No ENTRYPOINT: `command:` (compose) or `command:`/`args` (Kubernetes) names the console script.
CMD ["cat", "/app/USAGE"]
