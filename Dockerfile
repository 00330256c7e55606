# The `sportello` image: one binary for every role (all, signalling, media), built from this
# repository. Used by deploy/compose (build: context ../..) and deploy/kubernetes.
#
#   docker build -t sportello:dev .
#   docker run --rm sportello:dev check-config --config /etc/sportello/signalling.toml \
#       --role signalling --redis redis://redis:6379/0
#
# Build stage: the workspace and its lock file, nothing else (see .dockerignore). The pages are
# embedded in the binary (rust-embed reads console-web/ at build time), and so are the PDF fonts
# (the `dejavu` crate), the time-zone database (jiff's bundle) and the TLS roots (webpki-roots).
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
# Every workspace member, because cargo reads the whole workspace even to build one package.
COPY protocol protocol
COPY queue queue
COPY history history
COPY certificates certificates
COPY sfu sfu
COPY medianode medianode
COPY signalling signalling
COPY kiosk-client kiosk-client
COPY loadtest loadtest
COPY testkit testkit
COPY xtask xtask
COPY console-web console-web
RUN cargo build --release --locked -p signalling --bin sportello \
    && install -D -m 0755 target/release/sportello /out/sportello

# Runtime stage: Debian's slim image. The binary links only glibc (libc, libm, libgcc_s:
# `ldd target/release/sportello`), all in the base image: no OpenSSL (rustls), no fontconfig
# (fonts are embedded), no tzdata (bundled), no CA bundle (webpki-roots; a registry or SMTP server
# with a private CA is reached through the roots compiled in, see docs/operations.md).
FROM debian:bookworm-slim
COPY --from=build /out/sportello /usr/local/bin/sportello
# The default configuration files: the example for one process (--role all), and the files every
# multi-node deployment shares (deploy/config). Deployments mount their own over /etc/sportello.
COPY sportello.example.toml /etc/sportello/sportello.toml
COPY deploy/config/signalling.toml deploy/config/media.toml /etc/sportello/
# A numeric, unprivileged user with no login and no home: no passwd entry is needed. The data
# directory (secrets created on first start, signer key, PDFs, the audit log) is its own, 0700.
RUN install -d -o 10001 -g 10001 -m 0700 /var/lib/sportello
USER 10001:10001
VOLUME ["/var/lib/sportello"]
WORKDIR /var/lib/sportello
# 8080 public (HTTP, WebSocket, pages), 9090 admin (/metrics, /healthz, /readyz), 9091 a media
# node's internal API, 50000 a media node's UDP port and ICE-TCP (deploy/config/media.toml).
EXPOSE 8080/tcp 9090/tcp 9091/tcp 50000/udp 50000/tcp
# The slim image has no curl or wget, and the binary has no probe command: bash (always in
# Debian) asks /healthz on the admin listener through /dev/tcp. Every role serves /healthz there;
# an admin listener moved off port 9090 needs its own check (Kubernetes ignores HEALTHCHECK and
# uses the probes in deploy/kubernetes).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9090 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# SIGTERM drains ([shutdown] drain_s): give `docker stop` more time than that (-t 45, or
# stop_grace_period in compose). The server handles the signals itself, so it runs as PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sportello"]
# One process with every role; demo accounts (no account in the file) are refused on 0.0.0.0
# unless SPORTELLO_DEMO__ALLOW_NON_LOOPBACK=true (closed training networks only).
CMD ["serve", "--role", "all", "--config", "/etc/sportello/sportello.toml", "--data-dir", "/var/lib/sportello", "--listen", "0.0.0.0:8080", "--admin-listen", "0.0.0.0:9090"]
