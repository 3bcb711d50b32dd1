# Image of custom-metrics-apiserver: a fully static musl binary on distroless.
#
#   docker build -t custom-metrics-apiserver:latest .
#
# Runs as 65532:65532 with nothing but the binary (no shell, no libc), which is
# what deploy/k8s/deployment.yaml expects (read-only root, non-root user).

ARG RUST_VERSION=1.95

# ---- build ----------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
# musl gives a binary with no runtime dependencies. ring compiles C and assembly
# through the cc crate, which needs a musl C compiler (musl-gcc, from musl-tools).
# Another musl target works only on a builder of that architecture (musl-gcc is native).
ARG RUST_TARGET=x86_64-unknown-linux-musl
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

COPY src ./src
# COPY keeps the files' original mtimes, which can be older than the stub build:
# touch them so cargo rebuilds the crate instead of reusing the stub binary.
# The runtime image has no dynamic loader, so a binary that asks for one is refused.
RUN find src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --target "${RUST_TARGET}" \
 && cp "target/${RUST_TARGET}/release/custom-metrics-apiserver" /custom-metrics-apiserver \
 && ! readelf -lW /custom-metrics-apiserver | grep -q 'program interpreter'

# ---- runtime --------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /custom-metrics-apiserver /custom-metrics-apiserver
USER 65532:65532
# 6443: HTTPS API (behind the APIServices); 8080: plain-HTTP write API.
EXPOSE 6443 8080
ENTRYPOINT ["/custom-metrics-apiserver"]
