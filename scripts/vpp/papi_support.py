"""Shared helpers of the VPP test peers: load VPP's JSON API definitions into vpp-papi's serializer, and
convert between vpp-papi's values and the plain JSON form the Rust tests compare (VPP field names, a MAC as
"aa:bb:cc:dd:ee:ff", addresses and prefixes as strings, enums and flags as numbers, a union as its widest
member)."""

import enum
import glob
import ipaddress
import os

from vpp_papi import VPPApiClient
from vpp_papi import vpp_serializer
from vpp_papi.macaddress import MACAddress

HEADER_FIELDS = ("_vl_msg_id", "client_index", "context")


def api_files(api_dir):
    files = sorted(glob.glob(os.path.join(api_dir, "**", "*.api.json"), recursive=True))
    if not files:
        raise SystemExit(f"no *.api.json files under {api_dir}")
    return files


def load_client(api_dir):
    """A vpp-papi client in test mode: the serializer only, no connection."""
    return VPPApiClient(apifiles=api_files(api_dir), testmode=True)


def header_len(msg):
    """How many leading fields form the header: _vl_msg_id plus client_index and/or context."""
    fields = msg.fields
    if len(fields) > 2 and fields[1] == "client_index" and fields[2] == "context":
        return 3
    if len(fields) > 1 and fields[1] in ("client_index", "context"):
        return 2
    return 1


def to_json(value):
    """A vpp-papi value (named tuples, enums, MACAddress, ipaddress objects) as plain JSON."""
    if isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):
        return int(value)
    if isinstance(value, MACAddress):
        return str(value)
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address,
                          ipaddress.IPv4Network, ipaddress.IPv6Network,
                          ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        packer = vpp_serializer.types.get(type(value).__name__)
        if isinstance(packer, vpp_serializer.VPPUnionType):
            widest = max(packer.packers, key=lambda name: packer.packers[name].size)
            return {widest: to_json(getattr(value, widest))}
        return {name: to_json(v) for name, v in zip(value._fields, value)}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def unpack(client, name, body):
    """Decodes a whole message body: (header dict, fields dict)."""
    msg = client.messages[name]
    value, size = msg.unpack(body)
    # vpp-papi counts an empty variable string as 0 bytes, though it occupies its 4-byte length (and it
    # packs it that way): add those back before checking that the whole body was read.
    size += 4 * sum(
        1 for packer, v in zip(msg.packers, value)
        if isinstance(packer, vpp_serializer.String) and not packer.fixed and v == ""
    )
    if size != len(body):
        raise ValueError(f"{name}: {len(body) - size} bytes after the last field")
    n = header_len(msg)
    items = list(zip(msg.fields, value))
    header = {k: v for k, v in items[:n]}
    fields = {k: to_json(v) for k, v in items[n:]}
    return header, fields


def pack(client, name, header, fields):
    """Encodes a whole message body from a header dict and JSON fields."""
    msg = client.messages[name]
    data = dict(fields)
    for key in msg.fields[:header_len(msg)]:
        data[key] = header.get(key, 0)
    return msg.pack(data)


def name_crc(client, name):
    return f"{name}_{client.messages[name].crc[2:]}"
