"""Who is on the other end: the client's IP behind trusted proxies, and a device label."""

from __future__ import annotations

import ipaddress
import re

__all__ = ["client_ip", "device_label"]


def client_ip(peer: str | None, forwarded_for: str | None, trusted: list[str]) -> str:
    """The client's address. ``X-Forwarded-For`` counts only when the peer is a trusted proxy;
    then the right-most address that is not itself a trusted proxy is the client."""
    peer = peer or ""
    if not forwarded_for or not trusted:
        return peer
    networks = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    if not is_trusted(peer):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return hops[0] if hops else peer


_BROWSERS = (
    ("Edge", re.compile(r"Edg(e|A|iOS)?/")),
    ("Opera", re.compile(r"OPR/|Opera")),
    ("Firefox", re.compile(r"Firefox/|FxiOS/")),
    ("Chrome", re.compile(r"Chrome/|CriOS/|Chromium/")),
    ("Safari", re.compile(r"Safari/")),
)
_SYSTEMS = (
    ("Android", re.compile(r"Android")),
    ("iOS", re.compile(r"iPhone|iPad|iPod")),
    ("Windows", re.compile(r"Windows")),
    ("macOS", re.compile(r"Mac OS X|Macintosh")),
    ("ChromeOS", re.compile(r"CrOS")),
    ("Linux", re.compile(r"Linux")),
)


def device_label(user_agent: str | None) -> str:
    """A short human label such as "Firefox on Windows" (for the signed-in devices list)."""
    ua = user_agent or ""
    if not ua:
        return "Unknown device"
    if ua.startswith("echochat-sdk/") or ua.startswith("python-httpx/"):
        return "EchoChat SDK" if ua.startswith("echochat-sdk/") else "Python client"
    browser = next((name for name, rx in _BROWSERS if rx.search(ua)), None)
    system = next((name for name, rx in _SYSTEMS if rx.search(ua)), None)
    if "HeadlessChrome" in ua:
        browser = "Headless Chrome"
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or ua.split("/", 1)[0][:40] or "Unknown device"
