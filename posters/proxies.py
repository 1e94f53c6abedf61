"""Going out through the proxies the environment names, only when asked to.

Off by default (FETCH_USE_ENV_PROXY=false): a worker should not pick up a proxy meant
for something else. When on, HTTPS_PROXY, HTTP_PROXY and ALL_PROXY are used, except for
the hosts NO_PROXY names, read the way curl and httpx read them.

What a proxy changes for safety: the allowlist still applies to the real target URL
(every hop is checked before it is requested), but the address check after DNS
(`posters.net`) vets the connection this process makes, and that is the one to the proxy.
The proxy resolves the target's name itself, so an allowed name that resolves to a
private address is no longer caught here: the proxy has to refuse private destinations.
The proxy itself, which the operator configured, is trusted, by name or by address.
"""

from __future__ import annotations

import ipaddress

from posters.settings import FetchSettings


def proxy_mounts(settings: FetchSettings) -> dict[str, str | None]:
    """httpx mount patterns and their proxy URLs (None: connect directly); {} when off."""
    if not settings.fetch_use_env_proxy:
        return {}
    mounts: dict[str, str | None] = {}
    for scheme, proxy in (
        ("http", settings.http_proxy),
        ("https", settings.https_proxy),
        ("all", settings.all_proxy),
    ):
        if proxy is not None and (url := proxy.get_secret_value().strip()):
            mounts[f"{scheme}://"] = url if "://" in url else f"http://{url}"
    for host in (part.strip() for part in settings.no_proxy.split(",")):
        if host == "*":
            return {}
        if host:
            mounts[_direct_pattern(host)] = None
    return mounts


def _direct_pattern(host: str) -> str:
    """The httpx mount pattern of one NO_PROXY entry (`.example.com` spares its subdomains)."""
    if "://" in host:
        return host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return f"all://[{host}]" if address.version == 6 else f"all://{host}"
    return f"all://{host}" if host.lower() == "localhost" else f"all://*{host}"
