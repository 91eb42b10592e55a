FROM python:3.11-slim

# py-libp2p builds fastecdsa from source (gcc, GMP headers).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libgmp-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY crdt ./crdt
COPY protocols ./protocols
COPY gridnode ./gridnode
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /data gridnode \
    && mkdir -p /data && chown gridnode /data

USER gridnode
ENV GRIDNODE_DATA_DIR=/data
# In a container the node must listen on all interfaces to be reachable through the published
# port; the local HTTP API stays on the container's loopback.
ENV GRIDNODE_LISTEN=/ip4/0.0.0.0/tcp/4001
VOLUME ["/data"]
EXPOSE 4001
# Healthy while the node answers on its local API (gridnode health: exit status 0 or 1).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["gridnode", "health"]
ENTRYPOINT ["gridnode"]
CMD ["start"]
