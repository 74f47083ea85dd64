"""``python -m trinosim.demo``: three local Trino-protocol clusters to play with."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from trinosim.harness import TrinoSimProcess


def main() -> None:
    parser = argparse.ArgumentParser(description="Start local trinosim clusters until Ctrl-C.")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--first-port", type=int, default=8081)
    args = parser.parse_args()
    servers = []
    try:
        for i in range(args.count):
            servers.append(TrinoSimProcess(name=f"trino-{i + 1}", port=args.first_port + i).start())
        print("\nClusters up:")
        for server in servers:
            print(f"  {server.name}: {server.url}   (log: {server.log_path})")
        first = servers[0].url
        print("\nTry one with the Trino CLI or Python:")
        print(
            f"  .venv/bin/python -c \"import trino; c=trino.dbapi.connect(host='127.0.0.1', "
            f"port={servers[0].port}, user='me').cursor(); c.execute('SELECT * FROM tpch.tiny.region'); "
            f'print(c.fetchall())"'
        )
        print(
            f"  java -jar $(.venv/bin/python -c 'import trinocli,os;print(os.path.dirname(trinocli.__file__))')"
            f"/bin/trino-cli.jar --server {first} --catalog tpch --schema tiny"
        )
        print("\nCtrl-C stops them.")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
