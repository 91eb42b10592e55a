"""A second admin (``db create --admin``) and ``db access grant|revoke``: offline, and through a
running node's API (``POST /db/{db}/access``); docs/keys.md, "A second admin key kept offline"."""

from __future__ import annotations

import json

from gridnode.repo import Repo
from tests.gridnode.test_cli_db import create, identity, json_out, out, refused, run


def test_an_offline_admin_names_a_new_primary_after_the_first_key_is_lost(tmp_path):
    primary, cold, new = tmp_path / "primary", tmp_path / "cold", tmp_path / "new"
    for data_dir in (primary, cold, new):
        run(data_dir, "init")
    cold_did, new_did = identity(cold), identity(new)
    address = create(primary, "posts", "keyvalue", "--admin", cold_did)
    info = json_out(primary, "db", "info", address)
    assert sorted(info["admins"]) == sorted([identity(primary), cold_did])
    run(primary, "db", "put", address, "k", "1")
    run(primary, "export", address, str(tmp_path / "posts.car"))

    # The primary's key is lost. The offline admin's node imports the database and names the
    # new primary writer, then admin.
    run(cold, "import", str(tmp_path / "posts.car"))
    granted = json_out(cold, "db", "access", "grant", address, new_did)
    assert granted["effective"] and new_did in granted["writers"]
    granted = json_out(cold, "db", "access", "grant", address, new_did, "--role", "admin")
    assert granted["effective"] and new_did in granted["admins"]
    run(cold, "export", address, str(tmp_path / "posts2.car"))
    run(new, "import", str(tmp_path / "posts2.car"))
    run(new, "db", "put", address, "k", "2")
    assert json.loads(out(new, "db", "get", address, "k")) == 2

    # The new admin (rank 1) cannot revoke a manifest admin (rank 0): refused, nothing written.
    entries = json_out(new, "db", "info", address)["entries"]
    line = refused(new, "db", "access", "revoke", address, cold_did, "--role", "admin")
    assert "may not revoke" in line
    info = json_out(new, "db", "info", address)
    assert cold_did in info["admins"] and info["entries"] == entries
    # The manifest admin revokes the new one: it can no longer write.
    run(cold, "import", str(tmp_path / "posts2.car"))
    revoked = json_out(cold, "db", "access", "revoke", address, new_did, "--role", "admin")
    assert revoked["effective"] and new_did not in revoked["admins"]


def test_access_changes_are_refused_with_one_error_line(tmp_path):
    owner, stranger = tmp_path / "owner", tmp_path / "stranger"
    run(owner, "init")
    run(stranger, "init")
    address = create(owner, "posts", "keyvalue")
    assert "admin" in refused(owner, "db", "create", "x", "--type", "events", "--admin", "nope")
    assert "did" in refused(owner, "db", "access", "grant", address, "did:key:nope").lower()
    run(owner, "export", address, str(tmp_path / "p.car"))
    run(stranger, "import", str(tmp_path / "p.car"))
    line = refused(stranger, "db", "access", "grant", address, identity(stranger))
    assert "not an admin" in line
    run(owner, "db", "access", "grant", address, identity(stranger), "--role", "bogus", code=2)


def test_access_through_a_running_node(tmp_path):
    from crdt.identity import Keypair
    from tests.gridnode.test_cli_restore import running

    admin, writer = Keypair(b"\x07" * 32).did, Keypair(b"\x08" * 32).did
    with Repo(tmp_path / "a"):
        pass
    with running(tmp_path / "a") as a:
        from gridnode.ops import CreateRequest

        address = a.client.create(CreateRequest("posts", "keyvalue", admins=[admin]))["address"]
        assert admin in a.client.database(address)["admins"]
        changed = a.client.access(address, "grant", "writer", writer)
        assert changed["effective"] and writer in changed["writers"]
        revoked = a.client.access(address, "revoke", "writer", writer)
        assert revoked["effective"] and writer not in revoked["writers"]
