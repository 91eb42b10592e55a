"""``gridnode status``: the relay, hole punching and reachability lines (issue 22)."""

from gridnode.cli.node import nat_lines


def test_nat_lines_say_what_is_on():
    assert nat_lines(None) == []
    nat = {
        "relay_service": {"reservations": 2, "circuits": 1, "bytes_relayed": 3 * 1024 * 1024},
        "relay_client": None,
        "hole_punching": {"attempts": 4, "successes": 3, "failures": 1, "transports": {"tcp": 3}},
        "reachability": {"status": "public", "confirmed": ["/ip4/203.0.113.7/tcp/4001"]},
    }
    lines = nat_lines(nat)
    assert lines[0] == "reachability: public, reached at /ip4/203.0.113.7/tcp/4001"
    assert lines[1].startswith("relay service: 2 reservations, 1 circuits open, 3")
    assert lines[2] == "hole punching: 3 direct of 4 attempts (tcp 3), 1 left relayed"
    home = {"relay_client": {"relays": []}, "reachability": {"status": "private", "confirmed": []}}
    assert nat_lines(home) == ["reachability: private", "relays: none yet"]
