"""Runs localstripe on 127.0.0.1:<port> with its store in <path> (its CLI binds every
interface and writes /tmp/localstripe.pickle). Usage: python localstripe_server.py PORT PATH"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from aiohttp import web
from localstripe import resources
from localstripe.server import app


def main(port: int, path: Path) -> None:
    def load(store: resources.Store) -> None:
        if path.exists():
            store.clear()
            store.update(pickle.loads(path.read_bytes()))

    def dump(store: resources.Store) -> None:
        path.write_bytes(pickle.dumps(dict(store), protocol=pickle.HIGHEST_PROTOCOL))

    resources.Store.try_load_from_disk = load  # type: ignore[method-assign]
    resources.Store.dump_to_disk = dump  # type: ignore[method-assign]
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
