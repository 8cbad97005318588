"""Route 53 behaviour moto 5.2.5 gets wrong, patched to what AWS does.

Imported for its side effects by server.py. Each patch names the AWS
behaviour it restores.
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Any

from moto.core.common_models import BaseModel  # noqa: F401  (keeps moto's import order)
from moto.route53 import models as r53_models
from moto.route53 import responses as r53_responses
from moto.route53.exceptions import NoSuchHealthCheck, Route53ClientError
from moto.core.responses import ActionResult

_LOCK = threading.Lock()
# CallerReference -> (health check id, settings it was created with). AWS keeps
# references of deleted checks too (for "a number of days"); so do we.
_CALLER_REFS: dict[str, tuple[str, dict[str, Any]]] = {}


class HealthCheckAlreadyExists(Route53ClientError):
    code = "HealthCheckAlreadyExists"


class HealthCheckVersionMismatch(Route53ClientError):
    code = "HealthCheckVersionMismatch"


def _settings(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if v not in (None, [], {})}


_orig_create = r53_models.Route53Backend.create_health_check


class InvalidInput(Route53ClientError):
    code = "InvalidInput"


# What Route 53 cannot check: "local, private, non-routable, or multicast
# ranges" (HealthCheckConfig.IPAddress,
# https://docs.aws.amazon.com/Route53/latest/APIReference/API_HealthCheckConfig.html),
# the special-use ranges of RFC 5735 / RFC 6598 / RFC 5156.
_NOT_CHECKABLE = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
    "2001:db8::/32", "64:ff9b::/96", "::ffff:0:0/96")]


def check_ip(ip: str | None) -> None:
    if not ip:
        return
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidInput(f"Invalid IP address: {ip}") from None
    if any(addr in net for net in _NOT_CHECKABLE if net.version == addr.version):
        raise InvalidInput(f"IP address {ip} is in a local, private, non-routable, or multicast range: Route 53 "
                           "cannot check it")


def create_health_check(self: Any, caller_reference: str, health_check_args: dict[str, Any]) -> Any:
    check_ip(health_check_args.get("ip_address"))
    # AWS: same CallerReference + same settings returns the existing check;
    # same reference with other settings, or of a deleted check, is
    # HealthCheckAlreadyExists. moto creates a new check every time.
    with _LOCK:
        known = _CALLER_REFS.get(caller_reference)
        if known is not None:
            hc_id, settings = known
            existing = self.health_checks.get(hc_id)
            if existing is not None and settings == _settings(health_check_args):
                return existing
            raise HealthCheckAlreadyExists(
                "A health check with this CallerReference already exists or was deleted recently"
            )
        hc = _orig_create(self, caller_reference, health_check_args)
        _CALLER_REFS[caller_reference] = (hc.id, _settings(health_check_args))
        return hc


_orig_update = r53_models.Route53Backend.update_health_check


def update_health_check(self: Any, health_check_id: str, health_check_args: dict[str, Any]) -> Any:
    check_ip(health_check_args.get("ip_address"))
    # AWS increments HealthCheckVersion on every update; moto keeps 1.
    hc = _orig_update(self, health_check_id, health_check_args)
    hc.health_check_version += 1
    return hc


def delete_health_check(self: Any, health_check_id: str) -> None:
    # AWS answers NoSuchHealthCheck for an unknown id; moto succeeds silently.
    if health_check_id not in self.health_checks:
        raise NoSuchHealthCheck(health_check_id)
    del self.health_checks[health_check_id]


def update_health_check_response(self: Any) -> Any:
    # AWS rejects an update whose HealthCheckVersion is not the current one
    # (optimistic locking); moto ignores the field.
    version = self._get_param("HealthCheckVersion")
    hc_id = self._get_param("HealthCheckId")
    hc = self.backend.health_checks.get(hc_id)
    if version is not None and hc is not None and int(version) != hc.health_check_version:
        raise HealthCheckVersionMismatch(
            f"HealthCheckVersion {version} is not the current version {hc.health_check_version}"
        )
    return _orig_update_response(self)


_orig_update_response = r53_responses.Route53.update_health_check


def list_health_checks(self: Any) -> ActionResult:
    # AWS pages by MaxItems (default 100, at most 1000) with Marker/NextMarker;
    # moto returns every check in one page and ignores both.
    checks = sorted(self.backend.list_health_checks(), key=lambda h: h.id)
    marker = self._get_param("Marker")
    max_items = int(self._get_param("MaxItems") or 100)
    max_items = max(1, min(max_items, 1000))
    start = 0
    if marker:
        start = next((i for i, h in enumerate(checks) if h.id == marker), len(checks))
    page = checks[start:start + max_items]
    truncated = start + max_items < len(checks)
    result: dict[str, Any] = {
        "HealthChecks": page,
        "Marker": marker or "",
        "MaxItems": str(max_items),
        "IsTruncated": truncated,
    }
    if truncated:
        result["NextMarker"] = checks[start + max_items].id
    return ActionResult(result)


def dump_health_checks() -> list[dict[str, Any]]:
    """Every health check in every account, with tags, for test assertions."""
    out = []
    for account_id, by_partition in r53_models.route53_backends.items():
        for backend in by_partition.values():
            for hc in backend.health_checks.values():
                tags = backend.list_tags_for_resource(hc.id) or {}
                out.append({
                    "account_id": account_id,
                    "id": hc.id,
                    "caller_reference": hc.caller_reference,
                    "version": hc.health_check_version,
                    "config": {k: v for k, v in hc.health_check_config.items() if v is not None},
                    "tags": dict(tags),
                })
    return out


r53_models.Route53Backend.create_health_check = create_health_check
r53_models.Route53Backend.update_health_check = update_health_check
r53_models.Route53Backend.delete_health_check = delete_health_check
r53_responses.Route53.update_health_check = update_health_check_response
r53_responses.Route53.list_health_checks = list_health_checks


def list_resource_record_sets(self: Any) -> ActionResult:
    # AWS orders by reversed-label name, type, then SetIdentifier, starts at
    # StartRecordName/Type/Identifier and pages with NextRecordIdentifier;
    # moto ignores StartRecordIdentifier, so same-name weighted records can
    # neither be looked up directly nor paged through.
    zone = self.backend.get_hosted_zone(self._get_param("HostedZoneId"))
    start_name = self._get_param("StartRecordName")
    start_type = self._get_param("StartRecordType") or ""
    start_id = self._get_param("StartRecordIdentifier") or ""
    max_items = max(1, min(int(self._get_int_param("MaxItems", 300)), 300))

    def norm(name: str) -> str:
        return name.lower().rstrip(".") + "."

    def key(r: Any) -> tuple[str, str, str]:
        return (r53_models.reverse_domain_name(norm(r.name)), r.type or "", r.set_identifier or "")

    records = sorted(zone.rrsets, key=key)
    if start_name:
        start = (r53_models.reverse_domain_name(norm(start_name)), start_type, start_id)
        records = [r for r in records if key(r) >= start]
    page, rest = records[:max_items], records[max_items:]
    result: dict[str, Any] = {"ResourceRecordSets": page, "IsTruncated": bool(rest), "MaxItems": str(max_items)}
    if rest:
        result["NextRecordName"] = rest[0].name
        result["NextRecordType"] = rest[0].type
        if rest[0].set_identifier:
            result["NextRecordIdentifier"] = rest[0].set_identifier
    return ActionResult(result)


r53_responses.Route53.list_resource_record_sets = list_resource_record_sets


def list_hosted_zones_by_name(self: Any) -> ActionResult:
    # AWS lists every zone in reversed-label order starting at DNSName (and
    # HostedZoneId), MaxItems at a time, with NextDNSName/NextHostedZoneId;
    # zones of the same name (a private and a public one: split horizon)
    # follow each other. moto returns only the zones named exactly DNSName
    # and ignores MaxItems, which hides the bug of reading one item per name.
    # Same-name zones keep their creation order here (AWS's order between
    # them is not documented), so a test decides which one comes first.
    dnsname = self._get_param("DNSName")
    zone_id = self._get_param("HostedZoneId")
    max_items = max(1, min(int(self._get_int_param("MaxItems", 100)), 100))

    def norm(name: str) -> str:
        return name.lower().rstrip(".") + "."

    created = list(self.backend.zones.values())
    zones = sorted(created, key=lambda z: (r53_models.reverse_domain_name(norm(z.name)), created.index(z)))
    if dnsname:
        start = r53_models.reverse_domain_name(norm(dnsname))
        zones = [z for z in zones if r53_models.reverse_domain_name(norm(z.name)) >= start]
        if zone_id:
            bare = zone_id.split("/")[-1]
            at = next((i for i, z in enumerate(zones) if z.resource_id == bare), 0)
            zones = zones[at:]
    page, rest = zones[:max_items], zones[max_items:]
    result: dict[str, Any] = {"HostedZones": page, "IsTruncated": bool(rest), "MaxItems": str(max_items)}
    if dnsname:
        result["DNSName"] = dnsname
    if zone_id:
        result["HostedZoneId"] = zone_id
    if rest:
        result["NextDNSName"] = rest[0].name
        result["NextHostedZoneId"] = rest[0].resource_id
    return ActionResult(result)


r53_responses.Route53.list_hosted_zones_by_name = list_hosted_zones_by_name
