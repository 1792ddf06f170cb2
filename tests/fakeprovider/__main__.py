"""Run the fake provider by hand: python -m tests.fakeprovider [--port 8765] [--script turns.json].

turns.json is a list of {"text": ..., "tools": [{"name": ..., "input": {...}}]} or {"error": 429, "retry_after": 1}.
"""

from __future__ import annotations

import argparse
import json
import time

from tests.fakeprovider.server import FakeProvider, error, reply, tool


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.fakeprovider")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--script", help="JSON file with the turns to play")
    ap.add_argument("--url-file", help="write the server's URL here once it listens (use with --port 0)")
    args = ap.parse_args()
    fp = FakeProvider(port=args.port).start()
    if args.script:
        with open(args.script) as f:
            for t in json.load(f):
                if "error" in t:
                    fp.script(error(int(t["error"]), t.get("message", ""), retry_after=t.get("retry_after")))
                else:
                    fp.script(reply(t.get("text", ""), [tool(c["name"], c.get("input")) for c in t.get("tools", [])]))
    if args.url_file:
        with open(args.url_file + ".tmp", "w") as f:
            f.write(fp.url)
        import os

        os.replace(args.url_file + ".tmp", args.url_file)
    print(f"fake provider on {fp.url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    fp.stop()


if __name__ == "__main__":
    main()
