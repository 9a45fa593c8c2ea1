# syntax=docker/dockerfile:1
# smartgrid in a container (docs/deploy.md, "In a container"). Not built on the
# machine this was written on (no Docker daemon, no registry access there): treat it
# as untested until `docker build` has passed somewhere.
#
#   docker build -t smartgrid .
#   docker run --rm --stop-timeout 90 -v smartgrid:/var/lib/smartgrid smartgrid
#       (the default pipeline: embedded broker, simulated monitors, files)
#   docker run -d --name smartgrid --restart on-failure --stop-timeout 90 \
#       --env-file /etc/smartgrid/smartgrid.env -v smartgrid:/var/lib/smartgrid \
#       smartgrid run deploy/pipeline.yaml
#
# For a Pi, build on the Pi, or for its platform with buildx (emulated: slow):
#   docker buildx build --platform linux/arm64 -t smartgrid .      # or linux/arm/v7
#
# `--stop-timeout 90` (compose: `stop_grace_period: 90s`): on SIGTERM smartgrid drains its
# sinks and then checkpoints its state; Docker's default of 10 s would SIGKILL it first.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN} AS builder
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked \
    && cp target/dist/smartgrid /usr/local/bin/smartgrid

FROM debian:${DEBIAN}-slim
# ca-certificates: MQTT over TLS (`mqtts://` without `ca_file`, IoT Hub) trusts the
# system's roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/smartgrid \
        --shell /usr/sbin/nologin smartgrid \
    && install -d -o smartgrid -g smartgrid -m 0750 /var/lib/smartgrid

COPY --from=builder /usr/local/bin/smartgrid /usr/local/bin/smartgrid
# Read-only in the image: the pipelines and the default model. Everything written goes
# to the volume: the default pipeline's data/ and .smartgrid/ are links to it, and
# deploy/pipeline.yaml writes where SMARTGRID_DATA and SMARTGRID_STATE_DIR say.
WORKDIR /opt/smartgrid
COPY pipeline.yaml ./
COPY deploy/pipeline.yaml deploy/
COPY models/default/model.txt models/default/
RUN ln -s /var/lib/smartgrid data && ln -s /var/lib/smartgrid .smartgrid
ENV SMARTGRID_DATA=/var/lib/smartgrid \
    SMARTGRID_STATE_DIR=/var/lib/smartgrid/state/smartgrid \
    NO_COLOR=1
VOLUME ["/var/lib/smartgrid"]
USER smartgrid
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/smartgrid"]
CMD ["run", "pipeline.yaml"]
