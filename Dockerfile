# Builds the scaidrive server (with the Kafka relay) into a slim image.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev libsasl2-dev libzstd-dev libsmbclient-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --features kafka --bin scaidrive

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libcurl4 libsasl2-2 libzstd1 libsmbclient \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/scaidrive scaidrive \
    && mkdir -p /var/lib/scaidrive && chown scaidrive /var/lib/scaidrive
COPY --from=build /src/target/release/scaidrive /usr/local/bin/scaidrive
USER scaidrive
WORKDIR /var/lib/scaidrive
ENV SCAIDRIVE_BIND=0.0.0.0:8000 SCAIDRIVE_DATA_DIR=/var/lib/scaidrive
EXPOSE 8000
ENTRYPOINT ["scaidrive"]
CMD ["serve"]
