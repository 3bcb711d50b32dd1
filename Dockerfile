# Image of custom-metrics-apiserver: a fully static musl binary on distroless.
#
#   docker build -t custom-metrics-apiserver:latest --build-arg GIT_COMMIT="$(git rev-parse HEAD)" .
#
# GIT_COMMIT is what `--version` and /version report as the commit (build.rs; the build context has no .git) and
# the image's org.opencontainers.image.revision label; without it both say "unknown". VERSION is the crate's
# version (Cargo.toml; tests/image.rs keeps them equal).
#
# Runs as 65532:65532 with nothing but the binary (no shell, no libc), which is
# what deploy/k8s/deployment.yaml expects (read-only root, non-root user).

ARG RUST_VERSION=1.95
ARG VERSION=0.1.0
ARG GIT_COMMIT=unknown

# ---- build ----------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
# musl gives a binary with no runtime dependencies. ring compiles C and assembly
# through the cc crate, which needs a musl C compiler (musl-gcc, from musl-tools).
# Another musl target works only on a builder of that architecture (musl-gcc is native).
ARG RUST_TARGET=x86_64-unknown-linux-musl
ARG GIT_COMMIT
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${RUST_TARGET}"
WORKDIR /build

# Compile the dependencies alone first, against stub sources, so this layer is
# reused until Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --target "${RUST_TARGET}" \
 && rm -rf src

COPY build.rs ./
COPY src ./src
# COPY keeps the files' original mtimes, which can be older than the stub build:
# touch them so cargo rebuilds the crate instead of reusing the stub binary.
# The runtime image has no dynamic loader, so a binary that asks for one is refused.
RUN find src build.rs -name '*.rs' -exec touch {} + \
 && CUSTOM_METRICS_GIT_COMMIT="${GIT_COMMIT}" cargo build --release --locked --target "${RUST_TARGET}" \
 && cp "target/${RUST_TARGET}/release/custom-metrics-apiserver" /custom-metrics-apiserver \
 && ! readelf -lW /custom-metrics-apiserver | grep -q 'program interpreter'

# ---- runtime --------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION
ARG GIT_COMMIT
LABEL org.opencontainers.image.title="custom-metrics-apiserver" \
      org.opencontainers.image.description="Kubernetes custom and external metrics adapter: write any value over HTTP, read it through custom.metrics.k8s.io and external.metrics.k8s.io (for the HorizontalPodAutoscaler)." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /custom-metrics-apiserver /custom-metrics-apiserver
USER 65532:65532
# 6443: HTTPS API (behind the APIServices); 8080: plain-HTTP write API.
EXPOSE 6443 8080
ENTRYPOINT ["/custom-metrics-apiserver"]
