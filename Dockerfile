# syntax=docker/dockerfile:1
#
# One image for the four Rapport services (profiles, complaints, notifications,
# analytics) and the one-shot topic creator. The service is chosen by the
# command, e.g.:
#
#   docker run rapport services.complaints
#   docker run rapport ops.cli topics create   (the `rapport` command line)
#
# Only the runtime dependencies are installed (`pip install .`, no extras).

############################ build ############################
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
# Only what the package build needs: nothing else of the work tree can leak
# into the image, whatever .dockerignore says.
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY devstack ./devstack
COPY ops ./ops

# Every dependency ships a wheel for CPython 3.11 on manylinux, so no compiler
# is needed here.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
    && pip check

############################ runtime ############################
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="rapport" \
      org.opencontainers.image.description="Rapport event-driven CRM services" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH="/opt/venv/bin:${PATH}"

RUN groupadd --system --gid 10001 rapport \
    && useradd --system --uid 10001 --gid rapport --create-home \
       --home-dir /home/rapport --shell /usr/sbin/nologin rapport \
    && install -d -o rapport -g rapport /app

# The installed code stays root-owned (read-only for the service user);
# /app is the working directory; the services keep no local state (MongoDB and Kafka do).
COPY --from=build /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

# profiles, complaints, notifications, analytics
EXPOSE 8001 8002 8003 8004

ENTRYPOINT ["python", "-m"]
CMD ["services.profiles"]
