FROM python:3.11-slim

WORKDIR /src
COPY pyproject.toml README.md ./
COPY crdt ./crdt
COPY protocols ./protocols
COPY gridnode ./gridnode
# As the README installs: uv takes pyproject.toml's override of py-libp2p's fastecdsa pin, so every
# compiled dependency comes as a wheel and the image needs no C compiler (docs/decisions.md).
RUN pip install --no-cache-dir uv \
    && python -m uv pip install --no-cache . \
    && pip uninstall --yes uv \
    && useradd --system --uid 10001 --home-dir /data gridnode \
    && mkdir -p /data && chown gridnode /data

USER gridnode
ENV GRIDNODE_DATA_DIR=/data
# In a container the node must listen on all interfaces to be reachable through the published
# port (TCP and QUIC on UDP: publish both, `-p 4001:4001 -p 4001:4001/udp`); the local HTTP API
# stays on the container's loopback.
ENV GRIDNODE_LISTEN=/ip4/0.0.0.0/tcp/4001,/ip4/0.0.0.0/udp/4001/quic-v1
VOLUME ["/data"]
EXPOSE 4001/tcp 4001/udp
# Healthy while the node answers on its local API (gridnode health: exit status 0 or 1).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["gridnode", "health"]
ENTRYPOINT ["gridnode"]
CMD ["start"]
