"""vpp-papi's serializer as a line-oriented service for the Rust conformance tests.

Reads one JSON request per line on stdin and answers one JSON line on stdout:
  {"op": "pack", "name": N, "header": {...}, "fields": {...}}  -> {"hex": "..."}
  {"op": "unpack", "name": N, "hex": "..."}                      -> {"header": {...}, "fields": {...}}
  {"op": "crc", "name": N}                                       -> {"name_crc": "N_xxxxxxxx"}
Any failure answers {"error": "..."}.

Usage: papi_codec.py API_DIR
"""

import json
import sys

from papi_support import load_client, name_crc, pack, unpack


def handle(client, request):
    op = request["op"]
    name = request["name"]
    if op == "pack":
        body = pack(client, name, request.get("header", {}), request["fields"])
        return {"hex": body.hex()}
    if op == "unpack":
        header, fields = unpack(client, name, bytes.fromhex(request["hex"]))
        return {"header": header, "fields": fields}
    if op == "crc":
        return {"name_crc": name_crc(client, name)}
    raise ValueError(f"unknown op {op}")


def main():
    client = load_client(sys.argv[1])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        try:
            answer = handle(client, json.loads(line))
        except Exception as e:  # every failure goes back to the test, which shows it
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
