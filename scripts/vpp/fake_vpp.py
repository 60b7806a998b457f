"""Plays VPP's side of the binary-API socket for the socket-level tests, built on vpp-papi's serializer.

VPP itself cannot run in the test environment (it is not packaged for Debian 12), so this server stands in
for it: it answers `sockclnt_create` with a real message table generated from VPP's JSON definitions, decodes
every request with vpp-papi, records it (one JSON line per message: {"name": ..., "fields": {...}}), and
answers like VPP v26.06 does for the messages wireguard-vpp uses (socket ids, memif interfaces, the
case-insensitive substring name filter of sw_interface_dump, control_ping ending dumps, sockclnt_delete
answering 1, interface events on memif deletion, bridge domains created by their first port, an l2fib table
that refuses to delete an entry it does not hold, and the error numbers VPP returns).

Usage: fake_vpp.py --socket PATH --api-dir DIR --record FILE [options]
  --crc NAME=CRC          announce NAME with another CRC (a VPP whose layout changed)
  --fail NAME=RETVAL      answer every NAME with that retval
  --silent NAME           never answer NAME (the client must time out)
  --refuse                answer sockclnt_create with response -1 (registration refused)
  --interface IDX=NAME    an existing interface (e.g. the BVI loop42)
  --stale-memif SOCKET_ID:ID:FILENAME  leftovers of a crashed run
Prints "READY" on stdout once listening.
"""

import argparse
import json
import os
import random
import socket
import socketserver
import struct
import sys
import threading

from papi_support import load_client, name_crc, pack, unpack

MEMCLNT_FIXED = [
    "memclnt_create", "memclnt_create_reply", "memclnt_delete", "memclnt_delete_reply", "rx_thread_exit",
    "memclnt_rx_thread_suspend", "memclnt_read_timeout", "rpc_call", "rpc_call_reply", "get_first_msg_id",
    "get_first_msg_id_reply", "api_versions", "api_versions_reply", "trace_plugin_msg_ids",
    "sockclnt_create", "sockclnt_create_reply", "sockclnt_delete", "sockclnt_delete_reply", "sock_init_shm",
    "sock_init_shm_reply",
]
# What VPP puts in the header's first 8 bytes: garbage the client must ignore.
GARBAGE_Q = 0x80F2063001000000
# Errors of VPP's vnet/error.h.
INVALID_SW_IF_INDEX, NO_SUCH_ENTRY = -2, -6
SUBIF_ALREADY_EXISTS, INVALID_ARGUMENT, UNEXPECTED_INTF_STATE = -68, -73, -74
ENTRY_ALREADY_EXISTS = -116


class FakeVpp:
    def __init__(self, args):
        self.papi = load_client(args.api_dir)
        self.lock = threading.Lock()
        self.record = open(args.record, "a", buffering=1)
        self.crc_override = dict(kv.split("=", 1) for kv in args.crc)
        self.fail = {k: int(v) for k, v in (kv.split("=", 1) for kv in args.fail)}
        self.silent = set(args.silent)
        self.refuse = args.refuse
        self.build_table()
        self.sockets = {0: "/run/vpp/memif.sock"}
        self.interfaces = {0: "local0"}
        self.memifs = {}  # sw_if_index -> (socket_id, id)
        self.bridges = set()  # bridge domain ids (VPP creates one when its first port is added)
        self.l2fib = {}  # (mac, bd_id) -> sw_if_index
        self.next_sw_if_index = 1
        self.subscribers = []
        self.next_client = 1
        for spec in args.interface:
            idx, name = spec.split("=", 1)
            self.interfaces[int(idx)] = name
            self.next_sw_if_index = max(self.next_sw_if_index, int(idx) + 1)
        for spec in args.stale_memif:
            socket_id, memif_id, filename = spec.split(":", 2)
            self.sockets[int(socket_id)] = filename
            self.add_memif(int(socket_id), int(memif_id))

    def build_table(self):
        """ids 1..20 for memclnt as in VPP, the rest shuffled so that nobody relies on reply = request + 1."""
        others = sorted(n for n in self.papi.messages if n not in MEMCLNT_FIXED)
        random.Random(4242).shuffle(others)
        names = [n for n in MEMCLNT_FIXED if n in self.papi.messages] + others
        self.id_of = {}
        self.table = []
        for i, name in enumerate(names, start=1):
            self.id_of[name] = i
            crc = self.crc_override.get(name)
            entry = f"{name}_{crc}" if crc else name_crc(self.papi, name)
            self.table.append({"index": i, "name": entry})
        self.name_of = {i: n for n, i in self.id_of.items()}

    def add_memif(self, socket_id, memif_id):
        idx = self.next_sw_if_index
        self.next_sw_if_index += 1
        self.memifs[idx] = (socket_id, memif_id)
        self.interfaces[idx] = f"memif{socket_id}/{memif_id}"
        return idx

    def body(self, name, context=0, client_index=0, **fields):
        header = {"_vl_msg_id": self.id_of[name], "context": context, "client_index": client_index}
        return pack(self.papi, name, header, fields)

    def handle(self, conn, name, header, fields):
        """Returns the reply bodies for one request (may be empty)."""
        ctx = header.get("context", 0)
        self.record.write(json.dumps({"name": name, "fields": fields}) + "\n")
        if name in self.silent:
            return []
        if name == "sockclnt_create":
            with self.lock:
                index = 0x80000000 | self.next_client
                self.next_client += 1
            conn.client_index = index
            if self.refuse:
                return [self.body("sockclnt_create_reply", ctx, 0, response=-1, index=0, count=0, message_table=[])]
            return [self.body("sockclnt_create_reply", ctx, 0, response=0, index=index,
                              count=len(self.table), message_table=self.table)]
        if name == "sockclnt_delete":
            conn.closing = True
            return [self.body("sockclnt_delete_reply", ctx, response=1)]
        if name == "control_ping":
            return [self.body("control_ping_reply", ctx, retval=0, client_index=conn.client_index, vpe_pid=os.getpid())]
        if name in self.fail:
            return [self.body(name + "_reply", ctx, retval=self.fail[name])]
        handler = getattr(self, "on_" + name, None)
        if handler is None:
            return [self.body(name + "_reply", ctx, retval=0)]
        with self.lock:
            return handler(conn, ctx, fields)

    def on_show_version(self, conn, ctx, f):
        return [self.body("show_version_reply", ctx, retval=0, program="vpe", version="26.06-release",
                          build_date="fake", build_directory="/fake")]

    def on_sw_interface_dump(self, conn, ctx, f):
        wanted = f["name_filter"].lower() if f["name_filter_valid"] else None
        return [self.body("sw_interface_details", ctx, sw_if_index=idx, sup_sw_if_index=idx, mtu=[9000, 0, 0, 0],
                          interface_name=name)
                for idx, name in sorted(self.interfaces.items())
                if wanted is None or wanted in name.lower()]

    def on_memif_socket_filename_add_del_v2(self, conn, ctx, f):
        sid, filename = f["socket_id"], f["socket_filename"]
        reply = lambda rv: [self.body("memif_socket_filename_add_del_v2_reply", ctx, retval=rv, socket_id=sid)]
        if f["is_add"]:
            if sid == 0 or not filename:
                return reply(INVALID_ARGUMENT)
            if sid in self.sockets and self.sockets[sid] != filename:
                return reply(ENTRY_ALREADY_EXISTS)
            self.sockets[sid] = filename
            return reply(0)
        if sid == 0 or sid not in self.sockets:
            return reply(INVALID_ARGUMENT)
        if any(s == sid for s, _ in self.memifs.values()):
            return reply(UNEXPECTED_INTF_STATE)
        del self.sockets[sid]
        return reply(0)

    def on_memif_create_v2(self, conn, ctx, f):
        sid, mid = f["socket_id"], f["id"]
        if sid not in self.sockets:
            return [self.body("memif_create_v2_reply", ctx, retval=INVALID_ARGUMENT)]
        if (sid, mid) in self.memifs.values():
            return [self.body("memif_create_v2_reply", ctx, retval=SUBIF_ALREADY_EXISTS)]
        return [self.body("memif_create_v2_reply", ctx, retval=0, sw_if_index=self.add_memif(sid, mid))]

    def on_memif_delete(self, conn, ctx, f):
        idx = f["sw_if_index"]
        if idx not in self.memifs:
            return [self.body("memif_delete_reply", ctx, retval=INVALID_SW_IF_INDEX)]
        del self.memifs[idx]
        del self.interfaces[idx]
        for sub in list(self.subscribers):
            sub.send_body(self.body("sw_interface_event", 0, sub.client_index, pid=sub.pid,
                                    sw_if_index=idx, flags=0, deleted=True))
        return [self.body("memif_delete_reply", ctx, retval=0)]

    def on_memif_dump(self, conn, ctx, f):
        return [self.body("memif_details", ctx, sw_if_index=idx, id=mid, role=1, socket_id=sid,
                          ring_size=1024, buffer_size=2048, if_name=self.interfaces[idx])
                for idx, (sid, mid) in sorted(self.memifs.items())]

    def on_ip_neighbor_dump(self, conn, ctx, f):
        return []  # no neighbours: the stand-in keeps none

    def on_memif_socket_filename_dump(self, conn, ctx, f):
        return [self.body("memif_socket_filename_details", ctx, socket_id=sid, socket_filename=name)
                for sid, name in sorted(self.sockets.items())]

    def on_sw_interface_set_flags(self, conn, ctx, f):
        rv = 0 if f["sw_if_index"] in self.interfaces else INVALID_SW_IF_INDEX
        return [self.body("sw_interface_set_flags_reply", ctx, retval=rv)]

    def on_sw_interface_set_l2_bridge(self, conn, ctx, f):
        rv = 0 if f["rx_sw_if_index"] in self.interfaces else INVALID_SW_IF_INDEX
        if rv == 0 and f["enable"]:
            self.bridges.add(f["bd_id"])
        return [self.body("sw_interface_set_l2_bridge_reply", ctx, retval=rv)]

    def on_l2fib_add_del(self, conn, ctx, f):
        """As l2_api.c: an unknown bridge domain or deleting an entry that is not there is NO_SUCH_ENTRY."""
        key = (f["mac"], f["bd_id"])
        if f["bd_id"] not in self.bridges:
            rv = NO_SUCH_ENTRY
        elif f["is_add"]:
            rv = 0 if f["sw_if_index"] in self.interfaces else INVALID_SW_IF_INDEX
            if rv == 0:
                self.l2fib[key] = f["sw_if_index"]
        elif key in self.l2fib:
            del self.l2fib[key]
            rv = 0
        else:
            rv = NO_SUCH_ENTRY
        return [self.body("l2fib_add_del_reply", ctx, retval=rv)]

    def on_ip_route_add_del(self, conn, ctx, f):
        return [self.body("ip_route_add_del_reply", ctx, retval=0, stats_index=12)]

    def on_ip_neighbor_add_del(self, conn, ctx, f):
        return [self.body("ip_neighbor_add_del_reply", ctx, retval=0, stats_index=7)]

    def on_want_interface_events(self, conn, ctx, f):
        conn.pid = f["pid"]
        if f["enable_disable"]:
            self.subscribers.append(conn)
        elif conn in self.subscribers:
            self.subscribers.remove(conn)
        return [self.body("want_interface_events_reply", ctx, retval=0)]


class Connection(socketserver.BaseRequestHandler):
    def setup(self):
        self.client_index = 0
        self.pid = 0
        self.closing = False
        self.write_lock = threading.Lock()

    def send_body(self, body):
        frame = struct.pack(">QII", GARBAGE_Q, len(body), 0) + body
        with self.write_lock:
            try:
                self.request.sendall(frame)
            except OSError:
                pass

    def read_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.request.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def handle(self):
        vpp = self.server.vpp
        try:
            while not self.closing:
                head = self.read_exact(16)
                if head is None:
                    break
                _, length, _ = struct.unpack(">QII", head)
                body = self.read_exact(length)
                if body is None:
                    break
                msg_id = struct.unpack(">H", body[:2])[0]
                name = vpp.name_of.get(msg_id)
                if name is None:
                    continue
                header, fields = unpack(vpp.papi, name, body)
                for reply in vpp.handle(self, name, header, fields):
                    self.send_body(reply)
        finally:
            with vpp.lock:
                if self in vpp.subscribers:
                    vpp.subscribers.remove(self)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--socket", required=True)
    p.add_argument("--api-dir", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--crc", action="append", default=[])
    p.add_argument("--fail", action="append", default=[])
    p.add_argument("--silent", action="append", default=[])
    p.add_argument("--refuse", action="store_true")
    p.add_argument("--interface", action="append", default=[])
    p.add_argument("--stale-memif", action="append", default=[])
    args = p.parse_args()
    vpp = FakeVpp(args)
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    server = Server(args.socket, Connection)
    os.chmod(args.socket, 0o600)
    server.vpp = vpp
    print("READY", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
