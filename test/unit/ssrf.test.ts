import {
  canonicalHost,
  forbiddenAddressReason,
  forbiddenHostReason,
  ipLiteral,
  isForbiddenAddress,
} from "../../src/callbacks/forbidden-address";
import { parseRetryAfter } from "../../src/callbacks/safe-http";

describe("forbiddenAddressReason", () => {
  it.each([
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback"],
    ["10.0.0.1", "private"],
    ["10.255.255.255", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.168.1.1", "private"],
    ["169.254.0.1", "link-local"],
    ["169.254.169.254", "cloud metadata"],
    ["169.254.170.2", "cloud metadata"],
    ["100.100.100.200", "cloud metadata"],
    ["100.64.0.1", "carrier-grade NAT"],
    ["100.127.255.255", "carrier-grade NAT"],
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["192.0.0.192", "reserved"],
    ["192.0.2.10", "documentation"],
    ["198.18.0.1", "benchmarking"],
    ["224.0.0.1", "multicast"],
    ["255.255.255.255", "reserved"],
    ["::1", "loopback"],
    ["::", "unspecified"],
    ["fc00::1", "unique local"],
    ["fd12:3456:789a::1", "unique local"],
    ["fd00:ec2::254", "cloud metadata"],
    ["fe80::1", "link-local"],
    ["febf:ffff::1", "link-local"],
    ["fe80::1%eth0", "link-local"],
    ["fec0::1", "site-local"],
    ["ff02::1", "multicast"],
    ["::ffff:127.0.0.1", "loopback (IPv4-mapped)"],
    ["::ffff:7f00:1", "loopback (IPv4-mapped)"],
    ["::FFFF:A9FE:A9FE", "cloud metadata (IPv4-mapped)"],
    ["::ffff:10.1.2.3", "private (IPv4-mapped)"],
    ["::ffff:8.8.8.8", "IPv4-mapped"],
    ["::127.0.0.1", "reserved"],
    ["64:ff9b::7f00:1", "NAT64"],
    ["2001:db8::1", "documentation"],
    ["2002:7f00:1::1", "6to4"],
    ["2001::1", "reserved"],
    ["100::1", "discard"],
    ["1234::1", "reserved"],
  ])("refuses %s (%s)", (ip, reason) => {
    expect(forbiddenAddressReason(ip)).toBe(reason);
    expect(isForbiddenAddress(ip)).toBe(true);
  });

  it.each([
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.15.255.255",
    "172.32.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "169.253.255.255",
    "192.169.0.1",
    "9.255.255.255",
    "11.0.0.0",
    "126.255.255.255",
    "128.0.0.1",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "2001:4860:4860::8888",
  ])("allows the public address %s", (ip) => {
    expect(forbiddenAddressReason(ip)).toBeNull();
    expect(isForbiddenAddress(ip)).toBe(false);
  });

  it("refuses what is not an IP address", () => {
    expect(forbiddenAddressReason("example.com")).toBe("not an IP address");
    expect(forbiddenAddressReason("2130706433")).toBe("not an IP address");
    expect(forbiddenAddressReason("")).toBe("not an IP address");
  });
});

describe("ipLiteral and forbiddenHostReason", () => {
  it.each([
    ["2130706433", "127.0.0.1"],
    ["0x7f000001", "127.0.0.1"],
    ["0x7f.1", "127.0.0.1"],
    ["0x7F.0.0.1", "127.0.0.1"],
    ["017700000001", "127.0.0.1"],
    ["0177.0.0.01", "127.0.0.1"],
    ["127.1", "127.0.0.1"],
    ["127.0.1", "127.0.0.1"],
    ["0", "0.0.0.0"],
    ["0xa9fea9fe", "169.254.169.254"],
    ["2852039166", "169.254.169.254"],
    ["012.0.0.1", "10.0.0.1"],
    ["127.0.0.%31", "127.0.0.1"],
    ["[::1]", "::1"],
    ["[::ffff:127.0.0.1]", "::ffff:7f00:1"],
    ["::1", "::1"],
  ])("reads the host %s as the address %s", (host, ip) => {
    expect(ipLiteral(host)).toBe(ip);
  });

  it.each([
    ["2130706433", "loopback"],
    ["0x7f.1", "loopback"],
    ["017700000001", "loopback"],
    ["127.1", "loopback"],
    ["0", "unspecified"],
    ["0xa9fea9fe", "cloud metadata"],
    ["[::1]", "loopback"],
    ["[::ffff:127.0.0.1]", "loopback (IPv4-mapped)"],
    ["[::ffff:a9fe:a9fe]", "cloud metadata (IPv4-mapped)"],
    ["[fe80::1]", "link-local"],
    ["localhost", "loopback"],
    ["LOCALHOST.", "loopback"],
    ["api.localhost", "loopback"],
    ["localhost.localdomain", "loopback"],
    ["metadata.google.internal", "cloud metadata"],
    ["metadata", "cloud metadata"],
    ["instance-data", "cloud metadata"],
    ["service.internal", "internal name"],
    ["printer.local", "internal name"],
    // Fullwidth letters map to "localhost" under IDNA, as every client will read them.
    ["ｌｏｃａｌｈｏｓｔ", "loopback"],
  ])("refuses the host %s (%s)", (host, reason) => {
    expect(forbiddenHostReason(host)).toBe(reason);
  });

  it.each([
    "example.com",
    "hooks.partner.example",
    "8.8.8.8",
    "[2606:4700:4700::1111]",
    "localhost.example.com",
    "notlocalhost",
  ])("leaves the host %s to its DNS answers", (host) => {
    expect(forbiddenHostReason(host)).toBeNull();
  });

  it("does not read a name as an address", () => {
    expect(ipLiteral("example.com")).toBeNull();
    expect(ipLiteral("1.2.3.4.example.com")).toBeNull();
  });

  it("refuses text that is not a host on its own", () => {
    for (const host of [
      "evil.example@127.0.0.1",
      "127.0.0.1:80",
      "a/b",
      "",
      "foo.0x7f",
      "[::1]:80",
    ]) {
      expect(canonicalHost(host)).toBeNull();
      expect(forbiddenHostReason(host)).toBe("not a valid host name");
    }
  });
});

describe("parseRetryAfter", () => {
  it("reads seconds and HTTP dates", () => {
    const now = Date.UTC(2025, 0, 1, 0, 0, 0);
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter("Wed, 01 Jan 2025 00:01:00 GMT", now)).toBe(60_000);
    expect(parseRetryAfter("Tue, 31 Dec 2024 00:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter("soon", now)).toBeUndefined();
  });
});
