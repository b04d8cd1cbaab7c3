"""The public-address check webhooks go through (ops/addresses.py): every IPv6 form that
carries a private IPv4 address is private too (issue 18)."""

import pytest

from ops.addresses import embedded_ipv4, first_non_public, is_public, non_public_reason

NON_PUBLIC = [
    # IPv4, as refused before
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "255.255.255.255",
    # IPv6 itself
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "2001:db8::1",
    # IPv4-mapped and IPv4-compatible
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
    "::7f00:1", "::10.0.0.1", "::169.254.169.254",
    # NAT64, well-known and local-use prefixes
    "64:ff9b::7f00:1", "64:ff9b::127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b::10.0.0.1",
    "64:ff9b:1::7f00:1", "64:ff9b:1:203:7100::", "64:ff9b:1::8.8.8.8",
    # 6to4
    "2002:7f00:1::", "2002:a00:1::1", "2002:a9fe:a9fe::",
    # Teredo (2001::/32): the prefix is not global, whatever the server and client
    "2001:0:4136:e378:8000:63bf:80ff:fffe", "2001:0:7f00:1::",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "2606:4700:4700::1111",
          "64:ff9b::8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_private_addresses_and_ipv6_forms_embedding_them_are_not_public(address):
    assert not is_public(address)
    assert non_public_reason(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_stay_public(address):
    assert is_public(address), non_public_reason(address)


def test_embedded_addresses_are_found_in_each_form():
    from ipaddress import IPv4Address, IPv6Address

    loopback = IPv4Address("127.0.0.1")
    for form in ("::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::"):
        assert loopback in embedded_ipv4(IPv6Address(form)), form
    server, client = embedded_ipv4(IPv6Address("2001:0:4136:e378:8000:63bf:80ff:fffe"))
    assert (str(server), str(client)) == ("65.54.227.120", "127.0.0.1")
    assert embedded_ipv4(IPv6Address("2001:4860:4860::8888")) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1",
                                  "2002:7f00:1::", "::ffff:127.0.0.1", "localhost",
                                  "2130706433", "0x7f.1"])
def test_host_names_and_literals_resolving_to_loopback_are_caught(host):
    assert first_non_public(host) is not None


def test_a_zone_index_is_ignored_and_unresolvable_hosts_are_left_to_fail():
    assert not is_public("fe80::1%eth0")
    assert first_non_public("no-such-host.invalid") is None
    assert first_non_public("a\x00b") is None
