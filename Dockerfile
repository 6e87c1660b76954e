# Spacebot's container image (docs/deploy.md).
#
#   docker build -t spacebot .
#   docker run -d --name spacebot -p 19898:19898 -v spacebot-data:/var/lib/spacebot \
#       -e SPACEBOT_API__TOKEN=... -e OPENAI_API_KEY=... spacebot
#
# The build stage compiles the binary to ship (cargo profile `dist`); the runtime stage is a slim
# Debian with bubblewrap (the workers' sandbox) and nothing else of note, running as an
# unprivileged user with the data dir as a volume.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile dist --package spacebot \
    && install -m 0755 target/dist/spacebot /spacebot

FROM ${RUNTIME_IMAGE} AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/spacebot --create-home spacebot \
    && chmod 0700 /var/lib/spacebot
COPY --from=build /spacebot /usr/local/bin/spacebot

USER spacebot
# Listening beyond loopback needs a token: without SPACEBOT_API__TOKEN (or `api.token` in
# /var/lib/spacebot/config.toml) the daemon refuses to start and says why.
ENV SPACEBOT_API__BIND=0.0.0.0:19898
VOLUME ["/var/lib/spacebot"]
EXPOSE 19898
# /health needs no token.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:19898/health || exit 1
# SIGTERM lets turns in flight finish (`shutdown_grace_secs`, 10 s by default): give
# `docker stop` more than that (`--time 15`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["spacebot", "--data-dir", "/var/lib/spacebot"]
CMD ["start"]
