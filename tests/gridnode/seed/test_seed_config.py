"""``[[seed.postgres]]`` in gridnode.toml: read by gridnode.seed, ignored by the node's config."""

import pytest

from gridnode.config import load_config, write_default_config
from gridnode.seed import SeedConfigError
from gridnode.seed.config import PostgresSource, load_sources


def write(tmp_path, text):
    write_default_config(tmp_path)
    path = tmp_path / "gridnode.toml"
    path.write_text(path.read_text() + text)


def test_sources_from_the_config(tmp_path):
    write(
        tmp_path,
        """
[[seed.postgres]]
dsn = "dbname=app"
table = "public.people"
key = "id"
db = "/gridnode/a"
exclude = ["email", "phone"]

[[seed.postgres]]
table = "orders"
key = "order_id"
db = "/gridnode/b"
columns = ["order_id", "total"]
batch = 10
""",
    )
    first, second = load_sources(tmp_path)
    assert first == PostgresSource(
        "dbname=app", "public.people", "id", "/gridnode/a", None, ("email", "phone")
    )
    assert second.columns == ("order_id", "total") and second.batch == 10 and second.dsn == ""
    assert first.slot != second.slot and len(first.slot) == 16
    # The node's own settings still load, and an unknown top-level key is still an error.
    assert load_config(tmp_path).listen == ["/ip4/127.0.0.1/tcp/0"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[seed.postgres]]\ntable = "t"\nkey = "id"\n', "needs 'db'"),
        (
            '[[seed.postgres]]\ntable = "t"\nkey = "id"\ndb = "d"\nexclude = "email"\n',
            "list of column names",
        ),
        (
            '[[seed.postgres]]\ntable = "t"\nkey = "id"\ndb = "d"\nexclude = ["id"]\n',
            "cannot be excluded",
        ),
        (
            '[[seed.postgres]]\ntable = "t"\nkey = "id"\ndb = "d"\npassword = "x"\n',
            "unknown setting 'password'",
        ),
        ('[[seed.postgres]]\ntable = "t"\nkey = "id"\ndb = "d"\nbatch = 0\n', "at least 1"),
        ('[[seed.mysql]]\ntable = "t"\n', "unknown seed source kind 'mysql'"),
    ],
)
def test_bad_sources_name_the_entry_and_key(tmp_path, text, message):
    write(tmp_path, text)
    with pytest.raises(SeedConfigError, match=message):
        load_sources(tmp_path)


def test_no_sources(tmp_path):
    assert load_sources(tmp_path) == []
    write_default_config(tmp_path)
    assert load_sources(tmp_path) == []
