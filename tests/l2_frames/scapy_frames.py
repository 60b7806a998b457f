"""Independent encoder/decoder for tests/l2_frames.rs, built on scapy.

  scapy_frames.py build     prints {"name": "hex", ...}: frames built by scapy (odd ones included)
  scapy_frames.py dissect   reads {"name": "hex", ...} on stdin and prints {"name": {field: value}}

Names and addresses follow the acceptance fixture of the specification (section 12).
"""
import json
import sys

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (
    ICMPv6MLReport2,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrHopByHop,
    RouterAlert,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

SELF = "98:d2:93:00:00:03"
GW = "42:42:42:42:42:42"
NEIGH = "02:00:00:00:00:0b"
OTHER = "02:00:00:00:00:0c"
BCAST = "ff:ff:ff:ff:ff:ff"


def nonce_option():
    # RFC 3971 Nonce option (type 14, length 1): unknown to the adapter, so it must be skipped.
    return Raw(bytes([14, 1, 1, 2, 3, 4, 5, 6]))


def build():
    arp_req = ARP(op=1, hwsrc=GW, psrc="10.127.111.1", hwdst="00:00:00:00:00:00", pdst="172.22.77.33")
    ns = (
        IPv6(src="fd10:127:e00f::1", dst="ff02::1:ff00:33", hlim=255)
        / ICMPv6ND_NS(tgt="fd28:cb8f:4c92::33")
        / ICMPv6NDOptSrcLLAddr(lladdr=GW)
    )
    na = IPv6(src="fd10:127:e00f::5", dst="fd28:cb8f:4c92::33", hlim=255) / ICMPv6ND_NA(R=0, S=1, O=1, tgt="fd10:127:e00f::5")
    frames = {
        "arp_request_broadcast": Ether(dst=BCAST, src=GW) / arp_req,
        "arp_request_padded_to_60": Ether(dst=BCAST, src=GW) / arp_req / Raw(b"\x00" * 18),
        "arp_request_vlan_tagged": Ether(dst=BCAST, src=GW) / Dot1Q(vlan=42) / arp_req,
        "arp_request_truncated": Ether(dst=BCAST, src=GW) / arp_req,
        "arp_reply_unicast": Ether(dst=SELF, src=NEIGH) / ARP(op=2, hwsrc=NEIGH, psrc="10.127.111.7", hwdst=SELF, pdst="172.22.77.33"),
        "ipv4_udp_padded": Ether(dst=SELF, src=GW) / IP(src="10.127.111.1", dst="172.22.77.33") / UDP(sport=1, dport=2) / Raw(b"hi"),
        "ipv4_bad_checksum": Ether(dst=SELF, src=GW) / IP(src="10.127.111.1", dst="172.22.77.33", chksum=0x1234) / UDP() / Raw(b"hi"),
        "ipv4_ospf_multicast": Ether(dst="01:00:5e:00:00:05", src=GW) / IP(src="10.127.111.1", dst="224.0.0.5", proto=89, ttl=1) / Raw(b"hello"),
        "ipv4_broadcast": Ether(dst=BCAST, src=GW) / IP(src="10.127.111.1", dst="255.255.255.255") / UDP() / Raw(b"x"),
        "ipv6_udp_to_self": Ether(dst=SELF, src=GW) / IPv6(src="fd10:127:e00f::1", dst="fd28:cb8f:4c92::33") / UDP(sport=1, dport=2) / Raw(b"hi"),
        "ipv6_ospf_multicast": Ether(dst="33:33:00:00:00:05", src=GW) / IPv6(src="fe80::aa:1111:1", dst="ff02::5", nh=89, hlim=1) / Raw(b"hello"),
        "ns_multicast": Ether(dst="33:33:ff:00:00:33", src=GW) / ns,
        "ns_options_reordered": Ether(dst="33:33:ff:00:00:33", src=GW)
        / IPv6(src="fd10:127:e00f::1", dst="ff02::1:ff00:33", hlim=255)
        / ICMPv6ND_NS(tgt="fd28:cb8f:4c92::33")
        / nonce_option()
        / ICMPv6NDOptSrcLLAddr(lladdr=OTHER),
        "ns_bad_checksum": Ether(dst="33:33:ff:00:00:33", src=GW)
        / IPv6(src="fd10:127:e00f::1", dst="ff02::1:ff00:33", hlim=255)
        / ICMPv6ND_NS(tgt="fd28:cb8f:4c92::33", cksum=0x1234)
        / ICMPv6NDOptSrcLLAddr(lladdr=GW),
        "ns_hop_limit_64": Ether(dst="33:33:ff:00:00:33", src=GW)
        / IPv6(src="fd10:127:e00f::1", dst="ff02::1:ff00:33", hlim=64)
        / ICMPv6ND_NS(tgt="fd28:cb8f:4c92::33")
        / ICMPv6NDOptSrcLLAddr(lladdr=GW),
        "ns_dad": Ether(dst="33:33:ff:00:00:33", src=GW) / IPv6(src="::", dst="ff02::1:ff00:33", hlim=255) / ICMPv6ND_NS(tgt="fd28:cb8f:4c92::33"),
        "na_86_bytes": Ether(dst=SELF, src=NEIGH) / na / ICMPv6NDOptDstLLAddr(lladdr=NEIGH),
        "na_without_option": Ether(dst=SELF, src=NEIGH) / na,
        "na_options_reordered": Ether(dst=SELF, src=NEIGH) / na / ICMPv6NDOptMTU(mtu=1500) / ICMPv6NDOptDstLLAddr(lladdr=OTHER),
        "na_padded": Ether(dst=SELF, src=NEIGH) / na / ICMPv6NDOptDstLLAddr(lladdr=NEIGH),
        "na_truncated": Ether(dst=SELF, src=NEIGH) / na / ICMPv6NDOptDstLLAddr(lladdr=NEIGH),
        "mldv2_report": Ether(dst="33:33:00:00:00:16", src=GW)
        / IPv6(src="fe80::aa:1111:1", dst="ff02::16", hlim=1)
        / IPv6ExtHdrHopByHop(options=[RouterAlert()])
        / ICMPv6MLReport2(),
        "router_advertisement": Ether(dst="33:33:00:00:00:01", src=GW) / IPv6(src="fe80::aa:1111:1", dst="ff02::1", hlim=255) / ICMPv6ND_RA(),
        "runt": Ether(dst=SELF, src=GW),
    }
    out = {name: bytes(frame).hex() for name, frame in frames.items()}
    # Cut after building, so that the checksums and lengths inside describe the whole packet.
    out["arp_request_truncated"] = out["arp_request_truncated"][: 2 * 40]
    out["na_truncated"] = out["na_truncated"][: 2 * 82]
    out["runt"] = out["runt"][: 2 * 10]
    # Ethernet padding (after the IP packet, not counted by its length fields), up to the 60-byte minimum
    # and beyond, as a NIC or switch may add it.
    out["ipv4_udp_padded"] += "00" * (60 - len(out["ipv4_udp_padded"]) // 2)
    out["na_padded"] += "00" * 10
    print(json.dumps(out))


def checksum_ok(frame, layer):
    """Rebuilds the frame with the layer's checksum cleared and compares scapy's result."""
    rebuilt = frame.copy()
    del rebuilt[layer].cksum
    return Ether(bytes(rebuilt))[layer].cksum == frame[layer].cksum


def dissect_one(raw):
    frame = Ether(raw)
    out = {"len": len(raw), "dst": frame.dst, "src": frame.src, "type": frame.type}
    if ARP in frame:
        arp = frame[ARP]
        out.update(
            hwtype=arp.hwtype, ptype=arp.ptype, hwlen=arp.hwlen, plen=arp.plen, op=arp.op,
            hwsrc=arp.hwsrc, psrc=arp.psrc, hwdst=arp.hwdst, pdst=arp.pdst,
        )
    if IP in frame:
        ip = frame[IP]
        rebuilt = frame.copy()
        del rebuilt[IP].chksum
        out.update(ip_src=ip.src, ip_dst=ip.dst, ip_len=ip.len, ip_chksum_ok=Ether(bytes(rebuilt))[IP].chksum == ip.chksum)
    if IPv6 in frame:
        ip6 = frame[IPv6]
        out.update(ip_src=ip6.src, ip_dst=ip6.dst, hlim=ip6.hlim, plen=ip6.plen, nh=ip6.nh)
    for layer in (ICMPv6ND_NS, ICMPv6ND_NA):
        if layer in frame:
            message = frame[layer]
            out.update(icmp_type=message.type, code=message.code, tgt=message.tgt, cksum_ok=checksum_ok(frame, layer))
            if layer is ICMPv6ND_NA:
                out.update(R=message.R, S=message.S, O=message.O)
    if ICMPv6NDOptSrcLLAddr in frame:
        out["slla"] = frame[ICMPv6NDOptSrcLLAddr].lladdr
    if ICMPv6NDOptDstLLAddr in frame:
        out["tlla"] = frame[ICMPv6NDOptDstLLAddr].lladdr
    return out


def dissect():
    frames = json.load(sys.stdin)
    print(json.dumps({name: dissect_one(bytes.fromhex(data)) for name, data in frames.items()}))


if __name__ == "__main__":
    {"build": build, "dissect": dissect}[sys.argv[1]]()
