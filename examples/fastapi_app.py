"""A FastAPI service with a gridnode node inside: the node starts and stops with the app.

    pip install fastapi uvicorn
    GRIDNODE_DATA_DIR=./service-node uvicorn examples.fastapi_app:app
    curl -X PUT localhost:8000/notes/hello -H 'content-type: application/json' -d '"world"'
    curl localhost:8000/notes/hello

``python examples/fastapi_app.py DATA_DIR --self-test`` runs the app in-process (FastAPI's test
client) and prints what a few requests answer.
"""

import os
import sys
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Request

import gridnode


@asynccontextmanager
async def lifespan(app: FastAPI):
    data_dir = os.environ.get("GRIDNODE_DATA_DIR", "./service-node")
    async with gridnode.asyncio_node(data_dir) as node:
        found = [d["address"] for d in await node.databases() if d["name"] == "notes"]
        app.state.notes = found[0] if found else await node.create_database("notes", "keyvalue")
        app.state.node = node
        yield


app = FastAPI(lifespan=lifespan)


@app.put("/notes/{key}")
async def put_note(key: str, request: Request, value: Annotated[Any, Body()]) -> dict[str, Any]:
    await request.app.state.node.put(request.app.state.notes, key, value)
    return {"key": key, "value": value}


@app.get("/notes/{key}")
async def get_note(key: str, request: Request) -> dict[str, Any]:
    try:
        value = await request.app.state.node.get(request.app.state.notes, key)
    except gridnode.NotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    return {"key": key, "value": value}


if __name__ == "__main__" and "--self-test" in sys.argv:
    from fastapi.testclient import TestClient

    os.environ["GRIDNODE_DATA_DIR"] = sys.argv[1]
    with TestClient(app) as client:
        print("put:", client.put("/notes/hello", json="from fastapi").text)
        print("get:", client.get("/notes/hello").text)
        print("missing:", client.get("/notes/nobody").status_code)
