"""Pure account policy: usernames, display names, emails, passwords (domain/accounts.py), and
who is on the other end: the client IP behind trusted proxies and a device label
(domain/clients.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from echochat.domain import accounts as rules
from echochat.domain.clients import client_ip, device_label
from echochat.domain.errors import InvalidInput


def refused(call: Callable[[], object], code: str, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        call()
    assert info.value.code == code
    assert info.value.status == 422
    assert info.value.details == {"field": field}
    assert info.value.message


# --- usernames -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("abc", "abc"),
        ("Alice", "alice"),
        ("  bob  ", "bob"),
        ("a.b_c-d", "a.b_c-d"),
        ("0123456789", "0123456789"),
        ("x" * 32, "x" * 32),
        ("...", "..."),
    ],
)
def test_username_canonical_form(raw: str, canonical: str) -> None:
    assert rules.check_username(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "ab",
        "x" * 33,
        "has space",
        "tab\there",
        "new\nline",
        "semi;colon",
        "at@sign",
        "slash/name",
        "ümlaut",
        "емеля",
        "emoji😀",
        "nul\x00byte",
        "plus+sign",
    ],
)
def test_username_refused(raw: str) -> None:
    refused(lambda: rules.check_username(raw), "invalid_username", "username")


# --- display names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (None, "alice"),
        ("", "alice"),
        ("   ", "alice"),
        ("  Alice Liddell  ", "Alice Liddell"),
        ("Zoë", "Zoë"),
        ("Zoe\u0308", "Zoë"),  # NFC
        ("A\u202eB", "AB"),  # no bidi override
        ("A\u200bB", "AB"),  # no zero-width space
        ("A\x00B\x07C", "ABC"),  # no control characters
        ("\u202e", "alice"),  # nothing left: the username
        ("x" * 64, "x" * 64),
        ("🙂 smile", "🙂 smile"),
    ],
)
def test_display_name_cleaned(raw: str | None, shown: str) -> None:
    assert rules.check_display_name(raw, "alice") == shown


def test_display_name_too_long() -> None:
    refused(
        lambda: rules.check_display_name("x" * 65, "alice"), "invalid_display_name", "display_name"
    )


# --- emails ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("alice@example.org", "alice@example.org"),
        ("  Alice@Example.ORG ", "Alice@Example.ORG"),
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
    ],
)
def test_email_accepted(raw: str | None, kept: str | None) -> None:
    assert rules.check_email(raw) == kept


@pytest.mark.parametrize(
    "raw",
    [
        "plain",
        "no-at.example.org",
        "a@b",
        "a@b.c",
        "two@@example.org",
        "a@b@example.org",
        "with space@example.org",
        "line\nbreak@example.org",
        "alice@example.org\r\nBcc: x@evil.example",
        "@example.org",
        "x" * 65 + "@example.org",
        "a@" + "b" * 250 + ".org",
    ],
)
def test_email_refused(raw: str) -> None:
    refused(lambda: rules.check_email(raw), "invalid_email", "email")


# --- passwords -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "x" * rules.PASSWORD_MIN + "y",
        "correct horse battery staple",
        "p" * rules.PASSWORD_MAX,
        "pässwörter mit ümlauten",
        "          ",  # ten spaces: long enough, not on the list
    ],
)
def test_password_accepted(password: str) -> None:
    rules.check_password(password, "alice")


@pytest.mark.parametrize(
    ("password", "username", "code"),
    [
        ("", "alice", "password_too_short"),
        ("x" * (rules.PASSWORD_MIN - 1), "alice", "password_too_short"),
        ("x" * (rules.PASSWORD_MAX + 1), "alice", "password_too_long"),
        ("1234567890", "alice", "password_too_common"),
        ("PASSWORD123", "alice", "password_too_common"),
        ("qwertyuiop", "alice", "password_too_common"),
        ("charlie.brown", "charlie.brown", "password_is_username"),
        ("CHARLIE.BROWN", "charlie.brown", "password_is_username"),
    ],
)
def test_password_refused(password: str, username: str, code: str) -> None:
    refused(lambda: rules.check_password(password, username), code, "password")


def test_common_password_list_is_shipped_and_case_insensitive() -> None:
    assert rules.is_common_password("1234567890")
    assert rules.is_common_password("Password123")
    assert not rules.is_common_password("correct horse battery staple")
    assert len(rules._common_passwords()) > 1000


def test_password_message_never_contains_the_password() -> None:
    secret = "Password123"
    with pytest.raises(InvalidInput) as info:
        rules.check_password(secret, "alice")
    assert secret not in info.value.message
    assert secret.lower() not in info.value.message.lower()


# --- client IP -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        # no proxies configured: the header is ignored
        ("203.0.113.5", "198.51.100.1", [], "203.0.113.5"),
        # a spoofed header from an untrusted peer is ignored
        ("203.0.113.5", "198.51.100.1", ["10.0.0.0/8"], "203.0.113.5"),
        ("203.0.113.5", "10.0.0.1, 127.0.0.1", ["10.0.0.0/8", "127.0.0.1"], "203.0.113.5"),
        # a trusted proxy: the right-most untrusted hop is the client
        ("10.0.0.2", "198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.9", ["10.0.0.0/8"], "198.51.100.1"),
        ("10.0.0.2", " 198.51.100.1 ,10.0.0.9 ", ["10.0.0.0/8"], "198.51.100.1"),
        # a single address as a trusted proxy
        ("127.0.0.1", "198.51.100.1", ["127.0.0.1"], "198.51.100.1"),
        # IPv6
        ("::1", "2001:db8::7", ["::1"], "2001:db8::7"),
        ("fd00::1", "2001:db8::7, fd00::2", ["fd00::/8"], "2001:db8::7"),
        # no header behind a proxy: the proxy itself
        ("10.0.0.2", None, ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", "", ["10.0.0.0/8"], "10.0.0.2"),
        # a garbage hop is not believed: fall back to the peer
        ("10.0.0.2", "not-an-ip", ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", "198.51.100.1, <script>", ["10.0.0.0/8"], "10.0.0.2"),
        # every hop is a trusted proxy: the left-most one
        ("10.0.0.2", "10.0.0.7, 10.0.0.8", ["10.0.0.0/8"], "10.0.0.7"),
        # no peer at all
        (None, None, [], ""),
        ("", "198.51.100.1", ["10.0.0.0/8"], ""),
    ],
)
def test_client_ip(
    peer: str | None, forwarded: str | None, trusted: list[str], expected: str
) -> None:
    assert client_ip(peer, forwarded, trusted) == expected


def test_client_ip_normalises_the_forwarded_address() -> None:
    assert client_ip("10.0.0.2", "2001:DB8:0:0::7", ["10.0.0.0/8"]) == "2001:db8::7"


# --- device labels ---------------------------------------------------------------------------

FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
EDGE_WINDOWS = CHROME_WINDOWS + " Edg/131.0.0.0"
SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
OPERA_WINDOWS = CHROME_WINDOWS + " OPR/115.0.0.0"
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.0.0 Safari/537.36"
)
FIREFOX_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) FxiOS/132.0 Mobile/15E148 Safari/605.1.15"
)


@pytest.mark.parametrize(
    ("user_agent", "label"),
    [
        (FIREFOX_LINUX, "Firefox on Linux"),
        (CHROME_WINDOWS, "Chrome on Windows"),
        (EDGE_WINDOWS, "Edge on Windows"),
        (OPERA_WINDOWS, "Opera on Windows"),
        (SAFARI_MAC, "Safari on macOS"),
        (SAFARI_IPHONE, "Safari on iOS"),
        (FIREFOX_IOS, "Firefox on iOS"),
        (CHROME_ANDROID, "Chrome on Android"),
        (HEADLESS, "Headless Chrome on Linux"),
        ("echochat-sdk/0.1 python-httpx/0.28", "EchoChat SDK"),
        ("python-httpx/0.28.1", "Python client"),
        ("curl/8.5.0", "curl"),
        ("", "Unknown device"),
        (None, "Unknown device"),
    ],
)
def test_device_label(user_agent: str | None, label: str) -> None:
    assert device_label(user_agent) == label


def test_device_label_is_short_for_odd_agents() -> None:
    label = device_label("x" * 5000)
    assert len(label) <= 40
    assert device_label("/leading-slash") == "Unknown device"
